#include "reconciler/network_controller.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "base/failpoint.h"
#include "base/files.h"
#include "base/ipv4.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "reconciler/network_plan.h"
#include "spec/loader.h"

namespace banger {
namespace {

constexpr char kBridgePrefix[] = "bgr-";
constexpr size_t kIfNameMax = 15;  // IFNAMSIZ - 1

}  // namespace

std::string BridgeNameFor(const std::string& network) {
  std::string name = kBridgePrefix + network;
  if (name.size() <= kIfNameMax) return name;
  return kBridgePrefix + Sha256Hex("network:" + network).substr(0, kIfNameMax - 4);
}

std::string TapNameFor(const std::string& sandbox_id) {
  std::string id = StartsWith(sandbox_id, "sb-") ? sandbox_id.substr(3) : Sha256Hex(sandbox_id);
  return "bt-" + id.substr(0, kIfNameMax - 3);
}

std::string MacFor(const std::string& network, const std::string& sandbox) {
  std::string h = Sha256Hex("mac:" + network + "/" + sandbox);
  std::string mac = "02";
  for (int i = 0; i < 5; ++i) mac += ":" + h.substr(i * 2, 2);
  return mac;
}

NetworkController::NetworkController(StateStore& store, NetworkDriver* driver, Clock& clock,
                                     std::filesystem::path locks_dir)
    : store_(store), driver_(driver), clock_(clock) {
  if (!locks_dir.empty()) lock_path_ = locks_dir / "network.lock";
}

Status NetworkController::RequireDriver() const {
  if (driver_ == nullptr) {
    return FailedPrecondition(
        "bridged networking is not available in this banger (no network driver); use network.mode: user");
  }
  return OkStatus();
}

Result<NetworkController::Guard> NetworkController::Lock() {
  Guard g{std::unique_lock<std::mutex>(mu_), FileLock()};
  if (lock_path_.empty()) return g;
  BANGER_RETURN_IF_ERROR(MakeDirs(lock_path_.parent_path(), 0700));
  auto lock = FileLock::Acquire(lock_path_, "network", clock_, clock_.SteadyNow() + std::chrono::minutes(2));
  if (!lock) return lock.error().WithContext("host network lock");
  g.file = std::move(*lock);
  return g;
}

BridgeConfig NetworkController::BridgeOf(const NetworkRecord& rec) const {
  NetworkSpecDoc spec = RecordedNetworkSpec(rec);
  BridgeConfig b;
  b.network = rec.name;
  b.bridge = rec.bridge;
  b.subnet = rec.subnet;
  b.gateway = rec.gateway;
  if (auto p = ParseIpv4Prefix(rec.subnet); p.ok()) b.prefix = p->length;
  b.nat = spec.nat;
  b.isolated = spec.isolated;
  return b;
}

Result<std::string> NetworkController::ChooseSubnet(const std::string& network) {
  std::vector<Ipv4Prefix> taken;
  BANGER_ASSIGN_OR_RETURN(std::vector<std::string> routes, driver_->RoutedPrefixes());
  for (const auto& r : routes) {
    if (auto p = ParseIpv4Prefix(r, /*strict=*/false); p.ok() && p->length > 0) taken.push_back(*p);
  }
  BANGER_ASSIGN_OR_RETURN(auto networks, store_.ListNetworks());
  for (const auto& n : networks) {
    if (auto p = ParseIpv4Prefix(n.subnet); p.ok()) taken.push_back(*p);
  }
  Ipv4Prefix pool = *ParseIpv4Prefix(kSubnetPool);
  auto free = FirstFreePrefix(pool, 24, taken);
  if (!free) {
    return ResourceExhausted("no free /24 left in " + std::string(kSubnetPool) + " for network " + network +
                             " (every one overlaps a route or another network); give it spec.subnet");
  }
  return ToString(*free);
}

Result<NetworkRecord> NetworkController::CreateRecord(const std::string& name, const NetworkSpecDoc& spec,
                                                      const std::string& owner, bool declared) {
  NetworkRecord rec;
  rec.name = name;
  rec.owner = owner;
  rec.declared = declared;
  rec.spec_json = CanonicalNetworkJson(spec);
  rec.spec_hash = Sha256Hex(rec.spec_json);
  if (!spec.subnet.empty()) {
    rec.subnet = spec.subnet;
  } else {
    BANGER_ASSIGN_OR_RETURN(rec.subnet, ChooseSubnet(name));
  }
  Ipv4Prefix p = *ParseIpv4Prefix(rec.subnet);
  rec.gateway = ToString(p.At(1));
  rec.bridge = BridgeNameFor(name);
  BANGER_RETURN_IF_ERROR(store_.PutNetwork(rec));
  return store_.GetNetwork(name);
}

Result<NetworkRecord> NetworkController::EnsureNetworkRecord(const std::string& name) {
  auto rec = store_.GetNetwork(name);
  if (rec.ok() || rec.error().code() != StatusCode::kNotFound) return rec;
  if (name != kDefaultNetwork) {
    return FailedPrecondition("network \"" + name + "\" does not exist; declare it with a kind: Network document");
  }
  NetworkSpecDoc spec;
  spec.name = name;
  return CreateRecord(name, spec, "", /*declared=*/false);
}

Status NetworkController::Apply(const NetworkChange& change) {
  BANGER_RETURN_IF_ERROR(RequireDriver());
  BANGER_RETURN_IF_ERROR(driver_->CheckAvailable());
  BANGER_ASSIGN_OR_RETURN(Guard guard, Lock());
  auto ctx = [&](Status s) { return s.WithContext("network " + change.name); };
  switch (change.action) {
    case Action::kNoOp:
    case Action::kRestart:
      return OkStatus();
    case Action::kCreate:
    case Action::kUpdate:
    case Action::kReplace: {
      NetworkSpecDoc spec;
      spec.name = change.name;
      if (change.desired) spec = change.desired->spec;
      auto existing = store_.GetNetwork(change.name);
      if (!existing.ok() && existing.error().code() != StatusCode::kNotFound) return ctx(existing.error());
      if (existing.ok() && change.action == Action::kReplace) {
        BANGER_RETURN_IF_ERROR(ctx(driver_->DeleteBridge(existing->bridge)));
      }
      NetworkRecord rec;
      if (existing.ok() && change.action != Action::kReplace) {
        rec = *existing;
        rec.owner = change.implicit ? rec.owner : change.owner;
        rec.declared = rec.declared || !change.implicit;
        rec.spec_json = CanonicalNetworkJson(spec);
        rec.spec_hash = Sha256Hex(rec.spec_json);
        BANGER_RETURN_IF_ERROR(ctx(store_.PutNetwork(rec)));
      } else {
        auto created = CreateRecord(change.name, spec, change.implicit ? "" : change.owner, !change.implicit);
        if (!created) return ctx(created.error());
        rec = *created;
      }
      BANGER_RETURN_IF_ERROR(ctx(driver_->EnsureBridge(BridgeOf(rec))));
      // The isolation flag lives on every tap of the network.
      BANGER_ASSIGN_OR_RETURN(auto leases, store_.ListLeases(rec.name));
      BANGER_ASSIGN_OR_RETURN(auto links, driver_->ObserveLinks());
      for (const auto& l : leases) {
        auto sb = store_.GetSandbox(l.sandbox);
        if (!sb.ok()) continue;
        std::string tap = TapNameFor(sb->id);
        if (!links.count(tap)) continue;  // created at its next boot
        BANGER_RETURN_IF_ERROR(ctx(driver_->EnsureTap({tap, rec.bridge, BridgeOf(rec).isolated})));
      }
      return ctx(SyncRulesLocked());
    }
    case Action::kDelete: {
      auto rec = store_.GetNetwork(change.name);
      if (!rec.ok()) return rec.error().code() == StatusCode::kNotFound ? OkStatus() : ctx(rec.error());
      BANGER_RETURN_IF_ERROR(ctx(store_.DeleteNetwork(change.name)));
      BANGER_RETURN_IF_ERROR(ctx(driver_->DeleteBridge(rec->bridge)));
      return ctx(SyncRulesLocked());
    }
  }
  return OkStatus();
}

Result<NetworkAttachment> NetworkController::Attach(const SandboxRecord& record, const SandboxSpec& spec) {
  BANGER_RETURN_IF_ERROR(RequireDriver());
  BANGER_RETURN_IF_ERROR(driver_->CheckAvailable());
  BANGER_ASSIGN_OR_RETURN(Guard guard, Lock());
  BANGER_ASSIGN_OR_RETURN(NetworkRecord net, EnsureNetworkRecord(spec.network.name));
  Ipv4Prefix prefix = *ParseIpv4Prefix(net.subnet);
  LeaseRequest q;
  q.network = net.name;
  q.sandbox = record.name;
  q.mac = MacFor(net.name, record.name);
  q.fixed_address = spec.network.address;
  q.first = prefix.At(2).value;
  q.last = prefix.Broadcast().value - 1;
  if (!q.fixed_address.empty()) {
    auto a = ParseIpv4(q.fixed_address);
    if (!a.ok() || !prefix.Contains(*a)) {
      return InvalidArgument("spec.network.address " + q.fixed_address + " is outside network " + net.name + " (" +
                             net.subnet + ")");
    }
  }
  BANGER_ASSIGN_OR_RETURN(LeaseRecord lease, store_.AcquireLease(q));
  BANGER_FAILPOINT("network.lease.after_acquire");
  BridgeConfig bridge = BridgeOf(net);
  NetworkAttachment a;
  a.network = net.name;
  a.bridge = net.bridge;
  a.tap = TapNameFor(record.id);
  a.mac = lease.mac.empty() ? q.mac : lease.mac;
  a.address = lease.address;
  a.prefix = prefix.length;
  a.gateway = net.gateway;
  a.dns = driver_->GuestResolvers();
  if (a.dns.empty()) a.dns.push_back(net.gateway);
  Status s = driver_->EnsureBridge(bridge);
  if (s.ok()) s = driver_->EnsureTap({a.tap, net.bridge, bridge.isolated});
  if (s.ok()) s = failpoint::Hit("network.tap.after_create");
  if (s.ok()) s = SyncRulesLocked();
  if (!s.ok()) return s.WithContext("network " + net.name);
  guard = Guard{};  // HostsFor reads only the database
  BANGER_ASSIGN_OR_RETURN(a.hosts, HostsFor(net.name, record.name));
  return a;
}

Result<std::string> NetworkController::Detach(const SandboxRecord& record) {
  std::string network;
  if (auto lease = store_.GetLease(record.name); lease.ok()) {
    network = lease->network;
  } else if (lease.error().code() != StatusCode::kNotFound) {
    return lease.error();
  } else {
    // No lease: only a bridged sandbox whose lease row was lost can have left
    // a tap behind. Any other sandbox never touched the host's network, so
    // nothing is run (and nothing needs CAP_NET_ADMIN).
    auto spec = SpecFromCanonicalJson(record.spec_json);
    bool bridged = spec.ok() && spec->network.mode == NetworkMode::kBridged;
    if (!bridged || driver_ == nullptr || record.id.empty()) return network;
  }
  BANGER_RETURN_IF_ERROR(RequireDriver());
  BANGER_ASSIGN_OR_RETURN(Guard guard, Lock());
  BANGER_RETURN_IF_ERROR(DetachLocked(record.name, record.id.empty() ? "" : TapNameFor(record.id)));
  return network;
}

Status NetworkController::DetachLocked(const std::string& sandbox, const std::string& tap) {
  if (!tap.empty()) BANGER_RETURN_IF_ERROR(driver_->DeleteTap(tap));
  auto lease = store_.GetLease(sandbox);
  if (!lease.ok()) return lease.error().code() == StatusCode::kNotFound ? SyncRulesLocked() : lease.error();
  BANGER_RETURN_IF_ERROR(store_.ReleaseLease(sandbox));
  auto net = store_.GetNetwork(lease->network);
  if (net.ok() && !net->declared) {
    BANGER_ASSIGN_OR_RETURN(auto left, store_.ListLeases(net->name));
    if (left.empty()) {
      BANGER_RETURN_IF_ERROR(store_.DeleteNetwork(net->name));
      BANGER_RETURN_IF_ERROR(driver_->DeleteBridge(net->bridge));
    }
  }
  return SyncRulesLocked();
}

Result<NetworkRules> NetworkController::DesiredRules() {
  NetworkRules rules;
  BANGER_ASSIGN_OR_RETURN(auto networks, store_.ListNetworks());
  std::map<std::string, const NetworkRecord*> by_name;
  for (const auto& n : networks) {
    rules.bridges.push_back(BridgeOf(n));
    by_name[n.name] = &n;
  }
  BANGER_ASSIGN_OR_RETURN(auto leases, store_.ListLeases(""));
  for (const auto& l : leases) {
    auto rec = store_.GetSandbox(l.sandbox);
    if (!rec.ok()) continue;
    auto spec = SpecFromCanonicalJson(rec->spec_json);
    if (!spec.ok() || spec->network.mode != NetworkMode::kBridged) continue;
    auto net = by_name.find(l.network);
    for (const auto& p : spec->network.ports) {
      PublishedPort pp;
      pp.sandbox = l.sandbox;
      pp.protocol = std::string(ToString(p.protocol));
      pp.host_address = p.address;
      pp.host_port = p.host;
      pp.guest_address = l.address;
      pp.guest_port = p.guest;
      pp.bridge = net == by_name.end() ? "" : net->second->bridge;
      rules.ports.push_back(pp);
    }
  }
  SortNetworkRules(rules);
  return rules;
}

Status NetworkController::SyncRulesLocked() {
  BANGER_ASSIGN_OR_RETURN(NetworkRules rules, DesiredRules());
  BANGER_ASSIGN_OR_RETURN(bool current, driver_->RulesCurrent(rules));
  if (current) return OkStatus();
  return driver_->ApplyRules(rules);
}

Status NetworkController::SyncRules() {
  if (driver_ == nullptr) return OkStatus();
  BANGER_ASSIGN_OR_RETURN(Guard guard, Lock());
  return SyncRulesLocked();
}

Result<std::vector<HostEntry>> NetworkController::HostsFor(const std::string& network, const std::string& sandbox) {
  std::vector<HostEntry> out;
  auto net = store_.GetNetwork(network);
  if (!net.ok()) return net.error().code() == StatusCode::kNotFound ? Result<std::vector<HostEntry>>(out) : net.error();
  if (RecordedNetworkSpec(*net).isolated) return out;
  BANGER_ASSIGN_OR_RETURN(auto leases, store_.ListLeases(network));
  for (const auto& l : leases) {
    if (l.sandbox == sandbox) continue;
    out.push_back({l.address, {l.sandbox, l.sandbox + ".banger"}});
  }
  return out;
}

Result<std::vector<std::string>> NetworkController::Members(const std::string& network) {
  std::vector<std::string> out;
  BANGER_ASSIGN_OR_RETURN(auto leases, store_.ListLeases(network));
  for (const auto& l : leases) out.push_back(l.sandbox);
  return out;
}

Result<NetworkRepairReport> NetworkController::Repair() {
  NetworkRepairReport report;
  if (driver_ == nullptr) return report;
  BANGER_ASSIGN_OR_RETURN(auto networks, store_.ListNetworks());
  BANGER_ASSIGN_OR_RETURN(auto records, store_.ListSandboxes());
  BANGER_ASSIGN_OR_RETURN(auto leases, store_.ListLeases(""));
  bool bridged_sandbox = false;
  for (const auto& rec : records) {
    auto spec = SpecFromCanonicalJson(rec.spec_json);
    if (spec.ok() && spec->network.mode == NetworkMode::kBridged) bridged_sandbox = true;
  }
  if (networks.empty() && leases.empty() && !bridged_sandbox) return report;
  if (Status s = driver_->CheckAvailable(); !s.ok()) return s;
  BANGER_ASSIGN_OR_RETURN(Guard guard, Lock());

  // Lost leases: a recorded bridged sandbox with an address but no lease row.
  std::set<std::string> leased;
  for (const auto& l : leases) leased.insert(l.sandbox);
  for (const auto& rec : records) {
    if (rec.address.empty() || leased.count(rec.name)) continue;
    auto spec = SpecFromCanonicalJson(rec.spec_json);
    if (!spec.ok() || spec->network.mode != NetworkMode::kBridged) continue;
    auto net = store_.GetNetwork(spec->network.name);
    if (!net.ok()) continue;
    auto p = ParseIpv4Prefix(net->subnet);
    auto a = ParseIpv4(rec.address);
    if (!p.ok() || !a.ok() || !p->Contains(*a)) continue;
    Status s = store_.RestoreLease({net->name, rec.address, rec.name, MacFor(net->name, rec.name), 0});
    if (s.ok()) {
      report.repaired.push_back("restored the lease of " + rec.name + " (" + rec.address + ")");
    } else {
      spdlog::warn("network repair: {}", s.ToString());
    }
  }
  BANGER_ASSIGN_OR_RETURN(leases, store_.ListLeases(""));

  BANGER_ASSIGN_OR_RETURN(auto links, driver_->ObserveLinks());
  std::map<std::string, const NetworkRecord*> by_name;
  for (const auto& n : networks) {
    by_name[n.name] = &n;
    BridgeConfig b = BridgeOf(n);
    auto it = links.find(n.bridge);
    std::string prefix_text = n.gateway + "/" + std::to_string(b.prefix);
    bool healthy = it != links.end() && it->second.up &&
                   std::find(it->second.addresses.begin(), it->second.addresses.end(), prefix_text) !=
                       it->second.addresses.end();
    if (!healthy) {
      BANGER_RETURN_IF_ERROR(driver_->EnsureBridge(b).WithContext("network " + n.name));
      report.repaired.push_back(std::string(it == links.end() ? "recreated" : "repaired") + " bridge " + n.bridge +
                                " of network " + n.name);
    }
  }
  std::map<std::string, const SandboxRecord*> rec_by_name;
  for (const auto& r : records) rec_by_name[r.name] = &r;
  for (const auto& l : leases) {
    auto r = rec_by_name.find(l.sandbox);
    auto n = by_name.find(l.network);
    if (r == rec_by_name.end() || n == by_name.end()) continue;
    const SandboxRecord& rec = *r->second;
    bool running = rec.pid != 0 && (rec.phase == SandboxPhase::kReady || rec.phase == SandboxPhase::kBooting ||
                                     rec.phase == SandboxPhase::kUnknown);
    std::string tap = TapNameFor(rec.id);
    BridgeConfig b = BridgeOf(*n->second);
    auto it = links.find(tap);
    if (it == links.end()) {
      if (running) report.lost.emplace_back(rec.name, "its tap " + tap + " was deleted; the VM lost its network");
      continue;
    }
    if (it->second.master != b.bridge || !it->second.up || it->second.isolated != b.isolated) {
      BANGER_RETURN_IF_ERROR(driver_->EnsureTap({tap, b.bridge, b.isolated}).WithContext("sandbox " + rec.name));
      report.repaired.push_back("re-attached tap " + tap + " of " + rec.name + " to " + b.bridge);
    }
  }
  BANGER_ASSIGN_OR_RETURN(NetworkRules rules, DesiredRules());
  BANGER_ASSIGN_OR_RETURN(bool current, driver_->RulesCurrent(rules));
  if (!current) {
    BANGER_RETURN_IF_ERROR(driver_->ApplyRules(rules));
    report.repaired.push_back("reloaded the nftables table inet banger");
  }
  return report;
}

}  // namespace banger
