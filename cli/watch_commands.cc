#include "cli/watch_commands.h"

#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_lock.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "cli/dns_commands.h"
#include "cli/output.h"
#include "host/metrics_server.h"
#include "reconciler/engine.h"
#include "reconciler/plan.h"
#include "reconciler/watcher.h"
#include "sources/directory_source.h"
#include "sources/git_source.h"

namespace banger::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 64;

// Engine progress in the watcher's log: the watcher writes one line per
// action itself, so step detail is debug.
class LogSink final : public EventSink {
 public:
  void StepStarted(const std::string& sandbox, const std::string& step) override {
    spdlog::debug("sandbox {}: {} started", sandbox, step);
  }
  void StepFinished(const std::string& sandbox, const std::string& step, const Status& status,
                    std::chrono::milliseconds took) override {
    if (status.ok()) {
      spdlog::debug("sandbox {}: {} done in {} ms", sandbox, step, took.count());
    } else {
      spdlog::debug("sandbox {}: {} failed: {}", sandbox, step, status.message());
    }
  }
  void OnProgress(const Progress&) override {}
  void Message(const std::string& sandbox, const std::string& text) override {
    spdlog::debug("sandbox {}: {}", sandbox, text);
  }
};

struct WatchFlags {
  std::vector<std::string> files;
  std::string git_url, git_ref, git_path = ".", token_env, set_name, interval, listen;
  bool prune = false, once = false, dns = false;
  int parallel = 0;
};

std::vector<fs::path> AbsolutePaths(const std::vector<std::string>& paths) {
  std::vector<fs::path> out;
  for (const auto& p : paths) {
    std::error_code ec;
    out.push_back(fs::weakly_canonical(fs::absolute(p, ec), ec));
  }
  return out;
}

int RunWatch(host::Host& h, const WatchFlags& f) {
  // One watcher per state directory: the lock is held for the process's life.
  auto lock = FileLock::TryAcquire(h.WatchLockPath(), f.once ? "watch --once" : "watch");
  if (!lock) {
    std::fprintf(stderr,
                 "error: another banger watch is already running on state directory %s (%s); stop it "
                 "first\n",
                 h.layout().root.c_str(), ReadLockHolder(h.WatchLockPath()).Describe().c_str());
    return kExitError;
  }

  std::unique_ptr<SpecSource> source;
  if (!f.git_url.empty()) {
    GitSourceOptions o;
    o.url = f.git_url;
    o.ref = f.git_ref;
    o.path = f.git_path;
    o.token_env = f.token_env;
    o.cache_dir = h.layout().root / "sources" /
                  Sha256Hex(f.git_url + "#" + f.git_ref + ":" + f.git_path).substr(0, 16);
    source = std::make_unique<GitSource>(std::move(o));
  } else {
    source = std::make_unique<DirectorySource>(AbsolutePaths(f.files));
  }

  WatchOptions wo;
  wo.owner = f.set_name.empty() ? "" : "set:" + f.set_name;
  wo.prune = f.prune;
  wo.interval = f.git_url.empty() ? std::chrono::seconds(30) : std::chrono::seconds(60);
  if (!f.interval.empty()) {
    auto d = ParseDuration(f.interval);
    if (!d || d->count() < 100) {
      std::fprintf(stderr, "error: --interval %s: expected a duration such as 30s or 2m (at least 100ms)\n",
                   f.interval.c_str());
      return kExitUsage;
    }
    wo.interval = *d;
  }

  static std::atomic<bool> cancel{false};
  EngineOptions eo = h.DefaultEngineOptions(f.parallel);
  eo.cancel = &cancel;
  wo.workers = eo.parallel;
  LogSink sink;
  Engine engine(h.store(), h.runtime(), h.artifacts(), h.clock(), sink, eo);
  Watcher watcher(h.store(), engine, *source, h.clock(), wo);

  spdlog::info("banger watch (pid {}): following {}{}{}, every {}", ::getpid(), source->Url(),
               source->Ref().empty() ? "" : " ref " + source->Ref(), f.prune ? ", pruning" : "",
               FormatDuration(wo.interval));

  if (f.once) {
    PassResult r = watcher.RunOnce();
    if (r.converged) {
      spdlog::info("converged{}", r.revision.empty() ? "" : " at " + r.revision);
      return kExitOk;
    }
    for (const auto& p : r.problems) spdlog::error("not converged: {}", p);
    return kExitError;
  }

  // SIGTERM/SIGINT are taken by one thread (sigwait) so that stopping is
  // ordinary code, not a signal handler. Blocked before any thread starts
  // (the metrics server's, the watcher's), or the kernel could deliver them
  // to a thread that still has the default action.
  // (--once keeps the default action: a signal ends it like an interrupted
  // apply, and the next run converges.)
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // The DNS responder (NAME.banger) answers from the same state database;
  // its thread enters the network namespace by itself, this one stays.
  std::optional<HostDns> dns;
  if (f.dns) {
    auto served = StartHostDns(h, 53, "watch --dns");
    if (!served) return PrintError(served.error());
    dns = std::move(*served);
  }

  std::unique_ptr<host::MetricsServer> metrics;
  if (!f.listen.empty()) {
    const std::string key = source->Key();
    const int64_t started = h.clock().NowUnix();
    const int64_t stale_after = 3 * std::chrono::duration_cast<std::chrono::seconds>(wo.interval).count() + 10;
    auto served = host::MetricsServer::Start(f.listen, [&, key, started, stale_after](const std::string& path)
                                                           -> std::pair<int, std::string> {
      WatchMetrics m = watcher.Metrics();
      int64_t now = h.clock().NowUnix();
      if (path == "/healthz") {
        int64_t last = m.passes > 0 ? m.last_pass_unix : started;
        if (now - last > stale_after) {
          return {503, "stale: no pass for " + std::to_string(now - last) + "s\n"};
        }
        return {200, "ok\n"};
      }
      if (path == "/metrics") {
        std::map<std::string, int> phases;
        if (auto recs = h.store().ListSandboxes(); recs.ok()) {
          for (const auto& r : *recs) phases[std::string(ToString(r.phase))]++;
        }
        return {200, RenderWatchMetrics(m, key, phases)};
      }
      return {404, "not found: try /healthz or /metrics\n"};
    });
    if (!served) {
      PrintError(served.error());
      return kExitUsage;
    }
    metrics = std::move(*served);
    spdlog::info("serving /healthz and /metrics on {}:{}", f.listen.substr(0, f.listen.rfind(':')),
                 metrics->port());
  }

  std::mutex done_mu;
  std::condition_variable done_cv;
  bool run_returned = false;
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("{}: stopping; sandboxes keep running", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    cancel = true;
    watcher.Stop();
    // A pass stuck in a fetch (a stalled remote) must not keep the process
    // alive: whatever is unfinished after the grace period is left, exactly
    // like any interruption, to the next run.
    std::unique_lock<std::mutex> l(done_mu);
    if (!done_cv.wait_for(l, std::chrono::seconds(8), [&] { return run_returned; })) {
      spdlog::warn("a pass did not finish in time; exiting now (the next run converges what was interrupted)");
      spdlog::default_logger()->flush();
      std::fflush(nullptr);
      std::_Exit(kExitOk);
    }
  });
  bool clean = watcher.Run();
  {
    std::lock_guard<std::mutex> l(done_mu);
    run_returned = true;
    done_cv.notify_all();
  }
  if (!clean) {
    spdlog::warn("left unfinished work for the next run (it converges what was interrupted)");
    spdlog::default_logger()->flush();
    std::fflush(nullptr);
    std::_Exit(kExitOk);
  }
  signals.join();
  spdlog::info("stopped");
  return kExitOk;
}

