// Reading fields of the JSON that `ip -j` and `nft -j` print, tolerating
// absent fields and unexpected types (the tools' output is input, not trusted).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace banger::network {

/// The member `key` of `object`, or null when `object` is not an object or lacks it.
inline const nlohmann::json* Find(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

/// The string member `key`, or "" when absent or not a string.
inline std::string StringField(const nlohmann::json& object, const char* key) {
  const nlohmann::json* v = Find(object, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

}  // namespace banger::network
