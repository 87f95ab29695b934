// Minimal QMP (QEMU Machine Protocol) client over a unix socket: one command
// per connection, bounded by a deadline. Used by the QEMU provider for
// Inspect (query-status) and graceful shutdown (system_powerdown).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "base/status.h"

namespace banger {

/// Connects, negotiates capabilities, runs `command` (e.g. "query-status")
/// and returns the JSON text of its "return" value. QMP errors become
/// FailedPrecondition with QEMU's description.
Result<std::string> QmpExecute(const std::filesystem::path& socket, const std::string& command,
                               std::chrono::milliseconds timeout);

/// query-status -> "running", "paused", "shutdown", ...
Result<std::string> QmpQueryStatus(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

}  // namespace banger
