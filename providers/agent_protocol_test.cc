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

}  // namespace
}  // namespace banger::agent_protocol
