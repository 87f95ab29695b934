// The host client against the real guest agent binary, run on the host in
// --serve-unix mode (same server code as in a VM; only the transport differs).
#include "providers/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>

#include "base/command_runner.h"
#include "base/files.h"
#include "providers/agent_testing.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
namespace proto = agent_protocol;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// with_hosts_file: the agent's SET_HOSTS writes dir()/hosts (else it has none).
class AgentProcess : public testing::HostAgent {
 public:
  explicit AgentProcess(bool with_hosts_file = false)
      : HostAgent({.tag = "agent-client-test", .env = {"BANGER_TEST=1"}, .hosts_file = with_hosts_file}) {}
};

TEST(AgentClientTest, HelloReportsVersionAndMode) {
  AgentProcess agent;
  auto c = ConnectAgent(agent.socket(), steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  auto hello = (*c)->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  EXPECT_EQ(hello->protocol, proto::kProtocolVersion);
  EXPECT_FALSE(hello->agent_version.empty());
  EXPECT_EQ(hello->mode, "test");
  EXPECT_GT(hello->boot_ms, 0u);
  auto rtt = (*c)->Ping(milliseconds(2000));
  ASSERT_TRUE(rtt.ok()) << rtt.error().ToString();
}

TEST(AgentClientTest, ExecCapturesStdoutStderrAndExitCode) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"sh", "-c", "echo out; echo err >&2; exit 7"}}, "", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 7);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
}

TEST(AgentClientTest, StdinEnvAndCwdReachTheCommand) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"sh", "-c", "cat; echo \"$FOO $BANGER_TEST\"; pwd"}, .env = {{"FOO", "bar"}}, .cwd = "/tmp"},
                   "from stdin\n", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "from stdin\nbar 1\n/tmp\n");
  EXPECT_EQ(r->exit_code, 0);
}

TEST(AgentClientTest, LargeStdinRoundTripsThroughCat) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  std::string big;
  for (int i = 0; big.size() < 3 * 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
  auto r = c->Exec({.argv = {"cat"}}, big, milliseconds(30000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data.size(), big.size());
  EXPECT_TRUE(r->stdout_data == big);
}

TEST(AgentClientTest, MissingProgramIsNotFoundAndConnectionStaysUsable) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"/no/such/program"}}, "", milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound) << r.error().ToString();
  EXPECT_NE(r.error().message().find("/no/such/program"), std::string::npos);
  auto ok = c->Exec({.argv = {"true"}}, "", milliseconds(5000));
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
}

TEST(AgentClientTest, BuiltinsRunWithoutAnyProgramInTheGuest) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto help = c->Exec({.argv = {"@banger/help"}}, "", milliseconds(5000));
  ASSERT_TRUE(help.ok()) << help.error().ToString();
  EXPECT_EQ(help->exit_code, 0);
  EXPECT_NE(help->stdout_data.find("@banger/help\t"), std::string::npos) << help->stdout_data;
  auto unknown = c->Exec({.argv = {"@banger/frobnicate"}}, "", milliseconds(5000));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), StatusCode::kNotFound) << unknown.error().ToString();
  EXPECT_NE(unknown.error().message().find("@banger/frobnicate"), std::string::npos);
}

TEST(AgentClientTest, SignalDeathIsReportedShellStyle) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto r = c->Exec({.argv = {"sh", "-c", "kill -9 $$"}}, "", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(r->signaled);
  EXPECT_EQ(r->exit_code, 137);
}

TEST(AgentClientTest, TimeoutKillsTheCommand) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto start = steady_clock::now();
  auto r = c->Exec({.argv = {"sleep", "30"}}, "", milliseconds(300));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(steady_clock::now() - start, milliseconds(5000));
  auto after = c->Exec({.argv = {"echo", "still here"}}, "", milliseconds(5000));
  ASSERT_TRUE(after.ok()) << after.error().ToString();
  EXPECT_EQ(after->stdout_data, "still here\n");
}

