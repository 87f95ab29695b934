#include "reconciler/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "base/failpoint.h"
#include "base/files.h"
#include "base/parallel.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "spec/loader.h"

#include <optional>

namespace banger {

bool ApplyReport::ok() const {
  for (const auto& r : results) {
    if (!r.status.ok()) return false;
  }
  return true;
}

Result<SandboxSpec> RecordSpec(const SandboxRecord& record) {
  auto spec = SpecFromCanonicalJson(record.spec_json);
  if (!spec) return spec.error().WithContext("stored spec of sandbox " + record.name);
  return spec;
}

namespace {

// Records the change's spec in `rec` and clears what a previous VM left
// behind, before booting. A change the user asked for (apply, start, a new
// spec) starts the restart budget afresh; an automatic restart (recovery)
// spends one attempt and pushes the next one back (BackoffDelay).
void PrepareForBoot(SandboxRecord& rec, const Change& change, int64_t now, const EngineOptions& o) {
  rec.spec_json = change.desired_json;
  rec.spec_hash = change.desired_hash;
  rec.updated_at = now;
  rec.phase = SandboxPhase::kPending;
  rec.pid = 0;
  rec.pid_start_time = 0;
  rec.last_error.clear();
  rec.stopped_by_user = false;
  if (change.recovery) {
    rec.restart_count += 1;
    rec.next_retry_at = now + BackoffDelay(rec.restart_count, o.backoff_base, o.backoff_max).count();
  } else {
    rec.restart_count = 0;
    rec.next_retry_at = 0;
  }
}

// A restart of a recorded sandbox with its recorded spec.
Change RestartOf(const SandboxRecord& rec, SandboxSpec spec, std::string reason) {
  Change c;
  c.name = rec.name;
  c.action = Action::kRestart;
  c.reason = std::move(reason);
  c.owner = rec.owner;
  c.desired = SpecDocument{std::move(spec), {}};
  c.desired_json = rec.spec_json;
  c.desired_hash = rec.spec_hash;
  c.current = rec;
  return c;
}

}  // namespace

Engine::Engine(StateStore& store, SandboxRuntime* runtime, ArtifactStore& artifacts, Clock& clock,
               EventSink& sink, EngineOptions options)
    : store_(store),
      runtime_(runtime),
      artifacts_(artifacts),
      clock_(clock),
      sink_(sink),
      options_(std::move(options)),
      networks_(store, options_.network_driver, clock, options_.locks_dir) {
  if (!options_.locks_dir.empty()) {
    Status s = MakeDirs(options_.locks_dir, 0700);
    if (!s.ok()) spdlog::warn("sandbox locks: {}", s.ToString());
  }
}

std::filesystem::path Engine::LockPathOf(const std::string& name) const {
  if (options_.locks_dir.empty()) return {};
  return options_.locks_dir / ("sandbox-" + name + ".lock");
}

Result<FileLock> Engine::LockSandbox(const std::string& name, const std::string& purpose, bool wait) {
  if (options_.locks_dir.empty()) return FileLock();
  std::filesystem::path path = LockPathOf(name);
  if (!wait) return FileLock::TryAcquire(path, purpose);
  auto lock = FileLock::Acquire(
      path, purpose, clock_, clock_.SteadyNow() + options_.lock_wait,
      [&](const LockHolder& h) {
        sink_.Message(name, "waiting for " + h.Describe() + ", which is working on this sandbox");
      },
      [this] { return Cancelled(); }, std::chrono::milliseconds(100));
  if (!lock) return lock.error().WithContext("sandbox " + name);
  return lock;
}

Status Engine::RequireRuntime() const {
  if (runtime_ == nullptr) {
    return FailedPrecondition(
        "no hypervisor available on this host: banger needs qemu-system-x86_64 (or firecracker "
        "with a working /dev/kvm) to boot sandboxes; run scripts/setup.sh or `banger doctor`");
  }
  return runtime_->CheckAvailable();
}

void Engine::Event(const std::string& sandbox, const std::string& type, const std::string& reason,
                   const std::string& message) {
  EventRecord e;
  e.time = clock_.NowUnix();
  e.sandbox = sandbox;
  e.type = type;
  e.reason = reason;
  e.message = message;
  Status s = store_.AddEvent(e);
  if (!s.ok()) spdlog::warn("recording event for {}: {}", sandbox, s.ToString());
  sink_.Message(sandbox, message);
}

std::string Engine::NewSandboxId(const std::string& name) {
  std::random_device rd;
  std::string seed = name + ":" + std::to_string(clock_.NowUnix()) + ":" + std::to_string(rd());
  return "sb-" + Sha256Hex(seed).substr(0, 12);
}

Status Engine::RunStep(const std::string& sandbox, const std::string& step,
                       const std::string& detail, const std::function<Status()>& body) {
  BANGER_ASSIGN_OR_RETURN(int64_t op, store_.BeginOperation(sandbox, step, detail, SelfProcess()));
  sink_.StepStarted(sandbox, step);
  auto start = clock_.SteadyNow();
  // engine.STEP.before / engine.STEP.after (base/failpoint.cc): the step's
  // row is `started` at both; the side effect is not done / done.
  auto point = [&](const char* when) {
    return failpoint::AnyArmed() ? failpoint::Hit("engine." + step + "." + when) : OkStatus();
  };
  Status s = point("before");
  if (s.ok()) s = body();
  if (s.ok()) s = point("after");
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.SteadyNow() - start);
  Status fin = store_.FinishOperation(op, s.ok() ? "" : s.ToString());
  if (!fin.ok()) spdlog::warn("journal: {}", fin.ToString());
  sink_.StepFinished(sandbox, step, s, took);
  if (!s.ok()) return s.WithContext(step);
  return s;
}

