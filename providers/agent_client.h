// Host side of the guest agent channel (protocol: providers/agent_protocol.h,
// docs/guest-agent.md). One AgentConnection talks to one VM's agent socket.
// Not thread-safe: use one connection per thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/agent_protocol.h"
#include "providers/guest_config.h"

namespace banger {

using SteadyTime = std::chrono::steady_clock::time_point;

/// Exec keeps at most this much of a command's stdout and stderr together
/// (the guest is untrusted: endless output must not exhaust the host).
inline constexpr size_t kDefaultMaxExecOutput = 16u << 20;
/// Guest-supplied text (ERROR messages, the HELLO's version and mode) is cut
/// to this many bytes and stripped of control characters before it reaches
/// an error message, a log or a terminal.
inline constexpr size_t kMaxGuestText = 1024;

struct ExecCommand {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;  // empty: "/"
  /// Exec: bytes of stdout + stderr kept; the rest is read and dropped
  /// (counted in ExecResult::output_dropped). Not used by ExecInteractive.
  size_t max_output = kDefaultMaxExecOutput;
};

struct ExecResult {
  int exit_code = 0;  // exit status, or 128+signal
  bool signaled = false;
  std::string stdout_data;
  std::string stderr_data;
  /// Bytes of output beyond ExecCommand::max_output, read and dropped.
  uint64_t output_dropped = 0;
};

/// `text` with every byte outside printable ASCII (and tab/newline) replaced
/// by '?', cut to kMaxGuestText bytes (with a "..." marker when cut).
std::string SanitizeGuestText(std::string_view text);

/// For Exec with a local terminal: the CLI puts `in_fd` in raw mode itself.
struct InteractiveOptions {
  int in_fd = 0;
  int out_fd = 1;
  int err_fd = 2;            // used only without a tty (with a tty, stderr is merged)
  bool tty = true;
  int winch_fd = -1;         // readable when the terminal was resized (e.g. a signalfd
                             // or self-pipe for SIGWINCH); the size is read from in_fd
  /// > 0: fail with DeadlineExceeded (after sending SIGKILL to the command)
  /// when no byte moved on the agent channel, in either direction, for this
  /// long. 0: wait forever (a terminal session may be idle for hours).
  std::chrono::milliseconds idle_timeout{0};
};

class AgentConnection {
 public:
  virtual ~AgentConnection() = default;

  /// Waits until the agent has said HELLO on this connection (or answered a
  /// PING, which covers reconnecting before the agent noticed the previous
  /// client left; then only `protocol` and `mode` are known, mode "unknown"
  /// from an agent older than IDENTITY). agent_protocol::IsHeld(hello): the
  /// agent booted with `hold` and waits for SendIdentity; it refuses EXEC and
  /// SET_HOSTS until then.
  virtual Result<agent_protocol::Hello> WaitHello(SteadyTime deadline) = 0;

  /// Round trip; returns the measured latency.
  virtual Result<std::chrono::microseconds> Ping(std::chrono::milliseconds timeout) = 0;

  /// Runs a command to completion, feeding `stdin_data` then EOF. A command
  /// that cannot be started (not found, bad cwd) is an error Status; a
  /// non-zero exit is not. On timeout the command is killed (SIGKILL) and
  /// DeadlineExceeded is returned. The guest is untrusted: at most
  /// `command.max_output` bytes of output are kept; a malformed or
  /// out-of-range EXIT, or a broken frame stream, is DataLoss; a guest that
  /// keeps sending without finishing still ends at the timeout.
  virtual Result<ExecResult> Exec(const ExecCommand& command, std::string_view stdin_data,
                                  std::chrono::milliseconds timeout) = 0;

  /// Runs a command attached to local file descriptors until it exits;
  /// returns its exit code (128+signal when killed).
  virtual Result<int> ExecInteractive(const ExecCommand& command, const InteractiveOptions& io) = 0;

  /// Replaces the banger-managed block of the guest's /etc/hosts with `hosts`
  /// (no hosts: the block is removed). OK once the guest acknowledged the
  /// write. InvalidArgument (nothing sent) for an entry the guest would
  /// refuse; FailedPrecondition with the guest's reason when it could not
  /// write, or saying so when the guest agent predates SET_HOSTS (a restart
  /// gives the sandbox the current agent); DeadlineExceeded without an
  /// answer by `deadline` (e.g. while another client holds the channel).
  virtual Status SetHosts(const std::vector<GuestHost>& hosts, SteadyTime deadline) = 0;

  /// Gives a held (template or restored) guest its identity; returns once the
  /// agent has applied it and is serving as after a normal boot (WaitHello
  /// then reports the new mode). Fills 64 bytes of entropy from getrandom(2)
  /// and the time from the system clock itself. `mac_address` is set on the
  /// guest's NIC before it comes up ("" keeps the NIC's). InvalidArgument
  /// (nothing sent) for a MAC or config the guest would refuse (a config.json
  /// bigger than agent_protocol::kMaxIdentityConfig); FailedPrecondition with
  /// the guest's reason when it refused (not held, already has an identity,
  /// bad config) or predates IDENTITY; DeadlineExceeded without an answer.
  /// A guest that refused before applying anything stays held.
  virtual Status SendIdentity(const GuestConfig& config, std::string_view mac_address,
                              std::chrono::milliseconds timeout) = 0;

  /// Asks the guest to power off; OK once acknowledged (or the channel closed).
  virtual Status PowerOff(std::chrono::milliseconds timeout) = 0;
};

/// Connects to the agent's unix socket (QEMU's chardev, or an agent run with
/// --serve-unix), retrying until `deadline` while the socket does not exist yet.
Result<std::unique_ptr<AgentConnection>> ConnectAgent(const std::filesystem::path& socket_path,
                                                      SteadyTime deadline);

}  // namespace banger
