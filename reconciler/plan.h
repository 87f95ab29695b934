// The plan: what apply will do to each sandbox, and why. ComputePlan is a pure
// function of the desired specs and the recorded/observed state, so it can be
// golden-tested and shown to users before anything happens.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "spec/sandbox_spec.h"
#include "state/state_store.h"

namespace banger {

enum class Action { kNoOp, kCreate, kUpdate, kRestart, kReplace, kDelete };
std::string_view ToString(Action a);       // "create", "update", ...
std::string_view ActionSymbol(Action a);   // "+", "~", "~", "-/+", "-", " "

/// How a change to one spec field can be carried out (docs/field-classes.md).
enum class FieldClass { kInPlace, kRestart, kReplace };
std::string_view ToString(FieldClass c);

/// Classifies a canonical field path such as "spec.memory" or
/// "metadata.labels.tier". Unknown paths are treated as kReplace (safest).
FieldClass ClassifyField(std::string_view path);

struct FieldDiff {
  std::string path;        // canonical path: "spec.memory", "metadata.labels.tier"
  std::string old_value;   // JSON text; empty when added
  std::string new_value;   // JSON text; empty when removed
  FieldClass field_class = FieldClass::kReplace;
};

/// Compares two canonical spec JSON documents field by field. Objects are
/// descended into; arrays and scalars compare as whole values.
std::vector<FieldDiff> DiffCanonicalSpecs(std::string_view old_json, std::string_view new_json);

struct Change {
  std::string name;
  Action action = Action::kNoOp;
  std::string owner;                  // apply set that will own the sandbox
  std::string reason;                 // display only: "new sandbox", "crashed (pid 123 gone)"
  std::vector<FieldDiff> diffs;
  std::optional<SpecDocument> desired;  // absent for delete
  std::string desired_json;           // canonical JSON of desired
  std::string desired_hash;
  std::vector<std::string> pulls;     // artifacts to fetch first: "image busybox", "kernel debian-6.1"
  std::optional<SandboxRecord> current;  // absent for create
  /// An automatic restart of a sandbox whose spec did not change (watch and
  /// reconcile): it counts against the restart budget and keeps the backoff.
  bool recovery = false;
  /// A no-op that is waiting: the unix time of the next automatic restart
  /// attempt (backoff), 0 otherwise.
  int64_t retry_at = 0;
  /// What happens to spec.volumes on this change, one line per volume that
  /// is created or grown: "volume data: create 1GiB (seeded from image)",
  /// "volume data: grow 1GiB -> 2GiB".
  std::vector<std::string> volume_notes;
  /// The provider that boots it, with why for `hypervisor: auto`: "qemu",
  /// "qemu (auto: firecracker provider not available)". Empty when the plan
  /// was made without PlanOptions::provider_for, and for deletes.
  std::string provider;
  /// How its VM starts (docs/snapshots.md): "boot", "restore from template
  /// 3f9a1c2e4b5d", "boot, save template 3f9a1c2e4b5d, restore from it", or
  /// "boot (why not from a template)". Empty without PlanOptions::start_for.
  std::string start;
};

struct NetworkChange {
  std::string name;
  Action action = Action::kNoOp;   // kCreate, kUpdate, kReplace, kDelete or kNoOp
  std::string owner;
  std::string reason;
  std::vector<FieldDiff> diffs;
  std::optional<NetworkDocument> desired;  // absent for delete and implicit networks
  std::string desired_json;
  std::string desired_hash;
  std::optional<NetworkRecord> current;
  /// The implicit `default` network, created because bridged sandboxes need it.
  bool implicit = false;
};

/// What the host has recorded about networks.
struct NetworkObservations {
  std::vector<NetworkRecord> networks;
  std::vector<LeaseRecord> leases;
};

struct PlanSummary {
  int create = 0, update = 0, restart = 0, replace = 0, remove = 0, unchanged = 0;
};

struct Plan {
  std::vector<Change> changes;        // sorted by name
  std::vector<NetworkChange> networks;  // sorted by name (PlanNetworks)
  std::vector<std::string> errors;    // conflicts that stop apply (e.g. owned by another set)
  std::string owner;                  // the apply set the plan is for
  PlanSummary Summary() const;
  bool HasChanges() const;
};

/// How a sandbox that is down but whose spec is unchanged is treated.
enum class RecoveryMode {
  /// `banger apply`: the user asked for convergence; bring it back now,
  /// whatever its restartPolicy, and start its restart budget afresh.
  kAlways,
  /// The watcher and `banger reconcile`: as its restartPolicy allows,
  /// honouring the backoff and the restart budget (RecoveryDecision).
  kPolicy,
};

struct PlanOptions {
  std::string owner;                  // "path:/abs/dir" or "set:NAME"
  bool prune = false;                 // delete sandboxes of `owner` missing from desired
  std::string default_kernel;         // resolves an empty spec.kernel
  /// Whether an artifact is already present locally ("image"/"kernel", name).
  /// Missing ones are listed in Change::pulls. Must be pure and fast.
  std::function<bool(std::string_view kind, const std::string& name)> artifact_present;
  RecoveryMode recovery = RecoveryMode::kAlways;
  int64_t now = 0;                    // unix seconds (kPolicy: backoff)
  int max_restart_attempts = 5;       // kPolicy: automatic restarts before giving up
  /// The recorded size of a sandbox's volume, nullopt when it has none
  /// (docs/volumes.md). Unset: volumes are judged from the spec diff alone.
  /// Must be pure and fast.
  std::function<std::optional<uint64_t>(const std::string& sandbox, const std::string& volume)> volume_size;
  /// Which provider on this host boots a spec's spec.hypervisor (Change::provider),
  /// or an error saying what the host lacks; an error is a plan error naming
  /// the file and line of spec.hypervisor. Unset: not checked. Must be fast and
  /// safe to call from several threads.
  std::function<Result<std::string>(HypervisorKind)> provider_for;
  /// How a spec's VM would start on this host (Change::start), or an error
  /// (spec.start: snapshot where the provider has no templates), which is a
  /// plan error naming spec.start's file and line. Unset: not shown. Must be
  /// fast and safe to call from several threads.
  std::function<Result<std::string>(const SandboxSpec&)> start_for;
};

/// Why a recorded sandbox needs its VM brought back ("" if it does not): it
/// failed, was interrupted while booting or deleting, or its state is
/// unknown. Sandboxes the user stopped never need it. The one "needs
/// recovery" rule, shared by plan, reconcile and the watcher.
std::string RecoveryReason(const SandboxRecord& rec);

/// The change for one sandbox, exactly as ComputePlan decides it: `desired`
/// null means the sandbox is only recorded (deleted when options.prune and it
/// is owned by options.owner, else a no-op); `observed` null means it is not
/// recorded. `canonical_json`/`hash` are CanonicalJson/SpecHash of desired
/// (computed by the caller, so large plans can do it in parallel). A conflict
/// (owned by another set) is returned in `*error` with action no-op.
Change PlanSandbox(const SpecDocument* desired, std::string canonical_json, std::string hash,
                   const SandboxRecord* observed, const PlanOptions& options, std::string* error);

/// Pure: no I/O beyond calling options.artifact_present.
/// REQUIRES: desired names unique (the loader guarantees it).
Plan ComputePlan(const std::vector<SpecDocument>& desired,
                 const std::vector<SandboxRecord>& observed, const PlanOptions& options);

/// Terraform-style text rendering. `color` adds ANSI colours.
std::string RenderPlanText(const Plan& plan, bool color);
/// Machine-readable rendering (stable field names, documented in docs/cli.md).
std::string RenderPlanJson(const Plan& plan);

/// An owner for messages: `apply set "NAME"`, `specs at PATHS`, `git source URL`.
std::string DescribeOwner(const std::string& owner);

/// The owner string for an apply set: "set:NAME" if set_name is given, else
/// "path:" + the sorted absolute spec paths joined by ",".
std::string OwnerFor(const std::vector<std::string>& spec_paths, const std::string& set_name);

}  // namespace banger