TEST(AgentClientTest, InteractiveTtyExecSeesATerminal) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  ::close(in[1]);  // no input: EOF right away
  auto code = c->ExecInteractive({.argv = {"sh", "-c", "test -t 0 && test -t 1 && stty size; exit 3"}},
                                 {.in_fd = in[0], .out_fd = out[1], .tty = true});
  ::close(in[0]);
  ::close(out[1]);
  std::string output;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof(buf))) > 0) output.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  ASSERT_TRUE(code.ok()) << code.error().ToString();
  EXPECT_EQ(*code, 3);
  EXPECT_NE(output.find("24 80"), std::string::npos) << output;
}

// Raw protocol: two execs in flight on one connection are multiplexed by id.
TEST(AgentClientTest, ConcurrentExecsAreMultiplexedById) {
  AgentProcess agent;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_fd{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(agent.socket().string().size(), sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, agent.socket().c_str());
  bool connected = false;
  for (int i = 0; i < 100 && !connected; ++i) {
    connected = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (!connected) ::usleep(50000);
  }
  ASSERT_TRUE(connected);
  std::string out = proto::EncodeFrame(proto::MessageType::kExec, 1,
                                       proto::EncodeExec({{"sh", "-c", "sleep 0.5; echo slow"}, {}, "", false, 24, 80})) +
                    proto::EncodeFrame(proto::MessageType::kExec, 2,
                                       proto::EncodeExec({{"sh", "-c", "echo fast"}, {}, "", false, 24, 80})) +
                    proto::EncodeFrame(proto::MessageType::kStdinEof, 1, "") +
                    proto::EncodeFrame(proto::MessageType::kStdinEof, 2, "");
  ASSERT_EQ(::write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  proto::FrameDecoder d;
  std::vector<uint32_t> exit_order;
  std::map<uint32_t, std::string> stdout_by_id;
  char buf[4096];
  // Bounded wait: a lost EXIT fails here instead of hanging until ctest's timeout.
  auto deadline = steady_clock::now() + milliseconds(10000);
  while (exit_order.size() < 2) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))), 1)
        << "EXIT frames seen so far: " << exit_order.size();
    ssize_t n = ::read(fd, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    d.Feed(std::string_view(buf, static_cast<size_t>(n)));
    while (auto f = d.Next()) {
      if (f->type == proto::MessageType::kStdout) stdout_by_id[f->channel] += f->payload;
      if (f->type == proto::MessageType::kExit) exit_order.push_back(f->channel);
    }
  }
  EXPECT_EQ(exit_order, (std::vector<uint32_t>{2, 1}));
  EXPECT_EQ(stdout_by_id[1], "slow\n");
  EXPECT_EQ(stdout_by_id[2], "fast\n");
}

TEST(AgentClientTest, ReconnectGetsAFreshHello) {
  AgentProcess agent;
  { auto c = agent.Connect(); ASSERT_TRUE(c); }
  auto c2 = agent.Connect();
  ASSERT_TRUE(c2);
  auto r = c2->Exec({.argv = {"echo", "again"}}, "", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "again\n");
}

TEST(AgentClientTest, PowerOffIsAcknowledgedAndStopsTheAgent) {
  AgentProcess agent;
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->PowerOff(milliseconds(5000)).ok());
  for (int i = 0; i < 200 && ProcessAlive(agent.id()); ++i) ::usleep(10000);
  EXPECT_FALSE(ProcessAlive(agent.id()));
}

constexpr std::string_view kImageHosts = "127.0.0.1\tlocalhost\n# the image's own comment\n10.1.2.3 printer";