Status Engine::MarkFailed(SandboxRecord record, const Status& error) {
  auto fresh = store_.GetSandbox(record.name);
  if (fresh) record = *fresh;
  record.phase = SandboxPhase::kFailed;
  record.last_error = error.message();
  Status s = store_.UpdateObserved(record);
  Event(record.name, "Warning", "Failed", error.message());
  return s;
}

ApplyReport Engine::Apply(const Plan& plan) {
  ApplyReport report;
  // Networks first (sandboxes join them), deletions of networks last (once
  // their sandboxes are gone).
  std::map<std::string, Status> network_failed;
  auto apply_network = [&](const NetworkChange& n) {
    auto start = clock_.SteadyNow();
    Status s = networks_.Apply(n);
    ChangeResult r;
    r.name = "network/" + n.name;
    r.action = n.action;
    r.status = s;
    r.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.SteadyNow() - start);
    if (s.ok()) {
      Event("", "Normal", n.action == Action::kDelete ? "NetworkDeleted" : "NetworkApplied",
            "network " + n.name + ": " + std::string(ToString(n.action)) + " (" + n.reason + ")");
    } else {
      network_failed[n.name] = s;
    }
    report.results.push_back(std::move(r));
  };
  for (const auto& n : plan.networks) {
    if (n.action != Action::kNoOp && n.action != Action::kDelete) apply_network(n);
  }
  std::vector<const Change*> work;
  for (const auto& c : plan.changes) {
    if (c.action == Action::kNoOp) continue;
    if (c.desired && c.desired->spec.network.mode == NetworkMode::kBridged) {
      auto failed = network_failed.find(c.desired->spec.network.name);
      if (failed != network_failed.end()) {
        report.results.push_back({c.name, c.action,
                                  FailedPrecondition("network " + failed->first + " could not be applied: " +
                                                     failed->second.message()),
                                  {}, "", ""});
        continue;
      }
    }
    work.push_back(&c);
  }
  const size_t first = report.results.size();
  report.results.resize(first + work.size());
  RunParallel(work.size(), options_.parallel, [&](size_t i) {
    const Change& c = *work[i];
    ConvergeRequest req;
    req.name = c.name;
    req.desired = c.desired ? &*c.desired : nullptr;
    req.desired_json = c.desired_json;
    req.desired_hash = c.desired_hash;
    req.owner = c.action == Action::kDelete ? (c.current ? c.current->owner : plan.owner)
                                            : (c.owner.empty() ? plan.owner : c.owner);
    req.prune = c.action == Action::kDelete;
    req.recovery = c.recovery ? RecoveryMode::kPolicy : RecoveryMode::kAlways;
    req.wait_for_lock = true;
    ConvergeOutcome out = Converge(req);
    report.results[first + i] = std::move(out.result);
    ChangeResult& r = report.results[first + i];
    if (r.action != c.action && r.status.ok() && r.note.empty()) {
      r.note = r.action == Action::kNoOp ? "already " + std::string(c.action == Action::kDelete ? "deleted" : "up to date") +
                                               " (changed by another banger process meanwhile)"
                                         : "re-planned as " + std::string(ToString(r.action)) +
                                               " (the sandbox changed meanwhile)";
    }
  });
  for (const auto& n : plan.networks) {
    if (n.action == Action::kDelete) apply_network(n);
  }
  return report;
}

ConvergeOutcome Engine::Converge(const ConvergeRequest& req) {
  ConvergeOutcome out;
  ChangeResult& r = out.result;
  r.name = req.name;
  auto start = clock_.SteadyNow();
  auto finish = [&](Status s) {
    r.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.SteadyNow() - start);
    r.status = s.ok() ? s : s.WithContext("sandbox " + req.name);
    return out;
  };
  auto lock = LockSandbox(req.name, !req.purpose.empty() ? req.purpose : req.desired ? "apply" : "delete",
                          req.wait_for_lock);
  if (!lock) {
    if (!req.wait_for_lock && lock.error().code() == StatusCode::kUnavailable) {
      out.busy = true;
      out.holder = ReadLockHolder(LockPathOf(req.name)).Describe();
      return finish(OkStatus());
    }
    return finish(lock.error());
  }
  std::optional<SandboxRecord> current;
  if (auto rec = store_.GetSandbox(req.name); rec.ok()) {
    current = std::move(*rec);
  } else if (rec.error().code() != StatusCode::kNotFound) {
    return finish(rec.error());
  }
  PlanOptions o;
  o.owner = req.owner;
  o.prune = req.prune;
  o.default_kernel = artifacts_.DefaultKernel();
  o.recovery = req.recovery;
  o.now = clock_.NowUnix();
  o.max_restart_attempts = options_.max_restart_attempts;
  o.provider_for = options_.provider_for;
  o.start_for = options_.start_for;
  o.volume_size = [this](const std::string& sandbox, const std::string& volume) -> std::optional<uint64_t> {
    auto row = store_.GetVolume(sandbox, volume);
    if (!row.ok()) return std::nullopt;
    return row->size_bytes;
  };
  std::string json = req.desired_json, hash = req.desired_hash;
  if (req.desired != nullptr && (json.empty() || hash.empty())) {
    json = CanonicalJson(req.desired->spec);
    hash = Sha256Hex(json);
  }
  std::string conflict;
  out.change = PlanSandbox(req.desired, std::move(json), std::move(hash), current ? &*current : nullptr, o,
                           &conflict);
  const Change& c = out.change;
  out.retry_at = c.retry_at;
  r.action = c.action;
  if (!conflict.empty()) return finish(FailedPrecondition(conflict));
  if (c.action == Action::kNoOp) return finish(OkStatus());
  Status s = ExecuteChange(c, r);
  if (c.recovery) {
    if (auto rec = store_.GetSandbox(req.name); rec.ok()) {
      SandboxRecord after = *rec;
      if (s.ok()) {
        Event(req.name, "Normal", "Restarted", "restarted automatically (" + c.reason + ")");
      } else if (after.restart_count >= options_.max_restart_attempts) {
        after.last_error = "gave up after " + std::to_string(after.restart_count) +
                           " restart attempts; last error: " + after.last_error;
        Event(req.name, "Warning", "GaveUp", after.last_error);
        if (Status u = store_.UpdateObserved(after); !u.ok()) s = u;
      }
    }
  }
  if (c.action == Action::kDelete && s.ok()) lock->UnlinkAndRelease();
  return finish(s);
}

