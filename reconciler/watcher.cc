#include "reconciler/watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/failpoint.h"
#include "base/sha256.h"
#include "reconciler/network_plan.h"
#include "base/strings.h"
#include "spec/loader.h"

namespace banger {

using std::chrono::milliseconds;

namespace {

std::string Short(const std::string& revision) {
  if (StartsWith(revision, "sha256:")) return revision.substr(0, 19);
  return revision.substr(0, 12);
}

std::string Seconds(milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(ms.count()) / 1000.0);
  return buf;
}

}  // namespace

Watcher::Watcher(StateStore& store, Engine& engine, SpecSource& source, Clock& clock, WatchOptions options)
    : store_(store),
      engine_(engine),
      source_(source),
      clock_(clock),
      options_(std::move(options)),
      owner_(options_.owner.empty() ? source.Key() : options_.owner),
      queue_(clock) {}

Watcher::~Watcher() = default;

void Watcher::RecordSource(const std::function<void(SourceRecord&)>& edit) {
  std::lock_guard<std::mutex> l(record_mu_);
  SourceRecord r;
  if (auto got = store_.GetSource(source_.Key()); got.ok()) {
    r = *got;
  } else if (got.error().code() != StatusCode::kNotFound) {
    // Never overwrite a row we could not read with a partial one.
    spdlog::warn("reading the status of {}: {}", source_.Key(), got.error().ToString());
    return;
  }
  r.key = source_.Key();
  r.url = source_.Url();
  r.ref = source_.Ref();
  r.owner = owner_;
  r.watcher = SelfProcess();
  edit(r);
  if (Status s = store_.PutSource(r); !s.ok()) spdlog::warn("recording the status of {}: {}", r.key, s.ToString());
}

std::map<std::string, Watcher::Desired> Watcher::DesiredFromRecords() {
  std::map<std::string, Desired> out;
  auto records = store_.ListSandboxes();
  if (!records) return out;
  for (const auto& rec : *records) {
    if (rec.owner != owner_) continue;
    auto spec = RecordSpec(rec);
    if (!spec) continue;
    out.emplace(rec.name, Desired{SpecDocument{std::move(*spec), {}}, rec.spec_json, rec.spec_hash});
  }
  return out;
}

