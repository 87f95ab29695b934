// The per-sandbox configuration the host hands to the agent as
// /banger/config.json inside the initramfs (see docs/guest-agent.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "providers/agent_protocol.h"

namespace banger::agent {

struct AgentNetwork {
  std::string interface = "eth0";
  std::string address;  // IPv4 dotted quad
  int prefix = 24;
  std::string gateway;  // empty: no default route
  std::vector<std::string> dns;
};

struct AgentFile {
  std::string path;     // absolute path in the guest
  std::string content;  // decoded bytes
  uint32_t mode = 0644;
};

/// A persistent volume: the disk with this virtio serial, mounted at
/// mount_path in the new root (docs/volumes.md).
struct AgentVolume {
  std::string serial;
  std::string mount_path;
};

struct AgentConfig {
  std::string hostname;
  std::string root_device = "/dev/vda";
  /// When set, the root disk is the one with this virtio serial (root_device
  /// is then ignored): with volumes attached, /dev/vda need not be the root.
  std::string root_serial;
  std::string root_fstype = "ext4";
  std::string agent_port = "banger.agent";
  std::string init = "auto";  // auto | image | agent
  std::optional<AgentNetwork> network;
  std::vector<agent_protocol::HostsEntry> hosts;  // the /etc/hosts block (peers)
  std::vector<AgentFile> files;
  std::vector<AgentVolume> volumes;
  std::vector<std::string> authorized_keys;
  std::vector<std::string> env;  // "K=V"
  std::vector<std::string> entrypoint;  // entrypoint + cmd, may be empty
  std::vector<std::string> entrypoint_env;
  std::string workdir;
  /// JSON `hold`: boot only the identity-free part, then wait for IDENTITY
  /// (docs/guest-agent.md, "Held boot").
  bool hold = false;
};

/// Parses config.json. On error returns nullopt and sets *error naming the field.
std::optional<AgentConfig> ParseAgentConfig(std::string_view json, std::string* error);

/// Parses a dotted-quad IPv4 address into network byte order.
std::optional<uint32_t> ParseIpv4(std::string_view text);

}  // namespace banger::agent
