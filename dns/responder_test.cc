// What the responder answers, from fake lease lists: sandboxes under
// `banger.` and as bare names, negative answers, and refusals.
#include "dns/responder.h"

#include <gtest/gtest.h>

#include "dns/test_packets.h"

namespace banger::dns {
namespace {

using namespace banger::dns::testing;  // NOLINT: packet builders

NameTable Fleet() {
  std::vector<LeaseRecord> leases = {
      {"default", "10.213.0.2", "web", "02:00:00:00:00:01", 0},
      {"default", "10.213.0.3", "DB", "02:00:00:00:00:02", 0},  // names fold to lower case
      {"backend", "10.213.50.10", "cache", "02:00:00:00:00:03", 0},
      {"default", "not-an-address", "broken", "02:00:00:00:00:04", 0},
  };
  return TableFromLeases(leases);
}

Decoded Ask(const Bytes& query, const NameTable& table = Fleet(), Rcode* rcode = nullptr) {
  std::array<uint8_t, kMaxResponseSize> out{};
  size_t n = Respond(query, table, 5, out, rcode);
  if (n == 0) return Decoded{};
  auto d = Decode(Bytes(out.begin(), out.begin() + static_cast<long>(n)));
  EXPECT_TRUE(d.has_value()) << "undecodable response";
  return d.value_or(Decoded{});
}

TEST(NameTable, FindsCaseInsensitivelyAndSkipsBadLeases) {
  NameTable t = Fleet();
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.Find("WeB"), (10u << 24) | (213u << 16) | 2u);
  EXPECT_TRUE(t.Find("db").has_value());
  EXPECT_FALSE(t.Find("broken").has_value());
  EXPECT_FALSE(t.Find("").has_value());
  EXPECT_FALSE(t.Find(std::string(64, 'a')).has_value());
  t.Add(std::string(64, 'a'), 1);  // cannot be a DNS label: skipped
  EXPECT_EQ(t.size(), 3u);
}

TEST(Responder, AnswersSandboxNamesUnderBangerWithTheirAddress) {
  Rcode rcode = Rcode::kServFail;
  Decoded d = Ask(QueryFor("web.banger", kTypeA, 77), Fleet(), &rcode);
  EXPECT_EQ(rcode, Rcode::kNoError);
  EXPECT_EQ(d.id, 77);
  EXPECT_TRUE(d.qr);
  EXPECT_TRUE(d.aa);
  EXPECT_EQ(d.rcode, 0);
  EXPECT_EQ(d.A(), "10.213.0.2");
  EXPECT_EQ(d.records.at(0).ttl, 5u);
  EXPECT_EQ(Ask(QueryFor("cache.banger")).A(), "10.213.50.10");  // every network's sandboxes
}

TEST(Responder, NamesAreCaseInsensitiveAndTheQuestionKeepsItsCase) {
  Bytes q = QueryFor("dB.BaNgEr");
  Decoded d = Ask(q);
  EXPECT_EQ(d.A(), "10.213.0.3");
  EXPECT_EQ(d.question, Bytes(q.begin() + 12, q.end()));
}

TEST(Responder, BareSandboxNamesAnswerToo) {
  Decoded d = Ask(QueryFor("web"));
  EXPECT_EQ(d.rcode, 0);
  EXPECT_EQ(d.A(), "10.213.0.2");
  Decoded aaaa = Ask(QueryFor("web", kTypeAAAA));
  EXPECT_EQ(aaaa.rcode, 0);
  EXPECT_EQ(aaaa.an, 0);
  EXPECT_EQ(aaaa.ns, 0);  // not our zone: no SOA to give
}

TEST(Responder, OtherTypesOfKnownNamesAreNoData) {
  for (uint16_t type : {kTypeAAAA, uint16_t{15} /* MX */, uint16_t{16} /* TXT */, kTypeNS}) {
    Decoded d = Ask(QueryFor("web.banger", type));
    EXPECT_EQ(d.rcode, 0) << type;
    EXPECT_TRUE(d.aa);
    EXPECT_EQ(d.an, 0) << type;
    ASSERT_EQ(d.ns, 1) << type;
    EXPECT_EQ(d.records[0].type, kTypeSOA);
  }
  EXPECT_EQ(Ask(QueryFor("web.banger", kTypeANY)).A(), "10.213.0.2");
}

TEST(Responder, UnknownNamesUnderBangerAreNxDomainWithTheSoa) {
  for (const char* name : {"nobody.banger", "broken.banger", "www.web.banger", "a.b.c.banger"}) {
    Decoded d = Ask(QueryFor(name));
    EXPECT_EQ(d.rcode, 3) << name;
    EXPECT_TRUE(d.aa) << name;
    EXPECT_EQ(d.an, 0) << name;
    ASSERT_EQ(d.ns, 1) << name;
    EXPECT_EQ(d.records[0].type, kTypeSOA) << name;
    EXPECT_EQ(d.records[0].ttl, 5u) << name;
  }
}

TEST(Responder, TheZoneApexHasOnlyItsSoa) {
  Decoded soa = Ask(QueryFor("banger", kTypeSOA));
  EXPECT_EQ(soa.rcode, 0);
  ASSERT_EQ(soa.an, 1);
  EXPECT_EQ(soa.records[0].type, kTypeSOA);
  Decoded a = Ask(QueryFor("BANGER.", kTypeA));
  EXPECT_EQ(a.rcode, 0);
  EXPECT_EQ(a.an, 0);
  EXPECT_EQ(a.ns, 1);
}

TEST(Responder, RefusesWhatItDoesNotServe) {
  for (const char* name : {"example.com", "nobody", ".", "web.banger.example.com", "banger.com"}) {
    Decoded d = Ask(QueryFor(name));
    EXPECT_EQ(d.rcode, 5) << name;
    EXPECT_FALSE(d.aa) << name;
    EXPECT_EQ(d.an + d.ns, 0) << name;
    EXPECT_EQ(d.qd, 1) << name;
  }
  EXPECT_EQ(Ask(QueryFor("web.banger", kTypeA, 1, 3 /* CHAOS */)).rcode, 5);
  EXPECT_EQ(Ask(QueryFor("banger", kTypeAXFR)).rcode, 5);
  EXPECT_EQ(Ask(QueryFor("banger", kTypeIXFR)).rcode, 5);
  EXPECT_EQ(Ask(QueryFor("web.banger", kTypeA, 1, kClassANY)).A(), "10.213.0.2");
}

TEST(Responder, MalformedQueriesGetFormErrAndOtherOpcodesNotImp) {
  Bytes pointer = HeaderBytes(5, 0x0100, 1);
  pointer.insert(pointer.end(), {0xC0, 12, 0, 1, 0, 1});
  Decoded f = Ask(pointer);
  EXPECT_EQ(f.id, 5);
  EXPECT_EQ(f.rcode, 1);
  EXPECT_EQ(f.qd, 0);
  Bytes notify = QueryFor("web.banger");
  notify[2] = static_cast<uint8_t>(4 << 3);
  Decoded n = Ask(notify);
  EXPECT_EQ(n.rcode, 4);
  EXPECT_EQ(n.opcode, 4);
}

TEST(Responder, ResponsesAndRuntPacketsGetNothing) {
  std::array<uint8_t, kMaxResponseSize> out{};
  Bytes response = QueryFor("web.banger");
  response[2] |= 0x80;
  EXPECT_EQ(Respond(response, Fleet(), 5, out), 0u);
  Bytes runt = {1, 2, 3};
  EXPECT_EQ(Respond(runt, Fleet(), 5, out), 0u);
}

}  // namespace
}  // namespace banger::dns