TEST(AgentClientTest, SetHostsReplacesTheBangerBlockAndKeepsTheRest) {
  AgentProcess agent(/*with_hosts_file=*/true);
  fs::path hosts = agent.dir() / "hosts";
  ASSERT_TRUE(WriteFileAtomic(hosts, kImageHosts).ok());
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto deadline = [] { return steady_clock::now() + milliseconds(5000); };
  Status s = c->SetHosts({{"10.99.0.7", {"peer", "peer.banger"}}}, deadline());
  ASSERT_TRUE(s.ok()) << s.ToString();
  const std::string block1 =
      "# banger: peers (managed by banger, do not edit)\n10.99.0.7\tpeer peer.banger\n# banger: end\n";
  EXPECT_EQ(*ReadFile(hosts), std::string(kImageHosts) + "\n" + block1);
  EXPECT_EQ(fs::status(hosts).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);

  s = c->SetHosts({{"10.99.0.7", {"peer"}}, {"10.99.0.9", {"cache", "cache.banger"}}}, deadline());
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(*ReadFile(hosts), std::string(kImageHosts) +
                                  "\n# banger: peers (managed by banger, do not edit)\n10.99.0.7\tpeer\n"
                                  "10.99.0.9\tcache cache.banger\n# banger: end\n");
  // The same request again changes nothing; no peers removes the block.
  ASSERT_TRUE(c->SetHosts({{"10.99.0.7", {"peer"}}, {"10.99.0.9", {"cache", "cache.banger"}}}, deadline()).ok());
  ASSERT_TRUE(c->SetHosts({}, deadline()).ok());
  EXPECT_EQ(*ReadFile(hosts), std::string(kImageHosts) + "\n");
  // The connection is still good for execs.
  auto r = c->Exec({.argv = {"echo", "after"}}, "", milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "after\n");
}

TEST(AgentClientTest, SetHostsCreatesAMissingHostsFile) {
  AgentProcess agent(/*with_hosts_file=*/true);
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->SetHosts({{"10.0.0.5", {"a"}}}, steady_clock::now() + milliseconds(5000)).ok());
  EXPECT_EQ(*ReadFile(agent.dir() / "hosts"),
            "# banger: peers (managed by banger, do not edit)\n10.0.0.5\ta\n# banger: end\n");
}

