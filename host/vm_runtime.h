// The real SandboxRuntime: a Hypervisor (QEMU today) plus the guest agent
// channel, the per-kernel initramfs and the guest configuration derived from
// the spec and the image.
#pragma once

#include <filesystem>
#include <memory>

#include "base/clock.h"
#include "base/command_runner.h"
#include "host/config.h"
#include "providers/agent_client.h"
#include "providers/hypervisor.h"
#include "providers/qemu_hypervisor.h"
#include "reconciler/ports.h"
#include "state/layout.h"

namespace banger::host {

/// Where the guest agent binary is: $BANGER_AGENT, else beside the banger
/// binary in the build tree (../agent/banger-agent) or the install tree
/// (../libexec/banger/banger-agent). Empty if none exists.
std::filesystem::path FindAgentBinary();

/// Runtime directory of a sandbox: <state>/sandboxes/<id>.
std::filesystem::path SandboxRuntimeDir(const StateLayout& layout, const std::string& id);

/// How this banger confines each QEMU (docs/qemu.md, "Confinement"): as
/// root, a per-sandbox uid/gid, the child entering config.netns itself, and
/// a cgroup per sandbox where the host has one; always QEMU's seccomp sandbox.
QemuConfinement ConfinementFor(const Config& config, const StateLayout& layout);

/// OK when `qemu_binary` accepts and loads its seccomp sandbox with banger's
/// options (it is started with no machine and quit over QMP).
Status CheckQemuSeccomp(CommandRunner& runner, const std::string& qemu_binary = "qemu-system-x86_64");
/// OK when a child can drop to a per-sandbox uid as a QEMU's child does
/// (setgroups, setresgid, setresuid, no_new_privs), tried for real.
Status CheckPrivilegeDrop(CommandRunner& runner, const QemuConfinement& c);

/// Whether this banger build boots `hypervisor: firecracker` sandboxes (the
/// Firecracker provider is wired into the runtime).
extern const bool kFirecrackerProviderBuiltIn;

/// What this host has to boot sandboxes with, as probed once
/// (ProbeProviders); ResolveProvider decides from it.
struct ProviderProbe {
  Status qemu;                        // the QEMU runtime's CheckAvailable
  bool firecracker_provider = false;  // kFirecrackerProviderBuiltIn
  bool firecracker_binary = false;    // `firecracker` on PATH
  /// Why KVM cannot run Firecracker's guests (the real probe's reason,
  /// providers/kvm_probe.h); empty when it can.
  std::string kvm_problem;
  /// What the probe saw when KVM works ("a probe VM ... ran to HLT in 2 ms").
  std::string kvm_ok;
  /// The host config's `hypervisor`, used for specs that say auto.
  HypervisorKind host_default = HypervisorKind::kAuto;
};

/// The SandboxRuntime of real VMs, configured by `config` (accel, machine,
/// hypervisor): QEMU, and Firecracker for specs that resolve to it
/// (ResolveProvider over this host's ProbeProviders, probed on first need).
std::unique_ptr<SandboxRuntime> MakeVmRuntime(const Config& config, const StateLayout& layout,
                                              CommandRunner& runner, Clock& clock);
/// The same, deciding providers from `probe` instead of probing this host.
std::unique_ptr<SandboxRuntime> MakeVmRuntimeWithProbe(const Config& config, const StateLayout& layout,
                                                       CommandRunner& runner, Clock& clock, ProviderProbe probe);

/// Probes QEMU (runtime->CheckAvailable), the firecracker binary, and KVM
/// for real (ProbeKvmCached, cached per boot in <state>/kvm-verdict).
ProviderProbe ProbeProviders(SandboxRuntime* runtime, const Config& config, const StateLayout& layout);

/// The provider that boots spec.hypervisor `kind` on a host probed as `p`,
/// with why when the choice was not the spec's own: "qemu", "firecracker",
/// "firecracker (auto: firecracker on PATH and KVM works)", "qemu (auto:
/// firecracker provider not available)", "qemu (auto: firecracker lacks the
/// firecracker binary (not on PATH), ...)", "qemu (host config hypervisor:
/// qemu)"; or an error naming everything that is missing ("firecracker is not
/// available on this host: missing the firecracker binary (not on PATH), a
/// working KVM (...); use hypervisor: qemu or auto").
Result<std::string> ResolveProvider(HypervisorKind kind, const ProviderProbe& p);

/// The agent socket of a recorded sandbox (for `banger exec`).
std::filesystem::path AgentSocketOf(const SandboxRecord& record);
/// How to reach a recorded sandbox's guest agent: QEMU's virtio-serial socket,
/// or for record.hypervisor "firecracker" the VMM's vsock socket in its
/// runtime dir (kFirecrackerVsockSocketName) and agent_protocol::kVsockPort.
AgentEndpoint AgentEndpointOf(const SandboxRecord& record);
/// The serial console log of a recorded sandbox (for `banger logs`).
std::filesystem::path ConsoleLogOf(const SandboxRecord& record);

}  // namespace banger::host
