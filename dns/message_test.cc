// The DNS codec: queries parsed from hand-built packets (good, malformed and
// hostile) and responses read back with an independent decoder.
#include "dns/message.h"

#include <gtest/gtest.h>

#include <random>

#include "dns/test_packets.h"

namespace banger::dns {
namespace {

using namespace banger::dns::testing;  // NOLINT: packet builders

ParseResult Parse(const Bytes& b) { return ParseQuery(std::span<const uint8_t>(b.data(), b.size())); }
// The result views into the packet: a temporary would leave it dangling.
ParseResult Parse(Bytes&& b) = delete;

TEST(DnsParse, ReadsHeaderQuestionAndEchoableBytes) {
  Bytes q = QueryFor("Web.Banger", kTypeA, 0xBEEF);
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.query.header.id, 0xBEEF);
  EXPECT_TRUE(r.query.header.rd);
  EXPECT_FALSE(r.query.header.qr);
  ASSERT_EQ(r.query.name.count, 2u);
  EXPECT_EQ(r.query.name.labels[0], "Web");
  EXPECT_EQ(r.query.name.FromRight(0), "Banger");
  EXPECT_EQ(r.query.qtype, kTypeA);
  EXPECT_EQ(r.query.qclass, kClassIN);
  EXPECT_EQ(Bytes(r.query.question.begin(), r.query.question.end()), Bytes(q.begin() + 12, q.end()));
  EXPECT_EQ(ToText(r.query.name), "Web.Banger.");
}

TEST(DnsParse, RootNameHasNoLabels) {
  Bytes q = QueryFor(".", kTypeNS);
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.query.name.count, 0u);
  EXPECT_EQ(ToText(r.query.name), ".");
}

TEST(DnsParse, IgnoresWhatFollowsTheQuestionSuchAsAnEdnsOptRecord) {
  Bytes q = QueryFor("web.banger");
  q[11] = 1;  // ARCOUNT
  Bytes opt = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0};  // root, OPT, 4096, no options
  q.insert(q.end(), opt.begin(), opt.end());
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.query.question.size(), q.size() - 12 - opt.size());
}

TEST(DnsParse, PacketsShorterThanAHeaderAndResponsesAreIgnored) {
  Bytes empty, eleven(11, 0);
  EXPECT_EQ(Parse(empty).status, ParseStatus::kIgnore);
  EXPECT_EQ(Parse(eleven).status, ParseStatus::kIgnore);
  Bytes response = QueryFor("web.banger");
  response[2] |= 0x80;  // QR
  EXPECT_EQ(Parse(response).status, ParseStatus::kIgnore);
}

TEST(DnsParse, OpcodesOtherThanQueryAreNotImplemented) {
  Bytes q = QueryFor("web.banger");
  q[2] = static_cast<uint8_t>(q[2] | (5 << 3));  // UPDATE
  ParseResult r = Parse(q);
  EXPECT_EQ(r.status, ParseStatus::kNotImp);
  EXPECT_EQ(r.query.header.opcode, 5);
}

TEST(DnsParse, OnlyOneQuestionIsAccepted) {
  Bytes none = HeaderBytes(1, 0x0100, 0);
  EXPECT_EQ(Parse(none).status, ParseStatus::kFormErr);
  Bytes two = QueryFor("a.banger");
  two[5] = 2;
  Bytes second = WireName("b.banger");
  two.insert(two.end(), second.begin(), second.end());
  two.insert(two.end(), {0, 1, 0, 1});
  EXPECT_EQ(Parse(two).status, ParseStatus::kFormErr);
}

TEST(DnsParse, RejectsCompressionPointersInTheQuestion) {
  Bytes q = HeaderBytes(7, 0x0100, 1);
  q.insert(q.end(), {3, 'w', 'e', 'b', 0xC0, 12, 0, 1, 0, 1});  // web + pointer to offset 12
  EXPECT_EQ(Parse(q).status, ParseStatus::kFormErr);
  Bytes loop = HeaderBytes(7, 0x0100, 1);
  loop.insert(loop.end(), {0xC0, 12, 0, 1, 0, 1});  // points at itself
  EXPECT_EQ(Parse(loop).status, ParseStatus::kFormErr);
}

TEST(DnsParse, RejectsReservedLabelTypesThatWouldBeLongerThan63) {
  for (uint8_t len : {64, 0x7F, 0x80, 0xBF}) {
    Bytes q = HeaderBytes(7, 0x0100, 1);
    q.push_back(len);
    q.insert(q.end(), len & 0x3F, 'a');
    q.insert(q.end(), {0, 0, 1, 0, 1});
    EXPECT_EQ(Parse(q).status, ParseStatus::kFormErr) << int(len);
  }
  Bytes ok = QueryFor(std::string(63, 'a') + ".banger");
  EXPECT_EQ(Parse(ok).status, ParseStatus::kOk);
}