TEST(AgentClientTest, SetHostsRefusesMalformedEntriesBeforeSending) {
  AgentProcess agent(/*with_hosts_file=*/true);
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  Status s = c->SetHosts({{"10.0.0.1", {"ok", "not ok"}}}, steady_clock::now() + milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("'not ok'"), std::string::npos) << s.ToString();
  s = c->SetHosts({{"10.0.0.1\n10.6.6.6", {"evil"}}}, steady_clock::now() + milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_FALSE(fs::exists(agent.dir() / "hosts")) << "nothing reached the guest";
}

TEST(AgentClientTest, SetHostsWithoutAHostsFileIsAFailedPrecondition) {
  AgentProcess agent;  // test mode without --hosts-file never touches the host's /etc/hosts
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  Status s = c->SetHosts({{"10.0.0.1", {"a"}}}, steady_clock::now() + milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("no hosts file"), std::string::npos) << s.ToString();
}

// A raw client connection to the agent (bypassing the client's own checks).
class RawConnection {
 public:
  explicit RawConnection(const fs::path& socket) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
    for (int i = 0; i < 100 && !connected_; ++i) {
      connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
      if (!connected_) ::usleep(50000);
    }
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return ::write(fd_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  }
  // The next frame on `channel` (other channels' frames are skipped).
  std::optional<proto::Frame> Next(uint32_t channel, milliseconds timeout = milliseconds(5000)) {
    auto deadline = steady_clock::now() + timeout;
    char buf[4096];
    while (true) {
      while (auto f = decoder_.Next()) {
        if (f->channel == channel) return f;
      }
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return std::nullopt;
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  proto::FrameDecoder decoder_;
};

TEST(AgentClientTest, AgentRefusesMalformedSetHostsOnTheRequestChannel) {
  AgentProcess agent(/*with_hosts_file=*/true);
  fs::path hosts = agent.dir() / "hosts";
  ASSERT_TRUE(WriteFileAtomic(hosts, kImageHosts).ok());
  RawConnection raw(agent.socket());
  ASSERT_TRUE(raw.connected());
  // A name that would inject a second line, a truncated payload, and a good one.
  std::string injected = proto::PayloadWriter().U32(1).Str("10.0.0.1").StrList({"a\n10.6.6.6 evil"}).Take();
  ASSERT_TRUE(raw.Send(proto::EncodeFrame(proto::MessageType::kSetHosts, 5, injected) +
                       proto::EncodeFrame(proto::MessageType::kSetHosts, 6, injected.substr(0, 10)) +
                       proto::EncodeFrame(proto::MessageType::kSetHosts, 7,
                                          proto::EncodeSetHosts({{"10.0.0.2", {"good"}}}))));
  auto e5 = raw.Next(5);
  ASSERT_TRUE(e5);
  EXPECT_EQ(e5->type, proto::MessageType::kError);
  EXPECT_NE(proto::DecodeString(e5->payload).value_or("").find("invalid host name"), std::string::npos);
  auto e6 = raw.Next(6);
  ASSERT_TRUE(e6);
  EXPECT_EQ(e6->type, proto::MessageType::kError);
  EXPECT_NE(proto::DecodeString(e6->payload).value_or("").find("malformed SET_HOSTS"), std::string::npos);
  auto ack = raw.Next(7);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->type, proto::MessageType::kSetHostsAck);
  EXPECT_EQ(proto::DecodeU32(ack->payload), 1u);
  std::string content = *ReadFile(hosts);
  EXPECT_EQ(content.find("evil"), std::string::npos) << content;
  EXPECT_NE(content.find("10.0.0.2\tgood\n"), std::string::npos) << content;
}

// An agent from before SET_HOSTS answers "unexpected message type": a fake
// agent side that speaks the protocol of such an agent.
TEST(AgentClientTest, SetHostsAgainstAnOlderAgentSaysSo) {
  auto dir = MakeTempDir("agent-client-old");
  ASSERT_TRUE(dir.ok());
  fs::path path = *dir / "agent.sock";
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 1), 0);
  std::thread old_agent([lfd] {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string hello = proto::EncodeFrame(proto::MessageType::kHello, 0,
                                           proto::EncodeHello({1, "0.0.9", 1, "init"}));
    (void)!::write(fd, hello.data(), hello.size());
    proto::FrameDecoder d;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
      d.Feed(std::string_view(buf, static_cast<size_t>(n)));
      while (auto f = d.Next()) {
        std::string reply = proto::EncodeFrame(
            proto::MessageType::kError, f->channel,
            proto::EncodeString("unexpected message type " + std::to_string(static_cast<int>(f->type))));
        (void)!::write(fd, reply.data(), reply.size());
      }
    }
    ::close(fd);
  });
  {
    auto c = ConnectAgent(path, steady_clock::now() + milliseconds(5000));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    ASSERT_TRUE((*c)->WaitHello(steady_clock::now() + milliseconds(5000)).ok());
    Status s = (*c)->SetHosts({{"10.0.0.1", {"a"}}}, steady_clock::now() + milliseconds(5000));
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_NE(s.message().find("too old"), std::string::npos) << s.ToString();
  }
  old_agent.join();
  ::close(lfd);
  (void)RemoveAll(*dir);
}

TEST(AgentClientTest, SetHostsTimesOutWhenNobodyAnswers) {
  auto dir = MakeTempDir("agent-client-silent");
  ASSERT_TRUE(dir.ok());
  fs::path path = *dir / "agent.sock";
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 1), 0);  // never accepted: like QEMU while another client holds the channel
  auto c = ConnectAgent(path, steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  auto start = steady_clock::now();
  Status s = (*c)->SetHosts({{"10.0.0.1", {"a"}}}, start + milliseconds(300));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_LT(steady_clock::now() - start, milliseconds(3000));
  ::close(lfd);
  (void)RemoveAll(*dir);
}

// ---- held agent (booted with hold, waiting for IDENTITY) ----------------------

GuestConfig SandboxConfig() {
  GuestConfig g;
  g.hostname = "sandbox-a";
  g.env = {{"SANDBOX_NAME", "a"}};
  return g;
}