Status Engine::ExecuteChange(const Change& change, ChangeResult& result) {
  switch (change.action) {
    case Action::kNoOp:
      return OkStatus();
    case Action::kCreate:
      return CreateOrReplace(change, nullptr, result);
    case Action::kReplace:
      return CreateOrReplace(change, change.current ? &*change.current : nullptr, result);
    case Action::kRestart:
      return Restart(change, *change.current, result);
    case Action::kUpdate: {
      SandboxRecord rec = *change.current;
      rec.spec_json = change.desired_json;
      rec.spec_hash = change.desired_hash;
      rec.updated_at = clock_.NowUnix();
      return RunStep(change.name, "update_record", "in place", [&] {
        BANGER_RETURN_IF_ERROR(store_.PutSandbox(rec));
        if (change.desired->spec.network.mode == NetworkMode::kBridged) {
          // Published ports are rules: apply them without touching the VM.
          BANGER_RETURN_IF_ERROR(networks_.SyncRules());
        }
        Event(change.name, "Normal", "Updated", "updated in place (" + change.reason + ")");
        return OkStatus();
      });
    }
    case Action::kDelete:
      return DeleteLocked(change.name);
  }
  return Internal("unknown action");
}

Status Engine::CreateOrReplace(const Change& change, const SandboxRecord* current,
                               ChangeResult& result) {
  BANGER_RETURN_IF_ERROR(RequireRuntime());
  const SandboxSpec& spec = change.desired->spec;
  if (current != nullptr) {
    BANGER_RETURN_IF_ERROR(RunStep(change.name, "destroy_vm", "replace", [&] {
      SandboxRecord deleting = *current;
      deleting.phase = SandboxPhase::kDeleting;
      BANGER_RETURN_IF_ERROR(store_.UpdateObserved(deleting));
      return runtime_->Destroy(*current);
    }));
  }
  SandboxRecord rec;
  if (current != nullptr) {
    rec = *current;
  } else {
    rec.name = spec.name;
    rec.id = NewSandboxId(spec.name);
    rec.created_at = clock_.NowUnix();
  }
  rec.owner = change.owner;
  PrepareForBoot(rec, change, clock_.NowUnix(), options_);
  rec.provisioned = false;
  rec.disk_path.clear();
  return BootAndWait(rec, spec, /*fresh_disk=*/true, result);
}

Status Engine::Restart(const Change& change, const SandboxRecord& current, ChangeResult& result) {
  BANGER_RETURN_IF_ERROR(RequireRuntime());
  BANGER_RETURN_IF_ERROR(RunStep(change.name, "stop_vm", change.reason, [&] {
    return runtime_->Stop(current, options_.stop_grace);
  }));
  SandboxRecord rec = current;
  PrepareForBoot(rec, change, clock_.NowUnix(), options_);
  return BootAndWait(rec, change.desired->spec, /*fresh_disk=*/false, result);
}

// Workspaces (docs/workspaces.md): the repository goes in after the agent
// answers and before provision, so provision commands can build it.
Status Engine::ShipWorkspace(SandboxRecord& rec, const SandboxSpec& spec) {
  const WorkspaceSpec& ws = *spec.workspace;
  return RunStep(rec.name, "ship_workspace", ws.source + " -> " + ws.path, [&]() -> Status {
    if (options_.workspace_shipper == nullptr) {
      return FailedPrecondition("spec.workspace is set but this banger cannot ship workspaces");
    }
    BANGER_RETURN_IF_ERROR(options_.workspace_shipper->Ship(rec, spec));
    Event(rec.name, "Normal", "WorkspaceShipped", ws.source + " (" + std::string(ToString(ws.mode)) + ") -> " + ws.path);
    return OkStatus();
  });
}