TEST(DnsParse, NamesUpTo255BytesAndNoLonger) {
  // 4 labels of 63 = 256 bytes with length bytes; 3*63 + 61 + root = 255.
  std::string l63(63, 'x');
  std::string ok = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'y');
  ASSERT_EQ(WireName(ok).size(), 255u);
  Bytes q_ok = QueryFor(ok);
  EXPECT_EQ(Parse(q_ok).status, ParseStatus::kOk);
  std::string too_long = l63 + "." + l63 + "." + l63 + "." + std::string(62, 'y');
  ASSERT_EQ(WireName(too_long).size(), 256u);
  Bytes q_long = QueryFor(too_long);
  EXPECT_EQ(Parse(q_long).status, ParseStatus::kFormErr);
  // 127 one-letter labels: 255 bytes; 128 of them: too long.
  std::string many;
  for (int i = 0; i < 127; ++i) many += (i ? ".a" : "a");
  Bytes q_many = QueryFor(many);
  ParseResult r = Parse(q_many);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(r.query.name.count, 127u);
  Bytes q_more = QueryFor(many + ".a");
  EXPECT_EQ(Parse(q_more).status, ParseStatus::kFormErr);
}

TEST(DnsParse, TruncatedPacketsAreFormatErrors) {
  Bytes q = QueryFor("web.banger");
  for (size_t len = 12; len < q.size(); ++len) {
    Bytes cut(q.begin(), q.begin() + static_cast<long>(len));
    ParseResult r = Parse(cut);
    EXPECT_EQ(r.status, ParseStatus::kFormErr) << "cut at " << len;
    EXPECT_EQ(r.query.header.id, 0x1234);
  }
}

TEST(DnsWrite, AnAnswerPointsAtTheQuestionAndCopiesIdAndRd) {
  Bytes q = QueryFor("WEB.banger", kTypeA, 0x4242);
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  Reply reply;
  reply.authoritative = true;
  reply.address = (10u << 24) | (213u << 16) | 2u;
  reply.ttl = 5;
  std::array<uint8_t, kMaxResponseSize> out{};
  size_t n = WriteResponse(r.query, true, reply, out);
  ASSERT_GT(n, 0u);
  auto d = Decode(Bytes(out.begin(), out.begin() + static_cast<long>(n)));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->id, 0x4242);
  EXPECT_TRUE(d->qr);
  EXPECT_TRUE(d->aa);
  EXPECT_TRUE(d->rd);
  EXPECT_FALSE(d->ra);
  EXPECT_EQ(d->rcode, 0);
  EXPECT_EQ(d->qd, 1);
  EXPECT_EQ(d->question, Bytes(q.begin() + 12, q.end()));  // case kept
  ASSERT_EQ(d->an, 1);
  EXPECT_EQ(d->records[0].owner, (Bytes{0xC0, 12}));
  EXPECT_EQ(d->records[0].ttl, 5u);
  EXPECT_EQ(d->A(), "10.213.0.2");
}

TEST(DnsWrite, FormatErrorsCarryNoQuestion) {
  Bytes q = HeaderBytes(99, 0x0100, 3);
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kFormErr);
  Reply reply;
  reply.rcode = Rcode::kFormErr;
  std::array<uint8_t, kMaxResponseSize> out{};
  size_t n = WriteResponse(r.query, false, reply, out);
  auto d = Decode(Bytes(out.begin(), out.begin() + static_cast<long>(n)));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->id, 99);
  EXPECT_EQ(d->rcode, 1);
  EXPECT_EQ(d->qd, 0);
  EXPECT_EQ(d->an, 0);
}

TEST(DnsWrite, SoaInAuthorityIsWellFormed) {
  Bytes q = QueryFor("nobody.banger");
  ParseResult r = Parse(q);
  Reply reply;
  reply.rcode = Rcode::kNxDomain;
  reply.authoritative = true;
  reply.soa_authority = true;
  reply.ttl = 5;
  std::array<uint8_t, kMaxResponseSize> out{};
  size_t n = WriteResponse(r.query, true, reply, out);
  auto d = Decode(Bytes(out.begin(), out.begin() + static_cast<long>(n)));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->rcode, 3);
  ASSERT_EQ(d->ns, 1);
  const auto& soa = d->records[0];
  EXPECT_EQ(soa.type, kTypeSOA);
  EXPECT_EQ(soa.owner, WireName("banger"));
  Bytes rdata = WireName("banger");
  Bytes rname = WireName("hostmaster.banger");
  rdata.insert(rdata.end(), rname.begin(), rname.end());
  for (uint32_t v : {1u, 3600u, 600u, 86400u, 5u}) {
    for (int s = 24; s >= 0; s -= 8) rdata.push_back(static_cast<uint8_t>(v >> s));
  }
  EXPECT_EQ(soa.rdata, rdata);
}

