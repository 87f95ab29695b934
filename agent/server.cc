#include "agent/server.h"

#include "agent/builtins.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/vm_sockets.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include "agent/builtins.h"
#include "agent/hosts_file.h"
#include "providers/agent_protocol.h"

extern char** environ;

namespace banger::agent {

namespace proto = banger::agent_protocol;

namespace {

constexpr size_t kOutbufHighWater = 4u << 20;  // stop reading children above this
constexpr size_t kStdinHighWater = 1u << 20;   // stop reading the channel above this
constexpr int64_t kExitDrainGraceMs = 2000;    // wait this long for output EOF after exit

int64_t MonoMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

uint64_t BootMs() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

void Log(const std::string& msg) {
  std::string line = "banger-agent: " + msg + "\n";
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

struct Session {
  uint32_t id = 0;
  pid_t pid = 0;
  bool tty = false;
  int pty_fd = -1;  // tty: master, used for both directions
  int in_fd = -1;
  int out_fd = -1;
  int err_fd = -1;
  std::string stdin_buf;
  bool stdin_eof = false;  // close stdin once stdin_buf drains
  bool exited = false;
  proto::ExitStatus status;
  int64_t exited_at_ms = 0;
  bool orphaned = false;  // host went away: output is discarded, no EXIT is sent

  bool OutputOpen() const { return pty_fd >= 0 || out_fd >= 0 || err_fd >= 0; }
};

class Server {
 public:
  explicit Server(const ServerOptions& options) : opts_(options) {}

  int Run(int port_fd, int listen_fd) {
    port_fd_ = port_fd;
    listen_fd_ = listen_fd;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGIO);  // a virtio port's host attaching (WatchPort)
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sig_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sig_fd_ < 0) {
      Log(std::string("signalfd: ") + std::strerror(errno));
      return 1;
    }
    ::signal(SIGPIPE, SIG_IGN);
    if (port_fd_ >= 0) SetNonBlocking(port_fd_);
    while (!stop_) Iterate();
    return 0;
  }

 private:
  // ---- connection state ------------------------------------------------------

  bool Connected() const { return conn_fd_ >= 0; }

  void OnConnected(int fd) {
    conn_fd_ = fd;
    decoder_ = proto::FrameDecoder();
    outbuf_.clear();
    out_off_ = 0;
    Send(proto::MessageType::kHello, 0, proto::EncodeHello(MakeHello()));
  }

  std::string Mode() const { return opts_.held ? std::string(proto::kModeHeld) : opts_.mode; }

  proto::Hello MakeHello() const {
    proto::Hello h;
    h.agent_version = opts_.agent_version;
    h.boot_ms = BootMs();
    h.mode = Mode();
    return h;
  }

  // Asks for SIGIO on the virtio port (to this process: after the held
  // boot's fork the child serves) or stops it. False when the port cannot
  // signal, so the caller polls it instead.
  bool WatchPort(bool on) {
    if (on && ::fcntl(port_fd_, F_SETOWN, ::getpid()) != 0) return false;
    int flags = ::fcntl(port_fd_, F_GETFL);
    if (flags < 0) return false;
    int want = on ? (flags | O_ASYNC) : (flags & ~O_ASYNC);
    return want == flags || ::fcntl(port_fd_, F_SETFL, want) == 0;
  }

  void OnDisconnected() {
    if (listen_fd_ >= 0) CloseFd(conn_fd_);  // unix mode owns the connection
    conn_fd_ = -1;
    outbuf_.clear();
    out_off_ = 0;
    // Sessions belong to the connection (like an ssh session): stop them.
    for (auto& [id, s] : sessions_) {
      if (!s->exited && s->pid > 0) ::kill(-s->pid, SIGKILL);
      s->orphaned = true;
      CloseFd(s->pty_fd);
      CloseFd(s->in_fd);
      CloseFd(s->out_fd);
      CloseFd(s->err_fd);
    }
    std::erase_if(sessions_, [](const auto& kv) { return kv.second->exited; });
  }

  void Send(proto::MessageType type, uint32_t channel, std::string_view payload) {
    if (!Connected()) return;
    outbuf_ += proto::EncodeFrame(type, channel, payload);
  }

  void SendError(uint32_t channel, const std::string& msg) {
    Send(proto::MessageType::kError, channel, proto::EncodeString(msg));
  }

  size_t Pending() const { return outbuf_.size() - out_off_; }

