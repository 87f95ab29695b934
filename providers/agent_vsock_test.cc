// The host client over Firecracker's vsock channel: a fake vsock muxer (a unix
// socket that speaks Firecracker's host-side handshake, "CONNECT <port>\n" ->
// "OK <hostport>\n", and then forwards bytes) in front of the real guest agent
// run with --serve-unix. The agent's vsock listener itself cannot run here (no
// vhost-vsock on this host, HOST-NOTES.md): in a VM it hands its AF_VSOCK
// listener to ServeListener, the same loop --serve-unix serves, so the
// protocol and the one-connection-at-a-time model are tested through that.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "base/files.h"
#include "providers/agent_client.h"
#include "providers/agent_testing.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
namespace proto = agent_protocol;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

enum class MuxMode {
  kForward,       // like Firecracker with the guest listening on the port
  kGarbage,       // answers a line that is not "OK <n>"
  kNoNewline,     // answers "OK 1234" and then nothing
  kHugeLine,      // answers 1 MiB without a newline
  kTrickle,       // answers one byte every 200 ms, never a newline
  kSlowOk,        // answers "OK 1073741824\n" one byte every 30 ms, then forwards
  kControlChars,  // answers a line with terminal escapes
};

// A fake Firecracker vsock muxer on `dir/vsock.sock`. It refuses (closes
// without a word, as Firecracker does when the guest resets the connection)
// the first `refusals` connections, and any CONNECT to a port other than
// `guest_port`; then acts as `mode`, forwarding to the agent's socket.
class FakeVsockMuxer {
 public:
  FakeVsockMuxer(fs::path dir, fs::path agent_socket, MuxMode mode, int refusals = 0,
                 uint32_t guest_port = proto::kVsockPort)
      : path_(dir / std::string(kFirecrackerVsockSocketName)),
        agent_socket_(std::move(agent_socket)),
        mode_(mode),
        refusals_(refusals),
        guest_port_(guest_port) {
    EXPECT_EQ(::pipe2(stop_, O_CLOEXEC), 0);
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    EXPECT_EQ(::listen(lfd_, 8), 0);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakeVsockMuxer() {
    (void)!::write(stop_[1], "x", 1);
    acceptor_.join();
    // Joined without holding mu_: a connection still reading its request
    // takes mu_ to record it (holding it here deadlocked under load).
    std::vector<std::thread> conns;
    {
      std::lock_guard<std::mutex> l(mu_);
      conns.swap(conns_);
    }
    for (auto& t : conns) t.join();
    ::close(lfd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
    ::unlink(path_.c_str());
  }

  AgentEndpoint endpoint(uint32_t port = proto::kVsockPort) const { return {path_, port}; }
  int connections() const { return accepted_.load(); }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  bool Stopped(int timeout_ms) {
    pollfd p{stop_[0], POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }

  void AcceptLoop() {
    while (true) {
      pollfd p[2] = {{lfd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;
      if (p[1].revents) return;
      int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      int n = ++accepted_;
      std::lock_guard<std::mutex> l(mu_);
      conns_.emplace_back([this, fd, n] {
        Serve(fd, n);
        ::close(fd);
      });
    }
  }

  // Reads the request line (at most 64 bytes) like Firecracker does.
  std::string ReadRequest(int fd) {
    std::string line;
    char c;
    while (line.size() < 64 && ::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
    std::lock_guard<std::mutex> l(mu_);
    requests_.push_back(line);
    return line;
  }

  void Send(int fd, std::string_view s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

  void Trickle(int fd, std::string_view s, int every_ms) {
    for (char c : s) {
      if (Stopped(every_ms)) return;
      Send(fd, std::string_view(&c, 1));
    }
  }

  void Serve(int fd, int n) {
    std::string req = ReadRequest(fd);
    if (n <= refusals_ || req != "CONNECT " + std::to_string(guest_port_)) return;  // refused
    switch (mode_) {
      case MuxMode::kGarbage: Send(fd, "HTTP/1.1 400 Bad Request\n"); Stopped(2000); return;
      case MuxMode::kNoNewline: Send(fd, "OK 1234"); Stopped(10000); return;
      case MuxMode::kHugeLine: Send(fd, std::string(1u << 20, 'A')); Stopped(10000); return;
      case MuxMode::kTrickle: Trickle(fd, std::string(1000, '7'), 200); return;
      case MuxMode::kControlChars: Send(fd, "ERR \x1b]0;pwned\x07\x1b[31mred\n"); Stopped(2000); return;
      case MuxMode::kSlowOk: Trickle(fd, "OK 1073741824\n", 30); break;
      case MuxMode::kForward: Send(fd, "OK 1073741824\n"); break;
    }
    Forward(fd);
  }

  // Splices the host connection and a new connection to the agent, as
  // Firecracker splices the unix socket and the guest's vsock stream.
  void Forward(int host) {
    auto agent = ConnectAgentSocket();
    if (agent < 0) return;
    char buf[65536];
    bool open = true;
    while (open) {
      pollfd p[3] = {{host, POLLIN, 0}, {agent, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(p, 3, -1) < 0) continue;
      if (p[2].revents) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (!p[i].revents) continue;
        ssize_t r = ::read(p[i].fd, buf, sizeof(buf));
        if (r <= 0) {
          open = false;
          break;
        }
        int to = i == 0 ? agent : host;
        for (ssize_t off = 0; off < r;) {
          ssize_t w = ::send(to, buf + off, static_cast<size_t>(r - off), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += w;
        }
      }
    }
    ::close(agent);
  }

  int ConnectAgentSocket() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, agent_socket_.c_str(), sizeof(addr.sun_path) - 1);
    for (int i = 0; i < 200; ++i) {
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
      ::usleep(20000);
    }
    ::close(fd);
    return -1;
  }

  fs::path path_, agent_socket_;
  MuxMode mode_;
  int refusals_;
  uint32_t guest_port_;
  int stop_[2] = {-1, -1};
  int lfd_ = -1;
  std::thread acceptor_;
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> conns_;
  std::vector<std::string> requests_;
};

class AgentVsockTest : public ::testing::Test {
 protected:
  testing::HostAgent agent_{{.tag = "agent-vsock-test"}};
};

TEST_F(AgentVsockTest, ConnectHandshakeThenTheSameProtocol) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kForward);
  auto c = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  auto hello = (*c)->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  EXPECT_EQ(hello->protocol, proto::kProtocolVersion);
  EXPECT_EQ(hello->mode, "test");
  auto r = (*c)->Exec({.argv = {"sh", "-c", "cat; echo err >&2; exit 3"}}, "through vsock\n", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "through vsock\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_EQ(mux.requests(), std::vector<std::string>{"CONNECT 52"});
}

TEST_F(AgentVsockTest, RefusalsWhileTheGuestBootsAreRetriedUntilItListens) {
  // Firecracker closes the host connection when nothing listens on the guest
  // port yet; the client connects again until the deadline.
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kForward, /*refusals=*/3);
  auto c = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE((*c)->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
  EXPECT_EQ(mux.connections(), 4);
}

TEST_F(AgentVsockTest, RefusedUntilTheDeadlineSaysNothingListens) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kForward, /*refusals=*/1 << 30);
  auto start = steady_clock::now();
  auto c = ConnectAgent(mux.endpoint(), start + milliseconds(400));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded) << c.error().ToString();
  EXPECT_NE(c.error().message().find("nothing listens on that guest port"), std::string::npos)
      << c.error().ToString();
  EXPECT_NE(c.error().message().find("vsock port 52"), std::string::npos) << c.error().ToString();
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
}

TEST_F(AgentVsockTest, WrongPortIsRefusedByTheMuxer) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kForward);
  auto c = ConnectAgent(mux.endpoint(53), steady_clock::now() + milliseconds(300));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded) << c.error().ToString();
  ASSERT_FALSE(mux.requests().empty());
  EXPECT_EQ(mux.requests().front(), "CONNECT 53");
}