void Watcher::Pass() {
  const int64_t now = clock_.NowUnix();
  const auto started = clock_.SteadyNow();
  struct CountPass {
    Watcher* w;
    std::chrono::steady_clock::time_point started;
    int64_t now;
    ~CountPass() {
      std::lock_guard<std::mutex> l(w->metrics_mu_);
      w->metrics_.passes++;
      w->metrics_.last_pass_unix = now;
      w->metrics_.last_pass_seconds = std::chrono::duration<double>(w->clock_.SteadyNow() - started).count();
    }
  } count_pass{this, started, now};
  auto snap = source_.Fetch();
  if (snap) {
    if (Status fp = failpoint::Hit("watch.pass.after_fetch"); !fp.ok()) snap = fp;
  }
  bool good = false;
  std::string problem;
  if (!snap) {
    problem = "cannot read " + source_.Url() + ": " + snap.error().message();
    spdlog::error("{}; keeping the previous desired state", problem);
    RecordSource([&](SourceRecord& r) {
      r.last_attempt_at = now;
      r.last_result = "error";
      r.last_error = problem;
      r.last_error_revision.clear();
    });
  } else if (snap->specs.diagnostics.HasErrors()) {
    std::string text(Trim(snap->specs.diagnostics.ToString()));
    problem = "invalid specs at " + snap->revision + ":\n" + text;
    spdlog::error("source {} at {}: invalid specs; nothing changes until they are fixed:\n{}", source_.Url(),
                  Short(snap->revision), text);
    // One event per bad revision, not one per pass over it (the row says
    // whether this error was already recorded, also by an earlier run).
    bool already_recorded = false;
    RecordSource([&](SourceRecord& r) {
      already_recorded = r.last_result == "error" && r.last_error_revision == snap->revision &&
                         r.last_error == text;
      r.seen_revision = snap->revision;
      r.last_attempt_at = now;
      r.last_result = "error";
      r.last_error = text;
      r.last_error_revision = snap->revision;
    });
    if (!already_recorded) {
      EventRecord e;
      e.type = "Warning";
      e.reason = "InvalidSpecs";
      e.message = source_.Url() + " at " + snap->revision + ": " + text;
      (void)store_.AddEvent(e);
    }
  } else {
    good = true;
    bool unchanged;
    {
      std::lock_guard<std::mutex> l(mu_);
      unchanged = have_good_ && snap->revision == good_revision_;
    }
    // The same revision means the same specs: desired_ already holds them
    // with their canonical forms, so a resync does not recompute them.
    if (!unchanged) {
      std::map<std::string, Desired> next;
      for (const auto& doc : snap->specs.specs) {
        std::string json = CanonicalJson(doc.spec);
        std::string hash = Sha256Hex(json);
        next.emplace(doc.spec.name, Desired{doc, std::move(json), std::move(hash)});
      }
      spdlog::info("source {}: revision {}{}", source_.Url(), snap->revision,
                   snap->summary.empty() ? "" : " (" + snap->summary + ")");
      std::lock_guard<std::mutex> l(mu_);
      good_revision_ = snap->revision;
      good_summary_ = snap->summary;
      outstanding_.clear();
      key_errors_.clear();
      desired_ = std::move(next);
      desired_networks_ = snap->specs.networks;
      have_good_ = true;
    }
    RecordSource([&](SourceRecord& r) {
      r.seen_revision = snap->revision;
      r.last_attempt_at = now;
    });
  }
  bool prune;
  {
    std::lock_guard<std::mutex> l(mu_);
    pass_problem_ = problem;
    prune_now_ = good;
    prune = good && options_.prune;
    if (!have_good_) desired_ = DesiredFromRecords();
  }

  // Observe the host before deciding anything.
  if (Status s = engine_.Refresh(); !s.ok()) spdlog::warn("observing sandboxes: {}", s.ToString());
  if (Status s = engine_.RepairNetworks(); !s.ok()) spdlog::warn("repairing networks: {}", s.ToString());

  auto records = store_.ListSandboxes();
  if (!records) {
    spdlog::error("reading sandboxes: {}", records.error().ToString());
    passes_++;
    return;
  }
  std::map<std::string, const SandboxRecord*> by_name;
  for (const auto& r : *records) by_name[r.name] = &r;
  PlanOptions o;
  o.owner = owner_;
  o.prune = prune;
  o.recovery = RecoveryMode::kPolicy;
  o.now = clock_.NowUnix();
  o.max_restart_attempts = engine_.options().max_restart_attempts;
  std::vector<std::string> conflicts;
  // Networks: created and updated here, before the workers boot sandboxes on
  // them; a network to prune goes once no sandbox uses it any more.
  bool plan_networks;
  {
    std::lock_guard<std::mutex> l(mu_);
    plan_networks = have_good_;
  }
  if (plan_networks) {
    Plan plan;
    plan.owner = owner_;
    std::vector<SpecDocument> docs;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [name, d] : desired_) docs.push_back(d.doc);
      if (prune) {
        for (const auto& rec : *records) {
          if (!desired_.count(rec.name) && rec.owner == owner_) plan.changes.push_back(Change{.name = rec.name, .action = Action::kDelete});
        }
      }
    }
    NetworkObservations observed;
    auto nets = store_.ListNetworks();
    auto leases = store_.ListLeases("");
    if (nets.ok() && leases.ok()) {
      observed.networks = std::move(*nets);
      observed.leases = std::move(*leases);
      std::vector<NetworkDocument> declared;
      {
        std::lock_guard<std::mutex> l(mu_);
        declared = desired_networks_;
      }
      PlanNetworks(declared, docs, *records, observed, o, plan);
      for (const auto& e : plan.errors) conflicts.push_back(e);
      for (const auto& n : plan.networks) {
        if (n.action == Action::kNoOp) continue;
        if (n.action == Action::kDelete) {
          if (std::any_of(observed.leases.begin(), observed.leases.end(),
                          [&](const LeaseRecord& l) { return l.network == n.name; })) {
            continue;  // its sandboxes are being deleted; next pass
          }
        }
        Status s = engine_.networks().Apply(n);
        if (!s.ok()) {
          conflicts.push_back("network " + n.name + ": " + s.message());
        } else {
          spdlog::info("network {}: {} ({})", n.name, ToString(n.action), n.reason);
        }
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [name, d] : desired_) {
      auto it = by_name.find(name);
      std::string conflict;
      Change c = PlanSandbox(&d.doc, d.json, d.hash, it == by_name.end() ? nullptr : it->second, o, &conflict);
      if (!conflict.empty()) {
        conflicts.push_back(conflict);
        continue;
      }
      if (c.action != Action::kNoOp) {
        outstanding_.insert(name);
        queue_.Add(name);
      } else if (c.retry_at > 0) {
        key_errors_[name] = c.reason;
        queue_.AddAfter(name, std::chrono::seconds(std::max<int64_t>(1, c.retry_at - o.now)));
      }
    }
    if (prune) {
      for (const auto& rec : *records) {
        if (desired_.count(rec.name)) continue;
        Change c = PlanSandbox(nullptr, "", "", &rec, o, nullptr);
        if (c.action == Action::kDelete) {
          outstanding_.insert(rec.name);
          queue_.Add(rec.name);
        }
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    conflicts_ = conflicts;
  }
  for (const auto& c : conflicts) spdlog::error("{}", c);
  passes_++;
  FinishKey("", "");  // records "applied" when this pass needed no work
}

void Watcher::FinishKey(const std::string& key, const std::string& error) {
  std::string revision, summary, errors;
  bool applied = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!key.empty()) {
      if (error.empty()) {
        key_errors_.erase(key);
        outstanding_.erase(key);
      } else {
        key_errors_[key] = error;
      }
    }
    if (!have_good_ || !prune_now_ || !pass_problem_.empty()) return;  // the last read was not good
    revision = good_revision_;
    summary = good_summary_;
    applied = outstanding_.empty() && key_errors_.empty() && conflicts_.empty();
    int n = 0;
    for (const auto& c : conflicts_) errors += (n++ ? "\n" : "") + c;
    for (const auto& [k, e] : key_errors_) {
      if (n++ >= 10) break;
      errors += (errors.empty() ? "" : "\n") + ("sandbox " + k + ": " + e);
    }
  }
  const int64_t now = clock_.NowUnix();
  RecordSource([&](SourceRecord& r) {
    if (applied) {
      if (r.applied_revision != revision) {
        spdlog::info("source {}: revision {} applied", source_.Url(), Short(revision));
        r.applied_revision = revision;
        r.applied_summary = summary;
        r.applied_at = now;
      }
      r.last_result = "ok";
      r.last_error.clear();
      r.last_error_revision.clear();
      r.last_success_at = now;
      std::lock_guard<std::mutex> ml(metrics_mu_);
      metrics_.last_success_unix = now;
    } else if (!errors.empty()) {
      r.last_result = "error";
      r.last_error = errors;
      r.last_error_revision = revision;
    }
  });
}

