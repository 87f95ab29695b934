#include "spec/sandbox_spec.h"

namespace banger {

std::string_view ToString(NetworkMode m) {
  switch (m) {
    case NetworkMode::kBridged: return "bridged";
    case NetworkMode::kUser: return "user";
    case NetworkMode::kIsolated: return "isolated";
    case NetworkMode::kNone: return "none";
  }
  return "?";
}

std::string_view ToString(Protocol p) {
  switch (p) {
    case Protocol::kTcp: return "tcp";
    case Protocol::kUdp: return "udp";
  }
  return "?";
}

std::string_view ToString(RestartPolicy p) {
  switch (p) {
    case RestartPolicy::kAlways: return "Always";
    case RestartPolicy::kOnFailure: return "OnFailure";
    case RestartPolicy::kNever: return "Never";
  }
  return "?";
}

std::string_view ToString(StartMode m) {
  switch (m) {
    case StartMode::kAuto: return "auto";
    case StartMode::kBoot: return "boot";
    case StartMode::kSnapshot: return "snapshot";
  }
  return "?";
}

std::string_view ToString(HypervisorKind k) {
  switch (k) {
    case HypervisorKind::kAuto: return "auto";
    case HypervisorKind::kQemu: return "qemu";
    case HypervisorKind::kFirecracker: return "firecracker";
  }
  return "?";
}

std::string_view ToString(VolumeSeed s) {
  switch (s) {
    case VolumeSeed::kEmpty: return "empty";
    case VolumeSeed::kImage: return "image";
  }
  return "?";
}

std::string_view ToString(WorkspaceMode m) {
  switch (m) {
    case WorkspaceMode::kTracked: return "tracked";
    case WorkspaceMode::kFull: return "full";
  }
  return "?";
}

}  // namespace banger