  void FlushSome() {
    while (Connected() && Pending() > 0) {
      ssize_t n = ::write(conn_fd_, outbuf_.data() + out_off_, Pending());
      if (n > 0) {
        out_off_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      OnDisconnected();  // EPIPE, ENOTCONN, ...
      return;
    }
    if (out_off_ > 0 && out_off_ == outbuf_.size()) {
      outbuf_.clear();
      out_off_ = 0;
    } else if (out_off_ > (1u << 20)) {
      outbuf_.erase(0, out_off_);
      out_off_ = 0;
    }
  }

  // ---- main loop -------------------------------------------------------------

  void Iterate() {
    std::vector<pollfd> pfds;
    enum class Slot { kSig, kListen, kConn, kPty, kIn, kOut, kErr };
    std::vector<std::pair<Slot, Session*>> slots;
    auto add = [&](int fd, short events, Slot slot, Session* s) {
      pfds.push_back({fd, events, 0});
      slots.emplace_back(slot, s);
    };
    add(sig_fd_, POLLIN, Slot::kSig, nullptr);
    int timeout = -1;
    if (listen_fd_ >= 0 && !Connected()) add(listen_fd_, POLLIN, Slot::kListen, nullptr);
    if (port_fd_ >= 0 && !Connected()) {
      // A virtio port reports POLLHUP while no host is attached, so poll
      // cannot wait for one; the kernel signals SIGIO (into sig_fd_) when
      // the host attaches. Armed before the probe, so an attach between the
      // two still wakes us; the timeout is only a fallback.
      bool signalled = WatchPort(true);
      pollfd p{port_fd_, POLLIN, 0};
      int r = ::poll(&p, 1, 0);
      if (r >= 0 && !(p.revents & POLLHUP)) {
        WatchPort(false);  // data would raise SIGIO too: not while attached
        OnConnected(port_fd_);
      } else {
        timeout = signalled ? 1000 : 100;
      }
    }
    if (Connected()) {
      // Flow control for large stdin (a tar stream into @banger/untar): stop
      // reading the channel while a child has more than kStdinHighWater
      // waiting, so the host's writes block instead of the guest's memory
      // filling up.
      size_t backlog = 0;
      for (auto& [id, s] : sessions_) backlog = std::max(backlog, s->stdin_buf.size());
      short ev = static_cast<short>((backlog < kStdinHighWater ? POLLIN : 0) | (Pending() > 0 ? POLLOUT : 0));
      add(conn_fd_, ev, Slot::kConn, nullptr);
    }
    bool can_read_children = Pending() < kOutbufHighWater;
    int64_t now = MonoMs();
    for (auto& [id, s] : sessions_) {
      Session* sp = s.get();
      if (sp->pty_fd >= 0) {
        short ev = can_read_children ? POLLIN : 0;
        if (!sp->stdin_buf.empty()) ev |= POLLOUT;
        add(sp->pty_fd, ev, Slot::kPty, sp);
      }
      if (sp->in_fd >= 0 && !sp->stdin_buf.empty()) add(sp->in_fd, POLLOUT, Slot::kIn, sp);
      if (can_read_children && sp->out_fd >= 0) add(sp->out_fd, POLLIN, Slot::kOut, sp);
      if (can_read_children && sp->err_fd >= 0) add(sp->err_fd, POLLIN, Slot::kErr, sp);
      if (sp->exited && sp->OutputOpen()) {
        int left = static_cast<int>(std::max<int64_t>(0, sp->exited_at_ms + kExitDrainGraceMs - now));
        timeout = timeout < 0 ? left : std::min(timeout, left);
      }
    }
    int r = ::poll(pfds.data(), pfds.size(), timeout);
    if (r < 0 && errno != EINTR) {
      Log(std::string("poll: ") + std::strerror(errno));
      ::usleep(100000);
      return;
    }
    for (size_t i = 0; r > 0 && i < pfds.size(); ++i) {
      short re = pfds[i].revents;
      if (!re) continue;
      auto [slot, s] = slots[i];
      switch (slot) {
        case Slot::kSig: ReapChildren(); break;
        case Slot::kListen: Accept(); break;
        case Slot::kConn: ConnEvent(re); break;
        case Slot::kPty:
          if (re & POLLOUT) WriteStdin(*s, s->pty_fd);
          if (re & (POLLIN | POLLHUP | POLLERR)) ReadOutput(*s, s->pty_fd, proto::MessageType::kStdout);
          break;
        case Slot::kIn:
          if (re & (POLLOUT | POLLERR | POLLHUP)) WriteStdin(*s, s->in_fd);
          break;
        case Slot::kOut: ReadOutput(*s, s->out_fd, proto::MessageType::kStdout); break;
        case Slot::kErr: ReadOutput(*s, s->err_fd, proto::MessageType::kStderr); break;
      }
      if (stop_) return;
    }
    FinishSessions();
    FlushSome();
  }

  void Accept() {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) OnConnected(fd);
  }

