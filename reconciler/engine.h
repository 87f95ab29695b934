// The engine executes a Plan: for each change, a sequence of journaled steps
// (intent recorded before acting, outcome after). Sandboxes are independent
// and run concurrently up to `parallel`; no global lock is held across slow
// work. A failed step leaves the sandbox recorded as Failed with the error;
// the next plan starts from that recorded state and converges.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file_lock.h"
#include "reconciler/network_controller.h"
#include "reconciler/plan.h"
#include "reconciler/ports.h"
#include "state/state_store.h"

namespace banger {

struct EngineOptions {
  int parallel = 4;
  std::chrono::milliseconds stop_grace{std::chrono::seconds(20)};
  std::chrono::milliseconds agent_timeout{std::chrono::seconds(180)};
  /// Between readiness command attempts.
  std::chrono::milliseconds readiness_interval{std::chrono::milliseconds(500)};
  /// Automatic restarts in a row before reconcile gives up on a sandbox.
  int max_restart_attempts = 5;
  std::chrono::seconds backoff_base{10};
  std::chrono::seconds backoff_max{300};
  /// A sandbox that stayed Ready this long before it went down starts its
  /// restart budget afresh (a crash loop keeps counting).
  std::chrono::seconds backoff_reset{600};
  /// Per-sandbox lock files (<state>/run/locks). Every change, delete, stop,
  /// start and observation of a sandbox holds its lock, so two processes
  /// (two applies, apply and a watcher) never work on one sandbox at once.
  /// Empty disables locking: only for single-process unit tests.
  std::filesystem::path locks_dir;
  /// How long apply, delete, stop and start wait for another process that
  /// holds a sandbox's lock.
  std::chrono::milliseconds lock_wait{std::chrono::minutes(30)};
  /// When set and true, waits (locks, readiness) give up with Cancelled.
  const std::atomic<bool>* cancel = nullptr;
  /// Bridged networking (bridges, taps, nftables); null: bridged sandboxes
  /// fail with a clear error and networks cannot be applied.
  NetworkDriver* network_driver = nullptr;
  /// Volume files (spec.volumes); null: sandboxes with volumes fail with a
  /// clear error.
  VolumeFiles* volumes = nullptr;
  /// Ships spec.workspace on create and replace; null: a sandbox with a
  /// workspace fails at the ship_workspace step with a clear error.
  WorkspaceShipper* workspace_shipper = nullptr;
  /// Which provider boots a spec's spec.hypervisor (PlanOptions::provider_for);
  /// unset: not checked when a change is planned again under its lock.
  std::function<Result<std::string>(HypervisorKind)> provider_for;
  /// How a spec's VM starts (PlanOptions::start_for); unset: not shown.
  std::function<Result<std::string>(const SandboxSpec&)> start_for;
};

/// Delay before automatic restart attempt number `failures` + 1:
/// base * 2^(failures-1), capped at max; zero when failures == 0.
std::chrono::seconds BackoffDelay(int failures, std::chrono::seconds base, std::chrono::seconds max);

struct ChangeResult {
  std::string name;
  Action action = Action::kNoOp;   // what was done (may differ from the plan, see note)
  Status status;
  std::chrono::milliseconds took{0};
  std::string address;
  /// Set when the change was re-planned under the sandbox's lock and turned
  /// out different, e.g. "already up to date (converged by another process)".
  std::string note;
};

/// One sandbox to converge (Engine::Converge).
struct ConvergeRequest {
  std::string name;
  /// The desired spec; null when the sandbox is not desired (then it is
  /// deleted only with `prune` and when owned by `owner`).
  const SpecDocument* desired = nullptr;
  /// CanonicalJson/SpecHash of desired when the caller has them (else computed).
  std::string desired_json;
  std::string desired_hash;
  std::string owner;
  bool prune = false;
  RecoveryMode recovery = RecoveryMode::kAlways;
  /// false: if another process holds the sandbox, return busy at once.
  bool wait_for_lock = true;
  /// Written into the lock file so others can say who holds it ("apply",
  /// "watch"); empty: "apply" or "delete".
  std::string purpose;
};

struct ConvergeOutcome {
  ChangeResult result;
  /// Another process holds the sandbox (only without wait_for_lock); nothing
  /// was done. `holder` names it.
  bool busy = false;
  std::string holder;
  /// The sandbox is waiting for its restart backoff until this unix time.
  int64_t retry_at = 0;
  /// The change as re-planned under the lock (action kNoOp when nothing was needed).
  Change change;
};

struct ApplyReport {
  std::vector<ChangeResult> results;   // in plan order
  bool ok() const;
};

class Engine {
 public:
  /// `runtime` may be null: then any step that needs a VM fails with a clear
  /// "no hypervisor available" error and nothing else is touched.
  Engine(StateStore& store, SandboxRuntime* runtime, ArtifactStore& artifacts, Clock& clock,
         EventSink& sink, EngineOptions options);

