#include "network/host_facts.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "base/ipv4.h"
#include "base/strings.h"
#include "network/json_fields.h"

namespace banger::network {
namespace {

using nlohmann::json;

// The kernel's IFNAMSIZ minus the terminating NUL.
constexpr size_t kMaxInterfaceName = 15;
constexpr int kCapNetAdmin = 12;


bool BoolField(const json& object, const char* key) {
  const json* v = Find(object, key);
  return v != nullptr && v->is_boolean() && v->get<bool>();
}

Result<json> ParseIpArray(std::string_view text, std::string_view what) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_array()) {
    return InvalidArgument("not `ip -j` output for " + std::string(what) + ": " + std::string(text.substr(0, 200)));
  }
  return doc;
}

bool HasFlag(const json& link, std::string_view flag) {
  const json* flags = Find(link, "flags");
  if (flags == nullptr || !flags->is_array()) return false;
  return std::any_of(flags->begin(), flags->end(),
                     [&](const json& f) { return f.is_string() && f.get<std::string>() == flag; });
}

std::vector<std::string> Ipv4Addresses(const json& link) {
  std::vector<std::string> out;
  const json* infos = Find(link, "addr_info");
  if (infos == nullptr || !infos->is_array()) return out;
  for (const json& a : *infos) {
    const json* len = Find(a, "prefixlen");
    if (StringField(a, "family") != "inet" || len == nullptr || !len->is_number_integer()) continue;
    out.push_back(StringField(a, "local") + "/" + std::to_string(len->get<int>()));
  }
  return out;
}

LinkObservation ParseLink(const json& link) {
  LinkObservation o;
  o.name = StringField(link, "ifname");
  o.master = StringField(link, "master");
  o.up = HasFlag(link, "UP");
  o.addresses = Ipv4Addresses(link);
  if (const json* info = Find(link, "linkinfo")) {
    o.kind = StringField(*info, "info_kind");
    if (const json* slave = Find(*info, "info_slave_data")) o.isolated = BoolField(*slave, "isolated");
  }
  return o;
}

}  // namespace

Status CheckInterfaceName(std::string_view name) {
  bool plain = !name.empty() && name.size() <= kMaxInterfaceName &&
               std::all_of(name.begin(), name.end(), [](char ch) {
                 return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '-' || ch == '_';
               });
  if (plain) return OkStatus();
  return InvalidArgument("interface name \"" + std::string(name) +
                         "\" must be 1-15 characters of letters, digits, '-' and '_'");
}

Result<std::map<std::string, LinkObservation>> ParseLinks(std::string_view ip_json) {
  BANGER_ASSIGN_OR_RETURN(json links, ParseIpArray(ip_json, "links"));
  std::map<std::string, LinkObservation> out;
  for (const json& link : links) {
    LinkObservation o = ParseLink(link);
    if (!o.name.empty()) out[o.name] = std::move(o);
  }
  return out;
}

Result<std::vector<std::string>> ParseRoutedPrefixes(std::string_view ip_json) {
  BANGER_ASSIGN_OR_RETURN(json routes, ParseIpArray(ip_json, "routes"));
  std::set<std::string> prefixes;
  for (const json& route : routes) {
    std::string dst = StringField(route, "dst");
    std::string type = StringField(route, "type");
    if (dst.empty() || dst == "default" || type == "local" || type == "broadcast") continue;
    if (dst.find('/') == std::string::npos) dst += "/32";
    auto prefix = ParseIpv4Prefix(dst, /*strict=*/false);
    if (!prefix.ok()) return prefix.error().WithContext("route to " + dst);
    Ipv4Prefix p = *prefix;
    p.network.value &= p.Mask();
    prefixes.insert(ToString(p));
  }
  return std::vector<std::string>(prefixes.begin(), prefixes.end());
}

std::vector<std::string> ParseResolvers(std::string_view resolv_conf) {
  std::vector<std::string> out;
  for (const std::string& raw : Split(resolv_conf, '\n')) {
    std::string_view line = Trim(raw);
    if (!StartsWith(line, "nameserver")) continue;
    line.remove_prefix(std::string_view("nameserver").size());
    if (line.empty() || (line[0] != ' ' && line[0] != '\t')) continue;
    line = Trim(line);
    line = line.substr(0, line.find_first_of(" \t#;"));
    auto addr = ParseIpv4(line);
    if (!addr.ok() || (addr->value >> 24) == 127 || addr->value == 0) continue;
    std::string text = ToString(*addr);
    if (std::find(out.begin(), out.end(), text) == out.end()) out.push_back(text);
  }
  return out;
}

Result<bool> HasCapNetAdmin(std::string_view proc_status) {
  for (const std::string& raw : Split(proc_status, '\n')) {
    std::string_view line = raw;
    if (!StartsWith(line, "CapEff:")) continue;
    std::string hex(Trim(line.substr(std::string_view("CapEff:").size())));
    char* end = nullptr;
    unsigned long long caps = std::strtoull(hex.c_str(), &end, 16);
    if (hex.empty() || end == nullptr || *end != '\0') break;
    return ((caps >> kCapNetAdmin) & 1) != 0;
  }
  return InvalidArgument("no readable CapEff line in the process status");
}

}  // namespace banger::network
