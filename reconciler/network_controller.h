// NetworkController: the engine's half of bridged networking. It turns the
// recorded networks and leases into host state through a NetworkDriver:
// bridges, one tap per sandbox, the `inet banger` nftables table (NAT,
// isolation, published ports), and the peers every guest lists in its
// /etc/hosts. Host-wide steps run under one lock (<locks>/network.lock) so
// concurrent applies and watchers never interleave them; leases are unique by
// the database's constraints. docs/networking.md describes the result.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file_lock.h"
#include "base/status.h"
#include "reconciler/plan.h"
#include "reconciler/ports.h"
#include "state/state_store.h"

namespace banger {

/// Interface names and the MAC of a sandbox, derived so that they are stable.
std::string BridgeNameFor(const std::string& network);   // "bgr-default", "bgr-<hash>" when long
std::string TapNameFor(const std::string& sandbox_id);   // "bt-<12 hex>" (IFNAMSIZ)
std::string MacFor(const std::string& network, const std::string& sandbox);  // "02:xx:xx:xx:xx:xx"

/// Where implicit and undeclared-subnet networks are placed: the first /24 of
/// this pool that overlaps no route of the host and no other banger network.
inline constexpr char kSubnetPool[] = "10.213.0.0/16";

/// What Repair found and did.
struct NetworkRepairReport {
  std::vector<std::string> repaired;         // human-readable, one per fix
  /// Running sandboxes whose tap vanished: their VM lost its NIC for good and
  /// must be restarted (the engine marks them failed with this reason).
  std::vector<std::pair<std::string, std::string>> lost;  // sandbox, reason
};

class NetworkController {
 public:
  /// `driver` may be null: bridged sandboxes then fail with a clear error.
  NetworkController(StateStore& store, NetworkDriver* driver, Clock& clock, std::filesystem::path locks_dir);

  bool Available() const { return driver_ != nullptr; }

  /// Carries out one planned network change (create, update, replace, delete).
  Status Apply(const NetworkChange& change);

  /// Everything a bridged sandbox needs before its VM starts: its network
  /// (the implicit default one is created on first use), a lease (kept for
  /// the sandbox's life), the bridge, its tap and the rules.
  Result<NetworkAttachment> Attach(const SandboxRecord& record, const SandboxSpec& spec);

  /// Removes a sandbox from its network: tap, lease, its rules; an implicit
  /// network left without sandboxes goes too. Returns the network it left
  /// ("" when it held no lease). Touches nothing on the host for a sandbox
  /// that holds no lease and is not bridged.
  Result<std::string> Detach(const SandboxRecord& record);

  /// Re-renders the nftables table from the state and loads it if it differs.
  Status SyncRules();

  /// The /etc/hosts entries `sandbox` should see (every other sandbox of its
  /// network, as NAME and NAME.banger; none on an isolated network).
  Result<std::vector<HostEntry>> HostsFor(const std::string& network, const std::string& sandbox);

  /// Sandboxes sharing `network`, for pushing new /etc/hosts entries.
  Result<std::vector<std::string>> Members(const std::string& network);

  /// Drift repair for `banger reconcile` and every watch pass: recreates
  /// missing bridges, re-enslaves taps, restores lost leases of recorded
  /// sandboxes, reloads a flushed or edited table.
  Result<NetworkRepairReport> Repair();

  /// The rules the state calls for (exposed for tests and `banger network`).
  Result<NetworkRules> DesiredRules();

 private:
  struct Guard {
    std::unique_lock<std::mutex> local;
    FileLock file;
  };
  Result<Guard> Lock();
  Result<NetworkRecord> EnsureNetworkRecord(const std::string& name);
  Result<NetworkRecord> CreateRecord(const std::string& name, const NetworkSpecDoc& spec, const std::string& owner,
                                     bool declared);
  Result<std::string> ChooseSubnet(const std::string& network);
  BridgeConfig BridgeOf(const NetworkRecord& rec) const;
  Status RequireDriver() const;
  Status SyncRulesLocked();
  Status DetachLocked(const std::string& sandbox, const std::string& tap);

  StateStore& store_;
  NetworkDriver* driver_;
  Clock& clock_;
  std::filesystem::path lock_path_;
  std::mutex mu_;
};

}  // namespace banger
