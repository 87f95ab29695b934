#include "network/nft.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "base/ipv4.h"
#include "network/host_facts.h"
#include "network/json_fields.h"

namespace banger::network {
namespace {

using nlohmann::json;

// nft refuses longer comments ("comment too long, 128 characters maximum").
constexpr size_t kMaxCommentLength = 128;

struct NftRule {
  std::string statement;  // match and verdict, without the comment
  std::string comment;
};

struct NftChain {
  std::string name;
  std::string type;
  std::string hook;
  std::string priority_text;  // as written in the script
  int priority = 0;           // as nft reports it
  std::vector<NftRule> rules;
};

struct NftTable {
  std::vector<NftChain> chains;  // in script order
};

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool IsLoopback(const std::string& address) {
  auto a = ParseIpv4(address);
  return a.ok() && (a->value >> 24) == 127;
}

NetworkRules Sorted(NetworkRules rules) {
  SortNetworkRules(rules);
  return rules;
}

// "network default on bgr-default" (or "bridge bgr-x" for a bridge only ports name).
std::string BridgeLabel(const BridgeConfig* config, const std::string& bridge) {
  if (config == nullptr) return "bridge " + bridge;
  return "network " + config->network + " on " + bridge;
}

NftRule DnatRule(const PublishedPort& p) {
  // 0.0.0.0 means every address of the host: match on the routing
  // decision's "is this address ours" instead of listing addresses.
  std::string daddr = p.host_address == "0.0.0.0" ? "fib daddr type local" : "ip daddr " + p.host_address;
  std::string target = p.guest_address + ":" + std::to_string(p.guest_port);
  return {daddr + " " + p.protocol + " dport " + std::to_string(p.host_port) + " dnat ip to " + target,
          "port " + p.sandbox + " " + p.host_address + ":" + std::to_string(p.host_port) + "/" +
              p.protocol + " to " + target};
}

NftChain PreroutingChain(const NetworkRules& rules) {
  NftChain c{"prerouting", "nat", "prerouting", "dstnat", -100, {}};
  for (const PublishedPort& p : rules.ports) {
    // Packets that arrive from outside never carry a loopback destination
    // (the kernel drops them as martians), so loopback-published ports only
    // need the output chain.
    if (!IsLoopback(p.host_address)) c.rules.push_back(DnatRule(p));
  }
  return c;
}

NftChain OutputChain(const NetworkRules& rules) {
  // nft 1.0.6 accepts the name "dstnat" only in the prerouting hook; the
  // output hook needs the number (-100, the same priority).
  NftChain c{"output", "nat", "output", "-100", -100, {}};
  for (const PublishedPort& p : rules.ports) c.rules.push_back(DnatRule(p));
  return c;
}

NftChain PostroutingChain(const NetworkRules& rules) {
  NftChain c{"postrouting", "nat", "postrouting", "srcnat", 100, {}};
  std::map<std::string, const BridgeConfig*> bridges;
  for (const BridgeConfig& b : rules.bridges) bridges[b.bridge] = &b;
  for (const PublishedPort& p : rules.ports) {
    if (!p.bridge.empty()) bridges.emplace(p.bridge, nullptr);
  }
  for (const auto& [name, config] : bridges) {
    std::string label = BridgeLabel(config, name);
    if (config != nullptr && config->nat) {
      c.rules.push_back({"ip saddr " + config->subnet + " oifname != " + Quote(name) + " masquerade",
                         label + ": nat for " + config->subnet});
    }
    // A port published on 127.0.0.1 is DNATed in the output chain but keeps
    // its loopback source; the guest could not answer 127.0.0.1, so the
    // source becomes the bridge's address on the way in.
    c.rules.push_back({"ip saddr 127.0.0.0/8 oifname " + Quote(name) + " masquerade",
                       label + ": ports published on loopback"});
  }
  return c;
}

NftChain ForwardChain(const NetworkRules& rules) {
  NftChain c{"forward", "filter", "forward", "filter", 0, {}};
  c.rules.push_back({"ct state established,related accept", "replies to allowed traffic"});
  // Published ports are open to every source, other banger networks included.
  c.rules.push_back({"ct status dnat accept", "published ports"});
  for (const BridgeConfig& b : rules.bridges) {
    std::string label = BridgeLabel(&b, b.bridge);
    std::vector<std::string> others;
    for (const BridgeConfig& o : rules.bridges) {
      if (o.bridge != b.bridge) others.push_back(Quote(o.bridge));
    }
    if (!others.empty()) {
      std::string set = "{ ";
      for (size_t i = 0; i < others.size(); ++i) set += (i ? ", " : "") + others[i];
      c.rules.push_back({"iifname " + Quote(b.bridge) + " oifname " + set + " } drop",
                         label + ": no traffic to other banger networks"});
    }
    if (!b.nat) {
      c.rules.push_back({"iifname " + Quote(b.bridge) + " oifname != " + Quote(b.bridge) + " drop",
                         label + ": nat off, nothing leaves the bridge"});
    }
  }
  return c;
}

NftTable BuildTable(const NetworkRules& unsorted) {
  NetworkRules rules = Sorted(unsorted);
  return {{PreroutingChain(rules), OutputChain(rules), PostroutingChain(rules), ForwardChain(rules)}};
}

bool IsEmpty(const NetworkRules& rules) { return rules.bridges.empty() && rules.ports.empty(); }

// Text that goes inside an nft string: printable ASCII without quotes or
// backslashes (nft has no escapes inside strings).
Status CheckText(std::string_view text, std::string_view what) {
  if (text.empty()) return InvalidArgument(std::string(what) + " is empty");
  for (char ch : text) {
    if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\') {
      return InvalidArgument(std::string(what) + " \"" + std::string(text) +
                             "\" holds a character nft cannot quote");
    }
  }
  return OkStatus();
}

Status CheckBridge(const BridgeConfig& b) {
  std::string what = "bridge " + b.bridge + " of network " + b.network;
  BANGER_RETURN_IF_ERROR(CheckInterfaceName(b.bridge).WithContext(what));
  BANGER_RETURN_IF_ERROR(CheckText(b.network, "network name of bridge " + b.bridge));
  auto subnet = ParseIpv4Prefix(b.subnet);
  if (!subnet.ok()) return subnet.error().WithContext(what + ": subnet");
  return OkStatus();
}

Status CheckPort(const PublishedPort& p) {
  std::string what = "port " + p.host_address + ":" + std::to_string(p.host_port) + "/" + p.protocol +
                     " of sandbox " + p.sandbox;
  BANGER_RETURN_IF_ERROR(CheckText(p.sandbox, "sandbox name of a published port"));
  if (p.protocol != "tcp" && p.protocol != "udp") {
    return InvalidArgument(what + ": protocol must be tcp or udp");
  }
  if (p.host_port == 0 || p.guest_port == 0) return InvalidArgument(what + ": port 0");
  if (auto a = ParseIpv4(p.host_address); !a.ok()) return a.error().WithContext(what + ": host address");
  if (auto a = ParseIpv4(p.guest_address); !a.ok()) return a.error().WithContext(what + ": guest address");
  if (!p.bridge.empty()) BANGER_RETURN_IF_ERROR(CheckInterfaceName(p.bridge).WithContext(what));
  return OkStatus();
}

// Two ports may not claim one host address, protocol and port; 0.0.0.0 claims
// that protocol and port on every address.
Status CheckPortClashes(const std::vector<PublishedPort>& ports) {
  std::map<std::tuple<std::string, std::string, uint16_t>, const PublishedPort*> claimed;
  for (const PublishedPort& p : ports) {
    for (const std::string& addr : {p.host_address, std::string("0.0.0.0")}) {
      auto it = claimed.find({addr, p.protocol, p.host_port});
      if (it != claimed.end()) {
        return InvalidArgument("port " + std::to_string(p.host_port) + "/" + p.protocol + " on " +
                               p.host_address + " is published by both " + it->second->sandbox + " (on " +
                               it->second->host_address + ") and " + p.sandbox);
      }
    }
    if (p.host_address == "0.0.0.0") {
      for (const auto& [key, other] : claimed) {
        if (std::get<1>(key) == p.protocol && std::get<2>(key) == p.host_port) {
          return InvalidArgument("port " + std::to_string(p.host_port) + "/" + p.protocol +
                                 " on 0.0.0.0 (every address) of " + p.sandbox + " clashes with " +
                                 other->sandbox + " on " + other->host_address);
        }
      }
    }
    claimed[{p.host_address, p.protocol, p.host_port}] = &p;
  }
  return OkStatus();
}


Result<json> ParseNftJson(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const json* items = Find(doc, "nftables");
  if (items == nullptr || !items->is_array()) {
    return InvalidArgument("not nft JSON output (no \"nftables\" array): " + std::string(text.substr(0, 200)));
  }
  return *items;
}

bool IsBangerObject(const json& object, const char* table_key) {
  return StringField(object, "family") == "inet" && StringField(object, table_key) == "banger";
}

}  // namespace

