#include "oci/auth.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/strings.h"

namespace banger::oci {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// "https://index.docker.io/v1/" -> "index.docker.io"; "localhost:5000" stays.
std::string NormaliseRegistryKey(std::string_view key) {
  std::string_view k = key;
  size_t scheme = k.find("://");
  if (scheme != std::string_view::npos) k = k.substr(scheme + 3);
  size_t slash = k.find('/');
  if (slash != std::string_view::npos) k = k.substr(0, slash);
  std::string out = Lower(k);
  if (out == "index.docker.io" || out == "registry-1.docker.io" || out == "docker.io") {
    return "docker.io";
  }
  return out;
}

}  // namespace

Result<AuthChallenge> ParseWwwAuthenticate(std::string_view header) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("malformed WWW-Authenticate header \"" + std::string(header) +
                           "\": " + std::string(why));
  };
  std::string_view s = Trim(header);
  size_t sp = s.find(' ');
  AuthChallenge ch;
  ch.scheme = Lower(s.substr(0, sp));
  if (ch.scheme.empty()) return bad("missing scheme");
  if (sp == std::string_view::npos) return ch;
  size_t i = sp + 1;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
    if (i >= s.size()) break;
    size_t eq = s.find('=', i);
    if (eq == std::string_view::npos) return bad("parameter without '='");
    std::string key = Lower(Trim(s.substr(i, eq - i)));
    if (key.empty()) return bad("empty parameter name");
    i = eq + 1;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char c = s[i++];
        if (c == '\\' && i < s.size()) {
          value += s[i++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return bad("unterminated quoted value");
    } else {
      size_t end = s.find(',', i);
      if (end == std::string_view::npos) end = s.size();
      value = std::string(Trim(s.substr(i, end - i)));
      i = end;
    }
    ch.params[key] = value;
  }
  return ch;
}

Result<std::optional<Credentials>> LookupDockerCredentialsInJson(std::string_view json,
                                                                 std::string_view registry,
                                                                 std::string_view origin) {
  std::string want = NormaliseRegistryKey(registry);
  try {
    nlohmann::json doc = nlohmann::json::parse(json);
    if (!doc.is_object() || !doc.contains("auths")) return std::optional<Credentials>();
    const nlohmann::json& auths = doc.at("auths");
    if (!auths.is_object()) {
      return InvalidArgument(std::string(origin) + ": \"auths\" must be an object");
    }
    for (const auto& [key, entry] : auths.items()) {
      if (NormaliseRegistryKey(key) != want || !entry.is_object()) continue;
      Credentials c;
      if (entry.contains("auth") && entry.at("auth").is_string() &&
          !entry.at("auth").get<std::string>().empty()) {
        auto decoded = Base64Decode(entry.at("auth").get<std::string>());
        if (!decoded) {
          return InvalidArgument(std::string(origin) + ": auths." + key +
                                 ".auth: " + decoded.error().message());
        }
        size_t colon = decoded->find(':');
        if (colon == std::string::npos) {
          return InvalidArgument(std::string(origin) + ": auths." + key +
                                 ".auth is not base64 of user:password");
        }
        c.username = decoded->substr(0, colon);
        c.password = decoded->substr(colon + 1);
      } else {
        if (entry.contains("username")) c.username = entry.at("username").get<std::string>();
        if (entry.contains("password")) c.password = entry.at("password").get<std::string>();
      }
      if (c.empty()) continue;
      return std::optional<Credentials>(std::move(c));
    }
    return std::optional<Credentials>();
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string(origin) + ": " + e.what());
  }
}

Result<std::optional<Credentials>> LookupDockerCredentials(const std::filesystem::path& path,
                                                           std::string_view registry) {
  if (path.empty()) return std::optional<Credentials>();
  auto text = ReadFile(path);
  if (!text) {
    if (text.error().code() == StatusCode::kNotFound) return std::optional<Credentials>();
    return text.error();
  }
  return LookupDockerCredentialsInJson(*text, registry, path.string());
}

}  // namespace banger::oci
