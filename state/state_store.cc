#include "state/state_store.h"

#include <array>
#include <utility>


namespace banger {
namespace {

constexpr std::array<std::pair<SandboxPhase, std::string_view>, 7> kPhaseNames = {{
    {SandboxPhase::kPending, "Pending"},
    {SandboxPhase::kBooting, "Booting"},
    {SandboxPhase::kReady, "Ready"},
    {SandboxPhase::kStopped, "Stopped"},
    {SandboxPhase::kFailed, "Failed"},
    {SandboxPhase::kDeleting, "Deleting"},
    {SandboxPhase::kUnknown, "Unknown"},
}};

}  // namespace

std::string_view ToString(SandboxPhase p) {
  for (const auto& [phase, name] : kPhaseNames) {
    if (phase == p) return name;
  }
  return "Unknown";
}

Result<SandboxPhase> SandboxPhaseFromString(std::string_view s) {
  for (const auto& [phase, name] : kPhaseNames) {
    if (name == s) return phase;
  }
  return InvalidArgument("unknown sandbox phase \"" + std::string(s) +
                         "\" (want Pending, Booting, Ready, Stopped, Failed, Deleting or Unknown)");
}

}  // namespace banger
