#include "providers/guest_config.h"

#include <nlohmann/json.hpp>

namespace banger {

std::string GuestConfigToJson(const GuestConfig& c) {
  using nlohmann::json;
  json j = json::object();
  j["version"] = 1;
  j["hostname"] = c.hostname;
  j["root_device"] = c.root_device;
  if (!c.root_serial.empty()) j["root_serial"] = c.root_serial;
  j["root_fstype"] = c.root_fstype;
  j["agent_port"] = c.agent_port;
  // Only when set: the bytes of every other config.json stay as they were.
  if (c.hold_for_identity) j["hold"] = true;
  switch (c.init) {
    case GuestInitMode::kAuto: j["init"] = "auto"; break;
    case GuestInitMode::kImage: j["init"] = "image"; break;
    case GuestInitMode::kAgent: j["init"] = "agent"; break;
  }
  if (c.network) {
    j["network"] = {{"interface", c.network->interface},
                    {"address", c.network->address},
                    {"prefix", c.network->prefix},
                    {"gateway", c.network->gateway},
                    {"dns", c.network->dns}};
  } else {
    j["network"] = nullptr;
  }
  json hosts = json::array();
  for (const auto& h : c.hosts) hosts.push_back({{"address", h.address}, {"names", h.names}});
  j["hosts"] = std::move(hosts);
  json files = json::array();
  for (const auto& f : c.files) {
    files.push_back({{"path", f.path}, {"content_base64", Base64Encode(f.content)}, {"mode", f.mode}});
  }
  j["files"] = std::move(files);
  json volumes = json::array();
  for (const auto& v : c.volumes) volumes.push_back({{"serial", v.serial}, {"mount_path", v.mount_path}});
  j["volumes"] = std::move(volumes);
  j["authorized_keys"] = c.authorized_keys;
  j["env"] = c.env;
  j["entrypoint"] = {{"argv", c.entrypoint}, {"env", c.entrypoint_env}, {"workdir", c.workdir}};
  // Invalid UTF-8 in user strings must not throw: replace it.
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace banger
