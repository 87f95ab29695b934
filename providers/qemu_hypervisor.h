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
#include "providers/hypervisor.h"

namespace banger {

enum class QemuAccel { kAuto, kKvm, kTcg };
enum class QemuMachine { kAuto, kMicrovm, kQ35 };

struct QemuOptions {
  std::string qemu_binary = "qemu-system-x86_64";
  std::string qemu_img_binary = "qemu-img";
  QemuAccel accel = QemuAccel::kAuto;
  /// auto: microvm with KVM, q35 under TCG (see docs/qemu.md); a retry after
  /// an early-boot hang on microvm uses q35.
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
};

/// What Boot resolved for one launch; exposed for tests and docs.
struct QemuLaunchPlan {
  bool kvm = false;
  bool microvm = true;
};

/// The exact argv Boot uses (argv[0] is options.qemu_binary). Pure.
std::vector<std::string> BuildQemuArgv(const VmLaunchConfig& config, const QemuOptions& options,
                                       const QemuLaunchPlan& plan);

/// Files the provider keeps in runtime_dir.
struct QemuRuntimeFiles {
  std::filesystem::path disk, initrd, console_log, qemu_log, qmp_socket, agent_socket;
};
QemuRuntimeFiles RuntimeFilesFor(const std::filesystem::path& runtime_dir);

std::unique_ptr<Hypervisor> MakeQemuHypervisor(CommandRunner& runner, Clock& clock, QemuOptions options);

}  // namespace banger
