#include "images/image_config.h"

#include <nlohmann/json.hpp>

namespace banger::images {
namespace {

std::vector<std::string> Strings(const nlohmann::json& v) {
  std::vector<std::string> out;
  if (v.is_array()) {
    for (const auto& s : v) {
      if (s.is_string()) out.push_back(s.get<std::string>());
    }
  }
  return out;
}

}  // namespace

ImageRunConfig ParseImageRunConfig(std::string_view config_json) {
  ImageRunConfig out;
  if (config_json.empty()) return out;
  auto j = nlohmann::json::parse(config_json, nullptr, false);
  if (j.is_discarded()) return out;
  const nlohmann::json* c = j.is_object() && j.contains("config") ? &j["config"] : &j;
  if (!c->is_object()) return out;
  if (c->contains("Entrypoint")) out.entrypoint = Strings((*c)["Entrypoint"]);
  if (c->contains("Cmd")) {
    auto cmd = Strings((*c)["Cmd"]);
    out.entrypoint.insert(out.entrypoint.end(), cmd.begin(), cmd.end());
  }
  if (c->contains("Env")) {
    for (const auto& kv : Strings((*c)["Env"])) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) out.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (c->contains("WorkingDir") && (*c)["WorkingDir"].is_string()) {
    out.workdir = (*c)["WorkingDir"].get<std::string>();
  }
  return out;
}

}  // namespace banger::images
