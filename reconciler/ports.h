// The engine's ports to the outside world: VMs (SandboxRuntime), images and
// kernels (ArtifactStore), and progress output (EventSink). Real adapters are
// built in host/ (host::Host); tests use the fakes in tests/support/.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"
#include "spec/sandbox_spec.h"
#include "state/state_store.h"

namespace banger {

/// One line of a guest's /etc/hosts: a peer sandbox and the names it answers to.
struct HostEntry {
  std::string address;
  std::vector<std::string> names;   // "db", "db.banger"
  bool operator==(const HostEntry&) const = default;
};

/// A sandbox's place on a bridged network, decided by the engine (leased
/// address, tap created beforehand) and handed to the runtime at boot.
struct NetworkAttachment {
  std::string network;       // banger network name
  std::string bridge;        // host bridge interface
  std::string tap;           // host tap interface, created before Boot
  std::string mac;           // guest MAC ("02:..."), deterministic per sandbox
  std::string address;       // guest IPv4
  int prefix = 24;
  std::string gateway;       // the bridge's address
  std::vector<std::string> dns;
  std::vector<HostEntry> hosts;  // every other sandbox of the network
};

/// A persistent volume attached to a boot (spec.volumes; docs/volumes.md).
struct VolumeAttachment {
  std::string name;          // volume name
  std::string path;          // the ext4 image file on the host
  std::string mount_path;    // where the guest agent mounts it
  /// The virtio-blk serial the guest finds the disk by (at most 20 bytes).
  std::string serial;
  bool operator==(const VolumeAttachment&) const = default;
};

struct BootRequest {
  SandboxRecord record;      // id, name, runtime_dir (may be empty on first boot)
  SandboxSpec spec;
  ImageRecord image;
  KernelRecord kernel;
  bool fresh_disk = true;    // false on restart: keep the sandbox's writable disk
  /// Set for network.mode bridged: boot with a NIC on `tap`.
  std::optional<NetworkAttachment> network;
  /// Persistent volumes, attached as extra disks and mounted by the agent.
  std::vector<VolumeAttachment> volumes;
};

struct BootResult {
  std::string hypervisor;    // "qemu", "firecracker", "fake"
  ProcessIdentity process;
  std::string runtime_dir;
  std::string disk_path;
  std::string address;       // guest IP, if networked
  /// How it started (docs/snapshots.md): "boot" or "restored from template <short hash>".
  std::string start = "boot";
  /// Why a sandbox that could have been restored from a template was booted
  /// instead (a failed restore, a template that could not be built); empty
  /// otherwise. The engine records it as a warning event.
  std::string start_note;
  /// The guest agent has already answered (a restore's IDENTITY_ACK is its
  /// HELLO): the engine does not wait for it again.
  bool agent_answered = false;
};

struct RuntimeObservation {
  bool alive = false;        // VMM process with the recorded identity exists
  bool responsive = false;   // its control socket answers
  std::string detail;        // why not, for users
};

/// Boots and manages sandbox VMs (a hypervisor plus its guest agent channel).
class SandboxRuntime {
 public:
  virtual ~SandboxRuntime() = default;
  virtual std::string_view Kind() const = 0;
  /// FailedPrecondition explaining what is missing when VMs cannot run here.
  virtual Status CheckAvailable() = 0;
  virtual Result<BootResult> Boot(const BootRequest& request) = 0;
  /// Waits for the guest agent's hello.
  virtual Status WaitAgent(const SandboxRecord& record, std::chrono::milliseconds timeout) = 0;
  /// Runs argv in the guest (non-interactive).
  virtual Result<CommandOutput> Exec(const SandboxRecord& record,
                                     const std::vector<std::string>& argv,
                                     std::chrono::milliseconds timeout) = 0;
  virtual RuntimeObservation Inspect(const SandboxRecord& record) = 0;
  /// Graceful shutdown with a deadline, then force. Keeps the disk. OK if stopped.
  virtual Status Stop(const SandboxRecord& record, std::chrono::milliseconds grace) = 0;
  /// Stops and removes every process, socket, disk and directory. OK if gone.
  virtual Status Destroy(const SandboxRecord& record) = 0;
  /// Replaces the banger-managed block of the running guest's /etc/hosts
  /// with `hosts` (peers come and go while it runs).
  virtual Status UpdateHosts(const SandboxRecord& record, const std::vector<HostEntry>& hosts) = 0;
  /// Removes what interrupted runs left that no sandbox owns (a template's
  /// build VM, staging dirs). Best effort; OK when there is nothing.
  virtual Status CleanUpAbandoned() { return OkStatus(); }
  /// How a VM of `spec` would start (PlanOptions::start_for): "boot", or a
  /// restore from a template when the runtime has them. `image`/`kernel`:
  /// the local artifacts when present (a template is found by their
  /// identity), else null. An error when spec.start cannot be honoured.
  virtual Result<std::string> DescribeStart(const SandboxSpec& spec, const ImageRecord* image,
                                            const KernelRecord* kernel) {
    (void)image;
    (void)kernel;
    if (spec.start == StartMode::kSnapshot) {
      return FailedPrecondition("the " + std::string(Kind()) + " runtime cannot start sandboxes from templates");
    }
    return std::string("boot");
  }
};

/// Ships a sandbox's spec.workspace (a host git repository) into its running
/// guest (workspace/workspace.h implements it over the agent's @banger/untar).
class WorkspaceShipper {
 public:
  virtual ~WorkspaceShipper() = default;
  /// REQUIRES: spec.workspace is set and the guest agent answers.
  virtual Status Ship(const SandboxRecord& record, const SandboxSpec& spec) = 0;
  /// The sandbox is gone: drops what was recorded about its shipment.
  virtual void Forget(const std::string& /*sandbox*/) {}
};

/// A banger bridge as the host should have it.
struct BridgeConfig {
  std::string network;       // banger network name, for messages
  std::string bridge;        // interface name ("bgr-default")
  std::string subnet;        // "10.213.0.0/24"
  std::string gateway;       // the bridge's own address ("10.213.0.1")
  int prefix = 24;
  bool nat = true;           // masquerade traffic from the subnet leaving the host
  bool isolated = false;     // sandboxes of this network cannot reach each other
  bool operator==(const BridgeConfig&) const = default;
};

/// A sandbox's tap, enslaved to its network's bridge.
struct TapConfig {
  std::string tap;
  std::string bridge;
  bool isolated = false;     // bridge port isolation (the network's `isolated`)
  bool operator==(const TapConfig&) const = default;
};

/// A published port: DNAT from host_address:host_port to guest_address:guest_port.
struct PublishedPort {
  std::string sandbox;
  std::string protocol = "tcp";        // "tcp" | "udp"
  std::string host_address = "127.0.0.1";  // "0.0.0.0": every local address
  uint16_t host_port = 0;
  std::string guest_address;
  uint16_t guest_port = 0;
  std::string bridge;                  // the guest's bridge (for loopback SNAT)
  bool operator==(const PublishedPort&) const = default;
};

/// Everything the `inet banger` nftables table holds, rendered from the state.
struct NetworkRules {
  std::vector<BridgeConfig> bridges;   // sorted by bridge name
  std::vector<PublishedPort> ports;    // sorted by (host_address, protocol, host_port, sandbox)
  bool operator==(const NetworkRules&) const = default;
};

/// Puts `rules` in the order documented above (the order rules are rendered in).
inline void SortNetworkRules(NetworkRules& rules) {
  std::sort(rules.bridges.begin(), rules.bridges.end(),
            [](const BridgeConfig& a, const BridgeConfig& b) { return a.bridge < b.bridge; });
  std::sort(rules.ports.begin(), rules.ports.end(), [](const PublishedPort& a, const PublishedPort& b) {
    return std::tie(a.host_address, a.protocol, a.host_port, a.sandbox) <
           std::tie(b.host_address, b.protocol, b.host_port, b.sandbox);
  });
}

/// What the host has of one interface.
struct LinkObservation {
  std::string name;
  std::string kind;          // "bridge", "tun", ... ("" when unknown)
  std::string master;        // bridge it is enslaved to, "" if none
  bool up = false;
  bool isolated = false;     // bridge port isolation flag
  std::vector<std::string> addresses;  // IPv4 "a.b.c.d/N"
};

/// The host side of bridged networking: bridges, taps and the `inet banger`
/// nftables table, all inside one network namespace (the host's, or the one
/// BANGER_NETNS names). Every method is idempotent and checks before it acts;
/// errors name the interface or rule that failed. The real driver is
/// network/host_driver.cc; unit tests use FakeNetworkDriver.
class NetworkDriver {
 public:
  virtual ~NetworkDriver() = default;
  /// FailedPrecondition saying what to do when bridged networking cannot
  /// work here (no CAP_NET_ADMIN, no ip/nft, no /dev/net/tun, missing netns).
  virtual Status CheckAvailable() = 0;
  /// The network namespace everything is done in ("" = the host's).
  virtual std::string Namespace() const = 0;
  /// Creates or repairs the bridge: present, up, holding gateway/prefix,
  /// forwarding enabled on it.
  virtual Status EnsureBridge(const BridgeConfig& bridge) = 0;
  /// Removes the bridge. OK if absent.
  virtual Status DeleteBridge(const std::string& bridge) = 0;
  /// Creates or repairs the tap: present, enslaved to its bridge, up, with the
  /// isolation flag as given.
  virtual Status EnsureTap(const TapConfig& tap) = 0;
  /// Removes the tap. OK if absent.
  virtual Status DeleteTap(const std::string& tap) = 0;
  /// Replaces table `inet banger` with exactly `rules`, atomically (one nft
  /// transaction). With no bridges and no ports the table is removed.
  virtual Status ApplyRules(const NetworkRules& rules) = 0;
  /// Whether the live table is the one ApplyRules(rules) writes (false when
  /// it is missing, flushed or edited).
  virtual Result<bool> RulesCurrent(const NetworkRules& rules) = 0;
  /// Every interface of the namespace, by name.
  virtual Result<std::map<std::string, LinkObservation>> ObserveLinks() = 0;
  /// IPv4 prefixes the namespace routes (except the default route), so a
  /// default subnet can avoid them.
  virtual Result<std::vector<std::string>> RoutedPrefixes() = 0;
  /// Nameservers a guest can use (the host's, minus loopback ones).
  virtual std::vector<std::string> GuestResolvers() = 0;
};

struct Progress {
  std::string sandbox;
  std::string what;          // "pull image busybox"
  uint64_t done = 0;
  uint64_t total = 0;        // 0: unknown
};

/// Images and kernels, pulled on demand.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;
  virtual bool ImagePresent(const std::string& name) = 0;
  virtual bool KernelPresent(const std::string& name) = 0;
  /// Returns the local artifact, pulling it first if needed. Concurrent calls
  /// for one name pull it once.
  virtual Result<ImageRecord> EnsureImage(const std::string& name,
                                          const std::function<void(uint64_t, uint64_t)>& progress) = 0;
  virtual Result<KernelRecord> EnsureKernel(const std::string& name,
                                            const std::function<void(uint64_t, uint64_t)>& progress) = 0;
  /// The kernel used when a spec names none.
  virtual std::string DefaultKernel() const = 0;
};

