// Hypervisor: the narrow interface between the reconciler and whatever runs
// microVMs (QEMU, Firecracker). Every VM side effect goes through it, so the
// engine can be tested against a fake.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"
#include "providers/guest_config.h"

namespace banger {

/// A host port forwarded into the guest (user-mode networking).
struct HostForward {
  std::string protocol = "tcp";          // "tcp" | "udp"
  std::string host_address = "127.0.0.1";
  uint16_t host_port = 0;
  uint16_t guest_port = 0;
};

/// User-mode NAT networking (QEMU's slirp): no host interfaces, taps or
/// firewall rules are touched. The guest is 10.0.2.15/24, gateway 10.0.2.2,
/// DNS 10.0.2.3 (the constants below). `restrict` cuts the guest off from
/// everything but the forwarded ports.
struct UserNetwork {
  bool enabled = false;
  bool restrict = false;
  std::vector<HostForward> forwards;
};

/// The fixed addresses of user-mode networking: the provider hands the subnet,
/// gateway and DNS to the VMM; the guest agent configures the guest address
/// statically (the guest kernel has no IP autoconfiguration).
inline constexpr std::string_view kUserNetworkSubnet = "10.0.2.0/24";
inline constexpr std::string_view kUserNetworkGuestAddress = "10.0.2.15";
inline constexpr int kUserNetworkPrefix = 24;
inline constexpr std::string_view kUserNetworkGateway = "10.0.2.2";
inline constexpr std::string_view kUserNetworkDns = "10.0.2.3";

/// The guest side of user-mode networking, for GuestConfig::network.
inline GuestNetwork UserNetworkGuestAddress() {
  GuestNetwork n;
  n.address = std::string(kUserNetworkGuestAddress);
  n.prefix = kUserNetworkPrefix;
  n.gateway = std::string(kUserNetworkGateway);
  n.dns = {std::string(kUserNetworkDns)};
  return n;
}

/// A saved template: the VMM's device and memory state plus the disk state it
/// belongs to; immutable once published (docs/snapshots.md).
struct VmTemplateFiles {
  std::filesystem::path state_file;   // QEMU: zstd migration stream; Firecracker: snapshot file
  std::filesystem::path memory_file;  // Firecracker: guest memory file; QEMU: empty (in state_file)
  std::filesystem::path disk_layer;   // the disk as saved (QEMU: qcow2/raw layer; Firecracker: raw)
  std::filesystem::path kernel_path;  // the exact kernel and initrd the template booted
  std::filesystem::path initrd_path;  //   (QEMU restores need identical ROM/initrd sizes)
};

/// Everything needed to boot one sandbox's VM. Paths are absolute.
struct VmLaunchConfig {
  std::string sandbox_id;            // directory-safe id
  std::string name;                  // sandbox name (DNS label), used as hostname
  uint32_t cpus = 1;
  uint64_t memory_bytes = 0;
  std::filesystem::path runtime_dir;   // private dir for sockets, logs, overlay
  std::filesystem::path kernel_path;   // vmlinux or bzImage
  std::filesystem::path initrd_path;   // banger's initramfs for this kernel (BuildInitramfs);
                                       // the provider appends `guest` per sandbox
  std::filesystem::path base_disk;     // the image's rootfs.ext4 (read-only base)
  uint64_t disk_bytes = 0;             // size of the writable disk (0: base size)
  std::string kernel_cmdline_extra;    // appended to the provider's own args
  std::string tap_device;              // empty: no network
  std::string mac_address;
  /// What the guest agent sets up at boot (hostname, network, files, keys,
  /// entrypoint); passed in the per-sandbox initrd. hostname defaults to `name`.
  GuestConfig guest;
  UserNetwork user_network;
  /// Restart: keep an existing writable disk in runtime_dir instead of
  /// creating a fresh overlay (everything else in runtime_dir is recreated).
  bool keep_disk = false;
  /// Persistent volumes (raw ext4 files), attached as extra virtio-blk disks
  /// with these serials; the agent mounts them (GuestConfig::volumes).
  struct ExtraDisk {
    std::filesystem::path path;
    std::string serial;   // at most 20 bytes (virtio-blk's id)
  };
  std::vector<ExtraDisk> extra_disks;
  /// Start from this template instead of booting: a new writable disk on top
  /// of restore->disk_layer, the VMM state loaded, the VM resumed.
  std::optional<VmTemplateFiles> restore;
};

/// What a provider can tell about a VM it started.
struct VmObservation {
  bool process_alive = false;   // the VMM process with the recorded identity exists
  bool vmm_responsive = false;  // its control socket answered
  std::string detail;           // human-readable when something is off
};

/// What the provider recorded at boot; persisted in the state database.
struct VmHandle {
  ProcessIdentity process;
  std::filesystem::path runtime_dir;
  std::filesystem::path disk_path;      // writable disk the VM uses
  std::filesystem::path agent_socket;   // host end of the guest agent channel
  /// Set when agent_socket is a Firecracker vsock socket: the guest port the
  /// agent listens on (agent_protocol::kVsockPort), reached with the CONNECT
  /// handshake (ConnectAgent(AgentEndpoint), providers/agent_client.h).
  std::optional<uint32_t> agent_vsock_port;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual std::string_view Kind() const = 0;  // "qemu", "firecracker", "fake"

  /// Prepares the writable disk and starts the VM. Idempotent per runtime_dir:
  /// leftovers of an interrupted boot in runtime_dir are cleaned first.
  virtual Result<VmHandle> Boot(const VmLaunchConfig& config) = 0;

  /// Looks at a VM started earlier (possibly by another banger process).
  virtual VmObservation Inspect(const VmHandle& handle) = 0;

  /// Asks the guest to power off, waits up to `grace`, then forces. The disk
  /// and runtime dir stay. OK if already stopped.
  virtual Status Shutdown(const VmHandle& handle, std::chrono::milliseconds grace) = 0;

  /// Stops the VM if running and removes everything under runtime_dir. OK if
  /// already gone.
  virtual Status Destroy(const VmHandle& handle) = 0;

  virtual bool SupportsTemplates() const { return false; }
  /// Pauses the VM, writes its device/memory state and its disk layer into
  /// `dir` (an existing private staging directory), then stops the VM.
  virtual Result<VmTemplateFiles> SaveTemplate(const VmHandle& handle, const std::filesystem::path& dir) {
    (void)handle;
    (void)dir;
    return FailedPrecondition(std::string(Kind()) + " provider cannot save templates");
  }
};

}  // namespace banger