  void ConnEvent(short re) {
    if (re & POLLIN) {
      char buf[65536];
      while (Connected()) {
        ssize_t n = ::read(conn_fd_, buf, sizeof(buf));
        if (n > 0) {
          decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
          while (auto f = decoder_.Next()) {
            HandleFrame(*f);
            if (stop_) return;
          }
          if (!decoder_.error().empty()) {
            Log("protocol error: " + decoder_.error());
            SendError(0, "protocol error: " + decoder_.error());
            FlushSome();
            OnDisconnected();
            return;
          }
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        OnDisconnected();  // EOF: host closed its end
        return;
      }
    } else if (re & (POLLHUP | POLLERR)) {
      OnDisconnected();
      return;
    }
    if (re & POLLOUT) FlushSome();
  }

  // ---- requests --------------------------------------------------------------

  // While held only these are served; the rest waits for IDENTITY.
  static bool ServedWhileHeld(proto::MessageType t) {
    return t == proto::MessageType::kPing || t == proto::MessageType::kPowerOff ||
           t == proto::MessageType::kIdentity;
  }

  void RefuseWhileHeld(const proto::Frame& f) {
    using proto::MessageType;
    switch (f.type) {
      case MessageType::kExec:
        // ERROR then EXIT, like an exec that could not start: the host's
        // Exec returns at once with the reason.
        SendError(f.channel, "exec refused: the agent is waiting for identity (booted with hold)");
        Send(MessageType::kExit, f.channel, proto::EncodeExit({false, 127}));
        break;
      case MessageType::kStdin:
      case MessageType::kStdinEof:
      case MessageType::kResize:
      case MessageType::kSignal:
        break;  // no session can exist while held
      default:
        SendError(f.channel, std::string(proto::MessageTypeName(f.type)) +
                                 " refused: the agent is waiting for identity (booted with hold)");
        break;
    }
  }

  // IDENTITY: applied once, by a held agent only; answered on the request's
  // channel with IDENTITY_ACK (the new HELLO) or ERROR.
  void Identity(const proto::Frame& f) {
    if (!opts_.held) {
      SendError(f.channel, "IDENTITY refused: this agent is not waiting for one (it booted without hold, "
                           "or its identity was already applied)");
      return;
    }
    std::string err;
    auto id = proto::DecodeIdentity(f.payload, &err);
    if (!id) {
      SendError(f.channel, err);
      return;
    }
    if (!opts_.apply_identity) {
      SendError(f.channel, "IDENTITY refused: this agent cannot apply one");
      return;
    }
    ServerOptions next = opts_;
    if (err = opts_.apply_identity(*id, &next); !err.empty()) {
      Log("identity refused: " + err);
      SendError(f.channel, "IDENTITY: " + err);
      return;
    }
    opts_ = std::move(next);
    opts_.held = false;
    opts_.apply_identity = nullptr;
    Log("identity applied; serving as " + opts_.mode);
    Send(proto::MessageType::kIdentityAck, f.channel, proto::EncodeHello(MakeHello()));
  }

  void HandleFrame(const proto::Frame& f) {
    using proto::MessageType;
    if (opts_.held && !ServedWhileHeld(f.type)) {
      RefuseWhileHeld(f);
      return;
    }
    switch (f.type) {
      case MessageType::kPing: {
        auto nonce = proto::DecodeU64(f.payload);
        Send(MessageType::kPong, 0, proto::EncodePong(nonce.value_or(0), Mode()));
        break;
      }
      case MessageType::kIdentity: Identity(f); break;
      case MessageType::kExec: StartExec(f); break;
      case MessageType::kStdin:
        if (Session* s = Find(f.channel)) s->stdin_buf += f.payload;
        break;
      case MessageType::kStdinEof:
        if (Session* s = Find(f.channel)) {
          if (s->tty) {
            s->stdin_buf.push_back('\x04');  // ^D: EOF for the line discipline
          } else {
            s->stdin_eof = true;
            if (s->stdin_buf.empty()) CloseFd(s->in_fd);
          }
        }
        break;
      case MessageType::kResize:
        if (Session* s = Find(f.channel); s && s->pty_fd >= 0) {
          if (auto rc = proto::DecodeResize(f.payload)) {
            winsize ws{};
            ws.ws_row = rc->first;
            ws.ws_col = rc->second;
            ::ioctl(s->pty_fd, TIOCSWINSZ, &ws);
          }
        }
        break;
      case MessageType::kSignal:
        if (Session* s = Find(f.channel); s && !s->exited) {
          auto sig = proto::DecodeU32(f.payload);
          if (sig && *sig > 0 && *sig < 65) {
            if (::kill(-s->pid, static_cast<int>(*sig)) != 0) ::kill(s->pid, static_cast<int>(*sig));
          }
        }
        break;
      case MessageType::kPowerOff:
        Log("power off requested");
        Send(MessageType::kPowerOffAck, 0, "");
        FlushBlocking(1000);
        if (opts_.power_off) opts_.power_off();
        stop_ = true;
        break;
      case MessageType::kSetHosts: SetHosts(f); break;
      case MessageType::kHello:
      case MessageType::kPong:
      case MessageType::kStarted:
      case MessageType::kStdout:
      case MessageType::kStderr:
      case MessageType::kExit:
      case MessageType::kPowerOffAck:
      case MessageType::kError:
      case MessageType::kSetHostsAck:
      case MessageType::kIdentityAck:
      default:
        SendError(f.channel, std::string("unexpected message type ") +
                                 std::to_string(static_cast<int>(f.type)));
        break;
    }
  }

  void FlushBlocking(int64_t max_ms) {
    int64_t deadline = MonoMs() + max_ms;
    while (Connected() && Pending() > 0 && MonoMs() < deadline) {
      FlushSome();
      if (Pending() == 0) break;
      pollfd p{conn_fd_, POLLOUT, 0};
      ::poll(&p, 1, 50);
    }
  }

  // Replaces the banger block of the hosts file; answers on the request's
  // channel with SET_HOSTS_ACK, or ERROR saying why nothing was written.
  void SetHosts(const proto::Frame& f) {
    std::string err;
    auto entries = proto::DecodeSetHosts(f.payload, &err);
    if (!entries) {
      SendError(f.channel, err);
      return;
    }
    if (opts_.hosts_path.empty()) {
      SendError(f.channel, "SET_HOSTS: this agent has no hosts file (test mode without --hosts-file)");
      return;
    }
    std::string current;
    if (err = ReadHostsFile(opts_.hosts_path, &current); !err.empty()) {
      SendError(f.channel, "SET_HOSTS: " + err);
      return;
    }
    std::string updated = RewriteHostsBlock(current, *entries);
    if (updated != current) {
      if (err = WriteHostsFile(opts_.hosts_path, updated); !err.empty()) {
        SendError(f.channel, "SET_HOSTS: " + err);
        return;
      }
    }
    Log("hosts: " + std::to_string(entries->size()) + " peer entries in " + opts_.hosts_path);
    Send(proto::MessageType::kSetHostsAck, f.channel, proto::EncodeU32(static_cast<uint32_t>(entries->size())));
  }

  Session* Find(uint32_t id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->orphaned) return nullptr;
    return it->second.get();
  }