void Watcher::ConvergeKey(const std::string& key) {
  Desired copy;
  bool desired = false;
  bool prune = false;
  std::string revision;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = desired_.find(key);
    if (it != desired_.end()) {
      copy = it->second;
      desired = true;
    }
    prune = prune_now_ && options_.prune;
    revision = good_revision_.empty() ? "the recorded specs" : Short(good_revision_);
  }
  ConvergeRequest req;
  req.name = key;
  req.desired = desired ? &copy.doc : nullptr;
  req.desired_json = copy.json;
  req.desired_hash = copy.hash;
  req.owner = owner_;
  req.prune = prune;
  req.recovery = RecoveryMode::kPolicy;
  req.wait_for_lock = false;
  req.purpose = "watch";
  ConvergeOutcome out = engine_.Converge(req);
  if (Status fp = failpoint::Hit("watch.converge.after"); !fp.ok() && !out.busy && out.result.status.ok()) {
    out.result.status = fp;
  }
  if (out.busy) {
    spdlog::info("sandbox {}: {} is working on it; looking again in {}", key, out.holder,
                 Seconds(options_.busy_retry));
    queue_.AddAfter(key, options_.busy_retry);
    return;
  }
  const ChangeResult& r = out.result;
  const int64_t now = clock_.NowUnix();
  if (r.status.ok() && r.action == Action::kNoOp) {
    if (out.retry_at > 0) {
      queue_.AddAfter(key, std::chrono::seconds(std::max<int64_t>(1, out.retry_at - now)));
      FinishKey(key, out.change.reason);
    } else {
      FinishKey(key, "");
    }
    return;
  }
  std::string what = std::string(ToString(r.action)) + " (" + out.change.reason + ") at " + revision;
  {
    std::lock_guard<std::mutex> l(metrics_mu_);
    (r.status.ok() ? metrics_.applies : metrics_.failures)[std::string(ToString(r.action))]++;
  }
  if (r.status.ok()) {
    spdlog::info("sandbox {}: {}: done in {}{}", key, what, Seconds(r.took),
                 r.address.empty() ? "" : ", at " + r.address);
    FinishKey(key, "");
    return;
  }
  spdlog::error("sandbox {}: {}: failed after {}: {}", key, what, Seconds(r.took), r.status.message());
  FinishKey(key, r.status.message());
  // Look again when its backoff allows (the record says when).
  auto rec = store_.GetSandbox(key);
  int64_t at = rec.ok() ? rec->next_retry_at : 0;
  auto delay = at > now ? std::chrono::seconds(at - now) : engine_.options().backoff_base;
  queue_.AddAfter(key, delay);
}

