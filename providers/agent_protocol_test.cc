#include "providers/agent_protocol.h"

#include <gtest/gtest.h>

namespace banger::agent_protocol {
namespace {

TEST(AgentProtocolTest, ExecRequestRoundTrips) {
  ExecRequest e;
  e.argv = {"sh", "-c", "echo hi"};
  e.env = {"A=1", "B="};
  e.cwd = "/tmp";
  e.tty = true;
  e.rows = 50;
  e.cols = 132;
  auto back = DecodeExec(EncodeExec(e));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->argv, e.argv);
  EXPECT_EQ(back->env, e.env);
  EXPECT_EQ(back->cwd, "/tmp");
  EXPECT_TRUE(back->tty);
  EXPECT_EQ(back->rows, 50);
  EXPECT_EQ(back->cols, 132);
}

TEST(AgentProtocolTest, HelloAndExitRoundTrip) {
  Hello h{kProtocolVersion, "1.2.3", 4242, "init"};
  auto hb = DecodeHello(EncodeHello(h));
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->agent_version, "1.2.3");
  EXPECT_EQ(hb->boot_ms, 4242u);
  EXPECT_EQ(hb->mode, "init");
  auto ex = DecodeExit(EncodeExit({true, 9}));
  ASSERT_TRUE(ex);
  EXPECT_TRUE(ex->signaled);
  EXPECT_EQ(ex->ShellCode(), 137);
  auto rs = DecodeResize(EncodeResize(40, 100));
  ASSERT_TRUE(rs);
  EXPECT_EQ(rs->first, 40);
  EXPECT_EQ(rs->second, 100);
}

// Found by fuzz/agent_host_fuzz.cc: a guest could report exit code -889192311
// (banger exec then exited with it) or signal 2^31-1 (128+code overflowed).
TEST(AgentProtocolTest, ExitOutsideWhatAProcessCanReportIsRejected) {
  EXPECT_EQ(DecodeExit(EncodeExit({false, 255}))->ShellCode(), 255);
  EXPECT_EQ(DecodeExit(EncodeExit({true, 64}))->ShellCode(), 192);
  EXPECT_FALSE(DecodeExit(EncodeExit({false, -889192311})));
  EXPECT_FALSE(DecodeExit(EncodeExit({false, 256})));
  EXPECT_FALSE(DecodeExit(EncodeExit({true, 0})));
  EXPECT_FALSE(DecodeExit(EncodeExit({true, 65})));
  EXPECT_FALSE(DecodeExit(EncodeExit({true, 2147483647})));
}

TEST(AgentProtocolTest, TruncatedPayloadsAreRejected) {
  std::string exec = EncodeExec({{"ls"}, {}, "", false, 24, 80});
  for (size_t n = 0; n < exec.size(); ++n) {
    EXPECT_FALSE(DecodeExec(exec.substr(0, n))) << "prefix of " << n << " bytes decoded";
  }
  // A huge list count must not allocate or read out of bounds.
  EXPECT_FALSE(DecodeExec(PayloadWriter().U32(0xFFFFFFFF).Take()));
  EXPECT_FALSE(DecodeHello("\x00\x00"));
}

TEST(AgentProtocolTest, DecoderHandlesByteByByteDelivery) {
  std::string stream = EncodeFrame(MessageType::kStdout, 7, "hello") +
                       EncodeFrame(MessageType::kExit, 7, EncodeExit({false, 3})) +
                       EncodeFrame(MessageType::kPong, 0, EncodeU64(99));
  FrameDecoder d;
  std::vector<Frame> frames;
  for (char c : stream) {
    d.Feed(std::string_view(&c, 1));
    while (auto f = d.Next()) frames.push_back(*f);
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].type, MessageType::kStdout);
  EXPECT_EQ(frames[0].channel, 7u);
  EXPECT_EQ(frames[0].payload, "hello");
  EXPECT_EQ(DecodeExit(frames[1].payload)->code, 3);
  EXPECT_EQ(*DecodeU64(frames[2].payload), 99u);
  EXPECT_EQ(d.buffered(), 0u);
  EXPECT_TRUE(d.error().empty());
}

TEST(AgentProtocolTest, DecoderHandlesManyFramesInOneChunk) {
  std::string stream;
  for (uint32_t i = 0; i < 100; ++i) stream += EncodeFrame(MessageType::kStdin, i, std::string(i, 'x'));
  FrameDecoder d;
  d.Feed(stream.substr(0, stream.size() - 3));
  int n = 0;
  while (auto f = d.Next()) {
    EXPECT_EQ(f->channel, static_cast<uint32_t>(n));
    EXPECT_EQ(f->payload.size(), static_cast<size_t>(n));
    ++n;
  }
  EXPECT_EQ(n, 99);
  d.Feed(stream.substr(stream.size() - 3));
  ASSERT_TRUE(d.Next());
  EXPECT_FALSE(d.Next());
}

