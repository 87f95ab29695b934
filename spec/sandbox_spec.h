// The Sandbox spec: the user's declaration of one microVM sandbox, as parsed
// from YAML. Values here are already validated and normalised (sizes in
// bytes, durations in milliseconds); see docs/spec-reference.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace banger {

inline constexpr char kApiVersion[] = "banger.dev/v1";
inline constexpr char kKindSandbox[] = "Sandbox";
inline constexpr char kKindNetwork[] = "Network";
/// The network a bridged sandbox joins when it names none; it exists without
/// being declared (docs/networking.md).
inline constexpr char kDefaultNetwork[] = "default";

/// Where a value came from in the user's files (1-based line and column).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  bool operator==(const SourceLocation&) const = default;
};

/// bridged: a tap on a banger bridge, a leased address (docs/networking.md).
/// user: QEMU's user-mode NAT (no host interfaces; "nat" is its old name).
/// isolated: user mode without outbound access. none: no NIC.
enum class NetworkMode { kBridged, kUser, kIsolated, kNone };
enum class Protocol { kTcp, kUdp };
enum class RestartPolicy { kAlways, kOnFailure, kNever };
enum class HypervisorKind { kAuto, kQemu, kFirecracker };
/// How a VM starts (docs/snapshots.md): auto restores a template of the
/// sandbox's boot identity when the provider supports it (building it on the
/// first start), boot always boots cold, snapshot requires a template.
enum class StartMode { kAuto, kBoot, kSnapshot };

inline constexpr char kDefaultPortAddress[] = "127.0.0.1";

struct PortMapping {
  uint16_t host = 0;
  uint16_t guest = 0;
  Protocol protocol = Protocol::kTcp;
  std::string address = kDefaultPortAddress;  // host address it is published on
  bool operator==(const PortMapping&) const = default;
};

struct NetworkSpec {
  NetworkMode mode = NetworkMode::kBridged;
  std::string name = kDefaultNetwork;  // bridged: the network joined
  std::string address;                 // bridged: fixed IPv4, "" = leased
  std::vector<PortMapping> ports;
  bool operator==(const NetworkSpec&) const = default;
};

struct FileSpec {
  std::string path;                  // absolute path in the guest
  std::optional<std::string> content;  // inline content, or
  std::optional<std::string> source;   // host path (resolved relative to the spec file)
  std::string source_sha256;           // sha256 hex of `source`'s content when loaded; "" for content
  uint32_t mode = 0644;
  bool operator==(const FileSpec&) const = default;
};

struct ReadinessSpec {
  std::vector<std::string> command;  // argv run in the guest; empty: agent hello only
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  bool operator==(const ReadinessSpec&) const = default;
};

/// spec.volumes[].seedFrom: what a new volume starts with (docs/volumes.md).
enum class VolumeSeed { kEmpty, kImage };

/// A persistent ext4 disk owned by the sandbox: created on first apply, kept
/// across restart and replace, mounted at mount_path on every boot.
struct VolumeSpec {
  std::string name;        // DNS-label-like, unique within the sandbox
  std::string mount_path;  // absolute, not "/", unique
  uint64_t size_bytes = 0;
  VolumeSeed seed_from = VolumeSeed::kEmpty;
  bool operator==(const VolumeSpec&) const = default;
};

/// tracked: the files at HEAD plus uncommitted changes (and untracked,
/// non-ignored files when include_untracked). full: the same working tree
/// plus the whole .git (history). docs/workspaces.md.
enum class WorkspaceMode { kTracked, kFull };
inline constexpr char kDefaultWorkspacePath[] = "/root/work";

/// spec.workspace: a host git repository shipped into the guest when the
/// sandbox is created (and by `banger workspace sync`).
struct WorkspaceSpec {
  std::string source;                     // host path (resolved relative to the spec file)
  std::string path = kDefaultWorkspacePath;  // absolute directory in the guest
  WorkspaceMode mode = WorkspaceMode::kTracked;
  bool include_untracked = false;
  bool operator==(const WorkspaceSpec&) const = default;
};

struct SandboxSpec {
  // metadata
  std::string name;
  std::map<std::string, std::string> labels;
  // spec
  std::string image;                  // catalog name or OCI reference
  std::string kernel;                 // empty: configured default
  uint32_t cpus = 1;
  uint64_t memory_bytes = 512ull << 20;
  uint64_t disk_bytes = 0;            // 0: derived from the image
  NetworkSpec network;
  std::vector<std::string> ssh_authorized_keys;
  std::map<std::string, std::string> env;
  std::vector<FileSpec> files;
  std::vector<std::string> provision;  // shell command lines, run once after first boot
  ReadinessSpec readiness;
  RestartPolicy restart_policy = RestartPolicy::kAlways;
  HypervisorKind hypervisor = HypervisorKind::kAuto;
  StartMode start = StartMode::kAuto;
  std::vector<VolumeSpec> volumes;     // sorted by name (NormalizeSpec)
  std::optional<WorkspaceSpec> workspace;

  bool operator==(const SandboxSpec&) const = default;
};

/// A parsed spec plus where it came from.
struct SpecDocument {
  SandboxSpec spec;
  SourceLocation location;  // of the document's start (the `apiVersion` line)
  /// Where some fields were written, by canonical path ("spec.hypervisor"),
  /// for errors found after loading (the plan's host checks).
  std::map<std::string, SourceLocation> field_locations;
  /// field_locations[path] if recorded, else `location`.
  const SourceLocation& LocationOf(const std::string& path) const {
    auto it = field_locations.find(path);
    return it == field_locations.end() ? location : it->second;
  }
};

/// A `kind: Network` document: a bridge, its subnet and its policy.
struct NetworkSpecDoc {
  std::string name;                     // DNS label; bridge names derive from it
  std::map<std::string, std::string> labels;
  std::string subnet;                   // "10.213.5.0/24"; "" = chosen at apply
  bool nat = true;                      // masquerade outbound traffic
  bool isolated = false;                // sandboxes of it cannot reach each other
  bool operator==(const NetworkSpecDoc&) const = default;
};

struct NetworkDocument {
  NetworkSpecDoc spec;
  SourceLocation location;
};

std::string_view ToString(NetworkMode m);
std::string_view ToString(Protocol p);
std::string_view ToString(RestartPolicy p);
std::string_view ToString(HypervisorKind k);
std::string_view ToString(StartMode m);
std::string_view ToString(VolumeSeed s);
std::string_view ToString(WorkspaceMode m);

}  // namespace banger
