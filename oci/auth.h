// Registry authentication: WWW-Authenticate challenges and docker config.json
// credentials.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/base64.h"
#include "base/status.h"

namespace banger::oci {

struct AuthChallenge {
  std::string scheme;                         // lower-case: "bearer", "basic"
  std::map<std::string, std::string> params;  // lower-case keys: realm, service, scope, error

  std::string Param(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
};

/// Parses one WWW-Authenticate header value such as
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
/// Quoted values may contain commas and backslash escapes.
Result<AuthChallenge> ParseWwwAuthenticate(std::string_view header);

struct Credentials {
  std::string username;
  std::string password;
  bool empty() const { return username.empty() && password.empty(); }
};

/// Looks up `registry` (e.g. "localhost:5000", "docker.io") in a docker
/// config.json: `auths.<key>.auth` (base64 "user:pass") or username/password.
/// Keys may carry a scheme and path ("https://index.docker.io/v1/"). Returns
/// nullopt when the file or entry is absent; an error when it is malformed.
Result<std::optional<Credentials>> LookupDockerCredentials(
    const std::filesystem::path& config_path, std::string_view registry);

/// Same, from the JSON text (for tests and callers that already read it).
Result<std::optional<Credentials>> LookupDockerCredentialsInJson(std::string_view json,
                                                                 std::string_view registry,
                                                                 std::string_view origin);

/// Standard base64 (RFC 4648) encode/decode; decode rejects invalid input.
using banger::Base64Decode;
using banger::Base64Encode;

}  // namespace banger::oci
