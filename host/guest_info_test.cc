#include "host/guest_info.h"

#include <gtest/gtest.h>

namespace banger::host {
namespace {

TEST(GuestPortsTest, ParsesTheBuiltinsLines) {
  auto s = ParseGuestPorts(
      "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":22,\"pid\":41,\"process\":\"sshd\"}\n"
      "{\"proto\":\"udp\",\"address\":\"::\",\"port\":5353}\n\n");
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].proto, "tcp");
  EXPECT_EQ((*s)[0].address, "0.0.0.0");
  EXPECT_EQ((*s)[0].port, 22);
  EXPECT_EQ((*s)[0].pid, 41);
  EXPECT_EQ((*s)[0].process, "sshd");
  EXPECT_EQ((*s)[1].pid, 0);
  EXPECT_TRUE(ParseGuestPorts("").ok());
}

TEST(GuestPortsTest, RefusesWhatAGuestShouldNotSay) {
  for (const char* bad : {
           "not json",
           "[1,2]",
           "{\"proto\":\"sctp\",\"address\":\"0.0.0.0\",\"port\":1}",
           "{\"proto\":\"tcp\",\"address\":\"evil; rm -rf\",\"port\":1}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":0}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":70000}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":-1}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":\"22\"}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":22,\"pid\":-5}",
           "{\"proto\":\"tcp\",\"address\":\"0.0.0.0\",\"port\":22,\"process\":5}",
       }) {
    auto r = ParseGuestPorts(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  auto r = ParseGuestPorts("{\"proto\":\"tcp\",\"address\":\"::1\",\"port\":1}\nnope\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("line 2"), std::string::npos) << r.error().message();
  // Size bounds.
  std::string many;
  for (size_t i = 0; i <= kMaxGuestSockets; ++i) many += "{\"proto\":\"tcp\",\"address\":\"::\",\"port\":1}\n";
  EXPECT_FALSE(ParseGuestPorts(many).ok());
  EXPECT_FALSE(ParseGuestPorts(std::string(kMaxGuestOutput + 1, '\n')).ok());
  // Process names are made printable and short.
  auto odd = ParseGuestPorts("{\"proto\":\"tcp\",\"address\":\"::\",\"port\":1,\"process\":\"a\\u001b[31mb" +
                             std::string(100, 'x') + "\"}");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ((*odd)[0].process.substr(0, 5), "a?[31");
  EXPECT_EQ((*odd)[0].process.size(), 64u);
}

TEST(GuestPortsTest, NamesTheHostEndpointThatReachesEachSocket) {
  SandboxRecord rec;
  rec.address = "10.99.0.7";
  SandboxSpec user;
  user.network.mode = NetworkMode::kUser;
  user.network.ports = {{8080, 80, Protocol::kTcp, "127.0.0.1"}};
  GuestSocket http{"tcp", "0.0.0.0", 80, 0, ""};
  GuestSocket ssh{"tcp", "0.0.0.0", 22, 0, ""};
  GuestSocket local{"tcp", "127.0.0.1", 80, 0, ""};
  GuestSocket other{"tcp", "::", 9000, 0, ""};
  GuestSocket dns{"udp", "0.0.0.0", 80, 0, ""};
  EXPECT_EQ(HostEndpointFor(http, rec, user, 0), "127.0.0.1:8080");
  EXPECT_EQ(HostEndpointFor(local, rec, user, 0), "");
  EXPECT_EQ(HostEndpointFor(other, rec, user, 0), "");
  EXPECT_EQ(HostEndpointFor(dns, rec, user, 0), "");
  EXPECT_EQ(HostEndpointFor(ssh, rec, user, 0), "");
  EXPECT_EQ(HostEndpointFor(ssh, rec, user, 41234), "127.0.0.1:41234");

  SandboxSpec bridged;
  bridged.network.mode = NetworkMode::kBridged;
  bridged.network.ports = {{8443, 443, Protocol::kTcp, "0.0.0.0"}};
  GuestSocket https{"tcp", "0.0.0.0", 443, 0, ""};
  EXPECT_EQ(HostEndpointFor(https, rec, bridged, 0), "0.0.0.0:8443");
  EXPECT_EQ(HostEndpointFor(other, rec, bridged, 0), "10.99.0.7:9000");
  EXPECT_EQ(HostEndpointFor(local, rec, bridged, 0), "");
  EXPECT_EQ(HostEndpointFor(GuestSocket{"tcp", "::1", 5, 0, ""}, rec, bridged, 0), "");

  SandboxSpec none;
  none.network.mode = NetworkMode::kNone;
  EXPECT_EQ(HostEndpointFor(http, rec, none, 0), "");
}

TEST(GuestStatsTest, ParsesAndValidates) {
  auto g = ParseGuestStats(
      "{\"mem_total_bytes\":1000,\"mem_available_bytes\":400,\"cpu_busy_ticks\":50,\"ticks_per_second\":100,"
      "\"fs_total_bytes\":2000,\"fs_used_bytes\":10,\"uptime_seconds\":7,\"future\":\"x\"}\n");
  ASSERT_TRUE(g.ok()) << g.error().ToString();
  EXPECT_EQ(*g->mem_total_bytes, 1000u);
  EXPECT_EQ(*g->mem_available_bytes, 400u);
  EXPECT_EQ(*g->uptime_seconds, 7u);
  EXPECT_FALSE(g->cpus.has_value());
  EXPECT_FALSE(ParseGuestStats("").ok());
  EXPECT_FALSE(ParseGuestStats("[]").ok());
  EXPECT_FALSE(ParseGuestStats("{\"mem_total_bytes\":-1}").ok());
  EXPECT_FALSE(ParseGuestStats("{\"mem_total_bytes\":1.5}").ok());
  EXPECT_FALSE(ParseGuestStats("{\"mem_total_bytes\":\"9\"}").ok());
  EXPECT_FALSE(ParseGuestStats("{\"mem_total_bytes\":1,\"mem_available_bytes\":2}").ok());
  EXPECT_FALSE(ParseGuestStats("{\"fs_total_bytes\":1,\"fs_used_bytes\":2}").ok());
  EXPECT_FALSE(ParseGuestStats("{\"ticks_per_second\":0}").ok());
  EXPECT_FALSE(ParseGuestStats(std::string(70000, ' ')).ok());
}

TEST(HostProcTest, ReadsQemuCpuTicksAndRss) {
  // A command name with spaces and a parenthesis.
  auto t = ParseProcPidStatCpuTicks(
      "4242 (qemu (x) sys) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 5000 "
      "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0");
  ASSERT_TRUE(t.ok()) << t.error().ToString();
  EXPECT_EQ(*t, 325u);
  EXPECT_FALSE(ParseProcPidStatCpuTicks("4242 qemu S 1").ok());
  EXPECT_FALSE(ParseProcPidStatCpuTicks("4242 (q) S 1 2").ok());
  auto rss = ParseVmRssBytes("Name:\tqemu\nVmPeak:\t 1 kB\nVmRSS:\t  204800 kB\nThreads: 3\n");
  ASSERT_TRUE(rss.ok());
  EXPECT_EQ(*rss, 204800u * 1024);
  EXPECT_FALSE(ParseVmRssBytes("Name: x\n").ok());
  EXPECT_FALSE(ParseVmRssBytes("VmRSS: lots kB\n").ok());
}

}  // namespace
}  // namespace banger::host
