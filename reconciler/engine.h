// The engine executes a Plan: for each change, a sequence of journaled steps
// (intent recorded before acting, outcome after). Sandboxes are independent
// and run concurrently up to `parallel`; no global lock is held across slow
// work. A failed step leaves the sandbox recorded as Failed with the error;
// the next plan starts from that recorded state and converges.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/clock.h"
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
};

/// Delay before automatic restart attempt number `failures` + 1:
/// base * 2^(failures-1), capped at max; zero when failures == 0.
std::chrono::seconds BackoffDelay(int failures, std::chrono::seconds base, std::chrono::seconds max);

struct ChangeResult {
  std::string name;
  Action action = Action::kNoOp;
  Status status;
  std::chrono::milliseconds took{0};
  std::string address;
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

  /// Executes every non-no-op change of `plan`.
  /// REQUIRES: plan.errors is empty.
  ApplyReport Apply(const Plan& plan);

  /// Re-observes every recorded sandbox (process identity, VMM socket) and
  /// records the truth: a dead VM becomes Failed (or Stopped when it was
  /// stopped on purpose). Journal entries left "started" by an interrupted
  /// run are closed as abandoned.
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

 private:
  Status ExecuteChange(const Change& change, ChangeResult& result);
  Status CreateOrReplace(const Change& change, const SandboxRecord* current, ChangeResult& result);
  Status Restart(const Change& change, const SandboxRecord& current, ChangeResult& result);
  Status BootAndWait(SandboxRecord& record, const SandboxSpec& spec, bool fresh_disk,
                     ChangeResult& result);
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
};

/// Parses the spec stored in a record (its canonical JSON).
Result<SandboxSpec> RecordSpec(const SandboxRecord& record);

}  // namespace banger
