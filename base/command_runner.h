// CommandRunner: every external program banger runs goes through here, always
// as an argv array (never a shell string), with a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace banger {

/// How StartDetached confines a child before it execs (docs/qemu.md,
/// "Confinement"). Applied in the forked child, in this order: setns into
/// `netns`; join every cgroup (its pid written to DIR/cgroup.procs); umask;
/// setgroups(`groups`), setresgid(`gid`), setresuid(`uid`); then
/// PR_SET_NO_NEW_PRIVS. A step that fails makes StartDetached fail, naming it.
struct ChildConfinement {
  std::filesystem::path netns;                     // e.g. /run/netns/NAME; empty: stay
  std::vector<std::filesystem::path> cgroups;      // cgroup directories to join
  std::optional<unsigned> umask;
  std::optional<uint32_t> uid, gid;                // both or neither
  std::vector<uint32_t> groups;                    // supplementary groups (with uid/gid)
  bool no_new_privs = false;
  bool Active() const {
    return !netns.empty() || !cgroups.empty() || umask || uid || gid || no_new_privs;
  }
};

struct CommandSpec {
  std::vector<std::string> argv;               // argv[0] is looked up in PATH
  std::map<std::string, std::string> env;      // added to (and overriding) the inherited env
  std::filesystem::path cwd;                   // empty: inherit
  std::string stdin_data;                      // written to the child's stdin, then closed
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  /// For detached processes: where stdout/stderr go (appended). Empty: /dev/null.
  std::filesystem::path log_file;
  /// StartDetached only: privileges, cgroups and namespace of the child.
  ChildConfinement confine;
};

struct CommandOutput {
  int exit_code = 0;      // 128+signal when killed by a signal
  std::string stdout_data;
  std::string stderr_data;
};

/// Identity of a process that outlives banger: pid plus the kernel's start
/// time (field 22 of /proc/PID/stat), so a reused pid is never mistaken for it.
struct ProcessIdentity {
  int pid = 0;
  uint64_t start_time = 0;
  bool operator==(const ProcessIdentity&) const = default;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  /// Runs to completion, capturing output. A non-zero exit is not an error
  /// Status; timeouts (the child is killed) and spawn failures are.
  virtual Result<CommandOutput> Run(const CommandSpec& spec) = 0;
  /// Starts a long-lived process in its own session that survives banger's
  /// exit. Its output goes to spec.log_file.
  virtual Result<ProcessIdentity> StartDetached(const CommandSpec& spec) = 0;
};

std::unique_ptr<CommandRunner> MakePosixCommandRunner();

/// Convenience: Run and turn a non-zero exit into an error naming the program
/// and quoting the end of its stderr.
Result<CommandOutput> RunChecked(CommandRunner& runner, const CommandSpec& spec);

/// Reads the start time of `pid`; NotFound if no such process.
Result<uint64_t> ProcessStartTime(int pid);

/// True if a process with this pid exists and has the recorded start time
/// (and is not a zombie).
bool ProcessAlive(const ProcessIdentity& id);

/// This process's identity (computed once).
const ProcessIdentity& SelfProcess();

/// Sends `sig` to the process only if its identity still matches.
Status SignalProcess(const ProcessIdentity& id, int sig);

/// Waits until the process has exited, polling every `poll` on `clock`;
/// false when `deadline` passed first.
bool WaitProcessGone(Clock& clock, const ProcessIdentity& id, std::chrono::steady_clock::time_point deadline,
                     std::chrono::milliseconds poll);

/// SIGKILLs the process (if its identity still matches) and waits up to 10 s
/// for it to go; Internal("WHAT pid N survived SIGKILL") otherwise.
Status KillProcessAndWait(Clock& clock, const ProcessIdentity& id, std::string_view what);

}  // namespace banger
