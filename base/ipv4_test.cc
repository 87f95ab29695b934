#include "base/ipv4.h"

#include <gtest/gtest.h>

namespace banger {
namespace {

TEST(Ipv4, ParsesAndFormats) {
  auto a = ParseIpv4("10.213.0.17");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value, (10u << 24) | (213u << 16) | 17u);
  EXPECT_EQ(ToString(*a), "10.213.0.17");
  EXPECT_EQ(ToString(*ParseIpv4("255.255.255.255")), "255.255.255.255");
}

TEST(Ipv4, RejectsMalformedAddresses) {
  for (const char* bad : {"", "10.0.0", "10.0.0.0.1", "256.1.1.1", "01.2.3.4", "a.b.c.d", "1..2.3", "1.2.3.4 ", "-1.2.3.4"}) {
    auto r = ParseIpv4(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("not an IPv4 address"), std::string::npos);
    }
  }
}

TEST(Ipv4Prefix, ParsesContainsAndNamesTheMeantNetwork) {
  auto p = ParseIpv4Prefix("10.213.4.0/22");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Contains(*ParseIpv4("10.213.7.255")));
  EXPECT_FALSE(p->Contains(*ParseIpv4("10.213.8.0")));
  EXPECT_EQ(p->Size(), 1024u);
  EXPECT_EQ(ToString(p->Broadcast()), "10.213.7.255");
  EXPECT_EQ(ToString(p->At(1)), "10.213.4.1");

  auto host_bits = ParseIpv4Prefix("10.213.0.1/24");
  ASSERT_FALSE(host_bits.ok());
  EXPECT_NE(host_bits.error().message().find("did you mean 10.213.0.0/24"), std::string::npos);
  EXPECT_EQ(ToString(*ParseIpv4Prefix("10.213.0.1/24", /*strict=*/false)), "10.213.0.0/24");
  EXPECT_FALSE(ParseIpv4Prefix("10.0.0.0/33").ok());
  EXPECT_FALSE(ParseIpv4Prefix("10.0.0.0").ok());
  EXPECT_FALSE(ParseIpv4Prefix("10.0.0.0/").ok());
}

TEST(Ipv4Prefix, OverlapIsSymmetric) {
  auto a = *ParseIpv4Prefix("10.0.0.0/8");
  auto b = *ParseIpv4Prefix("10.213.0.0/24");
  auto c = *ParseIpv4Prefix("192.168.0.0/16");
  EXPECT_TRUE(a.Overlaps(b));
  EXPECT_TRUE(b.Overlaps(a));
  EXPECT_FALSE(a.Overlaps(c));
  EXPECT_TRUE((*ParseIpv4Prefix("0.0.0.0/0")).Overlaps(c));
}

TEST(Ipv4Prefix, FirstFreePrefixSkipsTakenRanges) {
  auto pool = *ParseIpv4Prefix("10.213.0.0/16");
  auto first = FirstFreePrefix(pool, 24, {});
  ASSERT_TRUE(first);
  EXPECT_EQ(ToString(*first), "10.213.0.0/24");
  auto next = FirstFreePrefix(pool, 24, {*ParseIpv4Prefix("10.213.0.0/23"), *ParseIpv4Prefix("10.213.2.128/25")});
  ASSERT_TRUE(next);
  EXPECT_EQ(ToString(*next), "10.213.3.0/24");
  // A default route (0.0.0.0/0) is not "taken" by callers; a covering route is.
  EXPECT_FALSE(FirstFreePrefix(pool, 24, {*ParseIpv4Prefix("10.0.0.0/8")}));
}

}  // namespace
}  // namespace banger