TEST(AgentClientTest, HeldAgentServesOnlyHealthUntilItsIdentityThenAsUsual) {
  testing::HostAgent agent({.tag = "agent-held", .hosts_file = true, .hold = true});
  auto c = agent.Connect();
  ASSERT_TRUE(c);
  auto hello = c->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  EXPECT_TRUE(proto::IsHeld(*hello)) << hello->mode;
  ASSERT_TRUE(c->Ping(milliseconds(2000)).ok());

  auto exec = c->Exec({.argv = {"true"}}, "", milliseconds(5000));
  ASSERT_FALSE(exec.ok());
  EXPECT_EQ(exec.error().code(), StatusCode::kFailedPrecondition) << exec.error().ToString();
  EXPECT_NE(exec.error().message().find("waiting for identity"), std::string::npos) << exec.error().ToString();
  Status hosts = c->SetHosts({{"10.0.0.1", {"a"}}}, steady_clock::now() + milliseconds(5000));
  EXPECT_EQ(hosts.code(), StatusCode::kFailedPrecondition) << hosts.ToString();
  EXPECT_NE(hosts.message().find("waiting for identity"), std::string::npos) << hosts.ToString();
  EXPECT_FALSE(fs::exists(agent.dir() / "hosts"));

  // A client that reconnects before the agent says HELLO learns it from PONG.
  RawConnection raw(agent.socket());
  c.reset();
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.Send(proto::EncodeFrame(proto::MessageType::kPing, 0, proto::EncodeU64(42))));
  std::optional<proto::Pong> pong;
  while (auto f = raw.Next(0)) {
    if (f->type == proto::MessageType::kPong) {
      pong = proto::DecodePong(f->payload);
      break;
    }
  }
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->nonce, 42u);
  EXPECT_EQ(pong->mode, "held");
}

TEST(AgentClientTest, IdentityIsAppliedOnceAndTheAgentThenServesAsAfterABoot) {
  testing::HostAgent agent({.tag = "agent-held", .hosts_file = true, .hold = true});
  auto conn = agent.Connect();
  ASSERT_TRUE(conn);
  AgentConnection& c = *conn;
  Status s = c.SendIdentity(SandboxConfig(), "52:54:00:aa:bb:01", milliseconds(5000));
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto hello = c.WaitHello(steady_clock::now() + milliseconds(1000));
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->mode, "test");  // what the ack reported: no longer held
  // The sandbox's config reached the agent: its env joins every exec's.
  auto r = c.Exec({.argv = {"sh", "-c", "echo $SANDBOX_NAME"}}, "", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "a\n");
  EXPECT_TRUE(c.SetHosts({{"10.0.0.1", {"peer"}}}, steady_clock::now() + milliseconds(5000)).ok());
  // Once only: a second identity (a replay, or another sandbox's) is refused.
  GuestConfig other = SandboxConfig();
  other.env = {{"SANDBOX_NAME", "b"}};
  s = c.SendIdentity(other, "52:54:00:aa:bb:02", milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("not waiting"), std::string::npos) << s.ToString();
  r = c.Exec({.argv = {"sh", "-c", "echo $SANDBOX_NAME"}}, "", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->stdout_data, "a\n");
  // A new connection's HELLO says the agent is no longer held.
  conn.reset();
  auto again = agent.Connect();
  ASSERT_TRUE(again);
  auto fresh = again->WaitHello(steady_clock::now() + milliseconds(5000));
  ASSERT_TRUE(fresh.ok()) << fresh.error().ToString();
  EXPECT_EQ(fresh->mode, "test");
}