TEST(DnsWrite, ABufferTooSmallYieldsNothingAndIsNotOverrun) {
  Bytes q = QueryFor("web.banger");
  ParseResult r = Parse(q);
  Reply reply;
  reply.address = 1;
  std::vector<uint8_t> small(20);  // heap: ASan would see an overrun
  EXPECT_EQ(WriteResponse(r.query, true, reply, small), 0u);
  EXPECT_EQ(WriteResponse(r.query, true, reply, std::span<uint8_t>()), 0u);
}

TEST(DnsText, UnusualBytesAreEscaped) {
  Bytes q = HeaderBytes(1, 0, 1);
  q.insert(q.end(), {3, 'a', '.', 0xFF, 0, 0, 1, 0, 1});
  ParseResult r = Parse(q);
  ASSERT_EQ(r.status, ParseStatus::kOk);
  EXPECT_EQ(ToText(r.query.name), "a\\046\\255.");
  EXPECT_TRUE(EqualsIgnoreCase("BaNgEr", "banger"));
  EXPECT_FALSE(EqualsIgnoreCase("banger", "bangers"));
  EXPECT_FALSE(EqualsIgnoreCase("\xC3", "\xE3"));  // only ASCII folds
}

// Random and mutated packets, each in a buffer of exactly its size (so that
// AddressSanitizer sees any read past it): parsing never crashes, and a
// written response always decodes and is at most kMaxResponseSize bytes.
TEST(DnsRobustness, RandomAndMutatedPacketsNeverBreakTheCodec) {
  std::mt19937 rng(20240611);
  std::vector<Bytes> seeds = {QueryFor("web.banger"), QueryFor("a.b.c.d.e.f.g"), QueryFor("."),
                              QueryFor(std::string(63, 'z') + ".banger", kTypeAAAA)};
  int ok = 0;
  for (int i = 0; i < 200000; ++i) {
    Bytes p;
    if (i % 2 == 0) {
      p.resize(rng() % 300);
      for (auto& b : p) b = static_cast<uint8_t>(rng());
      if (p.size() >= 12 && i % 4 == 0) {  // a plausible header, so the question is parsed
        p[2] = 0x01;
        p[4] = 0;
        p[5] = 1;
      }
    } else {
      p = seeds[rng() % seeds.size()];
      for (int m = 0, n = 1 + static_cast<int>(rng() % 4); m < n; ++m) {
        switch (rng() % 3) {
          case 0: p[rng() % p.size()] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
          case 1: if (p.size() > 12) p[12 + rng() % (p.size() - 12)] = static_cast<uint8_t>(rng()); break;
          case 2: p.resize(std::max<size_t>(12, p.size() - rng() % 6)); break;
        }
      }
    }
    Bytes exact(p);  // a fresh allocation of exactly p.size() bytes
    exact.shrink_to_fit();
    ParseResult r = ParseQuery(exact);
    if (r.status == ParseStatus::kIgnore) continue;
    Reply reply;
    reply.rcode = r.status == ParseStatus::kOk ? Rcode::kNxDomain : Rcode::kFormErr;
    reply.soa_authority = r.status == ParseStatus::kOk;
    reply.address = r.status == ParseStatus::kOk ? std::optional<uint32_t>(0x0A000001) : std::nullopt;
    std::vector<uint8_t> out(kMaxResponseSize);
    size_t n = WriteResponse(r.query, r.status == ParseStatus::kOk, reply, out);
    ASSERT_GT(n, 0u);
    ASSERT_LE(n, kMaxResponseSize);
    auto d = Decode(Bytes(out.begin(), out.begin() + static_cast<long>(n)));
    ASSERT_TRUE(d.has_value()) << "response to packet " << i << " does not decode";
    ASSERT_EQ(d->id, r.query.header.id);
    if (r.status == ParseStatus::kOk) ++ok;
  }
  EXPECT_GT(ok, 1000);  // the mutations left many parseable queries
}

}  // namespace
}  // namespace banger::dns
