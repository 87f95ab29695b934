#include "base/strings.h"

#include <gtest/gtest.h>

namespace banger {
namespace {

struct SizeCase {
  const char* text;
  uint64_t bytes;
};

void PrintTo(const SizeCase& c, std::ostream* os) { *os << '"' << c.text << '"'; }

class ParseByteSizeTest : public ::testing::TestWithParam<SizeCase> {};

TEST_P(ParseByteSizeTest, ParsesUnits) {
  auto r = ParseByteSize(GetParam().text);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, GetParam().bytes);
}

INSTANTIATE_TEST_SUITE_P(Units, ParseByteSizeTest,
                         ::testing::Values(SizeCase{"512MiB", 512ull << 20}, SizeCase{"2GiB", 2ull << 30},
                                           SizeCase{"1G", 1000000000ull}, SizeCase{"4096", 4096},
                                           SizeCase{"1.5GiB", 3ull << 29}, SizeCase{" 8 KiB ", 8192}));

TEST(ParseByteSizeTest, RejectsUnknownUnitNamingIt) {
  auto r = ParseByteSize("2GB2");
  ASSERT_FALSE(r.ok());
  r = ParseByteSize("12parsecs");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("parsecs"), std::string::npos);
  EXPECT_FALSE(ParseByteSize("MiB").ok());
  EXPECT_FALSE(ParseByteSize("99999999999999TiB").ok());
}

TEST(FormatByteSizeTest, UsesLargestExactUnit) {
  EXPECT_EQ(FormatByteSize(2ull << 30), "2GiB");
  EXPECT_EQ(FormatByteSize(1536ull << 20), "1536MiB");
  EXPECT_EQ(FormatByteSize(1000), "1000");
}

TEST(ParseDurationTest, ParsesCompoundDurations) {
  EXPECT_EQ(ParseDuration("60s")->count(), 60000);
  EXPECT_EQ(ParseDuration("500ms")->count(), 500);
  EXPECT_EQ(ParseDuration("1h30m")->count(), 5400000);
  EXPECT_FALSE(ParseDuration("10 parsecs").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_EQ(FormatDuration(std::chrono::milliseconds(5400000)), "1h30m");
}

TEST(DnsLabelTest, AcceptsLabelsRejectsOthers) {
  EXPECT_TRUE(IsDnsLabel("api-dev"));
  EXPECT_TRUE(IsDnsLabel("a1"));
  EXPECT_FALSE(IsDnsLabel("Api"));
  EXPECT_FALSE(IsDnsLabel("-a"));
  EXPECT_FALSE(IsDnsLabel("a_b"));
  EXPECT_FALSE(IsDnsLabel(std::string(64, 'a')));
  EXPECT_FALSE(IsDnsLabel(""));
}

TEST(ClosestMatchTest, SuggestsNearbyNames) {
  EXPECT_EQ(ClosestMatch("memroy", {"memory", "cpus", "disk"}), "memory");
  EXPECT_EQ(ClosestMatch("zzzzzz", {"memory", "cpus", "disk"}), "");
}

TEST(StringsTest, UnescapeMountInfoDecodesOctalEscapesOnly) {
  EXPECT_EQ(UnescapeMountInfo("/mnt/with\\040space"), "/mnt/with space");
  EXPECT_EQ(UnescapeMountInfo("/a\\011b\\134c"), "/a\tb\\c");
  EXPECT_EQ(UnescapeMountInfo("/not\\08x/end\\04"), "/not\\08x/end\\04");
  EXPECT_EQ(UnescapeMountInfo(""), "");
}

}  // namespace
}  // namespace banger

#include "base/base64.h"

namespace banger {
namespace {

TEST(Base64Test, RoundTripsAndRejectsJunk) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("alice:s3cret"), "YWxpY2U6czNjcmV0");
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  auto back = Base64Decode(Base64Encode(bytes));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, bytes);
  EXPECT_FALSE(Base64Decode("Zm9v!").ok());
  EXPECT_FALSE(Base64Decode("Zg==Zg").ok());
}

}  // namespace
}  // namespace banger
