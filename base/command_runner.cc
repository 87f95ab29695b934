#include "base/command_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <grp.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "base/files.h"
#include "base/strings.h"

extern char** environ;

namespace banger {
namespace {

std::vector<std::string> BuildEnv(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> merged;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    merged[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : extra) merged[k] = v;
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (const auto& [k, v] : merged) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct Pipe {
  int fds[2] = {-1, -1};
  ~Pipe() { CloseBoth(); }
  void CloseBoth() {
    for (int& f : fds) {
      if (f >= 0) ::close(f);
      f = -1;
    }
  }
  Status Open() {
    if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
    return OkStatus();
  }
};

// A detached child just started: it is reaped in the background if it dies
// while banger still runs (no zombie), and adopted by init after banger exits.
Result<ProcessIdentity> Detached(pid_t pid, const std::string& program) {
  std::thread([pid] {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }).detach();
  auto start = ProcessStartTime(pid);
  if (!start) return start.error().WithContext("start " + program);
  return ProcessIdentity{pid, *start};
}

class PosixCommandRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    if (spec.argv.empty()) return InvalidArgument("empty argv");
    BANGER_ASSIGN_OR_RETURN(std::filesystem::path program, ResolveProgram(spec.argv[0]));
    Pipe in, out, err;
    BANGER_RETURN_IF_ERROR(in.Open());
    BANGER_RETURN_IF_ERROR(out.Open());
    BANGER_RETURN_IF_ERROR(err.Open());

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in.fds[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out.fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err.fds[1], 2);
    if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Own process group so a timeout can kill the whole tree.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);

    std::vector<std::string> argv = spec.argv;
    std::vector<std::string> envs = BuildEnv(spec.env);
    auto cargv = CStrings(argv);
    auto cenv = CStrings(envs);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, program.c_str(), &fa, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return ErrnoStatus(rc, "run " + spec.argv[0]);

    ::close(in.fds[0]);
    in.fds[0] = -1;
    ::close(out.fds[1]);
    out.fds[1] = -1;
    ::close(err.fds[1]);
    err.fds[1] = -1;