TEST_F(AgentVsockTest, GarbageAnswerIsDataLossQuotingIt) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kGarbage);
  auto c = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDataLoss) << c.error().ToString();
  EXPECT_NE(c.error().message().find("expected \"OK <port>\" after CONNECT 52, got \"HTTP/1.1 400 Bad Request\""),
            std::string::npos)
      << c.error().ToString();
  EXPECT_EQ(mux.connections(), 1) << "a protocol error is not retried";
}

TEST_F(AgentVsockTest, AnswerWithoutNewlineEndsAtTheDeadline) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kNoNewline);
  auto start = steady_clock::now();
  auto c = ConnectAgent(mux.endpoint(), start + milliseconds(500));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded) << c.error().ToString();
  EXPECT_NE(c.error().message().find("got \"OK 1234\" without a newline"), std::string::npos)
      << c.error().ToString();
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
}

TEST_F(AgentVsockTest, HugeLineIsCutAtTheBoundWithoutReadingIt) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kHugeLine);
  auto start = steady_clock::now();
  auto c = ConnectAgent(mux.endpoint(), start + milliseconds(5000));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDataLoss) << c.error().ToString();
  EXPECT_NE(c.error().message().find("longer than 64 bytes"), std::string::npos) << c.error().ToString();
  EXPECT_LT(c.error().message().size(), 400u) << "the error quotes a bounded prefix";
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
}