Status ValidateNetworkRules(const NetworkRules& rules) {
  std::set<std::string> bridges;
  for (const BridgeConfig& b : rules.bridges) {
    BANGER_RETURN_IF_ERROR(CheckBridge(b));
    if (!bridges.insert(b.bridge).second) return InvalidArgument("bridge " + b.bridge + " is listed twice");
  }
  for (const PublishedPort& p : rules.ports) BANGER_RETURN_IF_ERROR(CheckPort(p));
  BANGER_RETURN_IF_ERROR(CheckPortClashes(rules.ports));
  for (const NftChain& chain : BuildTable(rules).chains) {
    for (const NftRule& rule : chain.rules) {
      if (rule.comment.size() > kMaxCommentLength) {
        return InvalidArgument("nft rule comment \"" + rule.comment + "\" is longer than " +
                               std::to_string(kMaxCommentLength) + " characters; use shorter names");
      }
    }
  }
  return OkStatus();
}

std::string RenderNftTable(const NetworkRules& rules) {
  std::string out =
      "# Table inet banger, generated by banger. Loaded with `nft -f` as one\n"
      "# transaction: create (so the delete cannot fail), delete, define anew.\n"
      "table inet banger {}\n"
      "delete table inet banger\n";
  if (IsEmpty(rules)) return out;
  out += "table inet banger {\n  comment " + Quote(kNftTableComment) + "\n";
  for (const NftChain& c : BuildTable(rules).chains) {
    out += "\n  chain " + c.name + " {\n";
    out += "    type " + c.type + " hook " + c.hook + " priority " + c.priority_text + "; policy accept;\n";
    for (const NftRule& r : c.rules) out += "    " + r.statement + " comment " + Quote(r.comment) + "\n";
    out += "  }\n";
  }
  out += "}\n";
  return out;
}

