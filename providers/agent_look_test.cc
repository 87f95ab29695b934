// The @banger/ports and @banger/stats builtins, run by the real agent binary
// on the host (--serve-unix): this process opens sockets and the agent, whose
// /proc is the host's, must find them and their owner.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/agent_client.h"
#include "providers/agent_testing.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class Agent : public testing::HostAgent {
 public:
  Agent() : HostAgent({.tag = "agent-look-test"}) {}
  ExecResult Run(const std::string& builtin) {
    auto c = Connect();
    if (!c) return {};
    ExecCommand cmd;
    cmd.argv = {builtin};
    auto r = c->Exec(cmd, "", milliseconds(20000));
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : ExecResult{};
  }

};

// A socket of `type` bound to 127.0.0.1 on a kernel-chosen port (listening
// for TCP); returns the fd and sets *port.
int BoundSocket(int type, uint16_t* port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(::listen(fd, 1), 0);
  }
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

std::string Comm() {
  std::ifstream in("/proc/self/comm");
  std::string s;
  std::getline(in, s);
  return s;
}

TEST(AgentLookTest, PortsListsListeningTcpAndUdpSocketsWithTheirProcess) {
  uint16_t tcp_port = 0, udp_port = 0;
  int tcp = BoundSocket(SOCK_STREAM, &tcp_port);
  int udp = BoundSocket(SOCK_DGRAM, &udp_port);
  // A TCP socket that is bound but not listening is not listed.
  uint16_t idle_port = 0;
  int idle = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(idle, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(::getsockname(idle, reinterpret_cast<sockaddr*>(&a), &len), 0);
    idle_port = ntohs(a.sin_port);
  }
  Agent agent;
  ExecResult r = agent.Run("@banger/ports");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  bool saw_tcp = false, saw_udp = false, saw_idle = false;
  for (const std::string& line : Split(r.stdout_data, '\n')) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    ASSERT_TRUE(j["proto"].is_string() && j["address"].is_string() && j["port"].is_number_unsigned()) << line;
    uint16_t port = j["port"].get<uint16_t>();
    std::string proto = j["proto"].get<std::string>();
    if (proto == "tcp" && port == idle_port) saw_idle = true;
    if ((proto == "tcp" && port == tcp_port) || (proto == "udp" && port == udp_port)) {
      (proto == "tcp" ? saw_tcp : saw_udp) = true;
      EXPECT_EQ(j["address"], "127.0.0.1") << line;
      EXPECT_EQ(j.value("pid", 0), ::getpid()) << line;
      EXPECT_EQ(j.value("process", ""), Comm()) << line;
    }
  }
  EXPECT_TRUE(saw_tcp) << "tcp " << tcp_port << " not in:\n" << r.stdout_data;
  EXPECT_TRUE(saw_udp) << "udp " << udp_port << " not in:\n" << r.stdout_data;
  EXPECT_FALSE(saw_idle) << "a socket that does not listen was listed";
  ::close(tcp);
  ::close(udp);
  ::close(idle);
}

TEST(AgentLookTest, StatsReportsThisMachinesMemoryFileSystemAndUptime) {
  Agent agent;
  ExecResult r = agent.Run("@banger/stats");
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  nlohmann::json j = nlohmann::json::parse(r.stdout_data, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.stdout_data;
  // MemTotal as /proc/meminfo says.
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  in >> key >> kb;
  ASSERT_EQ(key, "MemTotal:");
  EXPECT_EQ(j["mem_total_bytes"].get<uint64_t>(), kb * 1024);
  EXPECT_LE(j["mem_available_bytes"].get<uint64_t>(), kb * 1024);
  EXPECT_GT(j["mem_available_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["cpus"].get<uint64_t>(), static_cast<uint64_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_EQ(j["ticks_per_second"].get<uint64_t>(), static_cast<uint64_t>(::sysconf(_SC_CLK_TCK)));
  EXPECT_GT(j["cpu_busy_ticks"].get<uint64_t>(), 0u);
  struct statfs fs {};
  ASSERT_EQ(::statfs("/", &fs), 0);
  EXPECT_EQ(j["fs_total_bytes"].get<uint64_t>(), fs.f_blocks * static_cast<uint64_t>(fs.f_frsize));
  EXPECT_LE(j["fs_used_bytes"].get<uint64_t>(), j["fs_total_bytes"].get<uint64_t>());
  EXPECT_GT(j["uptime_seconds"].get<uint64_t>(), 0u);
}

TEST(AgentLookTest, HelpListsTheNewBuiltins) {
  Agent agent;
  ExecResult r = agent.Run("@banger/help");
  EXPECT_NE(r.stdout_data.find("@banger/ports\t"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("@banger/stats\t"), std::string::npos) << r.stdout_data;
}

}  // namespace
}  // namespace banger
