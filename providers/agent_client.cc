#include "providers/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace banger {

namespace fs = std::filesystem;
namespace proto = agent_protocol;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

// ExecInteractive stops reading its input fd while this much is queued for
// the agent, so a large stream (a tar of a workspace) is never held in memory.
constexpr size_t kInputHighWater = 1u << 20;

int MsUntil(SteadyTime deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left, 1000000));
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) return ErrnoStatus(errno, "write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

// The guest's ERROR text, made safe for a host terminal and bounded.
std::string GuestError(std::string_view payload) {
  auto text = proto::DecodeString(payload);
  if (!text) return "malformed ERROR frame from the guest agent";
  return SanitizeGuestText(*text);
}

class SocketAgentConnection final : public AgentConnection {
 public:
  SocketAgentConnection(int fd, fs::path path) : fd_(fd), path_(std::move(path)) {}
  ~SocketAgentConnection() override { ::close(fd_); }

  Result<proto::Hello> WaitHello(SteadyTime deadline) override {
    if (hello_) return *hello_;
    uint64_t nonce = 0;
    auto next_ping = steady_clock::now();
    while (true) {
      if (steady_clock::now() >= next_ping) {
        nonce = ++nonce_;
        Queue(proto::MessageType::kPing, 0, proto::EncodeU64(nonce));
        // Pings are tiny; a short interval notices the agent soon after it starts.
        next_ping = steady_clock::now() + milliseconds(50);
      }
      auto f = ReadFrame(std::min(deadline, next_ping));
      if (!f.ok()) {
        if (f.error().code() == StatusCode::kDeadlineExceeded && steady_clock::now() < deadline) continue;
        return f.error().WithContext("waiting for the guest agent on " + path_.string());
      }
      if (hello_) return *hello_;
      if (f->type == proto::MessageType::kHello) {
        return DataLoss("malformed HELLO from the guest agent on " + path_.string());
      }
      if (f->type == proto::MessageType::kPong) {
        auto pong = proto::DecodePong(f->payload);
        if (pong && pong->nonce == nonce) {
          hello_ = proto::Hello{};
          hello_->mode = pong->mode.empty() ? "unknown" : SanitizeGuestText(pong->mode.substr(0, 16));
          return *hello_;
        }
      }
    }
  }

  Result<std::chrono::microseconds> Ping(milliseconds timeout) override {
    auto start = steady_clock::now();
    auto deadline = start + timeout;
    uint64_t nonce = ++nonce_;
    Queue(proto::MessageType::kPing, 0, proto::EncodeU64(nonce));
    while (true) {
      BANGER_ASSIGN_OR_RETURN(proto::Frame f, ReadFrame(deadline));
      auto pong = f.type == proto::MessageType::kPong ? proto::DecodePong(f.payload) : std::nullopt;
      if (pong && pong->nonce == nonce) {
        return std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - start);
      }
    }
  }

  Result<ExecResult> Exec(const ExecCommand& command, std::string_view stdin_data,
                          milliseconds timeout) override {
    auto deadline = steady_clock::now() + timeout;
    uint32_t id = next_id_++;
    Queue(proto::MessageType::kExec, id, proto::EncodeExec(MakeRequest(command, false, 24, 80)));
    for (size_t off = 0; off < stdin_data.size(); off += proto::kMaxDataChunk) {
      Queue(proto::MessageType::kStdin, id, stdin_data.substr(off, proto::kMaxDataChunk));
    }
    Queue(proto::MessageType::kStdinEof, id, "");
    ExecResult result;
    std::string error;
    size_t kept = 0;
    auto keep = [&](std::string& into, const std::string& data) {
      size_t room = command.max_output > kept ? command.max_output - kept : 0;
      size_t n = std::min(room, data.size());
      into.append(data, 0, n);
      kept += n;
      result.output_dropped += data.size() - n;
    };
    while (true) {
      auto f = ReadFrame(deadline);
      if (!f.ok()) {
        if (f.error().code() == StatusCode::kDeadlineExceeded) {
          Queue(proto::MessageType::kSignal, id, proto::EncodeU32(SIGKILL));
          (void)Flush(steady_clock::now() + milliseconds(500));
          return DeadlineExceeded("exec " + command.argv.at(0) + " did not finish within " +
                                  std::to_string(timeout.count()) + "ms");
        }
        return f.error().WithContext("exec " + command.argv.at(0));
      }
      if (f->channel != id) continue;  // leftovers of an earlier, abandoned exec
      switch (f->type) {
        case proto::MessageType::kStdout: keep(result.stdout_data, f->payload); break;
        case proto::MessageType::kStderr: keep(result.stderr_data, f->payload); break;
        case proto::MessageType::kError: error = GuestError(f->payload); break;
        case proto::MessageType::kExit: {
          auto st = proto::DecodeExit(f->payload);
          if (!st) return DataLoss("malformed or out-of-range EXIT from the guest agent");
          if (!error.empty()) {
            return error.find("No such file") != std::string::npos ? NotFound(error)
                                                                   : FailedPrecondition(error);
          }
          result.signaled = st->signaled;
          result.exit_code = st->ShellCode();
          return result;
        }
        default: break;
      }
    }
  }

  Result<int> ExecInteractive(const ExecCommand& command, const InteractiveOptions& io) override {
    uint16_t rows = 24, cols = 80;
    if (io.tty) {
      winsize ws{};
      if (::ioctl(io.in_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
        rows = ws.ws_row;
        cols = ws.ws_col;
      }
    }
    uint32_t id = next_id_++;
    Queue(proto::MessageType::kExec, id, proto::EncodeExec(MakeRequest(command, io.tty, rows, cols)));
    bool in_open = true;
    std::string error;
    const bool idle_limited = io.idle_timeout.count() > 0;
    auto last_moved = steady_clock::now();
    while (true) {
      // Deliver already-decoded frames first.
      while (auto f = NextBufferedFrame()) {
        if (f->channel != id) continue;
        switch (f->type) {
          case proto::MessageType::kStdout: BANGER_RETURN_IF_ERROR(WriteAll(io.out_fd, f->payload)); break;
          case proto::MessageType::kStderr:
            BANGER_RETURN_IF_ERROR(WriteAll(io.tty ? io.out_fd : io.err_fd, f->payload));
            break;
          case proto::MessageType::kError: error = GuestError(f->payload); break;
          case proto::MessageType::kExit: {
            if (!error.empty()) return FailedPrecondition(error);
            auto st = proto::DecodeExit(f->payload);
            if (!st) return DataLoss("malformed or out-of-range EXIT from the guest agent");
            return st->ShellCode();
          }
          default: break;
        }
      }
      pollfd pfds[3];
      nfds_t n = 0;
      pfds[n++] = {fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
      int in_idx = -1, winch_idx = -1;
      if (in_open && out_.size() < kInputHighWater) {  // flow control: the guest sets the pace
        in_idx = static_cast<int>(n);
        pfds[n++] = {io.in_fd, POLLIN, 0};
      }
      if (io.winch_fd >= 0) {
        winch_idx = static_cast<int>(n);
        pfds[n++] = {io.winch_fd, POLLIN, 0};
      }
      int wait_ms = -1;
      if (idle_limited) {
        auto idle_deadline = last_moved + io.idle_timeout;
        if (steady_clock::now() >= idle_deadline) {
          Queue(proto::MessageType::kSignal, id, proto::EncodeU32(SIGKILL));
          (void)Flush(steady_clock::now() + milliseconds(500));
          return DeadlineExceeded("guest agent channel " + path_.string() + " idle for " +
                                  std::to_string(io.idle_timeout.count()) + "ms during exec " +
                                  command.argv.at(0) + " (the guest stopped answering)");
        }
        wait_ms = std::max(1, MsUntil(idle_deadline));
      }
      int r = ::poll(pfds, n, wait_ms);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "poll");
      }
      size_t before_in = bytes_in_, before_out = bytes_out_;
      if (pfds[0].revents) BANGER_RETURN_IF_ERROR(ReadSome());
      if (pfds[0].revents & POLLOUT) BANGER_RETURN_IF_ERROR(WriteSome());
      if (bytes_in_ != before_in || bytes_out_ != before_out) last_moved = steady_clock::now();
      if (in_idx >= 0 && pfds[in_idx].revents) {
        char buf[proto::kMaxDataChunk];
        ssize_t got = ::read(io.in_fd, buf, sizeof(buf));
        if (got > 0) {
          Queue(proto::MessageType::kStdin, id, std::string_view(buf, static_cast<size_t>(got)));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          in_open = false;
          Queue(proto::MessageType::kStdinEof, id, "");
        }
      }
      if (winch_idx >= 0 && pfds[winch_idx].revents) {
        char drain[128];
        ssize_t ignored = ::read(io.winch_fd, drain, sizeof(drain));
        (void)ignored;
        winsize ws{};
        if (::ioctl(io.in_fd, TIOCGWINSZ, &ws) == 0) {
          Queue(proto::MessageType::kResize, id, proto::EncodeResize(ws.ws_row, ws.ws_col));
        }
      }
    }
  }

  Status SetHosts(const std::vector<GuestHost>& hosts, SteadyTime deadline) override {
    if (std::string why = proto::ValidateHostsEntries(hosts); !why.empty()) return InvalidArgument(why);
    std::string payload = proto::EncodeSetHosts(hosts);
    if (payload.size() + proto::kHeaderSize > proto::kMaxFrameLength) {
      return InvalidArgument("hosts block of " + std::to_string(payload.size()) +
                             " bytes does not fit in one agent frame");
    }
    // A request id from the exec id space: the reply comes on it, so a late
    // reply to an abandoned request is never taken for this one's.
    uint32_t id = next_id_++;
    Queue(proto::MessageType::kSetHosts, id, payload);
    while (true) {
      auto f = ReadFrame(deadline);
      if (!f.ok()) {
        if (f.error().code() == StatusCode::kDeadlineExceeded) {
          return DeadlineExceeded("guest agent did not acknowledge the hosts update on " + path_.string());
        }
        return f.error().WithContext("updating the guest's /etc/hosts");
      }
      if (f->channel != id) continue;
      if (f->type == proto::MessageType::kSetHostsAck) return OkStatus();
      if (f->type == proto::MessageType::kError) {
        std::string error = GuestError(f->payload);
        if (error.rfind("unexpected message type", 0) == 0) {
          return FailedPrecondition("the guest agent is too old to update /etc/hosts (" + error +
                                    "); restart the sandbox to give it the current agent");
        }
        return FailedPrecondition("guest agent could not update /etc/hosts: " + error);
      }
    }
  }

  Status SendIdentity(const GuestConfig& config, std::string_view mac_address, milliseconds timeout) override {
    auto deadline = steady_clock::now() + timeout;
    proto::Identity id;
    id.mac = std::string(mac_address);
    GuestConfig sandbox = config;
    sandbox.hold_for_identity = false;  // the identity is the sandbox's own, never a template's
    id.config_json = GuestConfigToJson(sandbox);
    id.entropy.resize(proto::kIdentityEntropyBytes);
    for (size_t got = 0; got < id.entropy.size();) {
      ssize_t n = ::getrandom(id.entropy.data() + got, id.entropy.size() - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoStatus(errno, "getrandom for the guest's entropy");
      got += static_cast<size_t>(n);
    }
    auto now = std::chrono::system_clock::now().time_since_epoch();
    id.time_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
    if (std::string why = proto::ValidateIdentity(id); !why.empty()) {
      return InvalidArgument("guest identity: " + why);
    }
    uint32_t request = next_id_++;
    Queue(proto::MessageType::kIdentity, request, proto::EncodeIdentity(id));
    while (true) {
      auto f = ReadFrame(deadline);
      if (!f.ok()) {
        if (f.error().code() == StatusCode::kDeadlineExceeded) {
          return DeadlineExceeded("guest agent did not apply its identity within " +
                                  std::to_string(timeout.count()) + "ms on " + path_.string());
        }
        return f.error().WithContext("giving the guest its identity");
      }
      if (f->channel != request) continue;
      if (f->type == proto::MessageType::kIdentityAck) {
        auto hello = proto::DecodeHello(f->payload);
        if (!hello) return DataLoss("malformed IDENTITY_ACK from the guest agent on " + path_.string());
        hello->agent_version = SanitizeGuestText(hello->agent_version.substr(0, 64));
        hello->mode = SanitizeGuestText(hello->mode.substr(0, 16));
        hello_ = *hello;
        return OkStatus();
      }
      if (f->type == proto::MessageType::kError) {
        std::string error = GuestError(f->payload);
        if (error.rfind("unexpected message type", 0) == 0) {
          return FailedPrecondition("the guest agent is too old to take an identity (" + error + ")");
        }
        return FailedPrecondition("guest agent refused its identity: " + error);
      }
    }
  }

  Status PowerOff(milliseconds timeout) override {
    auto deadline = steady_clock::now() + timeout;
    Queue(proto::MessageType::kPowerOff, 0, "");
    while (true) {
      auto f = ReadFrame(deadline);
      if (!f.ok()) {
        // The VM may go away before the ack is read: a closed channel counts.
        if (f.error().code() == StatusCode::kUnavailable) return OkStatus();
        return f.error().WithContext("power off via guest agent");
      }
      if (f->type == proto::MessageType::kPowerOffAck) return OkStatus();
    }
  }

 private:
  static proto::ExecRequest MakeRequest(const ExecCommand& c, bool tty, uint16_t rows, uint16_t cols) {
    proto::ExecRequest r;
    r.argv = c.argv;
    for (const auto& [k, v] : c.env) r.env.push_back(k + "=" + v);
    r.cwd = c.cwd;
    r.tty = tty;
    r.rows = rows;
    r.cols = cols;
    return r;
  }

  void Queue(proto::MessageType type, uint32_t channel, std::string_view payload) {
    out_ += proto::EncodeFrame(type, channel, payload);
  }

  Status WriteSome() {
    while (!out_.empty()) {
      ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        out_.erase(0, static_cast<size_t>(n));
        bytes_out_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return OkStatus();
      return Unavailable("guest agent channel " + path_.string() + " closed: " + std::strerror(errno));
    }
    return OkStatus();
  }

  Status Flush(SteadyTime deadline) {
    while (!out_.empty()) {
      BANGER_RETURN_IF_ERROR(WriteSome());
      if (out_.empty()) break;
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, MsUntil(deadline)) == 0) return DeadlineExceeded("writing to guest agent");
    }
    return OkStatus();
  }

  Status ReadSome() {
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      bytes_in_ += static_cast<size_t>(n);
      decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
      if (!decoder_.error().empty()) return DataLoss("guest agent protocol error: " + decoder_.error());
      return OkStatus();
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return OkStatus();
    return Unavailable("guest agent channel " + path_.string() + " closed");
  }

  std::optional<proto::Frame> NextBufferedFrame() {
    auto f = decoder_.Next();
    if (f && f->type == proto::MessageType::kHello) {
      hello_ = proto::DecodeHello(f->payload);
      if (hello_) {
        hello_->agent_version = SanitizeGuestText(hello_->agent_version.substr(0, 64));
        hello_->mode = SanitizeGuestText(hello_->mode.substr(0, 16));
      }
    }
    return f;
  }

  // The next frame, or DeadlineExceeded once `deadline` passed: checked on
  // every round, so a guest that keeps sending (a slow trickle that never
  // completes a frame, or a flood of frames the caller ignores) cannot keep
  // a caller waiting past its deadline.
  Result<proto::Frame> ReadFrame(SteadyTime deadline) {
    while (true) {
      if (steady_clock::now() >= deadline) {
        return DeadlineExceeded("no reply from guest agent on " + path_.string());
      }
      if (auto f = NextBufferedFrame()) return *f;
      if (!decoder_.error().empty()) return DataLoss("guest agent protocol error: " + decoder_.error());
      pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
      int r = ::poll(&p, 1, MsUntil(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(errno, "poll guest agent channel");
      if (r == 0) return DeadlineExceeded("no reply from guest agent on " + path_.string());
      if (p.revents & POLLOUT) BANGER_RETURN_IF_ERROR(WriteSome());
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) BANGER_RETURN_IF_ERROR(ReadSome());
    }
  }

  int fd_;
  fs::path path_;
  proto::FrameDecoder decoder_;
  std::string out_;
  std::optional<proto::Hello> hello_;
  uint32_t next_id_ = 1;
  uint64_t nonce_ = 0;
  size_t bytes_in_ = 0, bytes_out_ = 0;  // moved on the channel (idle detection)
};

}  // namespace

std::string SanitizeGuestText(std::string_view text) {
  std::string out;
  bool cut = text.size() > kMaxGuestText;
  if (cut) text = text.substr(0, kMaxGuestText);
  out.reserve(text.size() + 3);
  for (unsigned char c : text) {
    out += ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') ? static_cast<char>(c) : '?';
  }
  if (cut) out += "...";
  return out;
}

Result<std::unique_ptr<AgentConnection>> ConnectAgent(const fs::path& socket_path, SteadyTime deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = socket_path.string();
  if (p.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("agent socket path too long (" + std::to_string(p.size()) + " bytes): " + p);
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  int last_err = 0;
  while (true) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus(errno, "socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return std::unique_ptr<AgentConnection>(std::make_unique<SocketAgentConnection>(fd, socket_path));
    }
    last_err = errno;
    ::close(fd);
    if (last_err != ENOENT && last_err != ECONNREFUSED && last_err != EAGAIN) {
      return ErrnoStatus(last_err, "connect " + p);
    }
    if (steady_clock::now() >= deadline) {
      return DeadlineExceeded("guest agent socket " + p + " not reachable: " + std::strerror(last_err));
    }
    ::poll(nullptr, 0, 50);  // back off before retrying the connect
  }
}

}  // namespace banger