/// What a new volume is built from.
struct VolumeBuild {
  std::string sandbox;
  std::string name;
  uint64_t size_bytes = 0;
  /// seedFrom image: the image's root disk and the directory in it to copy.
  std::string seed_rootfs;   // "" for an empty volume
  std::string seed_path;     // the volume's mountPath
};

/// What a seeded volume found in the image.
struct BuiltVolume {
  std::string path;          // the published ext4 file
  bool seed_found = true;    // false: the image has nothing at seed_path (volume left empty)
};

/// Volume files on the host: ext4 images below <state>/volumes/<sandbox>/.
/// The real one is host/volume_files.cc; unit tests use FakeVolumeFiles.
class VolumeFiles {
 public:
  virtual ~VolumeFiles() = default;
  /// The file a volume lives in (no I/O).
  virtual std::string PathOf(const std::string& sandbox, const std::string& name) const = 0;
  /// Builds the volume under a temporary name and renames it into place, so
  /// an interruption leaves either nothing or a whole volume; a leftover
  /// temporary (or an unrecorded published file) is replaced.
  virtual Result<BuiltVolume> Create(const VolumeBuild& build) = 0;
  /// Grows the file to `size_bytes` (sparse; the guest grows the file
  /// system at its next mount). Never shrinks.
  virtual Status Grow(const std::string& path, uint64_t size_bytes) = 0;
  /// Removes the file (and its sandbox's directory when empty). OK if gone.
  virtual Status Remove(const std::string& path) = 0;
};

/// Receives engine progress for display. Called from worker threads; must be
/// thread-safe.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void StepStarted(const std::string& sandbox, const std::string& step) = 0;
  virtual void StepFinished(const std::string& sandbox, const std::string& step,
                            const Status& status, std::chrono::milliseconds took) = 0;
  virtual void OnProgress(const Progress& progress) = 0;
  virtual void Message(const std::string& sandbox, const std::string& text) = 0;
};

/// An EventSink that drops everything.
class NullEventSink final : public EventSink {
 public:
  void StepStarted(const std::string&, const std::string&) override {}
  void StepFinished(const std::string&, const std::string&, const Status&,
                    std::chrono::milliseconds) override {}
  void OnProgress(const Progress&) override {}
  void Message(const std::string&, const std::string&) override {}
};

}  // namespace banger