NftTableSummary ExpectedNftSummary(const NetworkRules& rules) {
  NftTableSummary s;
  s.comment = std::string(kNftTableComment);
  for (const NftChain& c : BuildTable(rules).chains) {
    NftChainSummary cs{c.name, c.type, c.hook, c.priority, "accept", {}};
    for (const NftRule& r : c.rules) cs.rule_comments.push_back(r.comment);
    s.chains.push_back(std::move(cs));
  }
  std::sort(s.chains.begin(), s.chains.end(),
            [](const NftChainSummary& a, const NftChainSummary& b) { return a.name < b.name; });
  return s;
}

Result<NftTableSummary> ParseNftTableJson(std::string_view text) {
  BANGER_ASSIGN_OR_RETURN(json items, ParseNftJson(text));
  NftTableSummary s;
  std::map<std::string, NftChainSummary> chains;
  for (const json& item : items) {
    if (const json* t = Find(item, "table"); t != nullptr && IsBangerObject(*t, "name")) {
      if (const json* c = Find(*t, "comment"); c != nullptr && c->is_string()) s.comment = c->get<std::string>();
    } else if (const json* c = Find(item, "chain"); c != nullptr && IsBangerObject(*c, "table")) {
      NftChainSummary& cs = chains[StringField(*c, "name")];
      cs.name = StringField(*c, "name");
      cs.type = StringField(*c, "type");
      cs.hook = StringField(*c, "hook");
      cs.policy = StringField(*c, "policy");
      const json* prio = Find(*c, "prio");
      cs.priority = prio != nullptr && prio->is_number_integer() ? prio->get<int>() : 0;
    } else if (const json* r = Find(item, "rule"); r != nullptr && IsBangerObject(*r, "table")) {
      chains[StringField(*r, "chain")].rule_comments.push_back(StringField(*r, "comment"));
    }
  }
  for (auto& [name, chain] : chains) s.chains.push_back(std::move(chain));
  return s;
}

Result<bool> NftTablesHaveBanger(std::string_view text) {
  BANGER_ASSIGN_OR_RETURN(json items, ParseNftJson(text));
  for (const json& item : items) {
    if (const json* t = Find(item, "table"); t != nullptr && IsBangerObject(*t, "name")) return true;
  }
  return false;
}

std::string DescribeNftDifference(const NftTableSummary& expected, const NftTableSummary& live) {
  if (live.comment && live.comment != expected.comment) return "table comment is \"" + *live.comment + "\"";
  std::map<std::string, const NftChainSummary*> live_chains;
  for (const NftChainSummary& c : live.chains) live_chains[c.name] = &c;
  for (const NftChainSummary& want : expected.chains) {
    auto it = live_chains.find(want.name);
    if (it == live_chains.end()) return "chain " + want.name + " is missing";
    const NftChainSummary& have = *it->second;
    if (have.type != want.type || have.hook != want.hook || have.priority != want.priority ||
        have.policy != want.policy) {
      return "chain " + want.name + " is type " + have.type + " hook " + have.hook + " priority " +
             std::to_string(have.priority) + " policy " + have.policy;
    }
    if (have.rule_comments.size() != want.rule_comments.size()) {
      return "chain " + want.name + ": " + std::to_string(have.rule_comments.size()) + " rules, expected " +
             std::to_string(want.rule_comments.size());
    }
    for (size_t i = 0; i < want.rule_comments.size(); ++i) {
      if (have.rule_comments[i] != want.rule_comments[i]) {
        return "chain " + want.name + " rule " + std::to_string(i + 1) + " is \"" + have.rule_comments[i] +
               "\", expected \"" + want.rule_comments[i] + "\"";
      }
    }
    live_chains.erase(it);
  }
  if (!live_chains.empty()) return "unexpected chain " + live_chains.begin()->first;
  return "";
}

}  // namespace banger::network
