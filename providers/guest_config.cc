#include "providers/guest_config.h"

#include <nlohmann/json.hpp>

namespace banger {

std::string Base64Encode(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8) |
                 static_cast<uint8_t>(data[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i < data.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(data[i]) << 16);
    if (i + 1 < data.size()) v |= static_cast<uint32_t>(static_cast<uint8_t>(data[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < data.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string GuestConfigToJson(const GuestConfig& c) {
  using nlohmann::json;
  json j = json::object();
  j["version"] = 1;
  j["hostname"] = c.hostname;
  j["root_device"] = c.root_device;
  j["root_fstype"] = c.root_fstype;
  j["agent_port"] = c.agent_port;
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
  json files = json::array();
  for (const auto& f : c.files) {
    files.push_back({{"path", f.path}, {"content_base64", Base64Encode(f.content)}, {"mode", f.mode}});
  }
  j["files"] = std::move(files);
  j["authorized_keys"] = c.authorized_keys;
  j["env"] = c.env;
  j["entrypoint"] = {{"argv", c.entrypoint}, {"env", c.entrypoint_env}, {"workdir", c.workdir}};
  // Invalid UTF-8 in user strings must not throw: replace it.
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace banger
