#include "agent/procfs.h"

#include <gtest/gtest.h>

namespace banger::agent {
namespace {

TEST(ProcfsTest, ParsesTcpListenLine) {
  // sshd on 0.0.0.0:22 and a server on 127.0.0.1:8080 (x86 byte order).
  auto s = ParseProcNetLine(
      "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 15023 1 "
      "0000000000000000 100 0 0 10 0",
      false);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->address, "0.0.0.0");
  EXPECT_EQ(s->port, 22);
  EXPECT_EQ(s->state, 0x0A);
  EXPECT_EQ(s->inode, 15023u);
  EXPECT_TRUE(IsListening(*s, false));

  auto lo = ParseProcNetLine(
      "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0",
      false);
  ASSERT_TRUE(lo);
  EXPECT_EQ(lo->address, "127.0.0.1");
  EXPECT_EQ(lo->port, 8080);
}

TEST(ProcfsTest, EstablishedTcpIsNotListening) {
  auto s = ParseProcNetLine(
      "   2: 0F02000A:0016 0202000A:D0A4 01 00000000:00000000 02:000AF5D6 00000000     0        0 16001 4 0 20 4 "
      "30 10 -1",
      false);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->address, "10.0.2.15");
  EXPECT_FALSE(IsListening(*s, false));
}

TEST(ProcfsTest, ParsesTcp6AndUdp) {
  auto s = ParseProcNetLine(
      "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 "
      "00:00000000 00000000     0        0 15025 1 0000000000000000 100 0 0 10 0",
      true);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->address, "::");
  EXPECT_EQ(s->port, 22);
  auto loop6 = ParseProcNetLine(
      "   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 "
      "00:00000000 00000000     0        0 9 1 0 100 0 0 10 0",
      true);
  ASSERT_TRUE(loop6);
  EXPECT_EQ(loop6->address, "::1");
  EXPECT_EQ(loop6->port, 631);

  auto udp = ParseProcNetLine(
      "  125: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12000 2 0 0",
      false);
  ASSERT_TRUE(udp);
  EXPECT_TRUE(IsListening(*udp, true));
  EXPECT_EQ(udp->port, 68);
  auto connected = ParseProcNetLine(
      "  126: 0F02000A:9C40 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 12001 2 0 0",
      false);
  ASSERT_TRUE(connected);
  EXPECT_FALSE(IsListening(*connected, true));
}

TEST(ProcfsTest, RejectsHeaderAndMalformedLines) {
  EXPECT_FALSE(ParseProcNetLine(
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", false));
  EXPECT_FALSE(ParseProcNetLine("", false));
  EXPECT_FALSE(ParseProcNetLine("   0: 0000000:0016 00000000:0000 0A 0 0 0 0 0 15023", false));  // 7 digits
  EXPECT_FALSE(ParseProcNetLine("   0: 0000000G:0016 00000000:0000 0A 0 0 0 0 0 15023", false));
  EXPECT_FALSE(ParseProcNetLine("   0: 00000000:10016 00000000:0000 0A 0 0 0 0 0 15023", false));  // port > 4 digits
  EXPECT_FALSE(ParseProcNetLine("   0: 00000000:0016 00000000:0000 0A 0 0 0 0 0 -1", false));
  // An IPv4-width address in the IPv6 table.
  EXPECT_FALSE(ParseProcNetLine("   0: 00000000:0016 00000000:0000 0A 0 0 0 0 0 1", true));
}

TEST(ProcfsTest, ParsesMeminfo) {
  auto m = ParseMeminfo("MemTotal:        1004812 kB\nMemFree:          803456 kB\nMemAvailable:     870000 kB\n"
                        "Buffers:            1000 kB\nCached:            20000 kB\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->total_bytes, 1004812ull * 1024);
  EXPECT_EQ(m->available_bytes, 870000ull * 1024);
  // An old kernel without MemAvailable: free + buffers + cached.
  auto old = ParseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\n");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->available_bytes, 130u * 1024);
  // Available never exceeds total; garbage lines are skipped; no total is no answer.
  auto odd = ParseMeminfo("junk\nMemTotal: 10 kB\nMemAvailable: 99 kB\nMemFree: x kB\n");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->available_bytes, 10u * 1024);
  EXPECT_FALSE(ParseMeminfo("MemFree: 100 kB\n"));
  EXPECT_FALSE(ParseMeminfo(""));
}

TEST(ProcfsTest, ParsesProcStatCpuLine) {
  auto c = ParseProcStatCpu("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 100 5 50 1000 20 3 2 1 0 0\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->busy_ticks, 100u + 5 + 50 + 3 + 2 + 1);
  EXPECT_EQ(c->idle_ticks, 1020u);
  EXPECT_FALSE(ParseProcStatCpu("cpu0 1 2 3 4\n"));
  EXPECT_FALSE(ParseProcStatCpu("cpu 1 2 x 4\n"));
  EXPECT_FALSE(ParseProcStatCpu(""));
}

TEST(ProcfsTest, SocketInodeAndJsonQuote) {
  EXPECT_EQ(SocketInode("socket:[15023]"), 15023u);
  EXPECT_EQ(SocketInode("pipe:[15023]"), 0u);
  EXPECT_EQ(SocketInode("socket:[]"), 0u);
  EXPECT_EQ(SocketInode("socket:[12a]"), 0u);
  EXPECT_EQ(JsonQuote("sshd"), "\"sshd\"");
  EXPECT_EQ(JsonQuote("a\"b\\c\n\xff"), "\"a\\\"b\\\\c\\u000a?\"");
}

}  // namespace
}  // namespace banger::agent