Status Engine::BootAndWait(SandboxRecord& rec, const SandboxSpec& spec, bool fresh_disk,
                           ChangeResult& result) {
  const std::string& name = rec.name;
  auto fail = [&](Status s) {
    Status m = MarkFailed(rec, s);
    if (!m.ok()) spdlog::warn("recording failure of {}: {}", name, m.ToString());
    return s;
  };
  // The desired spec is recorded before acting, so an interrupted or failed
  // boot is visible (Pending/Failed) and the next plan picks it up.
  BANGER_RETURN_IF_ERROR(store_.PutSandbox(rec));
  if (Status fp = failpoint::Hit("engine.record.after_put"); !fp.ok()) return fail(fp);

  ImageRecord image;
  KernelRecord kernel;
  std::string kernel_name = spec.kernel.empty() ? artifacts_.DefaultKernel() : spec.kernel;
  Status s = RunStep(name, "ensure_image", spec.image, [&]() -> Status {
    auto r = artifacts_.EnsureImage(spec.image, [&](uint64_t done, uint64_t total) {
      sink_.OnProgress({name, "pull image " + spec.image, done, total});
    });
    if (!r) return r.error();
    image = *r;
    return OkStatus();
  });
  if (!s.ok()) return fail(s);
  s = RunStep(name, "ensure_kernel", kernel_name, [&]() -> Status {
    auto r = artifacts_.EnsureKernel(kernel_name, [&](uint64_t done, uint64_t total) {
      sink_.OnProgress({name, "pull kernel " + kernel_name, done, total});
    });
    if (!r) return r.error();
    kernel = *r;
    return OkStatus();
  });
  if (!s.ok()) return fail(s);

  std::vector<VolumeAttachment> volumes;
  if (!spec.volumes.empty()) {
    s = RunStep(name, "ensure_volumes", std::to_string(spec.volumes.size()) + " volumes", [&]() -> Status {
      BANGER_ASSIGN_OR_RETURN(volumes, EnsureVolumes(rec, spec, image));
      return OkStatus();
    });
    if (!s.ok()) return fail(s);
  }

  std::optional<NetworkAttachment> attachment;
  if (spec.network.mode == NetworkMode::kBridged) {
    s = RunStep(name, "attach_network", spec.network.name, [&]() -> Status {
      auto a = networks_.Attach(rec, spec);
      if (!a) return a.error();
      attachment = std::move(*a);
      rec.address = attachment->address;
      return OkStatus();
    });
  } else {
    auto left = networks_.Detach(rec);  // left bridged mode: give the address back
    s = left.ok() ? OkStatus() : left.error();
  }
  if (!s.ok()) return fail(s);

  rec.image_ref = image.name;
  rec.kernel_ref = kernel.name;
  rec.phase = SandboxPhase::kBooting;
  s = store_.UpdateObserved(rec);
  if (!s.ok()) return fail(s);
  std::string start_how, start_note;
  bool agent_answered = false;
  s = RunStep(name, "boot_vm", image.name, [&]() -> Status {
    BootRequest req{rec, spec, image, kernel, fresh_disk, attachment, volumes};
    auto booted = runtime_->Boot(req);
    if (!booted) return booted.error();
    SandboxRecord launched = rec;
    launched.hypervisor = booted->hypervisor;
    launched.pid = booted->process.pid;
    launched.pid_start_time = booted->process.start_time;
    launched.runtime_dir = booted->runtime_dir;
    launched.disk_path = booted->disk_path;
    if (!booted->address.empty()) launched.address = booted->address;
    start_how = booted->start;
    start_note = booted->start_note;
    agent_answered = booted->agent_answered;
    Status recorded = failpoint::Hit("engine.boot.after_launch");
    if (recorded.ok()) recorded = store_.UpdateObserved(launched);
    if (!recorded.ok()) {
      // A VM nobody recorded would run on while `get` says Failed: stop it
      // now (the next boot would find and stop it too, by its pidfile).
      Status st = runtime_->Stop(launched, std::chrono::milliseconds(0));
      if (!st.ok()) spdlog::warn("sandbox {}: stopping the unrecorded VM: {}", name, st.ToString());
      return recorded;
    }
    rec = std::move(launched);
    return OkStatus();
  });
  if (!s.ok()) return fail(s);
  Event(name, "Normal", "Booted",
        "VM started (" + rec.hypervisor + ", pid " + std::to_string(rec.pid) +
            (start_how.empty() || start_how == "boot" ? "" : ", " + start_how) + ")");
  if (!start_note.empty()) Event(name, "Warning", "TemplateNotUsed", "booted instead of restoring: " + start_note);

  // A restored guest's agent has answered already (its IDENTITY_ACK is its
  // HELLO); a booted one is waited for.
  if (!agent_answered) {
    s = RunStep(name, "wait_agent", "", [&] { return runtime_->WaitAgent(rec, options_.agent_timeout); });
    if (!s.ok()) return fail(s);
  }

  if (fresh_disk && spec.workspace) {
    s = ShipWorkspace(rec, spec);
    if (!s.ok()) return fail(s);
  }

  if (!rec.provisioned && !spec.provision.empty()) {
    s = RunStep(name, "provision", std::to_string(spec.provision.size()) + " commands", [&]() -> Status {
      for (const auto& cmd : spec.provision) {
        auto out = runtime_->Exec(rec, {"/bin/sh", "-c", cmd}, std::chrono::minutes(30));
        if (!out) return out.error().WithContext("provision `" + cmd + "`");
        std::string text = std::string(Trim(out->stdout_data + out->stderr_data));
        if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
        Event(name, out->exit_code == 0 ? "Normal" : "Warning", "Provision",
              "`" + cmd + "` exited " + std::to_string(out->exit_code) + (text.empty() ? "" : ": " + text));
        if (out->exit_code != 0) {
          return Internal("provision command `" + cmd + "` exited with status " +
                          std::to_string(out->exit_code));
        }
      }
      rec.provisioned = true;
      return store_.UpdateObserved(rec);
    });
    if (!s.ok()) return fail(s);
  }

  if (!spec.readiness.command.empty()) {
    s = RunStep(name, "wait_ready", Join(spec.readiness.command, " "), [&]() -> Status {
      auto deadline = clock_.SteadyNow() + spec.readiness.timeout;
      std::string last;
      // Retries start fast (a guest that is nearly ready) and back off to
      // readiness_interval.
      auto pause = std::min(options_.readiness_interval, std::chrono::milliseconds(25));
      while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_.SteadyNow());
        if (left.count() <= 0) break;
        auto out = runtime_->Exec(rec, spec.readiness.command, left);
        if (out && out->exit_code == 0) return OkStatus();
        last = out ? "exit status " + std::to_string(out->exit_code) + ": " +
                         std::string(Trim(out->stderr_data + out->stdout_data))
                   : out.error().message();
        RuntimeObservation obs = runtime_->Inspect(rec);
        if (!obs.alive) return Unavailable("VM exited while waiting for readiness: " + obs.detail);
        if (Cancelled()) return banger::Cancelled("banger is shutting down");
        clock_.SleepFor(pause);
        pause = std::min(options_.readiness_interval, pause * 2);
      }
      return DeadlineExceeded("readiness command did not succeed within " +
                              FormatDuration(spec.readiness.timeout) + " (last: " + last + ")");
    });
    if (!s.ok()) return fail(s);
  }

  if (Status fp = failpoint::Hit("engine.ready.before_record"); !fp.ok()) return fail(fp);
  rec.phase = SandboxPhase::kReady;
  rec.ready_at = clock_.NowUnix();
  rec.last_error.clear();
  s = store_.UpdateObserved(rec);
  if (!s.ok()) return s;
  result.address = rec.address;
  Event(name, "Normal", "Ready", "sandbox is ready" + (rec.address.empty() ? "" : " at " + rec.address));
  if (attachment) PushHosts(attachment->network, name, &attachment->hosts);
  return OkStatus();
}

