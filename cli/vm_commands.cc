#include "cli/vm_commands.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>

#include "host/vm_runtime.h"
#include "providers/agent_client.h"
#include "providers/qemu_hypervisor.h"

namespace banger::cli {
namespace {

// Puts a terminal in raw mode and restores it on destruction.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

}  // namespace

Result<int> RunInteractiveExec(const SandboxRecord& record, const std::vector<std::string>& argv,
                               const std::map<std::string, std::string>& env, const std::string& cwd,
                               bool pass_stdin, bool tty) {
  auto conn = ConnectAgent(host::AgentEndpointOf(record), std::chrono::steady_clock::now() + std::chrono::seconds(10));
  if (!conn) return conn.error().WithContext("connecting to the guest agent of " + record.name);
  ExecCommand cmd;
  cmd.argv = argv;
  cmd.env = env;
  cmd.cwd = cwd;
  InteractiveOptions io;
  int devnull = -1;
  if (!pass_stdin) {
    devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    io.in_fd = devnull;
  }
  io.tty = tty;
  int winch = -1;
  std::unique_ptr<RawTerminal> raw;
  if (tty && ::isatty(0) == 1) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    winch = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    io.winch_fd = winch;
    raw = std::make_unique<RawTerminal>(0);
  }
  auto code = (*conn)->ExecInteractive(cmd, io);
  raw.reset();
  if (winch >= 0) ::close(winch);
  if (devnull >= 0) ::close(devnull);
  return code;
}

bool FollowFile(const std::filesystem::path& path, bool follow, Clock& clock) {
  // The guest writes this file: cap it first, then print a bounded tail
  // (kMaxConsoleLogBytes at most), and in follow mode notice a rotation.
  if (auto capped = CapConsoleLog(path); !capped.ok()) {
    std::fprintf(stderr, "warning: %s\n", capped.error().message().c_str());
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "error: cannot read %s\n", path.c_str());
    return false;
  }
  struct stat st {};
  off_t pos = 0;
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) > kMaxConsoleLogBytes) {
    pos = st.st_size - static_cast<off_t>(kMaxConsoleLogBytes);
  }
  ::lseek(fd, pos, SEEK_SET);
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
      pos += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    std::fflush(stdout);
    if (!follow) break;
    clock.SleepFor(std::chrono::milliseconds(250));
    (void)CapConsoleLog(path);  // a follower keeps the cap even without `banger watch`
    if (::fstat(fd, &st) == 0 && st.st_size < pos) {
      std::fprintf(stdout, "\n[banger: console log rotated]\n");
      pos = 0;
      ::lseek(fd, 0, SEEK_SET);
    }
  }
  ::close(fd);
  return true;
}

}  // namespace banger::cli