TEST(AgentClientTest, AgentBootedWithoutHoldRefusesAnIdentity) {
  AgentProcess agent;
  Status s = agent.conn().SendIdentity(SandboxConfig(), "52:54:00:aa:bb:01", milliseconds(5000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("not waiting"), std::string::npos) << s.ToString();
}

TEST(AgentClientTest, SendIdentityRefusesABadMacBeforeSending) {
  testing::HostAgent agent({.tag = "agent-held", .hold = true});
  for (const char* mac : {"01:00:5e:00:00:01", "52:54:00:aa:bb", "zz:54:00:aa:bb:01"}) {
    Status s = agent.conn().SendIdentity(SandboxConfig(), mac, milliseconds(5000));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << mac << ": " << s.ToString();
  }
  EXPECT_TRUE(proto::IsHeld(*agent.conn().WaitHello(steady_clock::now() + milliseconds(1000))));
  // Nothing was sent: the agent is still held and takes a good identity.
  EXPECT_TRUE(agent.conn().SendIdentity(SandboxConfig(), "", milliseconds(5000)).ok());
}

// The agent checks what it is sent itself (the host is only semi-trusted):
// each bad IDENTITY is refused on its channel and leaves the agent held.
TEST(AgentClientTest, HeldAgentRefusesMalformedIdentitiesAndStaysHeld) {
  testing::HostAgent agent({.tag = "agent-held", .hold = true});
  RawConnection raw(agent.socket());
  ASSERT_TRUE(raw.connected());
  proto::Identity good;
  good.time_ns = 1790000000ull * 1000000000ull;
  good.mac = "52:54:00:aa:bb:01";
  good.entropy = std::string(proto::kIdentityEntropyBytes, '\x11');
  good.config_json = GuestConfigToJson(SandboxConfig());
  struct Bad {
    std::string payload;
    const char* why;
  };
  std::vector<Bad> bad;
  std::string encoded = proto::EncodeIdentity(good);
  bad.push_back({encoded.substr(0, encoded.size() - 1), "truncated"});
  bad.push_back({encoded + "x", "trailing bytes"});
  proto::Identity id = good;
  id.mac = "ff:ff:ff:ff:ff:ff";
  bad.push_back({proto::EncodeIdentity(id), "MAC address"});
  id = good;
  id.entropy = "short";
  bad.push_back({proto::EncodeIdentity(id), "entropy"});
  id = good;
  id.time_ns = 5;
  bad.push_back({proto::EncodeIdentity(id), "between 2000 and 2200"});
  id = good;
  id.config_json = "{\"hostname\": ";
  bad.push_back({proto::EncodeIdentity(id), "config.json"});
  id = good;
  id.config_json = R"({"network": {"address": "10.0.0.999"}})";
  bad.push_back({proto::EncodeIdentity(id), "network.address"});
  id = good;
  id.config_json = std::string(100, '[') + std::string(100, ']');
  bad.push_back({proto::EncodeIdentity(id), "nesting too deep"});
  uint32_t ch = 100;
  for (const Bad& b : bad) {
    ASSERT_TRUE(raw.Send(proto::EncodeFrame(proto::MessageType::kIdentity, ++ch, b.payload)));
    auto f = raw.Next(ch);
    ASSERT_TRUE(f) << b.why;
    EXPECT_EQ(f->type, proto::MessageType::kError) << b.why;
    std::string text = proto::DecodeString(f->payload).value_or("");
    EXPECT_NE(text.find(b.why), std::string::npos) << text;
    // Still held: an exec is refused.
    ASSERT_TRUE(raw.Send(proto::EncodeFrame(proto::MessageType::kExec, ++ch, proto::EncodeExec({{"true"}, {}, "", false, 24, 80}))));
    auto refused = raw.Next(ch);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->type, proto::MessageType::kError);
    EXPECT_NE(proto::DecodeString(refused->payload).value_or("").find("waiting for identity"), std::string::npos);
  }
  ASSERT_TRUE(raw.Send(proto::EncodeFrame(proto::MessageType::kIdentity, ++ch, encoded)));
  auto ack = raw.Next(ch);
  ASSERT_TRUE(ack);
  ASSERT_EQ(ack->type, proto::MessageType::kIdentityAck);
  auto hello = proto::DecodeHello(ack->payload);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->mode, "test");
}

TEST(AgentClientTest, ConnectTimesOutWhenNoSocketAppears) {
  auto c = ConnectAgent("/nonexistent-banger-dir/agent.sock", steady_clock::now() + milliseconds(200));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace banger