    CommandOutput result;
    size_t stdin_off = 0;
    if (spec.stdin_data.empty()) {
      ::close(in.fds[1]);
      in.fds[1] = -1;
    } else {
      ::fcntl(in.fds[1], F_SETFL, O_NONBLOCK);
    }
    auto deadline = std::chrono::steady_clock::now() + spec.timeout;
    bool timed_out = false;
    while (out.fds[0] >= 0 || err.fds[0] >= 0) {
      pollfd pfds[3];
      int n = 0;
      int idx_out = -1, idx_err = -1, idx_in = -1;
      if (out.fds[0] >= 0) { idx_out = n; pfds[n++] = {out.fds[0], POLLIN, 0}; }
      if (err.fds[0] >= 0) { idx_err = n; pfds[n++] = {err.fds[0], POLLIN, 0}; }
      if (in.fds[1] >= 0) { idx_in = n; pfds[n++] = {in.fds[1], POLLOUT, 0}; }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        break;
      }
      int pr = ::poll(pfds, static_cast<nfds_t>(n), static_cast<int>(std::min<int64_t>(left.count(), 1000)));
      if (pr < 0 && errno != EINTR) break;
      auto drain = [](int& fd, short revents, std::string& sink) {
        if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
        char buf[65536];
        ssize_t r = ::read(fd, buf, sizeof(buf));
        if (r > 0) {
          sink.append(buf, static_cast<size_t>(r));
        } else if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
          ::close(fd);
          fd = -1;
        }
      };
      if (idx_out >= 0) drain(out.fds[0], pfds[idx_out].revents, result.stdout_data);
      if (idx_err >= 0) drain(err.fds[0], pfds[idx_err].revents, result.stderr_data);
      if (idx_in >= 0 && (pfds[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t w = ::write(in.fds[1], spec.stdin_data.data() + stdin_off,
                            spec.stdin_data.size() - stdin_off);
        if (w > 0) stdin_off += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) stdin_off = spec.stdin_data.size();
        if (stdin_off >= spec.stdin_data.size()) {
          ::close(in.fds[1]);
          in.fds[1] = -1;
        }
      }
    }
    if (timed_out) ::kill(-pid, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
      return DeadlineExceeded(spec.argv[0] + " did not finish within " +
                              FormatDuration(spec.timeout));
    }
    if (WIFEXITED(wstatus)) result.exit_code = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus)) result.exit_code = 128 + WTERMSIG(wstatus);
    return result;
  }

  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override {
    if (spec.argv.empty()) return InvalidArgument("empty argv");
    if (spec.confine.Active()) return StartConfined(spec);
    BANGER_ASSIGN_OR_RETURN(std::filesystem::path program, ResolveProgram(spec.argv[0]));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::string log = spec.log_file.empty() ? "/dev/null" : spec.log_file.string();
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);
    std::vector<std::string> argv = spec.argv;
    std::vector<std::string> envs = BuildEnv(spec.env);
    auto cargv = CStrings(argv);
    auto cenv = CStrings(envs);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, program.c_str(), &fa, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return ErrnoStatus(rc, "start " + spec.argv[0]);
    return Detached(pid, spec.argv[0]);
  }

 private:
  // fork + confinement steps + execve. Everything the child needs is
  // prepared here; between fork and exec the child only makes system calls
  // (async-signal-safe), and reports a failed step through a CLOEXEC pipe
  // (EOF there means exec succeeded).
  Result<ProcessIdentity> StartConfined(const CommandSpec& spec) {
    const ChildConfinement& c = spec.confine;
    if (c.uid.has_value() != c.gid.has_value()) return InvalidArgument("confinement needs both uid and gid");
    auto exe = FindProgram(spec.argv[0]);
    if (!exe) return NotFound("start " + spec.argv[0] + ": not found in PATH");
    std::vector<int> fds;
    auto close_all = [&fds] {
      for (int fd : fds) ::close(fd);
    };
    auto open_fd = [&](const std::string& path, int flags, const std::string& what) -> Result<int> {
      int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
      if (fd < 0) {
        Status s = ErrnoStatus(errno, what + " " + path);
        close_all();
        return s;
      }
      fds.push_back(fd);
      return fd;
    };
    BANGER_ASSIGN_OR_RETURN(int null_fd, open_fd("/dev/null", O_RDONLY, "open"));
    BANGER_ASSIGN_OR_RETURN(int log_fd, open_fd(spec.log_file.empty() ? "/dev/null" : spec.log_file.string(),
                                                O_WRONLY | O_CREAT | O_APPEND, "open log"));
    int netns_fd = -1;
    if (!c.netns.empty()) {
      BANGER_ASSIGN_OR_RETURN(netns_fd, open_fd(c.netns.string(), O_RDONLY, "open network namespace"));
    }
    std::vector<int> cgroup_fds;
    for (const auto& dir : c.cgroups) {
      BANGER_ASSIGN_OR_RETURN(int fd, open_fd((dir / "cgroup.procs").string(), O_WRONLY, "open cgroup"));
      cgroup_fds.push_back(fd);
    }
    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
      Status s = ErrnoStatus(errno, "pipe");
      close_all();
      return s;
    }
    std::vector<std::string> argv = spec.argv;
    std::vector<std::string> envs = BuildEnv(spec.env);
    auto cargv = CStrings(argv);
    auto cenv = CStrings(envs);
    std::string exe_path = exe->string();
    const std::string cwd = spec.cwd.string();
    std::vector<gid_t> groups(c.groups.begin(), c.groups.end());
    const bool drop = c.uid.has_value();
    const uid_t uid = c.uid.value_or(0);
    const gid_t gid = c.gid.value_or(0);

    pid_t pid = ::fork();
    if (pid < 0) {
      Status s = ErrnoStatus(errno, "fork for " + spec.argv[0]);
      ::close(err_pipe[0]);
      ::close(err_pipe[1]);
      close_all();
      return s;
    }
    if (pid == 0) {
      auto fail = [&](int step) {
        int msg[2] = {step, errno};
        (void)!::write(err_pipe[1], msg, sizeof(msg));
        ::_exit(127);
      };
      ::setsid();
      sigset_t empty;
      sigemptyset(&empty);
      ::sigprocmask(SIG_SETMASK, &empty, nullptr);
      if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) fail(0);
      if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) fail(1);
      for (int fd : cgroup_fds) {
        if (::write(fd, "0", 1) != 1) fail(2);
      }
      if (c.umask) ::umask(static_cast<mode_t>(*c.umask));
      if (drop) {
        if (::setgroups(groups.size(), groups.data()) != 0) fail(3);
        if (::setresgid(gid, gid, gid) != 0) fail(4);
        if (::setresuid(uid, uid, uid) != 0) fail(5);
      }
      if (c.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(6);
      // After the privilege drop: the confined identity must reach its directory.
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) fail(8);
      ::execve(exe_path.c_str(), cargv.data(), cenv.data());
      fail(7);
    }
    ::close(err_pipe[1]);
    close_all();
    int msg[2] = {0, 0};
    ssize_t n;
    while ((n = ::read(err_pipe[0], msg, sizeof(msg))) < 0 && errno == EINTR) {
    }
    ::close(err_pipe[0]);
    if (n > 0) {
      int st = 0;
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      static const char* const kSteps[] = {"redirect output", "enter network namespace", "join cgroup",
                                           "setgroups", "setresgid", "setresuid",
                                           "set no_new_privs", "exec", "change directory"};
      const char* step = msg[0] >= 0 && msg[0] < 9 ? kSteps[msg[0]] : "prepare";
      return ErrnoStatus(msg[1], "start " + spec.argv[0] + ": " + step);
    }
    return Detached(pid, spec.argv[0]);
  }
};

}  // namespace

