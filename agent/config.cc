#include "agent/config.h"

#include <arpa/inet.h>

#include "agent/json_lite.h"

namespace banger::agent {

std::optional<uint32_t> ParseIpv4(std::string_view text) {
  in_addr a{};
  std::string s(text);
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1) return std::nullopt;
  return a.s_addr;
}

std::optional<AgentConfig> ParseAgentConfig(std::string_view json, std::string* error) {
  auto fail = [&](const std::string& msg) -> std::optional<AgentConfig> {
    if (error) *error = msg;
    return std::nullopt;
  };
  std::string perr;
  auto root = ParseJson(json, &perr);
  if (!root) return fail("config.json: " + perr);
  if (!root->IsObject()) return fail("config.json: top level is not an object");
  const JsonValue& j = *root;
  AgentConfig c;
  c.hostname = j["hostname"].AsString();
  c.root_device = j["root_device"].AsString(c.root_device);
  c.root_serial = j["root_serial"].AsString();
  c.root_fstype = j["root_fstype"].AsString(c.root_fstype);
  c.agent_port = j["agent_port"].AsString(c.agent_port);
  c.init = j["init"].AsString(c.init);
  if (c.init != "auto" && c.init != "image" && c.init != "agent") {
    return fail("config.json: init must be auto, image or agent, not '" + c.init + "'");
  }
  const JsonValue& hold = j["hold"];
  if (!hold.IsNull() && hold.kind() != JsonValue::Kind::kBool) return fail("config.json: hold must be true or false");
  c.hold = hold.AsBool(false);
  const JsonValue& net = j["network"];
  if (net.IsObject()) {
    AgentNetwork n;
    n.interface = net["interface"].AsString(n.interface);
    n.address = net["address"].AsString();
    n.prefix = static_cast<int>(net["prefix"].AsInt(24));
    n.gateway = net["gateway"].AsString();
    n.dns = net["dns"].AsStringList();
    if (!ParseIpv4(n.address)) return fail("config.json: network.address '" + n.address + "' is not IPv4");
    if (n.prefix < 0 || n.prefix > 32) return fail("config.json: network.prefix out of range");
    if (!n.gateway.empty() && !ParseIpv4(n.gateway)) {
      return fail("config.json: network.gateway '" + n.gateway + "' is not IPv4");
    }
    c.network = n;
  } else if (!net.IsNull()) {
    return fail("config.json: network must be an object or null");
  }
  const JsonValue& hosts = j["hosts"];
  if (!hosts.IsArray() && !hosts.IsNull()) return fail("config.json: hosts must be a list");
  for (const auto& h : hosts.AsArray()) {
    if (!h.IsObject()) return fail("config.json: hosts entries must be objects");
    c.hosts.push_back({h["address"].AsString(), h["names"].AsStringList()});
  }
  if (std::string why = agent_protocol::ValidateHostsEntries(c.hosts); !why.empty()) {
    return fail("config.json: " + why);
  }
  for (const auto& f : j["files"].AsArray()) {
    AgentFile af;
    af.path = f["path"].AsString();
    if (af.path.empty() || af.path[0] != '/') return fail("config.json: file path '" + af.path + "' is not absolute");
    auto content = Base64Decode(f["content_base64"].AsString());
    if (!content) return fail("config.json: file " + af.path + ": content_base64 is not base64");
    af.content = std::move(*content);
    af.mode = static_cast<uint32_t>(f["mode"].AsInt(0644)) & 07777;
    c.files.push_back(std::move(af));
  }
  const JsonValue& volumes = j["volumes"];
  if (!volumes.IsArray() && !volumes.IsNull()) return fail("config.json: volumes must be a list");
  for (const auto& v : volumes.AsArray()) {
    AgentVolume av;
    av.serial = v["serial"].AsString();
    av.mount_path = v["mount_path"].AsString();
    if (av.serial.empty() || av.serial.size() > 20 || av.serial.find('/') != std::string::npos) {
      return fail("config.json: volume serial '" + av.serial + "' is invalid");
    }
    if (av.mount_path.size() < 2 || av.mount_path[0] != '/' || av.mount_path.find("..") != std::string::npos) {
      return fail("config.json: volume mount_path '" + av.mount_path + "' must be absolute, not / and without ..");
    }
    c.volumes.push_back(std::move(av));
  }
  c.authorized_keys = j["authorized_keys"].AsStringList();
  for (const auto& [k, v] : j["env"].AsObject()) c.env.push_back(k + "=" + v.AsString());
  const JsonValue& ep = j["entrypoint"];
  c.entrypoint = ep["argv"].AsStringList();
  for (const auto& [k, v] : ep["env"].AsObject()) c.entrypoint_env.push_back(k + "=" + v.AsString());
  c.workdir = ep["workdir"].AsString();
  return c;
}

}  // namespace banger::agent
