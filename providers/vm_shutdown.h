// The shutdown every provider does (Hypervisor::Shutdown): ask the guest,
// then the VMM, then force.
#pragma once

#include <chrono>
#include <functional>
#include <string_view>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/status.h"
#include "providers/agent_client.h"

namespace banger {

/// With a grace: 1. the guest agent's POWEROFF over `agent` (at most 3 s of
/// the grace); 2. if that fails, `vmm_request` (the VMM's own way to ask the
/// guest: QEMU's ACPI power button, Firecracker's Ctrl+Alt+Del), logged as
/// `vmm_request_name`; then wait, polling every `poll`, until the process is
/// gone or the grace is over. 3. SIGKILL, waiting until `vmm_name`'s process
/// is gone. OK when it is not running.
Status ShutdownVm(Clock& clock, const ProcessIdentity& process, const AgentEndpoint& agent,
                  std::chrono::milliseconds grace, std::chrono::milliseconds poll, std::string_view vmm_name,
                  std::string_view vmm_request_name, const std::function<void()>& vmm_request);

}  // namespace banger
