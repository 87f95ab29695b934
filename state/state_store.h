// StateStore: banger's record of what it applied and what it observed, in
// SQLite (WAL, foreign keys, busy timeout, numbered migrations). There is one
// implementation and tests use it against real SQLite files.
//
// Thread safety: a StateStore may be used from several threads at once; each
// call is one transaction.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"

namespace banger {

class Clock;

/// Lifecycle phase shown to users. "Running" is never stored as a guess:
/// observers set Ready only after checking the process, the VMM and the agent.
enum class SandboxPhase { kPending, kBooting, kReady, kStopped, kFailed, kDeleting, kUnknown };
std::string_view ToString(SandboxPhase p);
Result<SandboxPhase> SandboxPhaseFromString(std::string_view s);

/// The desired state as last applied, plus what banger observed of it.
struct SandboxRecord {
  // desired (written by apply)
  std::string name;          // unique, DNS label
  std::string id;            // stable id, used for directories (e.g. "sb-3f9a1c2e")
  std::string owner;         // apply set: "path:/abs/specs" or "set:NAME"
  std::string spec_json;     // CanonicalJson of the spec as last applied
  std::string spec_hash;     // SpecHash of it
  int64_t generation = 0;    // bumped on every change of spec_hash
  int64_t created_at = 0;    // unix seconds
  int64_t updated_at = 0;

  // observed (written by the executor and observers)
  SandboxPhase phase = SandboxPhase::kPending;
  std::string hypervisor;      // "qemu", "firecracker", "fake"
  int pid = 0;                 // VMM process id, 0 when none
  uint64_t pid_start_time = 0; // /proc start time of pid, for identity
  std::string address;         // guest IP, if any
  std::string runtime_dir;     // per-sandbox directory (sockets, logs, overlay)
  std::string disk_path;       // writable root disk of this sandbox
  std::string image_ref;       // image actually booted (resolved name/digest)
  std::string kernel_ref;      // kernel actually booted
  std::string last_error;      // empty unless Failed/Unknown
  bool stopped_by_user = false;   // `banger stop`: reconcile leaves it stopped
  bool provisioned = false;       // provision commands have run once
  int restart_count = 0;
  int64_t next_retry_at = 0;      // unix seconds; backoff for restarts
  int64_t ready_at = 0;
};

/// Journal entry: intent written before a step acts, outcome after.
struct OperationRecord {
  int64_t id = 0;
  std::string sandbox;
  std::string step;          // stable step name, e.g. "boot_vm"
  std::string detail;
  std::string state;         // "started" | "done" | "failed"
  std::string error;
  int64_t started_at = 0;
  int64_t finished_at = 0;
  /// The process that runs the step. Its unfinished steps are abandoned only
  /// once it is dead (pid 0: unknown, from an older banger; treated as dead).
  ProcessIdentity owner;
};

struct EventRecord {
  int64_t id = 0;
  int64_t time = 0;          // unix seconds
  std::string sandbox;       // may be empty for host-wide events
  std::string type;          // "Normal" | "Warning"
  std::string reason;        // CamelCase: "Created", "BootFailed", "Provisioned"
  std::string message;
};

struct ImageRecord {
  std::string name;          // user-facing name ("debian-bookworm", "alpine-3.19")
  std::string id;            // directory name under images/
  std::string source;        // catalog name or OCI reference it came from
  std::string digest;        // manifest digest ("sha256:...") or bundle sha256
  std::string rootfs_path;   // published rootfs.ext4
  std::string config_json;   // OCI image config (entrypoint, cmd, env, workdir), if any
  uint64_t size_bytes = 0;
  int64_t created_at = 0;
};

struct KernelRecord {
  std::string name;
  std::string id;
  std::string source;
  std::string kernel_path;    // bzImage (or vmlinux if that is all there is)
  std::string vmlinux_path;   // uncompressed ELF, may be empty
  std::string initrd_path;    // may be empty
  std::string modules_dir;    // lib/modules/<version>, may be empty
  std::string version;        // uname -r of the kernel
  int64_t created_at = 0;
};

/// What a watched source (a set of spec paths or a git repository) last did.
struct SourceRecord {
  std::string key;                  // SpecSource::Key(): "git:URL#REF:PATH" or "path:..."
  std::string url;                  // repository URL or the spec paths
  std::string ref;                  // git ref followed ("" = default branch)
  std::string owner;                // apply set of its sandboxes
  std::string applied_revision;     // last revision whose changes all applied (commit sha)
  std::string applied_summary;      // its commit subject
  int64_t applied_at = 0;
  std::string seen_revision;        // newest revision fetched
  int64_t last_attempt_at = 0;
  std::string last_result;          // "" (never) | "ok" | "error"
  std::string last_error;           // with file:line:col for bad specs
  std::string last_error_revision;  // revision the error belongs to
  int64_t last_success_at = 0;
  ProcessIdentity watcher;          // the watcher following it (pid 0: none recorded)
  int64_t updated_at = 0;
};

/// A network: declared by a `kind: Network` document, or the implicit
/// `default` one created on first use (declared = false).
struct NetworkRecord {
  std::string name;
  std::string owner;         // apply set that declared it ("" when implicit)
  bool declared = false;
  std::string spec_json;     // CanonicalNetworkJson as last applied
  std::string spec_hash;
  std::string subnet;        // in force: the declared one, or the one chosen
  std::string gateway;       // the bridge's address (first host of subnet)
  std::string bridge;        // host interface name
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

/// An address leased to a sandbox on a network.
struct LeaseRecord {
  std::string network;
  std::string address;
  std::string sandbox;
  std::string mac;
  int64_t created_at = 0;
};

/// What AcquireLease should hand out.
struct LeaseRequest {
  std::string network;
  std::string sandbox;
  std::string mac;
  /// A fixed address (spec.network.address), else "" to take the lowest free
  /// address of [first, last].
  std::string fixed_address;
  uint32_t first = 0;        // host-order IPv4 range of dynamic addresses
  uint32_t last = 0;
};

/// A persistent volume of a sandbox (spec.volumes; docs/volumes.md). Kept
/// when its sandbox is deleted or replaced.
struct VolumeRecord {
  std::string sandbox;       // owning sandbox's name
  std::string name;          // volume name within the sandbox
  std::string path;          // the ext4 image file on the host
  std::string mount_path;    // where it was last attached in the guest
  uint64_t size_bytes = 0;   // size of the file (the file system grows to it at boot)
  std::string seeded_from = "empty";  // "empty" | "image"
  std::string seed_image;    // image the seed came from ("" for empty)
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

class StateStore {
 public:
  /// Opens (creating if needed) `dir/state.db`, runs pending migrations.
  /// `dir` is created with mode 0700.
  static Result<std::unique_ptr<StateStore>> Open(const std::filesystem::path& dir);
  /// Opens an explicit database file (":memory:" allowed, for tests of pure logic).
  static Result<std::unique_ptr<StateStore>> OpenFile(const std::string& db_path);
  /// As above with an injected clock for the timestamps the store writes
  /// (created_at/updated_at/started_at/finished_at, event time when 0).
  static Result<std::unique_ptr<StateStore>> Open(const std::filesystem::path& dir,
                                                  std::shared_ptr<const Clock> clock);
  static Result<std::unique_ptr<StateStore>> OpenFile(const std::string& db_path,
                                                      std::shared_ptr<const Clock> clock);

