#include "providers/vm_shutdown.h"

#include <algorithm>
#include <spdlog/spdlog.h>

namespace banger {

using std::chrono::milliseconds;

Status ShutdownVm(Clock& clock, const ProcessIdentity& process, const AgentEndpoint& agent, milliseconds grace,
                  milliseconds poll, std::string_view vmm_name, std::string_view vmm_request_name,
                  const std::function<void()>& vmm_request) {
  if (!ProcessAlive(process)) return OkStatus();
  auto deadline = clock.SteadyNow() + grace;
  if (grace.count() > 0) {
    // 1. Ask the guest agent (works for every guest, with or without an init).
    const milliseconds agent_grace = std::min(grace, milliseconds(3000));
    auto conn = ConnectAgent(agent, clock.SteadyNow() + agent_grace);
    Status asked = conn ? (*conn)->PowerOff(agent_grace) : conn.error();
    if (!asked.ok()) {
      // 2. The VMM's own request to the guest.
      spdlog::info("guest agent power-off failed ({}); {}", asked.message(), vmm_request_name);
      vmm_request();
    }
    if (WaitProcessGone(clock, process, deadline, poll)) return OkStatus();
  }
  // 3. Force.
  return KillProcessAndWait(clock, process, vmm_name);
}

}  // namespace banger