TEST_F(AgentVsockTest, TrickleThatNeverEndsTheLineStopsAtTheDeadline) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kTrickle);
  auto start = steady_clock::now();
  auto c = ConnectAgent(mux.endpoint(), start + milliseconds(700));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded) << c.error().ToString();
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
}

TEST_F(AgentVsockTest, SlowButCompleteAnswerSucceeds) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kSlowOk);
  auto c = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(10000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  auto rtt = (*c)->Ping(milliseconds(5000));
  EXPECT_TRUE(rtt.ok()) << rtt.error().ToString();
}

TEST_F(AgentVsockTest, ControlCharactersInTheAnswerAreSanitised) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kControlChars);
  auto c = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDataLoss);
  EXPECT_EQ(c.error().message().find('\x1b'), std::string::npos) << c.error().ToString();
  EXPECT_EQ(c.error().message().find('\x07'), std::string::npos) << c.error().ToString();
}

TEST_F(AgentVsockTest, NoSocketYetIsDeadlineExceeded) {
  AgentEndpoint ep{agent_.dir() / "never.sock", proto::kVsockPort};
  auto c = ConnectAgent(ep, steady_clock::now() + milliseconds(200));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded) << c.error().ToString();
}

// The per-connection model: Firecracker opens one guest stream per host
// connection; the agent serves one at a time (as over the serial port), and
// the next one gets its own HELLO once the first closes. A session belongs to
// the connection that started it.
TEST_F(AgentVsockTest, OneConnectionAtATimeEachWithItsOwnHello) {
  FakeVsockMuxer mux(agent_.dir(), agent_.socket(), MuxMode::kForward);
  auto a = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  ASSERT_TRUE((*a)->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
  auto b = ConnectAgent(mux.endpoint(), steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  // While a holds the agent, b's requests wait.
  auto waiting = (*b)->Ping(milliseconds(300));
  EXPECT_FALSE(waiting.ok());
  auto r = (*a)->Exec({.argv = {"echo", "a"}}, "", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "a\n");
  a->reset();
  auto hello = (*b)->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  auto rb = (*b)->Exec({.argv = {"echo", "b"}}, "", milliseconds(10000));
  ASSERT_TRUE(rb.ok()) << rb.error().ToString();
  EXPECT_EQ(rb->stdout_data, "b\n");
}

}  // namespace
}  // namespace banger
