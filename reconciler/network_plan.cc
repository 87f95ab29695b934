#include "reconciler/network_plan.h"

#include <algorithm>
#include <map>
#include <set>

#include "base/ipv4.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "spec/loader.h"

namespace banger {
namespace {

std::string At(const SourceLocation& loc) {
  if (loc.file.empty()) return "";
  return loc.file + (loc.line > 0 ? ":" + std::to_string(loc.line) : "") + ": ";
}

/// The bridged network a sandbox will be on after the plan ("" if none).
struct Member {
  std::string sandbox;
  std::string network;
  std::string address;   // fixed address, "" when leased
  std::vector<PortMapping> ports;
  SourceLocation where;  // of its document (desired) or empty (recorded)
};

}  // namespace

NetworkSpecDoc RecordedNetworkSpec(const NetworkRecord& rec) {
  auto spec = NetworkSpecFromCanonicalJson(rec.spec_json);
  if (spec.ok()) return *spec;
  NetworkSpecDoc d;
  d.name = rec.name;
  return d;
}

FieldClass ClassifyNetworkField(std::string_view path) {
  if (path == "spec.subnet") return FieldClass::kReplace;
  return FieldClass::kInPlace;
}

std::string DescribeSubnet(const NetworkChange& change) {
  if (change.desired && !change.desired->spec.subnet.empty()) return change.desired->spec.subnet;
  if (change.current) return change.current->subnet;
  return "subnet chosen at apply";
}

void PlanNetworks(const std::vector<NetworkDocument>& desired_networks,
                  const std::vector<SpecDocument>& desired_sandboxes,
                  const std::vector<SandboxRecord>& observed_sandboxes, const NetworkObservations& observed,
                  const PlanOptions& options, Plan& plan) {
  std::map<std::string, const NetworkRecord*> recorded;
  for (const auto& n : observed.networks) recorded[n.name] = &n;
  std::map<std::string, const NetworkDocument*> declared;
  for (const auto& d : desired_networks) declared[d.spec.name] = &d;

  // Which sandboxes will exist, and on which network, once the plan is done.
  std::set<std::string> deleted;
  for (const auto& c : plan.changes) {
    if (c.action == Action::kDelete) deleted.insert(c.name);
  }
  std::map<std::string, Member> members;
  for (const auto& rec : observed_sandboxes) {
    if (deleted.count(rec.name)) continue;
    auto spec = SpecFromCanonicalJson(rec.spec_json);
    if (!spec.ok() || spec->network.mode != NetworkMode::kBridged) continue;
    members[rec.name] = Member{rec.name, spec->network.name, spec->network.address, spec->network.ports, {}};
  }
  for (const auto& doc : desired_sandboxes) {
    members.erase(doc.spec.name);
    if (doc.spec.network.mode != NetworkMode::kBridged) continue;
    members[doc.spec.name] = Member{doc.spec.name, doc.spec.network.name, doc.spec.network.address,
                                    doc.spec.network.ports, doc.location};
  }
  std::map<std::string, std::vector<std::string>> users;  // network -> sandboxes
  for (const auto& [name, m] : members) users[m.network].push_back(name);

  // Declared networks.
  for (const auto& doc : desired_networks) {
    NetworkChange c;
    c.name = doc.spec.name;
    c.owner = options.owner;
    c.desired = doc;
    c.desired_json = CanonicalNetworkJson(doc.spec);
    c.desired_hash = Sha256Hex(c.desired_json);
    auto it = recorded.find(c.name);
    if (it == recorded.end()) {
      c.action = Action::kCreate;
      c.reason = "new network, " + DescribeSubnet(c);
      plan.networks.push_back(std::move(c));
      continue;
    }
    const NetworkRecord& rec = *it->second;
    c.current = rec;
    if (rec.declared && !rec.owner.empty() && !options.owner.empty() && rec.owner != options.owner) {
      plan.errors.push_back(At(doc.location) + "network \"" + c.name + "\" is managed by " + DescribeOwner(rec.owner) +
                            ", not by " + DescribeOwner(options.owner) + "; declare it in one place only");
      continue;
    }
    NetworkSpecDoc before = RecordedNetworkSpec(rec);
    if (before.subnet.empty() && !rec.declared) before.subnet = doc.spec.subnet.empty() ? "" : rec.subnet;
    std::string before_json = CanonicalNetworkJson(before);
    c.diffs = DiffCanonicalSpecs(before_json, c.desired_json);
    bool subnet_moves = false;
    for (auto& d : c.diffs) {
      d.field_class = ClassifyNetworkField(d.path);
      if (d.path == "spec.subnet" && !doc.spec.subnet.empty() && doc.spec.subnet != rec.subnet) subnet_moves = true;
    }
    std::erase_if(c.diffs, [&](const FieldDiff& d) { return d.path == "spec.subnet" && !subnet_moves; });
    if (subnet_moves) {
      auto& u = users[c.name];
      if (!u.empty()) {
        plan.errors.push_back(At(doc.location) + "network \"" + c.name + "\": spec.subnet cannot change from " +
                              rec.subnet + " to " + doc.spec.subnet + " while sandboxes use it (" + Join(u, ", ") +
                              "); delete them first or declare a network with another name");
        continue;
      }
      c.action = Action::kReplace;
      c.reason = "spec.subnet forces a new bridge";
    } else if (!c.diffs.empty() || !rec.declared || rec.owner != options.owner) {
      c.action = Action::kUpdate;
      c.reason = !rec.declared ? "now declared" : c.diffs.empty() ? "now managed here" : "update in place";
    } else {
      c.action = Action::kNoOp;
      c.reason = "up to date";
    }
    plan.networks.push_back(std::move(c));
  }

  // The implicit default network, created on first use.
  if (!users[kDefaultNetwork].empty() && !declared.count(kDefaultNetwork) && !recorded.count(kDefaultNetwork)) {
    NetworkChange c;
    c.name = kDefaultNetwork;
    c.action = Action::kCreate;
    c.implicit = true;
    c.reason = "implicit network of bridged sandboxes, subnet chosen at apply";
    plan.networks.push_back(std::move(c));
  }

  // Declared networks of this owner that are gone from the specs.
  if (options.prune) {
    for (const auto& rec : observed.networks) {
      if (declared.count(rec.name) || !rec.declared || rec.owner != options.owner) continue;
      auto& u = users[rec.name];
      if (!u.empty()) {
        plan.errors.push_back("network \"" + rec.name + "\" is no longer declared but sandboxes still use it (" +
                              Join(u, ", ") + "); move or delete them first");
        continue;
      }
      NetworkChange c;
      c.name = rec.name;
      c.action = Action::kDelete;
      c.owner = rec.owner;
      c.current = rec;
      c.reason = "not in specs; --prune";
      plan.networks.push_back(std::move(c));
    }
  }

  // Every bridged sandbox's network exists, fixed addresses fit, ports are unique.
  std::map<std::string, std::map<std::string, std::string>> fixed;  // network -> address -> sandbox
  std::map<std::string, std::string> published;                     // "addr:port/proto" -> sandbox
  for (const auto& doc : desired_sandboxes) {
    const NetworkSpec& net = doc.spec.network;
    if (net.mode != NetworkMode::kBridged) continue;
    const std::string where = At(doc.location) + "sandbox \"" + doc.spec.name + "\": ";
    std::string subnet;
    if (auto d = declared.find(net.name); d != declared.end()) {
      subnet = d->second->spec.subnet;
      if (subnet.empty()) {
        if (auto r = recorded.find(net.name); r != recorded.end()) subnet = r->second->subnet;
      }
    } else if (auto r = recorded.find(net.name); r != recorded.end()) {
      subnet = r->second->subnet;
    } else if (net.name != kDefaultNetwork) {
      plan.errors.push_back(where + "spec.network.name: network \"" + net.name +
                            "\" does not exist; declare it with a kind: Network document");
      continue;
    }
    if (net.address.empty()) continue;
    if (subnet.empty()) {
      plan.errors.push_back(where + "spec.network.address: network \"" + net.name +
                            "\" has no subnet yet; give it spec.subnet to use fixed addresses");
      continue;
    }
    auto prefix = ParseIpv4Prefix(subnet);
    auto addr = ParseIpv4(net.address);
    if (!prefix.ok() || !addr.ok()) continue;
    if (!prefix->Contains(*addr)) {
      plan.errors.push_back(where + "spec.network.address: " + net.address + " is outside network \"" + net.name +
                            "\" (" + subnet + ")");
      continue;
    }
    if (*addr == prefix->At(0) || *addr == prefix->At(1) || *addr == prefix->Broadcast()) {
      plan.errors.push_back(where + "spec.network.address: " + net.address + " is reserved in " + subnet +
                            " (network, bridge or broadcast address)");
      continue;
    }
    auto [it, fresh] = fixed[net.name].emplace(net.address, doc.spec.name);
    if (!fresh) {
      plan.errors.push_back(where + "spec.network.address: " + net.address + " is also the address of sandbox \"" +
                            it->second + "\"");
      continue;
    }
    for (const auto& l : observed.leases) {
      if (l.network == net.name && l.address == net.address && l.sandbox != doc.spec.name &&
          !deleted.count(l.sandbox)) {
        plan.errors.push_back(where + "spec.network.address: " + net.address + " is leased to sandbox \"" +
                              l.sandbox + "\"");
      }
    }
  }
  for (const auto& [name, m] : members) {
    for (const auto& p : m.ports) {
      std::string proto(ToString(p.protocol));
      for (const std::string& addr : {p.address, std::string("0.0.0.0")}) {
        auto it = published.find(addr + ":" + std::to_string(p.host) + "/" + proto);
        if (it != published.end() && it->second != name) {
          plan.errors.push_back(At(m.where) + "sandbox \"" + name + "\": spec.network.ports: host port " +
                                std::to_string(p.host) + "/" + proto + " on " + p.address +
                                " is already published by sandbox \"" + it->second + "\"");
        }
      }
      published.emplace(p.address + ":" + std::to_string(p.host) + "/" + proto, name);
      if (p.address == "0.0.0.0") {
        for (const auto& [key, other] : published) {
          if (other != name && EndsWith(key, ":" + std::to_string(p.host) + "/" + proto)) {
            plan.errors.push_back(At(m.where) + "sandbox \"" + name + "\": spec.network.ports: host port " +
                                  std::to_string(p.host) + "/" + proto + " on 0.0.0.0 clashes with sandbox \"" +
                                  other + "\"");
          }
        }
      }
    }
  }
  std::sort(plan.errors.begin(), plan.errors.end());
  plan.errors.erase(std::unique(plan.errors.begin(), plan.errors.end()), plan.errors.end());
  std::sort(plan.networks.begin(), plan.networks.end(),
            [](const NetworkChange& a, const NetworkChange& b) { return a.name < b.name; });
}

}  // namespace banger
