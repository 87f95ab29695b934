#include "host/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>

#include "base/files.h"
#include "tests/support/test_util.h"

namespace banger::host {
namespace {

using testing::ScopedEnv;
using testing::TempDir;


class ConfigTest : public ::testing::Test {
 protected:
  Result<Config> Load(const std::string& text) {
    EXPECT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", text).ok());
    return LoadConfig((dir_.path() / "config.yaml").string());
  }
  TempDir dir_;
  ScopedEnv no_netns_{"BANGER_NETNS", std::nullopt};
};

TEST_F(ConfigTest, NetnsIsReadFromTheNetworkSection) {
  auto c = Load("parallel: 2\nnetwork:\n  netns: banger\n");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->netns, "banger");
  EXPECT_NE(RenderConfig(*c).find("netns: banger"), std::string::npos) << RenderConfig(*c);
  auto d = Load("parallel: 2\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->netns, "");
  EXPECT_NE(RenderConfig(*d).find("netns: (host namespace)"), std::string::npos) << RenderConfig(*d);
  auto e = Load("network:\n");
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  EXPECT_EQ(e->netns, "");
}

TEST_F(ConfigTest, EnvironmentOverridesTheFile) {
  {
    ScopedEnv env("BANGER_NETNS", "from-env");
    auto c = Load("network: {netns: from-file}\n");
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    EXPECT_EQ(c->netns, "from-env");
    // Also without a config file at all.
    auto none = LoadConfig((dir_.path() / "config.yaml").string());
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->netns, "from-env");
  }
  {
    ScopedEnv env("BANGER_NETNS", "");  // set but empty: the host's namespace
    auto c = Load("network: {netns: from-file}\n");
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    EXPECT_EQ(c->netns, "");
  }
  {
    ScopedEnv env("BANGER_NETNS", "../etc");
    auto c = Load("parallel: 2\n");
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.error().message().find("BANGER_NETNS"), std::string::npos) << c.error().ToString();
  }
}

TEST_F(ConfigTest, BadNetworkKeysAreErrorsWithALocation) {
  auto typo = Load("network:\n  netsn: x\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message().find(":2:3: unknown key \"network.netsn\" (did you mean \"network.netns\"?)"),
            std::string::npos)
      << typo.error().ToString();
  auto bad = Load("network:\n  netns: a/b\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("network.netns"), std::string::npos) << bad.error().ToString();
  auto scalar = Load("network: bridged\n");
  ASSERT_FALSE(scalar.ok());
  EXPECT_NE(scalar.error().message().find("network: must be a mapping"), std::string::npos);
  EXPECT_EQ(ValidateNetnsName("ok-1_2.x"), "");
  EXPECT_NE(ValidateNetnsName(".."), "");
  EXPECT_NE(ValidateNetnsName(std::string(65, 'a')), "");
}

}  // namespace
}  // namespace banger::host
