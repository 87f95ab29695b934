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

/// Same, with an "arguments" object (JSON text, e.g. {"command-line":"info usernet"}).
Result<std::string> QmpExecute(const std::filesystem::path& socket, const std::string& command,
                               const std::string& arguments_json, std::chrono::milliseconds timeout);

/// human-monitor-command: runs an HMP command line (e.g. "info usernet",
/// "hostfwd_add net0 tcp:127.0.0.1:2222-:22") and returns its text output
/// (HMP reports most errors as output text, not as a QMP error).
Result<std::string> QmpHumanMonitorCommand(const std::filesystem::path& socket, const std::string& command_line,
                                           std::chrono::milliseconds timeout);

/// query-status -> "running", "paused", "shutdown", ...
Result<std::string> QmpQueryStatus(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

}  // namespace banger