TEST(AgentProtocolTest, OversizedFrameIsAProtocolError) {
  FrameDecoder d;
  d.Feed(PayloadWriter().U32(kMaxFrameLength + 1).U8(1).U32(0).Take());
  EXPECT_FALSE(d.Next());
  EXPECT_NE(d.error().find("bad frame length"), std::string::npos);
  // Stays failed: the stream cannot be resynchronised.
  d.Feed(EncodeFrame(MessageType::kPing, 0, EncodeU64(1)));
  EXPECT_FALSE(d.Next());
}

TEST(AgentProtocolTest, SetHostsRoundTrips) {
  std::vector<HostsEntry> hosts = {{"10.99.0.7", {"peer", "peer.banger"}}, {"10.99.0.8", {"db"}}};
  std::string payload = EncodeSetHosts(hosts);
  // u32 count, then per entry: str address, strlist names.
  EXPECT_EQ(payload.substr(0, 4), std::string("\0\0\0\2", 4));
  EXPECT_EQ(payload.substr(4, 13), std::string("\0\0\0\x09" "10.99.0.7", 13));
  std::string err;
  auto back = DecodeSetHosts(payload, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(*back, hosts);
  auto empty = DecodeSetHosts(EncodeSetHosts({}), &err);
  ASSERT_TRUE(empty) << err;
  EXPECT_TRUE(empty->empty());
  EXPECT_STREQ(MessageTypeName(MessageType::kSetHosts), "SET_HOSTS");
  EXPECT_STREQ(MessageTypeName(MessageType::kSetHostsAck), "SET_HOSTS_ACK");
}

TEST(AgentProtocolTest, SetHostsRejectsTruncatedTrailingAndHugePayloads) {
  std::string payload = EncodeSetHosts({{"10.0.0.1", {"a", "b"}}});
  std::string err;
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeSetHosts(payload.substr(0, n), &err)) << "prefix of " << n << " bytes decoded";
  }
  EXPECT_FALSE(DecodeSetHosts(payload + "x", &err));
  EXPECT_NE(err.find("trailing"), std::string::npos) << err;
  EXPECT_FALSE(DecodeSetHosts(PayloadWriter().U32(0xFFFFFFFF).Take(), &err));
  EXPECT_NE(err.find("at most"), std::string::npos) << err;
  // A count within the limit but beyond the bytes present must not reserve it.
  EXPECT_FALSE(DecodeSetHosts(PayloadWriter().U32(4000).Take(), &err));
  std::vector<HostsEntry> many(kMaxHostsEntries + 1, HostsEntry{"10.0.0.1", {"a"}});
  EXPECT_FALSE(DecodeSetHosts(EncodeSetHosts(many), &err));
}

TEST(AgentProtocolTest, SetHostsValidatesAddressesAndNames) {
  std::string err;
  auto decode = [&](HostsEntry e) { return DecodeSetHosts(EncodeSetHosts({std::move(e)}), &err).has_value(); };
  EXPECT_TRUE(decode({"0.0.0.0", {"a"}}));
  EXPECT_TRUE(decode({"255.255.255.255", {"a-b.c-d.banger", "X9"}}));
  for (const char* bad : {"", "10.0.0", "10.0.0.1.2", "10.0.0.256", "10.0.0.01", "1234.0.0.1", "10.0.0.1 ",
                          "10.0.0.1\n", "::1", "10..0.1", "a.b.c.d", "-1.0.0.0"}) {
    EXPECT_FALSE(decode({bad, {"a"}})) << "address '" << bad << "'";
    EXPECT_NE(err.find("IPv4"), std::string::npos) << err;
  }
  for (const std::string& bad : {std::string(""), std::string("a b"), std::string("a\tb"), std::string("a\nb"),
                                 std::string("#a"), std::string("-a"), std::string("a-"), std::string("a..b"),
                                 std::string(".a"), std::string("a."), std::string("a_b"), std::string(64, 'x'),
                                 std::string(254, 'a'), std::string("caf\xc3\xa9")}) {
    EXPECT_FALSE(decode({"10.0.0.1", {"ok", bad}})) << "name '" << bad << "'";
    EXPECT_NE(err.find("invalid host name"), std::string::npos) << err;
  }
  EXPECT_TRUE(decode({"10.0.0.1", {std::string(63, 'x') + "." + std::string(63, 'y')}}));
  EXPECT_FALSE(decode({"10.0.0.1", {}}));
  EXPECT_NE(err.find("no names"), std::string::npos) << err;
  EXPECT_FALSE(decode({"10.0.0.1", std::vector<std::string>(kMaxNamesPerHostsEntry + 1, "a")}));
  EXPECT_EQ(ValidateHostsEntries({{"10.0.0.1", {"ok"}}, {"10.0.0.2", {"no way"}}}).substr(0, 25),
            "hosts entry 1 (10.0.0.2):");
}