  /// Schema version this binary knows (the newest embedded migration).
  static int LatestSchemaVersion();

  virtual ~StateStore() = default;

  /// Current schema version (PRAGMA user_version).
  virtual Result<int> SchemaVersion() = 0;

  // --- sandboxes ---
  virtual Result<std::vector<SandboxRecord>> ListSandboxes() = 0;
  /// NotFound if absent.
  virtual Result<SandboxRecord> GetSandbox(const std::string& name) = 0;
  /// Inserts or replaces the whole record (desired and observed). Bumps
  /// generation when spec_hash changed (first insert = 1); the record's own
  /// `generation` is ignored. created_at is kept from the first insert (or
  /// taken from the record when non-zero on first insert); updated_at moves
  /// when a desired column (id, owner, spec_json, spec_hash) changes.
  virtual Status PutSandbox(const SandboxRecord& record) = 0;
  /// Updates only the observed fields of an existing record (NotFound otherwise).
  virtual Status UpdateObserved(const SandboxRecord& record) = 0;
  /// Removes the record (and cascades nothing else: events and operations stay
  /// as history). Missing is OK.
  virtual Status DeleteSandbox(const std::string& name) = 0;

  // --- journal ---
  /// Records intent, owned by `owner` (normally SelfProcess()); returns the
  /// operation id.
  virtual Result<int64_t> BeginOperation(const std::string& sandbox, const std::string& step,
                                         const std::string& detail, const ProcessIdentity& owner) = 0;
  /// Records the outcome: `error` empty means done, else failed.
  /// NotFound for an unknown id, FailedPrecondition if already finished.
  virtual Status FinishOperation(int64_t op_id, const std::string& error) = 0;
  /// Operations still in state "started" (interrupted runs), oldest first.
  virtual Result<std::vector<OperationRecord>> UnfinishedOperations() = 0;
  /// Newest last; empty `sandbox` means all; `limit` <= 0 means no limit,
  /// otherwise the newest `limit` entries.
  virtual Result<std::vector<OperationRecord>> ListOperations(const std::string& sandbox,
                                                              int limit) = 0;
  /// Marks "started" operations whose owner is dead (owner_alive returns
  /// false, or the owner is unknown) as failed with `reason`. Steps of live
  /// processes (another apply, a watcher) are left alone. Returns how many
  /// were abandoned.
  virtual Result<int> AbandonUnfinishedOperations(
      const std::string& reason, const std::function<bool(const ProcessIdentity&)>& owner_alive) = 0;

