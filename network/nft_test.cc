#include "network/nft.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "base/files.h"
#include "base/strings.h"
#include "network/nft_test_rules.h"
#include "tests/support/test_util.h"

namespace banger::network {
namespace {

using banger::testing::ExpectGolden;

std::string Fixture(const std::string& name) {
  auto text = ReadFile(std::filesystem::path(BANGER_SOURCE_DIR) / "network/testdata" / name);
  EXPECT_TRUE(text.ok()) << name;
  return text.value_or("");
}

TEST(RenderNftTableTest, TypicalRulesMatchGolden) {
  // Given two networks (one isolated with nat off) and tcp/udp ports on
  // 127.0.0.1 and 0.0.0.0, the rendered script is the reviewed one.
  ASSERT_TRUE(ValidateNetworkRules(TypicalRules()).ok());
  ExpectGolden("nft_typical.nft", RenderNftTable(TypicalRules()));
}

TEST(RenderNftTableTest, SingleNatNetworkWithoutPortsMatchesGolden) {
  NetworkRules rules;
  rules.bridges.push_back(TypicalRules().bridges[0]);
  ExpectGolden("nft_one_network.nft", RenderNftTable(rules));
}

TEST(RenderNftTableTest, EmptyRulesOnlyRemoveTheTable) {
  std::string script = RenderNftTable(NetworkRules{});
  EXPECT_NE(script.find("table inet banger {}\ndelete table inet banger\n"), std::string::npos);
  EXPECT_EQ(script.find("chain"), std::string::npos) << script;
  ExpectGolden("nft_empty.nft", script);
}

TEST(RenderNftTableTest, InputOrderDoesNotChangeTheScript) {
  NetworkRules shuffled = TypicalRules();
  std::reverse(shuffled.bridges.begin(), shuffled.bridges.end());
  std::reverse(shuffled.ports.begin(), shuffled.ports.end());
  EXPECT_EQ(RenderNftTable(shuffled), RenderNftTable(TypicalRules()));
  EXPECT_EQ(ExpectedNftSummary(shuffled), ExpectedNftSummary(TypicalRules()));
}

TEST(RenderNftTableTest, EveryRuleCarriesAComment) {
  std::string script = RenderNftTable(TypicalRules());
  int rules = 0;
  for (const std::string& line : Split(script, '\n')) {
    if (!StartsWith(line, "    ") || StartsWith(line, "    type ")) continue;
    ++rules;
    EXPECT_NE(line.find(" comment \""), std::string::npos) << line;
  }
  EXPECT_EQ(rules, 14);
}

TEST(RenderNftTableTest, TouchesNoOtherTable) {
  for (const std::string& line : Split(RenderNftTable(TypicalRules()), '\n')) {
    if (line.find("table") == std::string::npos || StartsWith(line, "#")) continue;
    EXPECT_NE(line.find("table inet banger"), std::string::npos) << line;
  }
}

TEST(RenderNftTableTest, LoopbackPortsSkipPreroutingButNotOutput) {
  NftTableSummary s = ExpectedNftSummary(TypicalRules());
  auto chain = [&](const std::string& name) {
    auto it = std::find_if(s.chains.begin(), s.chains.end(), [&](const auto& c) { return c.name == name; });
    return it == s.chains.end() ? NftChainSummary{} : *it;
  };
  EXPECT_EQ(chain("output").rule_comments.size(), 4u);
  EXPECT_EQ(chain("prerouting").rule_comments,
            (std::vector<std::string>{"port web 0.0.0.0:8443/tcp to 10.213.0.2:443",
                                      "port dns 0.0.0.0:1053/udp to 10.213.1.5:53"}));
}

TEST(NftSummaryTest, LiveTableLoadedFromTheGoldenScriptIsCurrent) {
  // network/testdata/nft_typical.json is `nft -j list table inet banger`
  // (nft 1.0.6) after `nft -f` of the typical golden script.
  auto live = ParseNftTableJson(Fixture("nft_typical.json"));
  ASSERT_TRUE(live.ok()) << live.error().ToString();
  EXPECT_FALSE(live->comment.has_value()) << "nft 1.0.6 leaves table comments out of JSON";
  EXPECT_EQ(DescribeNftDifference(ExpectedNftSummary(TypicalRules()), *live), "");
}

TEST(NftSummaryTest, FlushedTableIsNotCurrent) {
  // After `nft flush table inet banger` the chains stay, empty.
  auto live = ParseNftTableJson(Fixture("nft_typical.json"));
  ASSERT_TRUE(live.ok());
  for (auto& c : live->chains) c.rule_comments.clear();
  EXPECT_EQ(DescribeNftDifference(ExpectedNftSummary(TypicalRules()), *live),
            "chain forward: 0 rules, expected 5");
}

TEST(NftSummaryTest, ChangedTargetIsNotCurrent) {
  auto live = ParseNftTableJson(Fixture("nft_typical.json"));
  ASSERT_TRUE(live.ok());
  NetworkRules moved = TypicalRules();
  moved.ports[0].guest_address = "10.213.0.9";
  EXPECT_NE(DescribeNftDifference(ExpectedNftSummary(moved), *live), "");
}

TEST(NftSummaryTest, DifferencesAreNamed) {
  NftTableSummary want = ExpectedNftSummary(TypicalRules());
  NftTableSummary have = want;
  have.comment = "someone else's";
  EXPECT_EQ(DescribeNftDifference(want, have), "table comment is \"someone else's\"");
  have = want;
  have.chains.erase(have.chains.begin());
  EXPECT_EQ(DescribeNftDifference(want, have), "chain forward is missing");
  have = want;
  have.chains[0].policy = "drop";
  EXPECT_EQ(DescribeNftDifference(want, have), "chain forward is type filter hook forward priority 0 policy drop");
  have = want;
  have.chains.push_back({"extra", "filter", "input", 0, "accept", {}});
  EXPECT_EQ(DescribeNftDifference(want, have), "unexpected chain extra");
  have = want;
  have.chains[0].rule_comments[0] = "";
  EXPECT_EQ(DescribeNftDifference(want, have),
            "chain forward rule 1 is \"\", expected \"replies to allowed traffic\"");
}

TEST(NftSummaryTest, ListTablesFindsOnlyInetBanger) {
  EXPECT_TRUE(*NftTablesHaveBanger(
      R"({"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "banger", "handle": 2}}]})"));
  EXPECT_FALSE(*NftTablesHaveBanger(
      R"({"nftables": [{"table": {"family": "ip", "name": "banger"}}, {"table": {"family": "inet", "name": "filter"}}]})"));
  EXPECT_FALSE(NftTablesHaveBanger("Error: something").ok());
  EXPECT_FALSE(ParseNftTableJson("[]").ok());
}