void Engine::PushHosts(const std::string& network, const std::string& booted,
                       const std::vector<HostEntry>* booted_with) {
  if (runtime_ == nullptr) return;
  // One push at a time per network, across processes: each computes the lists
  // from the state when it holds the lock, so the last list a guest gets is
  // the newest (two pushes racing could otherwise deliver an old list last).
  FileLock lock;
  if (!options_.locks_dir.empty()) {
    auto l = FileLock::Acquire(options_.locks_dir / ("hosts-" + network + ".lock"), "hosts", clock_,
                               clock_.SteadyNow() + std::chrono::minutes(2), {}, [this] { return Cancelled(); },
                               std::chrono::milliseconds(20));
    if (l) {
      lock = std::move(*l);
    } else {
      spdlog::warn("network {}: updating the peers in /etc/hosts without the lock: {}", network,
                   l.error().ToString());
    }
  }
  auto members = networks_.Members(network);
  if (!members) return;
  for (const auto& member : *members) {
    auto rec = store_.GetSandbox(member);
    if (!rec.ok() || rec->phase != SandboxPhase::kReady || rec->pid == 0) continue;  // gets them at boot
    auto hosts = networks_.HostsFor(network, member);
    if (!hosts) continue;
    // The sandbox that just became Ready booted with the peers leased when it
    // was attached; a peer that leased later and became Ready first skipped
    // it (it was still booting), so it is updated too unless nothing changed.
    if (member == booted && booted_with != nullptr && *hosts == *booted_with) continue;
    Status s = runtime_->UpdateHosts(*rec, *hosts);
    if (!s.ok()) spdlog::warn("sandbox {}: updating /etc/hosts: {}", member, s.ToString());
  }
}

Status Engine::DeleteSandbox(const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(FileLock lock, LockSandbox(name, "delete", /*wait=*/true));
  BANGER_RETURN_IF_ERROR(DeleteLocked(name));
  lock.UnlinkAndRelease();
  return OkStatus();
}

Status Engine::DeleteLocked(const std::string& name) {
  auto rec = store_.GetSandbox(name);
  if (!rec) {
    if (rec.error().code() == StatusCode::kNotFound) return OkStatus();
    return rec.error();
  }
  return RunStep(name, "delete", "", [&]() -> Status {
    SandboxRecord r = *rec;
    // The runtime finds a VM from the record, its pidfile or its launch
    // (a QEMU whose command line names the sandbox's directory), so a VM
    // that an interrupted apply started but never recorded is removed too.
    bool has_vm = r.pid != 0 || !r.runtime_dir.empty() || !r.disk_path.empty();
    Status available = RequireRuntime();
    if (has_vm && !available.ok()) return available;
    if (available.ok()) {
      r.phase = SandboxPhase::kDeleting;
      BANGER_RETURN_IF_ERROR(store_.UpdateObserved(r));
      BANGER_RETURN_IF_ERROR(runtime_->Destroy(r));
    }
    BANGER_FAILPOINT("engine.delete.after_destroy");
    BANGER_ASSIGN_OR_RETURN(std::string network, networks_.Detach(r));
    BANGER_FAILPOINT("engine.delete.after_detach");
    BANGER_RETURN_IF_ERROR(store_.DeleteSandbox(name));
    if (options_.workspace_shipper != nullptr) options_.workspace_shipper->Forget(name);
    Event(name, "Normal", "Deleted", "sandbox deleted");
    if (!network.empty()) PushHosts(network, name, nullptr);
    return OkStatus();
  });
}

