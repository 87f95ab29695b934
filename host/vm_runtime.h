// The real SandboxRuntime: a Hypervisor (QEMU today) plus the guest agent
// channel, the per-kernel initramfs and the guest configuration derived from
// the spec and the image.
#pragma once

#include <filesystem>
#include <memory>

#include "base/clock.h"
#include "base/command_runner.h"
#include "host/config.h"
#include "providers/hypervisor.h"
#include "reconciler/ports.h"
#include "state/layout.h"

namespace banger::host {

/// Where the guest agent binary is: $BANGER_AGENT, else beside the banger
/// binary in the build tree (../agent/banger-agent) or the install tree
/// (../libexec/banger/banger-agent). Empty if none exists.
std::filesystem::path FindAgentBinary();

/// Runtime directory of a sandbox: <state>/sandboxes/<id>.
std::filesystem::path SandboxRuntimeDir(const StateLayout& layout, const std::string& id);

/// The QEMU-backed SandboxRuntime, configured by `config` (accel, machine).
std::unique_ptr<SandboxRuntime> MakeVmRuntime(const Config& config, const StateLayout& layout,
                                              CommandRunner& runner, Clock& clock);

/// The agent socket of a recorded sandbox (for `banger exec`).
std::filesystem::path AgentSocketOf(const SandboxRecord& record);
/// The serial console log of a recorded sandbox (for `banger logs`).
std::filesystem::path ConsoleLogOf(const SandboxRecord& record);

}  // namespace banger::host