// ---- status ----

struct NotConverged {
  std::string name, phase, reason;
};

std::vector<NotConverged> NotConvergedOf(const std::vector<SandboxRecord>& records, const std::string& owner) {
  std::vector<NotConverged> out;
  for (const auto& r : records) {
    if (r.owner != owner || r.phase == SandboxPhase::kReady || r.stopped_by_user) continue;
    std::string reason = r.last_error;
    if (reason.empty()) reason = RecoveryReason(r);
    out.push_back({r.name, std::string(ToString(r.phase)), reason});
  }
  return out;
}

int RunStatus(host::Host& h, const std::string& output) {
  auto sources = h.store().ListSources();
  if (!sources) return PrintError(sources.error());
  auto records = h.store().ListSandboxes();
  if (!records) return PrintError(records.error());
  int64_t now = h.clock().NowUnix();
  if (output == "json") {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& s : *sources) {
      nlohmann::json nc = nlohmann::json::array();
      for (const auto& n : NotConvergedOf(*records, s.owner)) {
        nc.push_back({{"name", n.name}, {"phase", n.phase}, {"reason", n.reason}});
      }
      items.push_back({{"key", s.key},
                       {"url", s.url},
                       {"ref", s.ref},
                       {"owner", s.owner},
                       {"applied", {{"revision", s.applied_revision}, {"summary", s.applied_summary}, {"at", s.applied_at}}},
                       {"seenRevision", s.seen_revision},
                       {"lastAttempt",
                        {{"at", s.last_attempt_at}, {"result", s.last_result}, {"error", s.last_error},
                         {"revision", s.last_error_revision}}},
                       {"lastSuccessAt", s.last_success_at},
                       {"watcher", {{"pid", s.watcher.pid}, {"running", s.watcher.pid != 0 && ProcessAlive(s.watcher)}}},
                       {"notConverged", nc}});
    }
    std::cout << nlohmann::json{{"sources", items}}.dump(2) << "\n";
    return kExitOk;
  }
  if (sources->empty()) {
    std::printf("No watched sources. Start one with `banger watch -f DIR` or `banger watch --git URL`.\n");
    return kExitOk;
  }
  bool first = true;
  for (const auto& s : *sources) {
    if (!first) std::printf("\n");
    first = false;
    bool running = s.watcher.pid != 0 && ProcessAlive(s.watcher);
    std::vector<std::vector<std::string>> rows = {
        {"Source:", s.url + (s.ref.empty() ? "" : " (ref " + s.ref + ")")},
        {"Set:", s.owner},
        {"Watcher:", running ? "running (pid " + std::to_string(s.watcher.pid) + ")"
                             : "not running" + (s.watcher.pid ? " (last pid " + std::to_string(s.watcher.pid) + ")" : std::string())},
        {"Applied:", s.applied_revision.empty()
                         ? "-"
                         : s.applied_revision + (s.applied_summary.empty() ? "" : " \"" + s.applied_summary + "\"") +
                               " (" + Age(s.applied_at, now) + " ago)"},
        {"Seen:", s.seen_revision.empty() ? "-" : s.seen_revision},
        {"Last attempt:", s.last_attempt_at == 0 ? "never"
                                                 : Age(s.last_attempt_at, now) + " ago: " +
                                                       (s.last_result == "ok" ? "ok" : "error")},
    };
    std::cout << RenderTable(rows);
    if (s.last_result == "error" && !s.last_error.empty()) {
      std::printf("Error%s:\n", s.last_error_revision.empty() ? "" : (" at " + s.last_error_revision).c_str());
      for (const auto& line : Split(s.last_error, '\n')) std::printf("  %s\n", line.c_str());
    }
    auto nc = NotConvergedOf(*records, s.owner);
    if (!nc.empty()) {
      std::printf("Not converged:\n");
      std::vector<std::vector<std::string>> t = {{"  NAME", "PHASE", "REASON"}};
      for (const auto& n : nc) t.push_back({"  " + n.name, n.phase, n.reason});
      std::cout << RenderTable(t);
    }
  }
  return kExitOk;
}

}  // namespace

void AddWatchCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto* watch = app.add_subcommand(
      "watch", "Keep this host converged to spec paths or a git repository (GitOps)");
  watch->footer("Examples:\n  banger watch -f specs/ --prune\n  banger watch --git https://example.invalid/infra.git --path sandboxes");
  auto f = std::make_shared<WatchFlags>();
  watch->add_option("-f,--filename", f->files, "Spec file or directory to follow (repeatable)");
  watch->add_option("--git", f->git_url, "Git repository to follow: file://, path, https:// or ssh:// URL");
  watch->add_option("--ref", f->git_ref, "Branch, tag or commit (default: the remote's default branch)");
  watch->add_option("--path", f->git_path, "Directory of the repository holding the specs (default: .)");
  watch->add_option("--token-env", f->token_env, "Environment variable holding an HTTPS token");
  watch->add_option("--set", f->set_name, "Apply set of the source's sandboxes (default: the source)");
  watch->add_flag("--prune", f->prune, "Delete this set's sandboxes that the source no longer declares");
  watch->add_option("--interval", f->interval, "Full resync period (default: 30s for files, 60s for git)");
  watch->add_option("--parallel", f->parallel, "Sandboxes worked on at once (default: config, 4)")
      ->check(CLI::Range(1, 64));
  watch->add_flag("--once", f->once, "One complete pass, then exit 0 if converged, 1 if not");
  watch->add_option("--listen", f->listen,
                    "Serve GET /healthz and /metrics (Prometheus) on HOST:PORT, e.g. 127.0.0.1:9464 (off by default)");
  watch->add_flag("--dns", f->dns,
                  "Also answer NAME.banger on every bridge address, port 53, like `banger dns` (off by default)");
  auto* status = app.add_subcommand("status", "What each watched source last applied, and what is not converged");
  status->footer("Examples:\n  banger status\n  banger status -o json");
  auto status_output = std::make_shared<std::string>("text");
  status->add_option("-o,--output", *status_output, "text|json")->check(CLI::IsMember({"text", "json"}));

  watch->callback([f, open_host, &exit_code, &app] {
    if (f->files.empty() == f->git_url.empty()) {
      std::fprintf(stderr, "error: watch needs either -f PATH... or --git URL (not both)\n");
      exit_code = kExitUsage;
      return;
    }
    if (f->dns && f->once) {
      std::fprintf(stderr, "error: --dns answers for as long as the watcher runs; it cannot be used with --once\n");
      exit_code = kExitUsage;
      return;
    }
    if (app.get_option("--log-level")->count() == 0 && std::getenv("BANGER_LOG") == nullptr) {
      spdlog::set_level(spdlog::level::info);
    }
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    exit_code = RunWatch(**h, *f);
  });
  status->callback([status_output, open_host, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    exit_code = RunStatus(**h, *status_output);
  });
}

}  // namespace banger::cli