// --- volumes (spec.volumes; docs/volumes.md) ---------------------------------

Result<std::vector<VolumeAttachment>> Engine::EnsureVolumes(const SandboxRecord& rec, const SandboxSpec& spec,
                                                            const ImageRecord& image) {
  if (options_.volumes == nullptr) {
    return FailedPrecondition("spec.volumes: this banger has no volume support configured");
  }
  std::vector<VolumeAttachment> out;
  for (size_t i = 0; i < spec.volumes.size(); ++i) {
    const VolumeSpec& v = spec.volumes[i];
    const std::string what = "volume " + v.name;
    auto existing = store_.GetVolume(rec.name, v.name);
    VolumeRecord row;
    if (existing.ok()) {
      row = *existing;
      if (row.size_bytes > v.size_bytes) {
        return FailedPrecondition(what + " is " + FormatByteSize(row.size_bytes) + " but the spec asks for " +
                                  FormatByteSize(v.size_bytes) +
                                  "; volumes never shrink (set size back, or remove it with `banger volume rm " +
                                  rec.name + "/" + v.name + "`)");
      }
      if (row.size_bytes < v.size_bytes) {
        BANGER_RETURN_IF_ERROR(options_.volumes->Grow(row.path, v.size_bytes).WithContext(what));
        Event(rec.name, "Normal", "VolumeGrown",
              what + " grown " + FormatByteSize(row.size_bytes) + " -> " + FormatByteSize(v.size_bytes));
        row.size_bytes = v.size_bytes;
      }
      row.mount_path = v.mount_path;
      BANGER_RETURN_IF_ERROR(store_.PutVolume(row));
    } else if (existing.error().code() == StatusCode::kNotFound) {
      VolumeBuild build;
      build.sandbox = rec.name;
      build.name = v.name;
      build.size_bytes = v.size_bytes;
      if (v.seed_from == VolumeSeed::kImage) {
        build.seed_rootfs = image.rootfs_path;
        build.seed_path = v.mount_path;
      }
      Result<BuiltVolume> created = options_.volumes->Create(build);
      if (!created) return created.error().WithContext(what);
      const BuiltVolume& built = *created;
      BANGER_FAILPOINT("volume.create.after_file");
      // The row is written only once the file is whole: a volume is either
      // recorded and complete, or not recorded (and rebuilt next time).
      row.sandbox = rec.name;
      row.name = v.name;
      row.path = built.path;
      row.mount_path = v.mount_path;
      row.size_bytes = v.size_bytes;
      row.seeded_from = std::string(ToString(v.seed_from));
      row.seed_image = v.seed_from == VolumeSeed::kImage ? image.name : "";
      BANGER_RETURN_IF_ERROR(store_.PutVolume(row));
      std::string seed = v.seed_from == VolumeSeed::kEmpty ? "empty"
                         : built.seed_found ? "seeded from image " + image.name + " at " + v.mount_path
                                            : "empty: image " + image.name + " has nothing at " + v.mount_path;
      Event(rec.name, "Normal", "VolumeCreated", what + " created, " + FormatByteSize(v.size_bytes) + " (" + seed + ")");
    } else {
      return existing.error();
    }
    out.push_back({v.name, row.path, v.mount_path, "bvol" + std::to_string(i)});
  }
  return out;
}

Status Engine::RemoveVolumeLocked(const std::string& sandbox, const std::string& name) {
  auto rec = store_.GetSandbox(sandbox);
  if (rec.ok()) {
    bool running = rec->pid != 0 && (rec->phase == SandboxPhase::kReady || rec->phase == SandboxPhase::kBooting ||
                                     rec->phase == SandboxPhase::kPending || rec->phase == SandboxPhase::kUnknown);
    auto spec = RecordSpec(*rec);
    bool uses = spec.ok() && std::any_of(spec->volumes.begin(), spec->volumes.end(),
                                         [&](const VolumeSpec& v) { return v.name == name; });
    if (running && uses) {
      return FailedPrecondition("volume " + sandbox + "/" + name + " is attached to running sandbox " + sandbox +
                                "; stop or delete the sandbox first (banger stop " + sandbox + ")");
    }
  } else if (rec.error().code() != StatusCode::kNotFound) {
    return rec.error();
  }
  BANGER_ASSIGN_OR_RETURN(VolumeRecord row, store_.GetVolume(sandbox, name));
  if (options_.volumes == nullptr) return FailedPrecondition("no volume support configured");
  // File first: a row without a file is rebuilt on the next boot; a file
  // without a row is replaced by the next creation.
  BANGER_RETURN_IF_ERROR(options_.volumes->Remove(row.path));
  BANGER_RETURN_IF_ERROR(store_.DeleteVolume(sandbox, name));
  Event(sandbox, "Normal", "VolumeDeleted", "volume " + name + " deleted (" + row.path + ")");
  return OkStatus();
}