  // --- events ---
  /// `event.id` is ignored (ids are assigned, increasing, never reused);
  /// `event.time` 0 means now. `type` must be "Normal" or "Warning".
  virtual Status AddEvent(const EventRecord& event) = 0;
  /// Newest last. Empty `sandbox` means all. `limit` <= 0 means no limit.
  /// With after_id == 0, `limit` keeps the newest `limit` events. With
  /// after_id > 0 (following), only events with id > after_id are returned and
  /// `limit` keeps the oldest `limit` of those, so a follower never skips one.
  virtual Result<std::vector<EventRecord>> ListEvents(const std::string& sandbox, int limit,
                                                      int64_t after_id = 0) = 0;

  // --- images and kernels ---
  virtual Result<std::vector<ImageRecord>> ListImages() = 0;
  virtual Result<ImageRecord> GetImage(const std::string& name) = 0;
  /// AlreadyExists if the name is taken (the publish-time re-check).
  virtual Status InsertImage(const ImageRecord& image) = 0;
  virtual Status DeleteImage(const std::string& name) = 0;
  virtual Result<std::vector<KernelRecord>> ListKernels() = 0;
  virtual Result<KernelRecord> GetKernel(const std::string& name) = 0;
  virtual Status InsertKernel(const KernelRecord& kernel) = 0;
  virtual Status DeleteKernel(const std::string& name) = 0;

  // --- watch sources ---
  virtual Result<std::vector<SourceRecord>> ListSources() = 0;
  /// NotFound if absent.
  virtual Result<SourceRecord> GetSource(const std::string& key) = 0;
  /// Inserts or replaces the row; updated_at is set to now.
  virtual Status PutSource(const SourceRecord& source) = 0;
  virtual Status DeleteSource(const std::string& key) = 0;

  // --- networks and address leases ---
  virtual Result<std::vector<NetworkRecord>> ListNetworks() = 0;
  /// NotFound if absent.
  virtual Result<NetworkRecord> GetNetwork(const std::string& name) = 0;
  /// Inserts or replaces the row (created_at kept from the first insert).
  /// AlreadyExists when another network has the same bridge.
  virtual Status PutNetwork(const NetworkRecord& network) = 0;
  /// FailedPrecondition (naming them) while sandboxes hold leases on it.
  virtual Status DeleteNetwork(const std::string& name) = 0;
  /// Leases of one network (all networks when empty), by address.
  virtual Result<std::vector<LeaseRecord>> ListLeases(const std::string& network) = 0;
  /// The sandbox's lease; NotFound if it has none.
  virtual Result<LeaseRecord> GetLease(const std::string& sandbox) = 0;
  /// In one transaction: the sandbox's existing lease on request.network if
  /// it has one (and the fixed address, if any, matches), else a new one. A
  /// lease the sandbox holds on another network (or at another fixed
  /// address) is released first. AlreadyExists naming the holder when the
  /// fixed address is taken; ResourceExhausted when the range is full.
  virtual Result<LeaseRecord> AcquireLease(const LeaseRequest& request) = 0;
  /// Re-inserts a known lease (repairing a lost row); AlreadyExists naming
  /// the holder if the address went to someone else.
  virtual Status RestoreLease(const LeaseRecord& lease) = 0;
  /// OK if the sandbox has none.
  virtual Status ReleaseLease(const std::string& sandbox) = 0;

  // --- volumes (kept across delete and replace of their sandbox) ---
  /// Volumes of one sandbox (all when empty), by sandbox then name.
  virtual Result<std::vector<VolumeRecord>> ListVolumes(const std::string& sandbox) = 0;
  /// NotFound if absent.
  virtual Result<VolumeRecord> GetVolume(const std::string& sandbox, const std::string& name) = 0;
  /// Inserts or replaces the row (created_at kept from the first insert;
  /// updated_at set to now).
  virtual Status PutVolume(const VolumeRecord& volume) = 0;
  /// Removes the row; missing is OK.
  virtual Status DeleteVolume(const std::string& sandbox, const std::string& name) = 0;

  // --- misc key/value (cached probe verdicts, serials) ---
  virtual Result<std::optional<std::string>> GetSetting(const std::string& key) = 0;
  virtual Status SetSetting(const std::string& key, const std::string& value) = 0;
};

}  // namespace banger
