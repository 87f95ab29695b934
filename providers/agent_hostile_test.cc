// The host's agent client against a hostile guest: a fake agent on the guest
// end of a unix socket (the client connects to it exactly as to QEMU's
// chardev) that sends truncated, oversized, out-of-order, duplicate and
// garbage frames, trickles bytes, floods output and answers with absurd exit
// codes. Every case must end in a clean error (or a correct result) within
// its deadline, with bounded memory.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "base/files.h"
#include "providers/agent_client.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
namespace proto = agent_protocol;
using proto::MessageType;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// The guest end of one connection, as seen by a scripted fake agent.
class GuestEnd {
 public:
  explicit GuestEnd(int fd, const std::atomic<bool>& stop) : fd_(fd), stop_(stop) {}

  /// Sends raw bytes; false once the host went away or the test is over.
  bool Raw(std::string_view bytes) {
    while (!bytes.empty()) {
      if (stop_) return false;
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        sent_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 20);
        continue;
      }
      return false;
    }
    return true;
  }
  bool Send(MessageType t, uint32_t ch, std::string_view payload) {
    return Raw(proto::EncodeFrame(t, ch, payload));
  }
  bool Hello() {
    return Send(MessageType::kHello, 0, proto::EncodeHello({proto::kProtocolVersion, "fake", 1, "test"}));
  }
  bool Exit(uint32_t ch, bool signaled, int32_t code) {
    return Send(MessageType::kExit, ch, proto::PayloadWriter().U8(signaled ? 1 : 0).I32(code).Take());
  }

  /// The next frame from the host, nullopt on EOF or after `timeout`.
  std::optional<proto::Frame> Next(milliseconds timeout = milliseconds(5000)) {
    auto deadline = steady_clock::now() + timeout;
    while (true) {
      if (auto f = decoder_.Next()) return f;
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      if (left <= 0 || stop_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 50))) <= 0) continue;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  /// The next frame of type `t` (others are skipped).
  std::optional<proto::Frame> Expect(MessageType t, milliseconds timeout = milliseconds(5000)) {
    while (auto f = Next(timeout)) {
      if (f->type == t) return f;
    }
    return std::nullopt;
  }
  bool stopped() const { return stop_; }
  size_t sent() const { return sent_; }
  int fd() const { return fd_; }

 private:
  int fd_;
  const std::atomic<bool>& stop_;
  proto::FrameDecoder decoder_;
  size_t sent_ = 0;
};

/// A unix socket the client connects to; `script` plays the guest for the
/// first connection on its own thread. The destructor stops the script and
/// removes everything.
class FakeAgent {
 public:
  explicit FakeAgent(std::function<void(GuestEnd&)> script) : script_(std::move(script)) {
    auto dir = MakeTempDir("fake-agent");
    EXPECT_TRUE(dir.ok());
    dir_ = *dir;
    path_ = dir_ / "agent.sock";
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    thread_ = std::thread([this] {
      pollfd p{listen_fd_, POLLIN, 0};
      while (!stop_ && ::poll(&p, 1, 50) == 0) {
      }
      if (stop_) return;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      GuestEnd g(fd, stop_);
      script_(g);
      // Keep the connection open (a hung guest) until the test is done.
      while (!stop_) ::usleep(10000);
      ::close(fd);
    });
  }
  ~FakeAgent() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
    (void)RemoveAll(dir_);
  }
  FakeAgent(const FakeAgent&) = delete;
  FakeAgent& operator=(const FakeAgent&) = delete;

  std::unique_ptr<AgentConnection> Connect() {
    auto c = ConnectAgent(path_, steady_clock::now() + milliseconds(5000));
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

 private:
  std::function<void(GuestEnd&)> script_;
  fs::path dir_, path_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Counts the bad inputs thrown at the client (docs/testing.md's table).
int g_bad_inputs = 0;

milliseconds Since(steady_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(steady_clock::now() - t);
}

std::string BigEndian32(uint32_t v) { return proto::PayloadWriter().U32(v).Take(); }

// ---- frame layer ------------------------------------------------------------

TEST(AgentHostileTest, OversizedLengthHeadersAreRefusedWithoutBuffering) {
  for (uint32_t len : {0xffffffffu, 0x80000000u, proto::kMaxFrameLength + 1, 4u, 0u}) {
    ++g_bad_inputs;
    FakeAgent agent([&](GuestEnd& g) {
      g.Hello();
      g.Expect(MessageType::kExec);
      // A header advertising `len` bytes, then a little of the "body".
      g.Raw(BigEndian32(len) + std::string(100, 'x'));
    });
    auto c = agent.Connect();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
    auto start = steady_clock::now();
    auto r = c->Exec({.argv = {"true"}}, "", milliseconds(5000));
    ASSERT_FALSE(r.ok()) << len;
    EXPECT_EQ(r.error().code(), StatusCode::kDataLoss) << r.error().ToString();
    EXPECT_NE(r.error().message().find("bad frame length " + std::to_string(len)), std::string::npos)
        << r.error().message();
    EXPECT_LT(Since(start), milliseconds(2000)) << "the client waited for an impossible frame";
    // The stream cannot be resynchronised: the connection stays closed for
    // good, every later call fails the same clean way.
    auto again = c->Ping(milliseconds(500));
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code(), StatusCode::kDataLoss);
  }
  // The decoder itself never holds more than it was fed.
  proto::FrameDecoder d;
  d.Feed(BigEndian32(0xffffffffu) + std::string(10, 'y'));
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_NE(d.error(), "");
  EXPECT_LE(d.buffered(), 14u);
}

TEST(AgentHostileTest, TruncatedFrameThenEofIsAClosedChannel) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    std::string frame = proto::EncodeFrame(MessageType::kStdout, exec ? exec->channel : 1, "hello world");
    g.Raw(frame.substr(0, frame.size() - 4));  // EOF mid-frame
    ::shutdown(g.fd(), SHUT_RDWR);
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"x"}}, "", milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kUnavailable) << r.error().ToString();
  EXPECT_NE(r.error().message().find("closed"), std::string::npos) << r.error().message();
}