std::unique_ptr<CommandRunner> MakePosixCommandRunner() {
  return std::make_unique<PosixCommandRunner>();
}

Result<CommandOutput> RunChecked(CommandRunner& runner, const CommandSpec& spec) {
  BANGER_ASSIGN_OR_RETURN(CommandOutput out, runner.Run(spec));
  if (out.exit_code != 0) {
    std::string tail(Trim(out.stderr_data));
    if (tail.size() > 800) tail = "..." + tail.substr(tail.size() - 800);
    return Internal(spec.argv[0] + " exited with status " + std::to_string(out.exit_code) +
                    (tail.empty() ? "" : ": " + tail));
  }
  return out;
}

namespace {
// Returns the process state char and start time from /proc/PID/stat.
Result<std::pair<char, uint64_t>> ReadStat(int pid) {
  // Plain read(2), not std::ifstream: a process that exits (and is reaped)
  // between open and read makes read fail with ESRCH, which basic_filebuf
  // turns into a thrown std::ios_base::failure even without exceptions().
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("no process " + std::to_string(pid));
  std::string content;
  char buf[1024];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return NotFound("no process " + std::to_string(pid) + " (" + std::strerror(err) + ")");
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // comm may contain spaces and parens: fields start after the last ')'.
  size_t rp = content.rfind(')');
  if (rp == std::string::npos) return Internal("malformed /proc stat for " + std::to_string(pid));
  std::istringstream rest(content.substr(rp + 2));
  std::string field;
  char state = '?';
  uint64_t start = 0;
  // Field 3 is state; field 22 is starttime. After ')' we are at field 3.
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3) state = field.empty() ? '?' : field[0];
    if (i == 22 && std::from_chars(field.data(), field.data() + field.size(), start).ec != std::errc()) {
      return Internal("malformed /proc stat for " + std::to_string(pid));
    }
  }
  return std::make_pair(state, start);
}
}  // namespace

const ProcessIdentity& SelfProcess() {
  // Recomputed in a forked child: a child that went on as banger (tests do)
  // must not record its parent as the owner of its journal steps, or they
  // would never be closed as abandoned while the parent lives.
  static std::mutex mu;
  static ProcessIdentity self;
  std::lock_guard<std::mutex> l(mu);
  const int pid = static_cast<int>(::getpid());
  if (self.pid != pid) {
    ProcessIdentity id{pid, 0};
    auto start = ProcessStartTime(pid);
    if (start) id.start_time = *start;
    self = id;
  }
  return self;
}

Result<uint64_t> ProcessStartTime(int pid) {
  BANGER_ASSIGN_OR_RETURN(auto st, ReadStat(pid));
  return st.second;
}

bool ProcessAlive(const ProcessIdentity& id) {
  if (id.pid <= 0) return false;
  auto st = ReadStat(id.pid);
  if (!st) return false;
  if (st->first == 'Z' || st->first == 'X') return false;
  return st->second == id.start_time;
}

Status SignalProcess(const ProcessIdentity& id, int sig) {
  if (!ProcessAlive(id)) return NotFound("process " + std::to_string(id.pid) + " is gone");
  if (::kill(id.pid, sig) != 0) return ErrnoStatus(errno, "signal " + std::to_string(id.pid));
  return OkStatus();
}

bool WaitProcessGone(Clock& clock, const ProcessIdentity& id, std::chrono::steady_clock::time_point deadline,
                     std::chrono::milliseconds poll) {
  while (ProcessAlive(id)) {
    if (clock.SteadyNow() >= deadline) return false;
    clock.SleepFor(poll);
  }
  return true;
}

Status KillProcessAndWait(Clock& clock, const ProcessIdentity& id, std::string_view what) {
  if (!ProcessAlive(id)) return OkStatus();
  Status s = SignalProcess(id, SIGKILL);
  if (!s.ok() && ProcessAlive(id)) return s;
  if (!WaitProcessGone(clock, id, clock.SteadyNow() + std::chrono::seconds(10), std::chrono::milliseconds(20))) {
    return Internal(std::string(what) + " pid " + std::to_string(id.pid) + " survived SIGKILL");
  }
  return OkStatus();
}

}  // namespace banger
