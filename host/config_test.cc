#include "host/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
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

TEST_F(ConfigTest, RunDefaultsAreReadAndValidated) {
  auto d = Load("parallel: 2\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->run.image, "busybox");
  EXPECT_EQ(d->run.network, "user");
  auto c = Load("run:\n  image: debian-bookworm\n  cpus: 2\n  memory: 1GiB\n  network: bridged\n");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->run.image, "debian-bookworm");
  EXPECT_EQ(c->run.cpus, 2);
  EXPECT_EQ(c->run.memory, "1GiB");
  EXPECT_EQ(c->run.disk, "auto");
  EXPECT_EQ(c->run.network, "bridged");
  auto bad = Load("run:\n  cpus: 99\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("config.yaml:2:9: run.cpus"), std::string::npos) << bad.error().ToString();
  auto typo = Load("run:\n  imgae: busybox\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message().find("did you mean \"run.image\""), std::string::npos) << typo.error().ToString();
  auto mem = Load("run:\n  memory: lots\n");
  ASSERT_FALSE(mem.ok());
  EXPECT_NE(mem.error().message().find("run.memory"), std::string::npos) << mem.error().ToString();
}

TEST_F(ConfigTest, EverySettingSaysWhereItCameFrom) {
  ScopedEnv env("BANGER_NETNS", "from-env");
  auto c = Load("# a comment\naccel: tcg\nrun:\n  cpus: 2\n");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  std::string file = (dir_.path() / "config.yaml").string();
  std::map<std::string, std::string> src;
  for (const auto& e : ConfigEntries(*c)) src[e.key] = e.source;
  EXPECT_EQ(src["accel"], file + ":2");
  EXPECT_EQ(src["run.cpus"], file + ":4");
  EXPECT_EQ(src["network.netns"], "env BANGER_NETNS");
  EXPECT_EQ(src["machine"], "default");
  EXPECT_EQ(src["run.image"], "default");
  std::string text = RenderConfig(*c, {{"stateDir", "/tmp/x", "flag --state-dir"}});
  EXPECT_NE(text.find("stateDir: /tmp/x"), std::string::npos) << text;
  EXPECT_NE(text.find("# flag --state-dir"), std::string::npos) << text;
  EXPECT_NE(text.find("accel: tcg"), std::string::npos) << text;
  EXPECT_NE(text.find("# " + file + ":2"), std::string::npos) << text;
  EXPECT_NE(text.find("  cpus: 2"), std::string::npos) << text;
}

TEST_F(ConfigTest, HypervisorDefaultIsValidatedWithFileAndLine) {
  auto d = Load("accel: tcg\n");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  EXPECT_EQ(d->hypervisor, "auto");
  auto fc = Load("accel: tcg\nhypervisor: firecracker\n");
  ASSERT_TRUE(fc.ok()) << fc.error().ToString();
  EXPECT_EQ(fc->hypervisor, "firecracker");
  auto bad = Load("hypervisor: kvmtool\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("config.yaml:1:13: hypervisor: must be auto, qemu or firecracker"),
            std::string::npos)
      << bad.error().ToString();
  auto typo = Load("hypervisr: qemu\n");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message().find("did you mean \"hypervisor\""), std::string::npos) << typo.error().ToString();
}

}  // namespace
}  // namespace banger::host
