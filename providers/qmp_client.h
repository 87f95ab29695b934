// Minimal QMP (QEMU Machine Protocol) client over a unix socket: one command
// per connection, bounded by a deadline. Used by the QEMU provider for
// Inspect (query-status) and graceful shutdown (system_powerdown).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
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

/// One QMP connection for several commands (a file descriptor passed with
/// `getfd` belongs to the monitor connection that received it, so the
/// command using it must follow on the same one).
class QmpSession {
 public:
  /// Connects (retrying while the socket is not there yet, until `deadline`)
  /// and negotiates capabilities.
  static Result<std::unique_ptr<QmpSession>> Connect(const std::filesystem::path& socket,
                                                     std::chrono::steady_clock::time_point deadline);
  ~QmpSession();
  QmpSession(const QmpSession&) = delete;
  QmpSession& operator=(const QmpSession&) = delete;

  /// Runs `command` with `arguments_json` ("" for none) and returns the JSON
  /// text of its "return" value; with pass_fd >= 0 the descriptor travels
  /// with the command (SCM_RIGHTS), as `getfd` expects.
  Result<std::string> Execute(const std::string& command, const std::string& arguments_json,
                              std::chrono::milliseconds timeout, int pass_fd = -1);

 private:
  QmpSession(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  std::string buf_;
};

/// query-status -> "running", "paused", "shutdown", ...
Result<std::string> QmpQueryStatus(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

}  // namespace banger