struct BadRules {
  const char* name;
  void (*edit)(NetworkRules&);
  const char* message;  // a part of the error
};

class ValidateNetworkRulesTest : public ::testing::TestWithParam<BadRules> {};

TEST_P(ValidateNetworkRulesTest, RejectsWithANamedCause) {
  NetworkRules rules = TypicalRules();
  GetParam().edit(rules);
  Status s = ValidateNetworkRules(rules);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(GetParam().message), std::string::npos) << s.message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidateNetworkRulesTest,
    ::testing::Values(
        BadRules{"QuoteInBridge", [](NetworkRules& r) { r.bridges[0].bridge = "bgr-\"x"; }, "bgr-\"x"},
        BadRules{"LongBridge", [](NetworkRules& r) { r.bridges[0].bridge = "bgr-0123456789ab"; },
                 "bgr-0123456789ab"},
        BadRules{"BadSubnet", [](NetworkRules& r) { r.bridges[1].subnet = "10.213.1.1/24"; }, "bridge bgr-lab"},
        BadRules{"TwiceListed", [](NetworkRules& r) { r.bridges[1].bridge = "bgr-default"; }, "listed twice"},
        BadRules{"QuoteInNetwork", [](NetworkRules& r) { r.bridges[0].network = "a\"b"; }, "a\"b"},
        BadRules{"Protocol", [](NetworkRules& r) { r.ports[0].protocol = "sctp"; }, "tcp or udp"},
        BadRules{"PortZero", [](NetworkRules& r) { r.ports[0].guest_port = 0; }, "port 0"},
        BadRules{"HostAddress", [](NetworkRules& r) { r.ports[0].host_address = "localhost"; }, "host address"},
        BadRules{"GuestAddress", [](NetworkRules& r) { r.ports[0].guest_address = ""; }, "guest address"},
        BadRules{"SamePortTwice",
                 [](NetworkRules& r) {
                   r.ports.push_back(r.ports[0]);
                   r.ports.back().sandbox = "api";
                 },
                 "published by both"},
        BadRules{"WildcardClash",
                 [](NetworkRules& r) {
                   PublishedPort p = r.ports[3];  // 127.0.0.1:5353/udp
                   p.host_address = "0.0.0.0";
                   p.sandbox = "api";
                   r.ports.push_back(p);
                 },
                 "5353/udp"},
        BadRules{"CommentTooLong",
                 [](NetworkRules& r) { r.ports[0].sandbox = std::string(120, 'a'); }, "longer than 128"}),
    [](const ::testing::TestParamInfo<BadRules>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace banger::network