Status Engine::RemoveVolume(const std::string& sandbox, const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(FileLock lock, LockSandbox(sandbox, "volume rm", /*wait=*/true));
  Status s = RemoveVolumeLocked(sandbox, name);
  // The lock file of a sandbox that is gone goes with its last volume.
  auto left = store_.ListVolumes(sandbox);
  if (left.ok() && left->empty() && store_.GetSandbox(sandbox).status().code() == StatusCode::kNotFound) {
    lock.UnlinkAndRelease();
  }
  return s;
}

Status Engine::DeleteVolumes(const std::string& sandbox) {
  BANGER_ASSIGN_OR_RETURN(FileLock lock, LockSandbox(sandbox, "delete volumes", /*wait=*/true));
  BANGER_ASSIGN_OR_RETURN(std::vector<VolumeRecord> rows, store_.ListVolumes(sandbox));
  for (const auto& row : rows) BANGER_RETURN_IF_ERROR(RemoveVolumeLocked(sandbox, row.name));
  if (store_.GetSandbox(sandbox).status().code() == StatusCode::kNotFound) lock.UnlinkAndRelease();
  return OkStatus();
}

Status Engine::StopSandbox(const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(FileLock lock, LockSandbox(name, "stop", /*wait=*/true));
  BANGER_ASSIGN_OR_RETURN(SandboxRecord rec, store_.GetSandbox(name));
  return RunStep(name, "stop_vm", "user request", [&]() -> Status {
    Status available = RequireRuntime();
    if (rec.pid != 0 && !available.ok()) return available;
    // With pid 0 the runtime still finds a VM an interrupted apply launched.
    if (available.ok()) BANGER_RETURN_IF_ERROR(runtime_->Stop(rec, options_.stop_grace));
    rec.phase = SandboxPhase::kStopped;
    rec.stopped_by_user = true;
    rec.pid = 0;
    rec.pid_start_time = 0;
    BANGER_RETURN_IF_ERROR(store_.UpdateObserved(rec));
    Event(name, "Normal", "Stopped", "stopped by user");
    return OkStatus();
  });
}

Status Engine::StartSandbox(const std::string& name) {
  BANGER_ASSIGN_OR_RETURN(FileLock lock, LockSandbox(name, "start", /*wait=*/true));
  BANGER_ASSIGN_OR_RETURN(SandboxRecord rec, store_.GetSandbox(name));
  BANGER_ASSIGN_OR_RETURN(SandboxSpec spec, RecordSpec(rec));
  ChangeResult r;
  return Restart(RestartOf(rec, std::move(spec), "start requested"), rec, r);
}

std::chrono::seconds BackoffDelay(int failures, std::chrono::seconds base, std::chrono::seconds max) {
  if (failures <= 0) return std::chrono::seconds(0);
  int64_t d = base.count();
  for (int i = 1; i < failures && d < max.count(); ++i) d *= 2;
  return std::chrono::seconds(std::min<int64_t>(d, max.count()));
}

ApplyReport Engine::Reconcile() {
  ApplyReport report;
  if (Status s = Refresh(); !s.ok()) {
    report.results.push_back({"", Action::kNoOp, s, {}, "", ""});
    return report;
  }
  if (Status s = RepairNetworks(); !s.ok()) {
    report.results.push_back({"", Action::kNoOp, s, {}, "", ""});
  }
  auto records = store_.ListSandboxes();
  if (!records) {
    report.results.push_back({"", Action::kNoOp, records.error(), {}, "", ""});
    return report;
  }
  PlanOptions o;
  o.recovery = RecoveryMode::kPolicy;
  o.now = clock_.NowUnix();
  o.max_restart_attempts = options_.max_restart_attempts;
  struct Item {
    SandboxRecord rec;
    SpecDocument doc;
  };
  std::vector<Item> todo;
  for (const auto& rec : *records) {
    if (RecoveryReason(rec).empty()) continue;
    auto spec = RecordSpec(rec);
    if (!spec) {
      report.results.push_back({rec.name, Action::kRestart, spec.error(), {}, "", ""});
      continue;
    }
    SpecDocument doc{std::move(*spec), {}};
    o.owner = rec.owner;
    Change c = PlanSandbox(&doc, rec.spec_json, rec.spec_hash, &rec, o, nullptr);
    if (c.action == Action::kNoOp) {
      if (c.retry_at > 0) sink_.Message(rec.name, c.reason);
      continue;
    }
    todo.push_back({rec, std::move(doc)});
  }
  std::vector<ConvergeOutcome> outs(todo.size());
  RunParallel(todo.size(), options_.parallel, [&](size_t i) {
    ConvergeRequest req;
    req.name = todo[i].rec.name;
    req.desired = &todo[i].doc;
    req.desired_json = todo[i].rec.spec_json;
    req.desired_hash = todo[i].rec.spec_hash;
    req.owner = todo[i].rec.owner;
    req.recovery = RecoveryMode::kPolicy;
    req.wait_for_lock = false;  // another process working on it will converge it
    outs[i] = Converge(req);
  });
  for (auto& out : outs) {
    if (out.busy) {
      sink_.Message(out.result.name, "left alone: " + out.holder + " is working on it");
      continue;
    }
    if (out.result.action == Action::kNoOp && out.result.status.ok()) continue;
    report.results.push_back(std::move(out.result));
  }
  return report;
}