  void StartExec(const proto::Frame& f) {
    auto req = proto::DecodeExec(f.payload);
    if (!req) {
      SendError(f.channel, "malformed EXEC request");
      Send(proto::MessageType::kExit, f.channel, proto::EncodeExit({false, 127}));
      return;
    }
    if (sessions_.count(f.channel)) {
      SendError(f.channel, "exec id " + std::to_string(f.channel) + " already in use");
      return;
    }
    auto s = std::make_unique<Session>();
    s->id = f.channel;
    s->tty = req->tty;
    std::string err = Spawn(*req, *s);
    if (!err.empty()) {
      SendError(f.channel, err);
      Send(proto::MessageType::kExit, f.channel, proto::EncodeExit({false, 127}));
      return;
    }
    Send(proto::MessageType::kStarted, f.channel, proto::EncodeU32(static_cast<uint32_t>(s->pid)));
    sessions_[f.channel] = std::move(s);
  }

  // Returns an error message, or "" on success.
  std::string Spawn(const proto::ExecRequest& req, Session& s) {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, status[2] = {-1, -1};
    int master = -1;
    std::string slave_name;
    auto cleanup = [&] {
      for (int* p : {in, out, errp, status}) {
        CloseFd(p[0]);
        CloseFd(p[1]);
      }
      CloseFd(master);
    };
    if (::pipe2(status, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    if (req.tty) {
      master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
        std::string e = std::string("pty: ") + std::strerror(errno);
        cleanup();
        return e;
      }
      char name[128];
      if (::ptsname_r(master, name, sizeof(name)) != 0) {
        cleanup();
        return "ptsname failed";
      }
      slave_name = name;
      winsize ws{};
      ws.ws_row = req.rows ? req.rows : 24;
      ws.ws_col = req.cols ? req.cols : 80;
      ::ioctl(master, TIOCSWINSZ, &ws);
    } else if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
               ::pipe2(errp, O_CLOEXEC) != 0) {
      std::string e = std::string("pipe: ") + std::strerror(errno);
      cleanup();
      return e;
    } else {
      // Bigger pipes: fewer wake-ups per MiB for streams (tar in and out).
      // Best effort: the limit (/proc/sys/fs/pipe-max-size) may refuse it.
      ::fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
      ::fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
    }
    std::vector<std::string> env = MergeEnv(opts_.base_env, req.env);
    if (req.tty && std::none_of(env.begin(), env.end(),
                                [](const std::string& e) { return e.rfind("TERM=", 0) == 0; })) {
      env.push_back("TERM=xterm-256color");
    }
    std::vector<char*> cargv, cenv;
    std::vector<std::string> argv = req.argv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    std::string cwd = req.cwd.empty() ? "/" : req.cwd;

    pid_t pid = ::fork();
    if (pid < 0) {
      std::string e = std::string("fork: ") + std::strerror(errno);
      cleanup();
      return e;
    }
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::setsid();
      if (req.tty) {
        int slave = ::open(slave_name.c_str(), O_RDWR);
        if (slave < 0) goto fail;
        ::ioctl(slave, TIOCSCTTY, 0);
        ::dup2(slave, 0);
        ::dup2(slave, 1);
        ::dup2(slave, 2);
        if (slave > 2) ::close(slave);
      } else {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(errp[1], 2);
      }
      if (::chdir(cwd.c_str()) != 0) goto fail;
      environ = cenv.data();
      if (argv[0].rfind(kBuiltinPrefix, 0) == 0) {
        const Builtin* builtin = FindBuiltin(argv[0]);
        if (builtin == nullptr) {
          errno = ENOENT;
          goto fail;
        }
        CloseFd(status[1]);  // started: the host gets STARTED, then the builtin's output
        std::fflush(nullptr);
        int rc = builtin->fn(argv);
        std::fflush(nullptr);
        ::_exit(rc);
      }
      ::execvp(cargv[0], cargv.data());
    fail:
      int e = errno;
      ssize_t ignored = ::write(status[1], &e, sizeof(e));
      (void)ignored;
      ::_exit(127);
    }
    CloseFd(status[1]);
    int child_errno = 0;
    ssize_t n;
    do {
      n = ::read(status[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    CloseFd(status[0]);
    if (n > 0) {
      int st;
      ::waitpid(pid, &st, 0);
      cleanup();
      return "exec " + req.argv[0] + " (cwd " + cwd + "): " + std::strerror(child_errno);
    }
    s.pid = pid;
    if (req.tty) {
      s.pty_fd = master;
      master = -1;
      SetNonBlocking(s.pty_fd);
    } else {
      CloseFd(in[0]);
      CloseFd(out[1]);
      CloseFd(errp[1]);
      s.in_fd = in[1];
      s.out_fd = out[0];
      s.err_fd = errp[0];
      in[1] = out[0] = errp[0] = -1;
      SetNonBlocking(s.in_fd);
      SetNonBlocking(s.out_fd);
      SetNonBlocking(s.err_fd);
    }
    cleanup();
    return "";
  }

  void WriteStdin(Session& s, int& fd) {
    // Written from an offset and erased once: erasing the front after every
    // pipe-sized write moved the whole backlog each time (quadratic, and
    // slow under TCG when a tar stream fills the buffer).
    size_t off = 0;
    while (fd >= 0 && off < s.stdin_buf.size()) {
      ssize_t n = ::write(fd, s.stdin_buf.data() + off, s.stdin_buf.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        s.stdin_buf.erase(0, off);
        return;
      }
      s.stdin_buf.clear();  // reader gone (EPIPE): drop input
      if (!s.tty) CloseFd(fd);
      return;
    }
    s.stdin_buf.erase(0, off);
    if (!s.tty && s.stdin_eof && s.stdin_buf.empty()) CloseFd(s.in_fd);
  }

  void ReadOutput(Session& s, int& fd, proto::MessageType type) {
    char buf[proto::kMaxDataChunk];
    for (int rounds = 0; fd >= 0 && rounds < 8; ++rounds) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n > 0) {
        if (!s.orphaned) Send(type, s.id, std::string_view(buf, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      CloseFd(fd);  // EOF, or EIO on a pty whose slave side is closed
      return;
    }
  }

  void ReapChildren() {
    signalfd_siginfo si;
    while (::read(sig_fd_, &si, sizeof(si)) > 0) {
    }
    while (true) {
      int st = 0;
      pid_t pid = ::waitpid(-1, &st, WNOHANG);
      if (pid <= 0) break;
      if (pid == opts_.entrypoint_pid) {
        Log("entrypoint (pid " + std::to_string(pid) + ") exited with " +
            (WIFSIGNALED(st) ? "signal " + std::to_string(WTERMSIG(st))
                             : "status " + std::to_string(WEXITSTATUS(st))));
      }
      for (auto& [id, s] : sessions_) {
        if (s->pid == pid && !s->exited) {
          s->exited = true;
          s->exited_at_ms = MonoMs();
          if (WIFSIGNALED(st)) s->status = {true, WTERMSIG(st)};
          else s->status = {false, WEXITSTATUS(st)};
        }
      }
    }
  }

  void FinishSessions() {
    int64_t now = MonoMs();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      Session& s = *it->second;
      if (!s.exited) {
        ++it;
        continue;
      }
      if (s.OutputOpen() && now < s.exited_at_ms + kExitDrainGraceMs) {
        ++it;
        continue;
      }
      // Output still open after the grace period: a background process kept
      // the pipe; report the exit anyway.
      CloseFd(s.pty_fd);
      CloseFd(s.in_fd);
      CloseFd(s.out_fd);
      CloseFd(s.err_fd);
      if (!s.orphaned) Send(proto::MessageType::kExit, s.id, proto::EncodeExit(s.status));
      it = sessions_.erase(it);
    }
  }

  ServerOptions opts_;  // a copy: IDENTITY replaces it
  int port_fd_ = -1;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  int sig_fd_ = -1;
  bool stop_ = false;
  proto::FrameDecoder decoder_;
  std::string outbuf_;
  size_t out_off_ = 0;
  std::map<uint32_t, std::unique_ptr<Session>> sessions_;
};

}  // namespace

std::vector<std::string> DefaultEnv() {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"};
}

std::vector<std::string> MergeEnv(const std::vector<std::string>& base,
                                  const std::vector<std::string>& overrides) {
  std::vector<std::string> out;
  std::map<std::string, size_t> index;
  auto put = [&](const std::string& kv) {
    std::string key = kv.substr(0, kv.find('='));
    auto it = index.find(key);
    if (it != index.end()) {
      out[it->second] = kv;
    } else {
      index[key] = out.size();
      out.push_back(kv);
    }
  };
  for (const auto& kv : base) put(kv);
  for (const auto& kv : overrides) put(kv);
  return out;
}

int ServeVirtioPort(int port_fd, const ServerOptions& options) {
  Server server(options);
  return server.Run(port_fd, -1);
}

int ServeListener(int listen_fd, const ServerOptions& options) {
  Server server(options);
  return server.Run(-1, listen_fd);
}

int ServeUnixSocket(const std::string& path, const ServerOptions& options) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return 1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    Log("socket path too long: " + path);
    return 1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0) {
    Log("bind/listen " + path + ": " + std::strerror(errno));
    ::close(fd);
    return 1;
  }
  int rc = ServeListener(fd, options);
  ::close(fd);
  ::unlink(path.c_str());
  return rc;
}

bool VsockAvailable() {
  // /dev/vsock answers the local CID only once a transport with a device is
  // bound (virtio-vsock under Firecracker); without one it says
  // VMADDR_CID_ANY or the ioctl fails, and listening would never see a host.
  int fd = ::open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned int cid = VMADDR_CID_ANY;
  bool ok = ::ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) == 0;
  ::close(fd);
  return ok && cid != VMADDR_CID_ANY && cid > VMADDR_CID_HOST;
}

int OpenVsockListener(uint32_t port) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    Log(std::string("vsock socket: ") + std::strerror(errno));
    return -1;
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  // Backlog as QEMU's chardev gives the serial port: one connection is
  // served, the next waits until it closes (docs/guest-agent.md, "Channels").
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 4) != 0) {
    Log("bind/listen vsock port " + std::to_string(port) + ": " + std::strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace banger::agent