  /// Executes every non-no-op change of `plan`, each under its sandbox's lock
  /// (waiting for another process that holds it) and re-planned there from
  /// the fresh record, so a change another process already made is not made
  /// twice. REQUIRES: plan.errors is empty.
  ApplyReport Apply(const Plan& plan);

  /// Converges one sandbox, controller-style: takes its lock, reads its
  /// record afresh, plans it (PlanSandbox) and carries the change out.
  ConvergeOutcome Converge(const ConvergeRequest& request);

  const EngineOptions& options() const { return options_; }

  /// The lock file of a sandbox, "" when locking is disabled.
  std::filesystem::path LockPathOf(const std::string& name) const;

  /// Re-observes every recorded sandbox (process identity, VMM socket) and
  /// records the truth: a dead VM becomes Failed (or Stopped when it was
  /// stopped on purpose). Journal entries left "started" by a process that
  /// is gone are closed as abandoned. Sandboxes another live process is
  /// working on (their lock is held) are left to it.
  Status Refresh();

  /// One level-triggered pass over every recorded sandbox (`banger reconcile`,
  /// and each tick of watch mode): observes the truth, then restarts sandboxes
  /// whose VM died, hung or never became ready, as their restartPolicy allows.
  /// Consecutive failures back off exponentially per sandbox
  /// (BackoffDelay); after `max_restart_attempts` the sandbox stays Failed
  /// until its spec changes or it is applied again.
  ApplyReport Reconcile();

  /// Deletes one sandbox (VM, disk, record). OK if it does not exist.
  Status DeleteSandbox(const std::string& name);
  /// Stops a sandbox and remembers that the user wants it stopped.
  Status StopSandbox(const std::string& name);
  /// Boots a stopped sandbox again (clears the user-stop mark).
  Status StartSandbox(const std::string& name);

  /// Removes every volume of `sandbox` (files and rows), under its lock.
  /// FailedPrecondition while the sandbox runs with one of them attached.
  Status DeleteVolumes(const std::string& sandbox);
  /// Removes one volume; NotFound when there is no such volume, and
  /// FailedPrecondition while the sandbox runs with it attached.
  Status RemoveVolume(const std::string& sandbox, const std::string& name);

  /// Bridged networking: networks, leases, taps and rules.
  NetworkController& networks() { return networks_; }

  /// Repairs drift of bridged networking (NetworkController::Repair) and
  /// marks running sandboxes whose tap vanished as failed, so the restart
  /// policy brings them back with a working NIC. Part of Reconcile and of
  /// every watch pass.
  Status RepairNetworks();

 private:
  Result<FileLock> LockSandbox(const std::string& name, const std::string& purpose, bool wait);
  ChangeResult ApplyChange(const Change& change, bool wait_for_lock);
  Status ExecuteChange(const Change& change, ChangeResult& result);
  Status CreateOrReplace(const Change& change, const SandboxRecord* current, ChangeResult& result);
  Status Restart(const Change& change, const SandboxRecord& current, ChangeResult& result);
  Status BootAndWait(SandboxRecord& record, const SandboxSpec& spec, bool fresh_disk,
                     ChangeResult& result);
  Status DeleteLocked(const std::string& name);
  /// spec.volumes: creates missing volumes (seeded from `image` when asked),
  /// grows smaller ones, and returns what the boot attaches.
  Result<std::vector<VolumeAttachment>> EnsureVolumes(const SandboxRecord& rec, const SandboxSpec& spec,
                                                      const ImageRecord& image);
  Status RemoveVolumeLocked(const std::string& sandbox, const std::string& name);
  /// The ship_workspace step (a fresh disk only: a restart keeps the guest's edits).
  Status ShipWorkspace(SandboxRecord& record, const SandboxSpec& spec);
  /// Sends every Ready member of `network` its peers as the state has them
  /// now, one push per network at a time. `booted` (just Ready, or just
  /// deleted) is skipped if it booted with that list (`booted_with`).
  void PushHosts(const std::string& network, const std::string& booted, const std::vector<HostEntry>* booted_with);
  bool Cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }
  Status RunStep(const std::string& sandbox, const std::string& step, const std::string& detail,
                 const std::function<Status()>& body);
  Status MarkFailed(SandboxRecord record, const Status& error);
  Status RequireRuntime() const;
  void Event(const std::string& sandbox, const std::string& type, const std::string& reason,
             const std::string& message);
  std::string NewSandboxId(const std::string& name);

  StateStore& store_;
  SandboxRuntime* runtime_;
  ArtifactStore& artifacts_;
  Clock& clock_;
  EventSink& sink_;
  EngineOptions options_;
  NetworkController networks_;
};

/// Parses the spec stored in a record (its canonical JSON).
Result<SandboxSpec> RecordSpec(const SandboxRecord& record);

}  // namespace banger