void Watcher::Worker() {
  while (auto key = queue_.Get()) {
    busy_workers_++;
    ConvergeKey(*key);
    queue_.Done(*key);
    busy_workers_--;
  }
}

PassResult Watcher::RunOnce() {
  std::vector<std::thread> workers;
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers.emplace_back([this] { Worker(); });
  Pass();
  while (!queue_.WaitIdle(milliseconds(200))) {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) break;
  }
  queue_.ShutDown();
  for (auto& t : workers) t.join();

  PassResult res;
  std::lock_guard<std::mutex> l(mu_);
  res.revision = good_revision_;
  if (!pass_problem_.empty()) res.problems.push_back(pass_problem_);
  for (const auto& c : conflicts_) res.problems.push_back(c);
  for (const auto& [k, e] : key_errors_) res.problems.push_back("sandbox " + k + ": " + e);
  for (const auto& [name, d] : desired_) {
    if (key_errors_.count(name)) continue;
    auto rec = store_.GetSandbox(name);
    if (!rec) {
      res.problems.push_back("sandbox " + name + ": not created");
      continue;
    }
    if (rec->phase != SandboxPhase::kReady && !rec->stopped_by_user) {
      res.problems.push_back("sandbox " + name + ": " + std::string(ToString(rec->phase)) +
                             (rec->last_error.empty() ? "" : ": " + rec->last_error));
    }
  }
  res.converged = res.problems.empty();
  return res;
}

