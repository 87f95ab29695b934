// QEMU provider: boots sandboxes as QEMU microVMs (microvm or q35 machine,
// TCG or KVM), with the guest agent on a virtio-serial port. docs/qemu.md
// describes the argv, accelerator choice, machine fallback and runtime files.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "providers/confinement.h"
#include "providers/hypervisor.h"

namespace banger {

enum class QemuAccel { kAuto, kKvm, kTcg };
enum class QemuMachine { kAuto, kMicrovm, kQ35 };

/// How each QEMU is confined (docs/qemu.md, "Confinement").
struct QemuConfinement {
  /// Each QEMU runs as its own uid/gid from `ids` (banger must be root).
  bool per_sandbox_ids = false;
  ConfineIds ids;
  /// The state directory: shared inputs below it (kernels, images, volume
  /// dirs) are made reachable by group ids.shared_gid(); nothing above it
  /// is changed.
  std::filesystem::path state_root;
  /// Network namespace (`ip netns` name) the child enters before it drops
  /// its privileges (used instead of launcher_prefix when confined).
  std::string netns;
  /// QEMU's seccomp sandbox: -sandbox on,obsolete=deny,elevateprivileges=deny,
  /// spawn=deny,resourcecontrol=deny.
  bool seccomp = false;
  /// A cgroup per sandbox with memory.max = QemuMemoryLimit(guest memory) and
  /// pids.max; kNone: no limit. Under TCG the translation cache is bounded
  /// to kQemuTcgTbSizeMiB when a limit applies.
  CgroupSupport cgroups;
  uint64_t pids_max = 512;
  /// Directories (volumes) whose files a sandbox's uid may own: Destroy gives
  /// them back to root, so a later sandbox that gets the same uid cannot
  /// open a deleted sandbox's kept volume.
  std::vector<std::filesystem::path> reclaim_dirs;
};

struct QemuOptions {
  std::string qemu_binary = "qemu-system-x86_64";
  std::string qemu_img_binary = "qemu-img";
  /// Prepended to QEMU's argv, e.g. {"ip", "netns", "exec", "ns1"} to start the
  /// VMM inside a network namespace (exec keeps the pid, so identity holds).
  std::vector<std::string> launcher_prefix;
  QemuAccel accel = QemuAccel::kAuto;
  /// auto: microvm; a retry after an early-boot hang uses q35 (docs/qemu.md).
  QemuMachine machine = QemuMachine::kAuto;
  /// Where the KVM probe's verdict ("kvm" or "tcg") is cached across runs.
  /// Empty: cached in memory for this provider object only.
  std::filesystem::path accel_cache_file;
  std::chrono::milliseconds kvm_probe_timeout{10000};
  std::chrono::milliseconds qmp_timeout{2000};
  /// Boot() waits until the kernel has started the agent (it prints
  /// "banger-agent: starting" on the serial console), killing and retrying a
  /// VM that hangs in early boot. 0: return as soon as QEMU is started.
  std::chrono::milliseconds early_boot_timeout{90000};
  int boot_attempts = 2;
  /// Bound on saving a template's state (SaveTemplate) and on loading it
  /// (Boot with `restore`).
  std::chrono::milliseconds template_timeout{120000};
  /// microvm under TCG has no HPET/PM timer, and on a loaded host the
  /// kernel's PIT calibration of the TSC fails and boot hangs. TCG's guest TSC
  /// runs at the host TSC rate, so banger passes it as tsc_early_khz.
  /// 0: measure the host TSC (x86-64 with constant_tsc).
  uint64_t guest_tsc_khz = 0;
  QemuConfinement confine;
};

/// What Boot resolved for one launch; exposed for tests and docs.
struct QemuLaunchPlan {
  bool kvm = false;
  bool microvm = true;
  uint64_t tsc_khz = 0;  // appended as tsc_early_khz= for microvm under TCG
};

/// QEMU's seccomp sandbox option, as passed to -sandbox.
inline constexpr const char* kQemuSandboxOption =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The host TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW over
/// ~20 ms; 0 where unavailable (not x86-64, or no constant TSC).
uint64_t MeasureHostTscKhz();

/// The exact argv Boot uses (argv[0] is options.qemu_binary). Pure.
std::vector<std::string> BuildQemuArgv(const VmLaunchConfig& config, const QemuOptions& options,
                                       const QemuLaunchPlan& plan);

/// Files the provider keeps in runtime_dir.
struct QemuRuntimeFiles {
  std::filesystem::path disk, initrd, console_log, qemu_log, qmp_socket, agent_socket, pidfile;
};
QemuRuntimeFiles RuntimeFilesFor(const std::filesystem::path& runtime_dir);

/// The guest writes its serial console (console.log, which QEMU opens with
/// O_APPEND) as fast as it likes: banger caps it. Once console.log is larger
/// than this it is rotated: its last kConsoleLogKeepBytes go to
/// console.log.1 (replacing the previous one) and console.log is truncated
/// (QEMU keeps appending at the new end).
inline constexpr uint64_t kMaxConsoleLogBytes = 8u << 20;
inline constexpr uint64_t kConsoleLogKeepBytes = 1u << 20;

/// Rotates `console_log` as above when it is larger than `max_bytes`; true
/// if it did. Called on every inspection of a sandbox (each `banger watch`
/// pass, `reconcile`, `get`) and by `banger logs`.
Result<bool> CapConsoleLog(const std::filesystem::path& console_log, uint64_t max_bytes = kMaxConsoleLogBytes);

/// At most the last `max_bytes` of a file, read without loading the rest
/// ("" when it is missing).
std::string ReadFileTail(const std::filesystem::path& file, size_t max_bytes);
/// At most the first `max_bytes` of a file ("" when it is missing).
std::string ReadFileHead(const std::filesystem::path& file, size_t max_bytes);

/// The backing file named in a qcow2 image's header ("" when it has none):
/// the image's base disk, or for a sandbox restored from a template, the
/// template's disk layer. DataLoss when the header is not a qcow2 one.
Result<std::string> Qcow2BackingFile(const std::filesystem::path& qcow2);

/// Finds the QEMU process of `runtime_dir` from its pidfile, for a VM whose
/// identity was never recorded (banger interrupted between launch and
/// record). The process must still name this runtime dir's QMP socket on its
/// command line, so a reused pid is never taken for it. NotFound otherwise.
Result<ProcessIdentity> RecoverQemuProcess(const std::filesystem::path& runtime_dir);

std::unique_ptr<Hypervisor> MakeQemuHypervisor(CommandRunner& runner, Clock& clock, QemuOptions options);

}  // namespace banger
