#include "network/host_facts.h"

#include <gtest/gtest.h>

#include "base/files.h"

namespace banger::network {
namespace {

// Captured with iproute2 6.1 in a scratch namespace holding bridge bgr-a
// (10.213.0.1/24 and 192.168.50.1/24, up), tap bgt-iso (on bgr-a, isolated,
// up), tap bgt-loose (alone, down) and a veth pair; routes: a default via
// 10.213.0.254, 198.51.100.7 (no length), 203.0.113.0/25 in table 100.
std::string Fixture(const std::string& name) {
  auto text = ReadFile(std::filesystem::path(BANGER_SOURCE_DIR) / "network/testdata" / name);
  EXPECT_TRUE(text.ok()) << name;
  return text.value_or("");
}

TEST(ParseLinksTest, ReadsKindMasterStateIsolationAndAddresses) {
  auto links = ParseLinks(Fixture("ip_addr_show.json"));
  ASSERT_TRUE(links.ok()) << links.error().ToString();
  ASSERT_EQ(links->size(), 6u);  // lo, bgr-a, bgt-iso, bgt-loose, veth-h, veth-g

  const LinkObservation& bridge = links->at("bgr-a");
  EXPECT_EQ(bridge.kind, "bridge");
  EXPECT_EQ(bridge.master, "");
  EXPECT_TRUE(bridge.up);
  EXPECT_EQ(bridge.addresses, (std::vector<std::string>{"10.213.0.1/24", "192.168.50.1/24"}));

  const LinkObservation& iso = links->at("bgt-iso");
  EXPECT_EQ(iso.kind, "tun");
  EXPECT_EQ(iso.master, "bgr-a");
  EXPECT_TRUE(iso.up) << "a tap without a reader is UP but has NO-CARRIER";
  EXPECT_TRUE(iso.isolated);
  EXPECT_TRUE(iso.addresses.empty());

  const LinkObservation& loose = links->at("bgt-loose");
  EXPECT_EQ(loose.kind, "tun");
  EXPECT_EQ(loose.master, "");
  EXPECT_FALSE(loose.up);
  EXPECT_FALSE(loose.isolated);

  EXPECT_EQ(links->at("lo").kind, "");
  EXPECT_EQ(links->at("veth-h").kind, "veth");
}

TEST(ParseLinksTest, RejectsWhatIsNotIpJson) {
  EXPECT_FALSE(ParseLinks("Device \"x\" does not exist.").ok());
  EXPECT_FALSE(ParseLinks("{}").ok());
  auto empty = ParseLinks("[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ParseRoutedPrefixesTest, KeepsRoutedPrefixesOnly) {
  auto prefixes = ParseRoutedPrefixes(Fixture("ip_route_show.json"));
  ASSERT_TRUE(prefixes.ok()) << prefixes.error().ToString();
  EXPECT_EQ(*prefixes, (std::vector<std::string>{"10.213.0.0/24", "192.168.50.0/24", "198.51.100.7/32",
                                                 "203.0.113.0/25"}));
}

TEST(ParseRoutedPrefixesTest, DeduplicatesAndNamesBadRoutes) {
  auto twice = ParseRoutedPrefixes(R"([{"dst":"10.0.0.0/8"},{"dst":"10.0.0.0/8","table":"7"}])");
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, std::vector<std::string>{"10.0.0.0/8"});
  auto bad = ParseRoutedPrefixes(R"([{"dst":"fe80::/64"}])");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("fe80::/64"), std::string::npos);
}

TEST(ParseResolversTest, DropsLoopbackAndNonIpv4) {
  const char* conf =
      "# generated\n"
      "nameserver 127.0.0.53\n"
      "nameserver 192.0.2.53 # office\n"
      "nameserver ::1\n"
      "nameserver 2001:db8::53\n"
      "search example.org\n"
      "  nameserver\t198.51.100.53\n"
      "nameserver 192.0.2.53\n"
      "nameserverx 203.0.113.1\n"
      "nameserver 0.0.0.0\n"
      ";nameserver 203.0.113.2\n";
  EXPECT_EQ(ParseResolvers(conf), (std::vector<std::string>{"192.0.2.53", "198.51.100.53"}));
  EXPECT_TRUE(ParseResolvers("").empty());
}

TEST(HasCapNetAdminTest, ReadsBitTwelveOfCapEff) {
  EXPECT_TRUE(*HasCapNetAdmin("Name:\tbanger\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n"));
  EXPECT_TRUE(*HasCapNetAdmin("CapEff:\t0000000000001000\n"));
  EXPECT_FALSE(*HasCapNetAdmin("CapPrm:\t0000000000001000\nCapEff:\t0000000000000fff\n"));
  EXPECT_FALSE(HasCapNetAdmin("Name:\tx\n").ok());
  EXPECT_FALSE(HasCapNetAdmin("CapEff:\tzz\n").ok());
}

TEST(CheckInterfaceNameTest, AcceptsPlainNamesOnly) {
  EXPECT_TRUE(CheckInterfaceName("bgr-default").ok());
  EXPECT_TRUE(CheckInterfaceName("bgt_0123456789a").ok());
  for (const char* bad : {"", "bgt-0123456789ab", "a.b", "a b", "a/b", "a\"b", "a:b"}) {
    Status s = CheckInterfaceName(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find(std::string("\"") + bad + "\""), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace banger::network
