// The real NetworkDriver: bridges, taps, sysctls and table `inet banger` on
// this host, driven through `ip`, `nft` and `sysctl` run by a CommandRunner
// (argv arrays, never a shell). Everything happens inside one network
// namespace: the host's, or a named one (`ip netns add NAME`, as BANGER_NETNS
// selects), so tests and cautious users never touch the host's own network.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "base/command_runner.h"
#include "reconciler/ports.h"

namespace banger::network {

/// Where the driver looks on the host. Tests point these at temporary files.
struct HostDriverOptions {
  std::filesystem::path proc_status = "/proc/self/status";  // CapEff
  std::filesystem::path tun_device = "/dev/net/tun";
  std::filesystem::path netns_dir = "/run/netns";          // named namespaces
  std::filesystem::path etc_dir = "/etc";                  // resolv.conf, netns/NS/resolv.conf
  /// systemd-resolved's upstream servers, used when resolv.conf names only a
  /// loopback stub.
  std::filesystem::path systemd_resolv_conf = "/run/systemd/resolve/resolv.conf";
  /// Deadline for each ip/nft/sysctl run; they answer in milliseconds, and a
  /// hung one must not stall the reconciler.
  std::chrono::milliseconds command_timeout{std::chrono::seconds(30)};
};

/// `netns` empty: the host's namespace. Otherwise the name of an existing
/// namespace: ip commands run as `ip -n NETNS ...`, nft and sysctl as
/// `ip netns exec NETNS nft|sysctl ...` (/proc/sys/net is per namespace).
/// `runner` must outlive the driver. Not thread-safe: the engine serialises
/// network changes.
std::unique_ptr<NetworkDriver> MakeHostNetworkDriver(CommandRunner& runner, std::string netns);
std::unique_ptr<NetworkDriver> MakeHostNetworkDriver(CommandRunner& runner, std::string netns,
                                                     HostDriverOptions options);

}  // namespace banger::network