TEST(AgentHostileTest, SlowLorisTrickleCannotHoldAReaderPastItsDeadline) {
  // One byte every 10 ms of a frame that never completes: before the fix the
  // client's read loop only timed out on a silent poll, so a trickle kept
  // WaitHello (and Exec, SetHosts, PowerOff) waiting forever.
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    std::string never = BigEndian32(proto::kMaxFrameLength) + std::string(proto::kMaxFrameLength, 'z');
    for (char ch : never) {
      if (!g.Raw(std::string_view(&ch, 1))) return;
      ::usleep(10000);
    }
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto start = steady_clock::now();
  auto hello = c->WaitHello(steady_clock::now() + milliseconds(800));
  ASSERT_FALSE(hello.ok());
  EXPECT_EQ(hello.error().code(), StatusCode::kDeadlineExceeded) << hello.error().ToString();
  EXPECT_LT(Since(start), milliseconds(3000));
  start = steady_clock::now();
  auto r = c->Exec({.argv = {"x"}}, "", milliseconds(500));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded) << r.error().ToString();
  EXPECT_LT(Since(start), milliseconds(3000));
}

TEST(AgentHostileTest, GarbageBytesAreAProtocolError) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    g.Hello();
    g.Expect(MessageType::kPing);
    g.Raw("GET / HTTP/1.1\r\nHost: banger\r\n\r\n");
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
  auto p = c->Ping(milliseconds(3000));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), StatusCode::kDataLoss) << p.error().ToString();
}

TEST(AgentHostileTest, MalformedHelloIsAnErrorNotAWaitUntilTheDeadline) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) { g.Send(MessageType::kHello, 0, "\x00\x00"); });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto start = steady_clock::now();
  auto hello = c->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_FALSE(hello.ok());
  EXPECT_EQ(hello.error().code(), StatusCode::kDataLoss) << hello.error().ToString();
  EXPECT_LT(Since(start), milliseconds(2000));
}

TEST(AgentHostileTest, HelloStringsAreBoundedAndPrintable) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    g.Send(MessageType::kHello, 0,
           proto::EncodeHello({proto::kProtocolVersion, "\x1b]0;pwned\x07" + std::string(500000, 'v'), 1,
                               "init\x1b[2J"}));
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto hello = c->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  EXPECT_LE(hello->agent_version.size(), 64u);
  EXPECT_EQ(hello->agent_version.find('\x1b'), std::string::npos);
  EXPECT_EQ(hello->mode.find('\x1b'), std::string::npos);
}

// ---- exec -------------------------------------------------------------------

