// OpenSSH known_hosts checking for GitSource's SSH connections.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "base/status.h"

namespace banger {

/// Checks that `key_blob` (the raw SSH wire-format host key, as sent by the
/// server) is listed for `host` (port 22: "host"; otherwise "[host]:port") in
/// `known_hosts`. Understands plain and comma-separated host patterns
/// (including `*`/`?` wildcards and `!` negation), `[host]:port` entries,
/// hashed `|1|salt|hmac` entries and the `@revoked` marker
/// (`@cert-authority` lines are skipped). Errors: PermissionDenied naming the
/// host and the file when the host is unknown, its key does not match, or the
/// key is revoked; NotFound when the file is missing.
Status CheckKnownHost(const std::filesystem::path& known_hosts, const std::string& host, int port,
                      std::string_view key_blob);

}  // namespace banger
