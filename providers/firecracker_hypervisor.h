// Firecracker provider: boots sandboxes as Firecracker microVMs on KVM hosts
// (docs/firecracker.md). banger starts `firecracker --api-sock PATH` (or the
// `jailer`) detached, so it outlives banger, and configures it through the
// REST API (providers/firecracker_api.h): logger, metrics, machine-config,
// boot-source, drives, network-interfaces, vsock, InstanceStart. The guest
// agent is reached over Firecracker's vsock (a unix socket on the host with
// the `CONNECT <port>` handshake).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "providers/hypervisor.h"

namespace banger {

/// Firecracker's jailer (docs/firecracker.md, "Jailer"): chroot, uid/gid,
/// cgroup v2 limits and a network namespace.
struct FirecrackerJailer {
  bool enabled = false;
  std::string jailer_binary = "jailer";
  uint32_t uid = 0;
  uint32_t gid = 0;
  /// `ip netns` name the jailer joins (empty: banger's namespace).
  std::string netns;
  /// cgroup v2 limits the jailer applies (0: none); memory.max is the guest
  /// memory plus this overhead.
  uint64_t memory_overhead_bytes = 256ull << 20;
  bool memory_limit = true;
  uint64_t pids_max = 512;
};

struct FirecrackerOptions {
  std::string firecracker_binary = "firecracker";
  FirecrackerJailer jailer;
  /// Prepended to the argv without the jailer, e.g. {"ip", "netns", "exec", "ns1"}.
  std::vector<std::string> launcher_prefix;
  /// Each API request must be answered within this.
  std::chrono::milliseconds api_timeout{5000};
  /// The API socket must appear within this after the process started.
  std::chrono::milliseconds socket_timeout{10000};
  /// The guest's vsock CID (Firecracker's vsock is a unix socket per VM, so
  /// every VM may use the same one).
  uint32_t guest_cid = 3;
  std::string log_level = "Info";
};

/// Files the provider keeps in runtime_dir. API paths are given relative to
/// Firecracker's working directory (runtime_dir, or the jail's root), so a
/// snapshot restored in another directory finds its files.
struct FirecrackerRuntimeFiles {
  std::filesystem::path disk, initrd, api_socket, vsock_socket, console_log, vmm_log, metrics, kernel_ref,
      jail_base;
};
FirecrackerRuntimeFiles FirecrackerFilesFor(const std::filesystem::path& runtime_dir);

/// The virtio-blk serial Firecracker gives a drive: the decimal st_dev,
/// st_rdev and st_ino of its backing file, concatenated, at most 20 bytes
/// (there is no API field for it). The guest agent finds the root disk and
/// each volume by it.
Result<std::string> FirecrackerDiskSerial(const std::filesystem::path& file);

/// The API requests Boot sends after Firecracker started, in order: pairs of
/// (method + " " + path, JSON body). Pure given `serials` (the drives'
/// serials are computed by Boot). For tests and docs.
struct FirecrackerRequest {
  std::string method, path, body;
};
std::vector<FirecrackerRequest> BuildFirecrackerBootRequests(const VmLaunchConfig& config,
                                                             const FirecrackerOptions& options,
                                                             const std::string& kernel_path_for_vmm);

/// Finds the Firecracker (or jailer) process of `runtime_dir`, for a VM whose
/// identity was never recorded (banger interrupted between launch and record):
/// its command line names the runtime dir's API socket or jail, or its root
/// is the jail. NotFound otherwise.
Result<ProcessIdentity> RecoverFirecrackerProcess(const std::filesystem::path& runtime_dir);

/// The Firecracker provider. The host decides when to use it (ResolveProvider).
std::unique_ptr<Hypervisor> MakeFirecrackerHypervisor(CommandRunner& runner, Clock& clock,
                                                      FirecrackerOptions options);

}  // namespace banger