TEST(AgentHostileTest, EndlessOutputIsCappedAndCounted) {
  ++g_bad_inputs;
  constexpr size_t kChunk = proto::kMaxDataChunk;
  constexpr size_t kTotal = 48u << 20;  // 48 MiB of stdout and stderr
  FakeAgent agent([&](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    std::string chunk(kChunk, 'o');
    for (size_t sent = 0; sent < kTotal; sent += kChunk) {
      if (!g.Send(sent % 3 ? MessageType::kStdout : MessageType::kStderr, exec->channel, chunk)) return;
    }
    g.Exit(exec->channel, false, 0);
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  ExecCommand cmd{.argv = {"yes"}};
  cmd.max_output = 1u << 20;
  auto r = c->Exec(cmd, "", milliseconds(60000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data.size() + r->stderr_data.size(), 1u << 20);
  EXPECT_EQ(r->output_dropped, kTotal - (1u << 20));
  // The default cap holds too, and the connection is still usable after.
  EXPECT_EQ(kDefaultMaxExecOutput, 16u << 20);
}

TEST(AgentHostileTest, DefaultCapBoundsEndlessOutputUntilTheTimeout) {
  ++g_bad_inputs;
  std::atomic<size_t> sent{0};
  FakeAgent agent([&](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    std::string chunk(proto::kMaxDataChunk, 'y');
    while (g.Send(MessageType::kStdout, exec->channel, chunk)) sent += chunk.size();
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto start = steady_clock::now();
  auto r = c->Exec({.argv = {"yes"}}, "", milliseconds(3000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded) << r.error().ToString();
  EXPECT_LT(Since(start), milliseconds(6000));
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  // Peak RSS stays far below what the guest sent (the cap is 16 MiB).
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps up to 256 MiB of freed memory in its quarantine.
  constexpr uint64_t kSanitizerSlack = uint64_t{256} << 20;
#else
  constexpr uint64_t kSanitizerSlack = 0;
#endif
  EXPECT_LT(static_cast<uint64_t>(ru.ru_maxrss) * 1024, (uint64_t{200} << 20) + kSanitizerSlack)
      << "sent " << sent.load() << " bytes";
}

TEST(AgentHostileTest, AbsurdExitCodesAreRefused) {
  struct Case {
    std::string payload;
    bool ok;
    int shell_code;
  };
  auto exit_payload = [](uint8_t s, int32_t code) { return proto::PayloadWriter().U8(s).I32(code).Take(); };
  std::vector<Case> cases = {
      {exit_payload(0, 0), true, 0},
      {exit_payload(0, 255), true, 255},
      {exit_payload(1, 9), true, 137},
      {exit_payload(1, 64), true, 192},
      {exit_payload(0, -1), false, 0},
      {exit_payload(0, 256), false, 0},
      {exit_payload(0, INT32_MAX), false, 0},
      {exit_payload(0, INT32_MIN), false, 0},
      {exit_payload(1, 0), false, 0},
      {exit_payload(1, 65), false, 0},
      {exit_payload(1, 128), false, 0},
      {exit_payload(1, INT32_MAX), false, 0},  // 128 + INT32_MAX overflowed before
      {exit_payload(2, 1), false, 0},
      {exit_payload(0, 1) + "trailing", false, 0},
      {"\x00\x00", false, 0},
      {"", false, 0},
  };
  for (const Case& k : cases) {
    if (!k.ok) ++g_bad_inputs;
    FakeAgent agent([&](GuestEnd& g) {
      g.Hello();
      auto exec = g.Expect(MessageType::kExec);
      if (exec) g.Send(MessageType::kExit, exec->channel, k.payload);
    });
    auto c = agent.Connect();
    ASSERT_TRUE(c);
    auto r = c->Exec({.argv = {"x"}}, "", milliseconds(5000));
    ASSERT_EQ(r.ok(), k.ok) << (r.ok() ? "" : r.error().ToString());
    if (k.ok) {
      EXPECT_EQ(r->exit_code, k.shell_code);
    } else {
      EXPECT_EQ(r.error().code(), StatusCode::kDataLoss);
      EXPECT_NE(r.error().message().find("EXIT"), std::string::npos) << r.error().message();
    }
  }
}

TEST(AgentHostileTest, OutOfOrderDuplicateAndForeignFramesDoNotConfuseExec) {
  g_bad_inputs += 6;
  FakeAgent agent([](GuestEnd& g) {
    g.Hello();
    auto e1 = g.Expect(MessageType::kExec);
    if (!e1) return;
    uint32_t id = e1->channel;
    g.Send(MessageType::kStdout, id + 1000, "not yours");          // unknown exec id
    g.Send(static_cast<MessageType>(200), id, "mystery");          // unknown type
    g.Send(MessageType::kPong, 0, proto::EncodeU64(424242));       // unsolicited pong
    g.Send(MessageType::kSetHostsAck, id, proto::EncodeU32(7));    // reply to nothing
    g.Send(MessageType::kStdout, id, "before started ");           // out of order
    g.Send(MessageType::kStarted, id, proto::EncodeU32(99));
    g.Send(MessageType::kStdout, id, "ok");
    g.Exit(id, false, 3);
    g.Exit(id, false, 4);                                          // duplicate EXIT
    g.Send(MessageType::kStdout, id, "after exit");                // after EXIT
    auto e2 = g.Expect(MessageType::kExec);
    if (!e2) return;
    g.Send(MessageType::kStdout, e2->channel, "second");
    g.Exit(e2->channel, false, 0);
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"x"}}, "", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "before started ok");
  // The leftovers of the first exec (duplicate EXIT, late output) belong to
  // its id and never leak into the next one: the connection stays usable.
  auto r2 = c->Exec({.argv = {"y"}}, "", milliseconds(5000));
  ASSERT_TRUE(r2.ok()) << r2.error().ToString();
  EXPECT_EQ(r2->exit_code, 0);
  EXPECT_EQ(r2->stdout_data, "second");
}

TEST(AgentHostileTest, FloodOfForeignFramesCannotHoldExecPastItsTimeout) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    while (g.Send(MessageType::kStdout, exec->channel + 1, "noise")) {
    }
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto start = steady_clock::now();
  auto r = c->Exec({.argv = {"x"}}, "", milliseconds(700));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded) << r.error().ToString();
  EXPECT_LT(Since(start), milliseconds(3000));
}

TEST(AgentHostileTest, GuestErrorTextIsSanitizedAndBounded) {
  ++g_bad_inputs;
  FakeAgent agent([](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    g.Send(MessageType::kError, exec->channel,
           proto::EncodeString("\x1b[31mred\x1b]0;title\x07\r" + std::string(600000, 'E')));
    g.Exit(exec->channel, false, 127);
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"x"}}, "", milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kFailedPrecondition);
  const std::string& m = r.error().message();
  EXPECT_LE(m.size(), kMaxGuestText + 100);
  EXPECT_EQ(m.find('\x1b'), std::string::npos);
  EXPECT_EQ(m.find('\x07'), std::string::npos);
  EXPECT_EQ(m.find('\r'), std::string::npos);
  EXPECT_NE(m.find("?[31mred"), std::string::npos) << m;
}

TEST(AgentHostileTest, InteractiveExecFailsWhenTheGuestGoesSilentWithAnIdleTimeout) {
  ++g_bad_inputs;
  std::atomic<bool> got_kill{false};
  FakeAgent agent([&](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    g.Send(MessageType::kStarted, exec->channel, proto::EncodeU32(5));
    g.Send(MessageType::kStdout, exec->channel, "partial");
    // ... and then nothing, until the host gives up.
    auto sig = g.Expect(MessageType::kSignal, milliseconds(10000));
    got_kill = sig && proto::DecodeU32(sig->payload) == uint32_t{SIGKILL};
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC | O_NONBLOCK), 0);
  InteractiveOptions io;
  io.in_fd = in[0];
  io.out_fd = out[1];
  io.err_fd = out[1];
  io.tty = false;
  io.idle_timeout = milliseconds(600);
  auto start = steady_clock::now();
  auto r = c->ExecInteractive({.argv = {"@banger/tar"}}, io);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded) << r.error().ToString();
  EXPECT_NE(r.error().message().find("stopped answering"), std::string::npos) << r.error().message();
  EXPECT_LT(Since(start), milliseconds(3000));
  for (int i = 0; i < 200 && !got_kill; ++i) ::usleep(10000);
  EXPECT_TRUE(got_kill) << "the host did not kill the abandoned command";
  for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
}

TEST(AgentHostileTest, InteractiveStreamingIsFlowControlledNotBuffered) {
  // A guest that floods stdout while the local reader does not read: the
  // client stops reading the channel once the local pipe is full, so what the
  // guest manages to send is bounded by the buffers in between, not by what
  // it wants to send.
  ++g_bad_inputs;
  ::signal(SIGPIPE, SIG_IGN);  // the local reader goes away at the end: EPIPE, not death
  std::atomic<size_t> sent{0};
  std::atomic<bool> blocked{false};
  FakeAgent agent([&](GuestEnd& g) {
    g.Hello();
    auto exec = g.Expect(MessageType::kExec);
    if (!exec) return;
    std::string frame = proto::EncodeFrame(MessageType::kStdout, exec->channel, std::string(proto::kMaxDataChunk, 's'));
    auto last_progress = steady_clock::now();
    while (!g.stopped() && Since(last_progress) < milliseconds(1500)) {
      ssize_t n = ::send(g.fd(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        last_progress = steady_clock::now();
      } else {
        ::usleep(5000);
      }
    }
    blocked = true;
  });
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  int in[2], out[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  std::thread stopper([&] {
    for (int i = 0; i < 1000 && !blocked; ++i) ::usleep(10000);
    ::close(out[0]);  // the reader goes away: the client's next write fails
  });
  InteractiveOptions io;
  io.in_fd = in[0];
  io.out_fd = out[1];
  io.err_fd = out[1];
  io.tty = false;
  auto r = c->ExecInteractive({.argv = {"yes"}}, io);
  stopper.join();
  ASSERT_FALSE(r.ok());  // EPIPE on the local pipe
  EXPECT_TRUE(blocked.load());
  // Pipe (64 KiB) + socket buffers + one decoded frame: a few MiB at most.
  EXPECT_LT(sent.load(), size_t{16} << 20) << "the client kept reading with nowhere to put the data";
  for (int fd : {in[0], in[1], out[1]}) ::close(fd);
}

// ---- SET_HOSTS, PING, POWEROFF ------------------------------------------------

TEST(AgentHostileTest, SetHostsPingAndPowerOffAreBoundedByTheirDeadlines) {
  struct Script {
    const char* name;
    std::function<void(GuestEnd&)> play;
  };
  auto flood = [](GuestEnd& g) {
    while (g.Send(MessageType::kPong, 0, proto::EncodeU64(1))) {
    }
  };
  std::vector<Script> scripts = {
      {"silent", [](GuestEnd& g) { g.Hello(); }},
      {"flood", [&](GuestEnd& g) {
         g.Hello();
         flood(g);
       }},
      {"wrong channel", [](GuestEnd& g) {
         g.Hello();
         while (auto f = g.Next()) {
           g.Send(MessageType::kSetHostsAck, f->channel + 7, proto::EncodeU32(1));
           g.Send(MessageType::kPong, 0, proto::EncodeU64(0xdead));
         }
       }},
  };
  for (const Script& s : scripts) {
    for (int call = 0; call < 3; ++call) {
      ++g_bad_inputs;
      FakeAgent agent(s.play);
      auto c = agent.Connect();
      ASSERT_TRUE(c);
      ASSERT_TRUE(c->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
      auto start = steady_clock::now();
      Status st;
      if (call == 0) {
        st = c->SetHosts({{"10.0.0.2", {"db"}}}, steady_clock::now() + milliseconds(500));
        EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << s.name << ": " << st.ToString();
      } else if (call == 1) {
        st = c->Ping(milliseconds(500)).status();
        EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << s.name << ": " << st.ToString();
      } else {
        st = c->PowerOff(milliseconds(500));
        EXPECT_FALSE(st.ok()) << s.name;
      }
      EXPECT_LT(Since(start), milliseconds(3000)) << s.name << " call " << call;
    }
  }
}

// ---- IDENTITY -----------------------------------------------------------------

// A guest that ignores, floods, answers on the wrong channel, acknowledges
// with garbage or refuses with terminal escapes: SendIdentity ends in a clean
// error within its deadline every time.
TEST(AgentHostileTest, SendIdentityIsBoundedAndDistrustsTheAnswer) {
  struct Script {
    const char* name;
    std::function<void(GuestEnd&)> play;
    StatusCode want;
  };
  auto held_hello = [](GuestEnd& g) {
    g.Send(MessageType::kHello, 0, proto::EncodeHello({proto::kProtocolVersion, "fake", 1, "held"}));
  };
  std::vector<Script> scripts = {
      {"silent", held_hello, StatusCode::kDeadlineExceeded},
      {"flood", [&](GuestEnd& g) {
         held_hello(g);
         while (g.Send(MessageType::kPong, 0, proto::EncodePong(1, "held"))) {
         }
       }, StatusCode::kDeadlineExceeded},
      {"wrong channel", [&](GuestEnd& g) {
         held_hello(g);
         if (auto f = g.Expect(MessageType::kIdentity)) {
           g.Send(MessageType::kIdentityAck, f->channel + 1, proto::EncodeHello({1, "fake", 1, "init"}));
         }
       }, StatusCode::kDeadlineExceeded},
      {"garbage ack", [&](GuestEnd& g) {
         held_hello(g);
         if (auto f = g.Expect(MessageType::kIdentity)) g.Send(MessageType::kIdentityAck, f->channel, "\x01");
       }, StatusCode::kDataLoss},
      {"escapes", [&](GuestEnd& g) {
         held_hello(g);
         if (auto f = g.Expect(MessageType::kIdentity)) {
           g.Send(MessageType::kError, f->channel, proto::EncodeString("no\x1b]0;pwned\x07" + std::string(5000, 'x')));
         }
       }, StatusCode::kFailedPrecondition},
  };
  GuestConfig config;
  config.hostname = "a";
  for (const Script& s : scripts) {
    ++g_bad_inputs;
    FakeAgent agent(s.play);
    auto c = agent.Connect();
    ASSERT_TRUE(c);
    auto hello = c->WaitHello(steady_clock::now() + milliseconds(5000));
    ASSERT_TRUE(hello.ok());
    EXPECT_TRUE(proto::IsHeld(*hello));
    auto start = steady_clock::now();
    Status st = c->SendIdentity(config, "52:54:00:00:00:01", milliseconds(500));
    EXPECT_EQ(st.code(), s.want) << s.name << ": " << st.ToString();
    EXPECT_LT(Since(start), milliseconds(3000)) << s.name;
    EXPECT_EQ(st.message().find('\x1b'), std::string::npos) << s.name;
    EXPECT_LT(st.message().size(), kMaxGuestText + 200) << s.name;
  }
}

// What the host sends is what the guest gets: the fake guest decodes the
// IDENTITY it received (fresh entropy each time, the host's clock).
TEST(AgentHostileTest, SendIdentitySendsFreshEntropyAndTheHostClock) {
  std::vector<proto::Identity> seen;
  std::mutex mu;
  for (int i = 0; i < 2; ++i) {
    FakeAgent agent([&](GuestEnd& g) {
      g.Hello();
      if (auto f = g.Expect(MessageType::kIdentity)) {
        std::string err;
        auto id = proto::DecodeIdentity(f->payload, &err);
        if (id) {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(*id);
        }
        g.Send(MessageType::kIdentityAck, f->channel, proto::EncodeHello({1, "fake", 1, "init"}));
      }
    });
    auto c = agent.Connect();
    ASSERT_TRUE(c);
    GuestConfig config;
    config.hostname = "sandbox-" + std::to_string(i);
    config.hold_for_identity = true;  // a template's config: never forwarded as such
    auto before = std::chrono::system_clock::now();
    Status st = c->SendIdentity(config, "52:54:00:00:00:0" + std::to_string(i), milliseconds(5000));
    auto after = std::chrono::system_clock::now();
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(seen.size(), static_cast<size_t>(i + 1));
    const proto::Identity& id = seen.back();
    auto ns = [](auto t) {
      return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
    };
    EXPECT_GE(id.time_ns, ns(before));
    EXPECT_LE(id.time_ns, ns(after));
    EXPECT_EQ(id.mac, "52:54:00:00:00:0" + std::to_string(i));
    EXPECT_EQ(id.entropy.size(), proto::kIdentityEntropyBytes);
    EXPECT_NE(id.config_json.find("\"sandbox-" + std::to_string(i) + "\""), std::string::npos);
    EXPECT_EQ(id.config_json.find("\"hold\""), std::string::npos) << id.config_json;
    EXPECT_EQ(c->WaitHello(steady_clock::now() + milliseconds(100))->mode, "init");
  }
  EXPECT_NE(seen[0].entropy, seen[1].entropy);
}

}  // namespace
}  // namespace banger