namespace {

// Lock files of sandboxes that have no record: a delete interrupted after it
// removed the record (before it removed its lock file), or a `stop`/`start`
// of a name that does not exist. One somebody holds is in use (an apply
// creating that sandbox): left alone.
void RemoveStaleLocks(StateStore& store, const std::filesystem::path& locks_dir) {
  if (locks_dir.empty()) return;
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(locks_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.size() > 13 && StartsWith(n, "sandbox-") && EndsWith(n, ".lock")) names.push_back(n.substr(8, n.size() - 13));
  }
  for (const std::string& name : names) {
    if (store.GetSandbox(name).status().code() != StatusCode::kNotFound) continue;
    auto lock = FileLock::TryAcquire(locks_dir / ("sandbox-" + name + ".lock"), "cleanup");
    if (!lock) continue;
    // Re-read under the lock: an apply may have created it meanwhile.
    if (store.GetSandbox(name).status().code() != StatusCode::kNotFound) continue;
    lock->UnlinkAndRelease();
    spdlog::info("removed the lock file of sandbox {}, which no longer exists", name);
  }
}

}  // namespace

Status Engine::Refresh() {
  auto abandoned = store_.AbandonUnfinishedOperations(
      "interrupted (the banger process running it exited before the step finished)",
      [](const ProcessIdentity& id) { return ProcessAlive(id); });
  if (!abandoned) return abandoned.error();
  RemoveStaleLocks(store_, options_.locks_dir);
  BANGER_ASSIGN_OR_RETURN(auto records, store_.ListSandboxes());
  const int64_t now = clock_.NowUnix();
  auto ran_stably = [&](const SandboxRecord& rec) {
    return rec.restart_count > 0 && rec.ready_at > 0 &&
           now - rec.ready_at >= static_cast<int64_t>(options_.backoff_reset.count());
  };
  // What the observation of `rec` changes, if anything (Inspect is read-only).
  auto observe = [&](SandboxRecord& rec, bool& changed, bool& crashed) -> Status {
    changed = crashed = false;
    if (rec.phase == SandboxPhase::kReady && ran_stably(rec)) {
      // It ran long enough: its next failure starts a fresh restart budget.
      rec.restart_count = 0;
      rec.next_retry_at = 0;
      changed = true;
    }
    if (rec.pid == 0 || (rec.phase != SandboxPhase::kReady && rec.phase != SandboxPhase::kBooting &&
                         rec.phase != SandboxPhase::kUnknown)) {
      return OkStatus();
    }
    if (runtime_ == nullptr) {
      if (rec.phase != SandboxPhase::kUnknown) changed = true;
      rec.phase = SandboxPhase::kUnknown;
      rec.last_error = "no hypervisor available to inspect the VM";
      return OkStatus();
    }
    RuntimeObservation obs = runtime_->Inspect(rec);
    if (!obs.alive) {
      rec.phase = SandboxPhase::kFailed;
      rec.last_error = "VM process " + std::to_string(rec.pid) + " is gone" +
                       (obs.detail.empty() ? "" : " (" + obs.detail + ")");
      rec.pid = 0;
      rec.pid_start_time = 0;
      changed = crashed = true;
    } else if (!obs.responsive && rec.phase == SandboxPhase::kReady) {
      rec.phase = SandboxPhase::kUnknown;
      rec.last_error = "VM process alive but not answering: " + obs.detail;
      changed = true;
    } else if (obs.responsive && rec.phase == SandboxPhase::kUnknown) {
      rec.phase = SandboxPhase::kReady;
      rec.last_error.clear();
      changed = true;
    }
    return OkStatus();
  };
  for (const auto& listed : records) {
    // Look first without the lock: a healthy sandbox costs no lock and no write.
    SandboxRecord peek = listed;
    bool changed = false, crashed = false;
    BANGER_RETURN_IF_ERROR(observe(peek, changed, crashed));
    if (!changed) continue;
    // Something to record. A sandbox another process (or another thread of
    // this one) is working on is that worker's to record: observing it now
    // would race with it.
    auto lock = LockSandbox(listed.name, "observe", /*wait=*/false);
    if (!lock) {
      if (lock.error().code() == StatusCode::kUnavailable) continue;
      return lock.error();
    }
    auto fresh = store_.GetSandbox(listed.name);
    if (!fresh) {
      if (fresh.error().code() == StatusCode::kNotFound) continue;
      return fresh.error();
    }
    SandboxRecord rec = std::move(*fresh);
    BANGER_RETURN_IF_ERROR(observe(rec, changed, crashed));
    if (!changed) continue;
    BANGER_RETURN_IF_ERROR(store_.UpdateObserved(rec));
    if (crashed) Event(rec.name, "Warning", "Crashed", rec.last_error);
  }
  return OkStatus();
}

Status Engine::RepairNetworks() {
  auto report = networks_.Repair();
  if (!report) return report.error().WithContext("repairing bridged networking");
  for (const auto& what : report->repaired) Event("", "Warning", "NetworkRepaired", what);
  for (const auto& [name, why] : report->lost) {
    // The VM holds a dead tap: only a restart gives it a network again.
    auto lock = LockSandbox(name, "observe", /*wait=*/false);
    if (!lock) continue;  // its holder is booting it anew
    auto rec = store_.GetSandbox(name);
    if (!rec.ok() || rec->phase != SandboxPhase::kReady) continue;
    rec->phase = SandboxPhase::kFailed;
    rec->last_error = why;
    BANGER_RETURN_IF_ERROR(store_.UpdateObserved(*rec));
    Event(name, "Warning", "NetworkLost", why);
  }
  return OkStatus();
}

}  // namespace banger
