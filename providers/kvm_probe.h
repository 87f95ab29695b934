// Whether KVM actually runs guests on this host, not just whether /dev/kvm
// opens: nested KVM through PVM (kvm_pvm) creates VMs but runs only guest
// kernels built for PVM (../shared/guide/HOST-NOTES.md). Firecracker has no
// software fallback, so `hypervisor: auto` picks it only on a verdict of
// "works" (docs/firecracker.md, "Host set-up").
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger {

struct KvmVerdict {
  bool works = false;
  /// Why, in one line: "a probe VM ran to HLT in 3 ms" or what failed
  /// ("/dev/kvm does not exist (no KVM on this host)", "KVM is PVM ...").
  std::string reason;
  bool cached = false;  // read from the per-boot cache file
};

/// The real probe: opens /dev/kvm, checks the API version and the
/// capabilities Firecracker needs, creates a VM with an in-kernel irqchip and
/// one vCPU, and runs a few real-mode instructions that write a byte to an I/O
/// port and halt, expecting exactly that I/O exit and then KVM_EXIT_HLT. The
/// vCPU runs in a child process killed at `deadline` (a guest stuck in an
/// emulator does not hang banger). A host with the kvm_pvm module is reported
/// as not working even if the probe ran (PVM does not run stock kernels).
KvmVerdict ProbeKvmNow(std::chrono::milliseconds deadline = std::chrono::milliseconds(3000));

/// ProbeKvmNow, cached in `cache_file` (mode 0600) for the current boot
/// (keyed by /proc/sys/kernel/random/boot_id): a reboot, a module load or
/// a new kernel means a new boot id and a new probe. An empty path: no cache.
KvmVerdict ProbeKvmCached(const std::filesystem::path& cache_file,
                          std::chrono::milliseconds deadline = std::chrono::milliseconds(3000));

/// The cache file's text for a verdict and a boot id, and back (nullopt-like:
/// works=false, reason empty when the text is not a verdict for `boot_id`).
std::string FormatKvmCache(const std::string& boot_id, const KvmVerdict& v);
bool ParseKvmCache(const std::string& text, const std::string& boot_id, KvmVerdict* out);

}  // namespace banger
