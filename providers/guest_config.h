// GuestConfig: what the guest agent needs to set a sandbox up at boot. The
// host renders it as /banger/config.json inside the per-sandbox initrd; the
// agent (agent/config.cc) parses it. Field reference: docs/guest-agent.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/base64.h"
#include "providers/agent_protocol.h"

namespace banger {

struct GuestNetwork {
  std::string interface = "eth0";
  std::string address;  // IPv4, e.g. "10.0.0.2"
  int prefix = 24;
  std::string gateway;  // empty: no default route
  std::vector<std::string> dns;
};

/// One line of the banger-managed block of the guest's /etc/hosts (a peer
/// sandbox and the names it answers to). The same type travels in SET_HOSTS.
using GuestHost = agent_protocol::HostsEntry;

struct GuestFile {
  std::string path;     // absolute path in the guest
  std::string content;  // raw bytes (base64-encoded on the wire)
  uint32_t mode = 0644;
};

/// A persistent volume the agent mounts in the new root at boot: the disk
/// whose /sys/block/<dev>/serial is `serial`, at `mount_path` (created if
/// missing), grown online to fill its disk.
struct GuestVolume {
  std::string serial;
  std::string mount_path;
};

enum class GuestInitMode {
  kAuto,   // the image's /sbin/init if it has one, else the agent stays PID 1
  kImage,  // always exec /sbin/init (fail the boot if missing)
  kAgent,  // the agent stays PID 1 and runs the entrypoint
};

/// The virtio serial of the root disk when a sandbox has volumes.
inline constexpr char kRootDiskSerial[] = "banger-root";

struct GuestConfig {
  std::string hostname;
  std::optional<GuestNetwork> network;
  /// Peers written between banger's markers in /etc/hosts at boot (replaced
  /// later with AgentConnection::SetHosts).
  std::vector<GuestHost> hosts;
  std::vector<GuestFile> files;
  std::vector<GuestVolume> volumes;
  std::vector<std::string> authorized_keys;
  std::map<std::string, std::string> env;  // for every process the agent starts
  // From the OCI image config (entrypoint + cmd); may be empty.
  std::vector<std::string> entrypoint;
  std::map<std::string, std::string> entrypoint_env;
  std::string workdir;
  GuestInitMode init = GuestInitMode::kAuto;
  std::string root_device = "/dev/vda";
  /// Set when volumes are attached: the agent finds the root disk by this
  /// virtio serial instead of trusting root_device (kRootDiskSerial).
  std::string root_serial;
  std::string root_fstype = "ext4";
  std::string agent_port = "banger.agent";
  /// JSON `hold`: boot only the identity-free part (mount the early file
  /// systems and the root disk, load modules, find the channel), then wait
  /// for IDENTITY (AgentConnection::SendIdentity) before doing the rest. A VM
  /// booted this way is a template (docs/guest-agent.md, "Held boot").
  bool hold_for_identity = false;
};

/// Renders config.json (stable key order, so identical configs give identical bytes).
std::string GuestConfigToJson(const GuestConfig& config);

}  // namespace banger