bool Watcher::Run(milliseconds grace) {
  Status n = source_.StartNotifications([this] { Trigger(); });
  if (!n.ok()) {
    spdlog::warn("change notifications unavailable ({}); relying on the resync every {}", n.message(),
                 FormatDuration(options_.interval));
  }
  std::vector<std::thread> workers;
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers.emplace_back([this] { Worker(); });
  auto next_resync = clock_.SteadyNow();
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    auto now = clock_.SteadyNow();
    bool changed = change_pending_ && now >= change_at_;
    if (now >= next_resync || changed) {
      change_pending_ = false;
      l.unlock();
      Pass();
      l.lock();
      next_resync = clock_.SteadyNow() + options_.interval;
      continue;
    }
    auto until = change_pending_ ? std::min(next_resync, change_at_) : next_resync;
    auto wait = std::chrono::duration_cast<milliseconds>(until - now);
    cv_.wait_for(l, std::clamp(wait, milliseconds(1), milliseconds(1000)));
  }
  l.unlock();
  source_.StopNotifications();
  queue_.ShutDown();
  // Workers end at their next step boundary (the engine's cancel flag ends
  // waits); what is still running after the grace period is left to the next
  // run, like any interruption.
  auto deadline = std::chrono::steady_clock::now() + grace;
  {
    std::unique_lock<std::mutex> wl(mu_);
    while (busy_workers_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      cv_.wait_for(wl, milliseconds(20));
    }
  }
  if (busy_workers_.load() > 0) {
    for (auto& t : workers) t.detach();
    return false;
  }
  for (auto& t : workers) t.join();
  return true;
}

WatchMetrics Watcher::Metrics() {
  std::lock_guard<std::mutex> l(metrics_mu_);
  return metrics_;
}

namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string RenderWatchMetrics(const WatchMetrics& m, const std::string& source_key,
                               const std::map<std::string, int>& sandboxes_by_phase) {
  std::string src = "source=\"" + Escape(source_key) + "\"";
  std::string out;
  auto metric = [&](const std::string& name, const std::string& type, const std::string& help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  char buf[64];
  metric("banger_watch_passes_total", "counter", "Passes (read, observe, plan) completed.");
  out += "banger_watch_passes_total{" + src + "} " + std::to_string(m.passes) + "\n";
  metric("banger_watch_pass_duration_seconds", "gauge", "Duration of the last pass.");
  std::snprintf(buf, sizeof(buf), "%.6f", m.last_pass_seconds);
  out += "banger_watch_pass_duration_seconds{" + src + "} " + buf + "\n";
  metric("banger_watch_applies_total", "counter", "Changes carried out, by action.");
  for (const auto& [action, n] : m.applies) {
    out += "banger_watch_applies_total{" + src + ",action=\"" + action + "\"} " + std::to_string(n) + "\n";
  }
  metric("banger_watch_failures_total", "counter", "Changes that failed, by action.");
  for (const auto& [action, n] : m.failures) {
    out += "banger_watch_failures_total{" + src + ",action=\"" + action + "\"} " + std::to_string(n) + "\n";
  }
  metric("banger_watch_last_success_timestamp_seconds", "gauge",
         "Unix time of the last pass that found everything converged (0: never).");
  out += "banger_watch_last_success_timestamp_seconds{" + src + "} " + std::to_string(m.last_success_unix) + "\n";
  metric("banger_sandboxes", "gauge", "Sandboxes by phase.");
  for (const auto& [phase, n] : sandboxes_by_phase) {
    out += "banger_sandboxes{phase=\"" + phase + "\"} " + std::to_string(n) + "\n";
  }
  return out;
}

void Watcher::Stop() {
  std::lock_guard<std::mutex> l(mu_);
  stop_ = true;
  cv_.notify_all();
}

void Watcher::Trigger() {
  std::lock_guard<std::mutex> l(mu_);
  change_pending_ = true;
  change_at_ = clock_.SteadyNow() + options_.debounce;
  cv_.notify_all();
}

}  // namespace banger