// ---- IDENTITY ---------------------------------------------------------------

Identity GoodIdentity() {
  Identity id;
  id.time_ns = 1790000000ull * 1000000000ull + 123;
  id.mac = "52:54:00:12:34:56";
  id.entropy = std::string(kIdentityEntropyBytes, '\x5a');
  id.config_json = R"({"hostname": "a"})";
  return id;
}

TEST(AgentProtocolTest, IdentityRoundTrips) {
  Identity id = GoodIdentity();
  std::string payload = EncodeIdentity(id);
  // u64 time, str mac, str entropy, str config.
  EXPECT_EQ(payload.substr(8, 4), std::string("\0\0\0\x11", 4));
  std::string err;
  auto back = DecodeIdentity(payload, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(*back, id);
  id.mac = "";  // keep the NIC's
  back = DecodeIdentity(EncodeIdentity(id), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->mac, "");
  EXPECT_STREQ(MessageTypeName(MessageType::kIdentity), "IDENTITY");
  EXPECT_STREQ(MessageTypeName(MessageType::kIdentityAck), "IDENTITY_ACK");
}

TEST(AgentProtocolTest, IdentityRejectsTruncatedTrailingAndHugePayloads) {
  std::string payload = EncodeIdentity(GoodIdentity());
  std::string err;
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeIdentity(payload.substr(0, n), &err)) << "prefix of " << n << " bytes decoded";
    EXPECT_FALSE(err.empty());
  }
  EXPECT_FALSE(DecodeIdentity(payload + "x", &err));
  EXPECT_NE(err.find("trailing"), std::string::npos) << err;
  // A string length beyond the bytes present must not be read or reserved.
  EXPECT_FALSE(DecodeIdentity(PayloadWriter().U64(GoodIdentity().time_ns).U32(0xFFFFFFFF).Take(), &err));
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  Identity big = GoodIdentity();
  big.config_json = std::string(kMaxIdentityConfig + 1, ' ');
  EXPECT_FALSE(DecodeIdentity(EncodeIdentity(big), &err));
  EXPECT_NE(err.find("at most"), std::string::npos) << err;
}

TEST(AgentProtocolTest, IdentityValidatesTimeMacEntropyAndConfig) {
  std::string err;
  auto refused = [&](const Identity& id, const char* why) {
    bool decoded = DecodeIdentity(EncodeIdentity(id), &err).has_value();
    return !decoded && err.find(why) != std::string::npos;
  };
  Identity id = GoodIdentity();
  id.time_ns = 0;
  EXPECT_TRUE(refused(id, "between 2000 and 2200")) << err;
  id.time_ns = ~uint64_t{0};
  EXPECT_TRUE(refused(id, "between 2000 and 2200")) << err;
  for (const char* bad : {"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56", "5254.0012.3456",
                          "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "52:54:00:12:34:5g",
                          "52:54:00:12:34:56\n", " 52:54:00:12:34:5"}) {
    if (*bad == '\0') continue;  // "" means keep the NIC's MAC
    id = GoodIdentity();
    id.mac = bad;
    EXPECT_TRUE(refused(id, "MAC address")) << "'" << bad << "': " << err;
  }
  EXPECT_TRUE(IsMacAddress("02:AB:cd:00:00:01"));
  id = GoodIdentity();
  id.entropy = std::string(kMinIdentityEntropy - 1, 'x');
  EXPECT_TRUE(refused(id, "bytes of entropy")) << err;
  id.entropy = std::string(kMaxIdentityEntropy + 1, 'x');
  EXPECT_TRUE(refused(id, "bytes of entropy")) << err;
  id = GoodIdentity();
  id.config_json = "";
  EXPECT_TRUE(refused(id, "empty config")) << err;
}

TEST(AgentProtocolTest, PongCarriesTheModeAndOldPongsStillDecode) {
  auto p = DecodePong(EncodePong(7, kModeHeld));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->nonce, 7u);
  EXPECT_EQ(p->mode, "held");
  auto old = DecodePong(EncodeU64(9));  // an agent from before IDENTITY
  ASSERT_TRUE(old);
  EXPECT_EQ(old->nonce, 9u);
  EXPECT_EQ(old->mode, "");
  EXPECT_FALSE(DecodePong(EncodeU64(9) + std::string("\0\0", 2)));
  EXPECT_FALSE(DecodePong(EncodePong(7, "held") + "x"));
  EXPECT_EQ(DecodeU64(EncodePong(7, "held")), 7u);  // old hosts read the nonce as before
  EXPECT_TRUE(IsHeld(Hello{kProtocolVersion, "v", 1, "held"}));
  EXPECT_FALSE(IsHeld(Hello{kProtocolVersion, "v", 1, "init"}));
}

}  // namespace
}  // namespace banger::agent_protocol
