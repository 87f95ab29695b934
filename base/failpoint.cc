#include "base/failpoint.h"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "base/strings.h"

namespace banger::failpoint {

namespace {

constexpr unsigned E = kEngineSweep, V = kVmSweep, A = kArtifactSweep, F = kFirecrackerSweep;

// THE list of failpoints. docs/testing.md ("Failpoints") documents each; the
// sweep tests drive each in both modes. Engine steps are journal steps
// (`operations` rows): `.before` fires after the step's row is written
// (`started`) and before its side effect; `.after` once the side effect is
// done and before the row is closed.
const std::vector<Point> kPoints = {
    // reconciler/engine.cc: journal steps of apply (create, replace, restart, update) and delete.
    {"engine.record.after_put", "the desired spec is recorded (Pending), nothing else done", E},
    {"engine.ensure_image.before", "journal step ensure_image started, image not yet looked up or pulled", E},
    {"engine.ensure_image.after", "image present, step still `started`", E},
    {"engine.ensure_kernel.before", "journal step ensure_kernel started, kernel not yet looked up or pulled", E},
    {"engine.ensure_kernel.after", "kernel present, step still `started`", E},
    {"engine.ensure_volumes.before", "journal step ensure_volumes started, no volume created", E},
    {"engine.ensure_volumes.after", "volume files and rows written, step still `started`", E},
    {"engine.attach_network.before", "journal step attach_network started, no lease, no tap", E},
    {"engine.attach_network.after", "lease, bridge, tap and rules in place, step still `started`", E},
    {"engine.boot_vm.before", "phase Booting recorded, journal step boot_vm started, no VM launched", E | V},
    {"engine.boot.after_launch", "the runtime launched the VM; its pid and runtime dir are not yet recorded", E | V},
    {"engine.boot_vm.after", "VM running and recorded (pid, runtime dir), step still `started`", E | V},
    {"engine.wait_agent.before", "VM recorded, not yet waited for its guest agent", E},
    {"engine.wait_agent.after", "guest agent answered, step still `started`", E},
    {"engine.provision.before", "journal step provision started, no command run", E},
    {"engine.provision.after", "provision commands ran and `provisioned` is recorded, step still `started`", E},
    {"engine.wait_ready.before", "journal step wait_ready started, readiness not yet checked", E},
    {"engine.wait_ready.after", "readiness command succeeded, step still `started`", E},
    {"engine.ready.before_record", "every step done; phase Ready not yet recorded", E | V},
    {"engine.update_record.before", "in-place update: step started, new spec not yet recorded", E},
    {"engine.update_record.after", "in-place update recorded, step still `started`", E},
    {"engine.destroy_vm.before", "replace: step destroy_vm started, the old VM still running", E},
    {"engine.destroy_vm.after", "replace: old VM and its runtime dir gone, step still `started`", E},
    {"engine.stop_vm.before", "restart or stop: step stop_vm started, VM still running", E | V},
    {"engine.stop_vm.after", "restart or stop: VM stopped, step still `started`", E | V},
    {"engine.delete.before", "delete: step started, nothing removed", E | V},
    {"engine.delete.after_destroy", "delete: VM and runtime dir gone; lease and record still there", E | V},
    {"engine.delete.after_detach", "delete: network lease and tap released; record still there", E},
    {"engine.delete.after", "delete: record removed, step still `started`", E | V},
    // providers/qemu_hypervisor.cc: the real VM runtime.
    {"runtime.boot.after_overlay", "runtime dir, overlay disk and initramfs written; QEMU not started", V},
    {"runtime.boot.after_spawn", "QEMU started (pidfile written by QEMU); early boot not yet checked", V},
    {"runtime.destroy.after_kill", "QEMU killed; runtime dir (overlay, sockets, logs) not yet removed", V},
    // providers/firecracker_hypervisor.cc: the Firecracker provider (swept against the API contract server).
    {"firecracker.boot.after_disk", "runtime dir, raw root disk, initrd (and jail) written; Firecracker not started", F},
    {"firecracker.boot.after_spawn", "Firecracker (or the jailer) started detached; its API socket not yet awaited", F},
    {"firecracker.boot.before_start", "Firecracker configured (or the snapshot loaded); InstanceStart (or resume) not sent", F},
    {"firecracker.boot.after_start", "the guest started; the handle (pid, runtime dir) not yet returned to the caller", F},
    {"firecracker.destroy.after_kill", "Firecracker killed; runtime dir (disk, sockets, jail) not yet removed", F},
    {"template.save.after_migrate", "template VM paused and its state file written; QEMU not yet stopped, disk not moved", V},
    {"template.publish.before_rename", "template files and meta.json complete in the staging dir; not yet renamed", V},
    {"template.restore.after_overlay", "restore: overlay on the template's disk and initrd written; QEMU not started", V},
    {"template.restore.before_cont", "restore: state loaded into the new QEMU (paused); not yet resumed", V},
    // reconciler/network_controller.cc: bridged networking.
    {"network.lease.after_acquire", "address lease recorded; bridge and tap not yet created", E},
    {"network.tap.after_create", "bridge and tap created; nftables rules not yet synced", E},
    // reconciler/engine.cc: volumes (spec.volumes).
    {"volume.create.after_file", "volume file built; its row not yet written", E},
    // state/sqlite_state_store.cc: every write transaction.
    {"state.tx.before_commit", "inside a write transaction, before COMMIT", E},
    {"state.tx.after_commit", "a write transaction committed, before the caller sees the result", E},
    // images/image_service.cc: image pull, import and publish.
    {"image.pull.after_fetch", "layers flattened into the scratch tree (or bundle downloaded); no root disk yet", A},
    {"image.publish.before_rename", "root disk and metadata complete in the staging dir; not yet renamed", A},
    {"image.publish.after_rename", "staging dir renamed to the image dir; no database row yet", A},
    // kernels/kernel_service.cc: kernel pull, import and publish.
    {"kernel.pull.after_fetch", "kernel files fetched into the staging dir; vmlinux not yet extracted", A},
    {"kernel.publish.before_rename", "kernel dir complete in staging; not yet renamed", A},
    {"kernel.publish.after_rename", "staging dir renamed to the kernel dir; no database row yet", A},
    // reconciler/watcher.cc: a watch pass.
    {"watch.pass.after_fetch", "the source was read; nothing observed or planned yet", E},
    {"watch.converge.after", "a sandbox converged; the source's applied revision not yet recorded", E},
};

struct Armed {
  Mode mode = Mode::kOff;
  int nth = 1;
  int hits = 0;
  bool fired = false;
};

std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, Armed, std::less<>>& Table() {
  static std::map<std::string, Armed, std::less<>> t;
  return t;
}

}  // namespace

namespace internal {
std::atomic<bool> any_armed{false};

Status HitSlow(std::string_view name) {
  Mode fire = Mode::kOff;
  {
    std::lock_guard<std::mutex> l(Mu());
    auto it = Table().find(name);
    if (it == Table().end() || it->second.mode == Mode::kOff) return OkStatus();
    if (++it->second.hits != it->second.nth) return OkStatus();
    fire = it->second.mode;
    it->second.mode = Mode::kOff;  // fires once
    it->second.fired = true;
  }
  if (fire == Mode::kCrash) {
    std::string line = "banger: failpoint " + std::string(name) + ": crashing (exit " +
                       std::to_string(kCrashExitCode) + ")\n";
    (void)!::write(2, line.data(), line.size());
    ::_exit(kCrashExitCode);
  }
  return Unavailable("failpoint " + std::string(name) + ": injected error");
}
}  // namespace internal

const std::vector<Point>& All() { return kPoints; }

bool IsRegistered(std::string_view name) {
  for (const Point& p : kPoints) {
    if (p.name == name) return true;
  }
  return false;
}

Status Arm(std::string_view name, Mode mode, int nth) {
  if (!IsRegistered(name)) return InvalidArgument("unknown failpoint \"" + std::string(name) + "\"");
  if (nth < 1) return InvalidArgument("failpoint " + std::string(name) + ": the hit count must be at least 1");
  std::lock_guard<std::mutex> l(Mu());
  Table()[std::string(name)] = Armed{mode, nth, 0};
  if (mode != Mode::kOff) internal::any_armed.store(true, std::memory_order_relaxed);
  return OkStatus();
}

void DisarmAll() {
  std::lock_guard<std::mutex> l(Mu());
  Table().clear();
  internal::any_armed.store(false, std::memory_order_relaxed);
}

bool Fired(std::string_view name) {
  std::lock_guard<std::mutex> l(Mu());
  auto it = Table().find(name);
  return it != Table().end() && it->second.fired;
}

Status Configure(std::string_view spec) {
  struct Entry {
    std::string name;
    Mode mode;
    int nth;
  };
  std::vector<Entry> entries;
  for (const std::string& raw : Split(std::string(spec), ',')) {
    std::string item(Trim(raw));
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument("BANGER_FAILPOINTS: \"" + item + "\" is not NAME=crash or NAME=error");
    }
    std::string name = item.substr(0, eq), mode = item.substr(eq + 1);
    int nth = 1;
    if (size_t at = mode.find('@'); at != std::string::npos) {
      std::string count = mode.substr(at + 1);
      mode.resize(at);
      char* end = nullptr;
      long n = std::strtol(count.c_str(), &end, 10);
      if (count.empty() || *end != '\0' || n < 1 || n > 1000000) {
        return InvalidArgument("BANGER_FAILPOINTS: " + name + ": \"@" + count + "\" is not a hit count (1, 2, ...)");
      }
      nth = static_cast<int>(n);
    }
    if (!IsRegistered(name)) {
      std::vector<std::string> names;
      for (const Point& p : kPoints) names.emplace_back(p.name);
      std::string hint = ClosestMatch(name, names);
      return InvalidArgument("BANGER_FAILPOINTS: unknown failpoint \"" + name + "\"" +
                             (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)") +
                             "; docs/testing.md lists them");
    }
    Mode m;
    if (mode == "crash") m = Mode::kCrash;
    else if (mode == "error") m = Mode::kError;
    else if (mode == "off") m = Mode::kOff;
    else return InvalidArgument("BANGER_FAILPOINTS: " + name + ": unknown mode \"" + mode + "\" (crash, error or off)");
    entries.push_back({name, m, nth});
  }
  for (const Entry& e : entries) BANGER_RETURN_IF_ERROR(Arm(e.name, e.mode, e.nth));
  return OkStatus();
}

Status ConfigureFromEnvironment() {
  const char* v = std::getenv("BANGER_FAILPOINTS");
  if (v == nullptr || *v == '\0') return OkStatus();
  return Configure(v);
}

}  // namespace banger::failpoint
