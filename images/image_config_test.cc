#include "images/image_config.h"

#include <gtest/gtest.h>

namespace banger::images {
namespace {

using Argv = std::vector<std::string>;

TEST(ImageRunConfigTest, EntrypointIsFollowedByCmd) {
  auto c = ParseImageRunConfig(
      R"({"config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"]}})");
  EXPECT_EQ(c.entrypoint, (Argv{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}));
}

TEST(ImageRunConfigTest, CmdAloneOrEntrypointAlone) {
  EXPECT_EQ(ParseImageRunConfig(R"({"config": {"Cmd": ["sh"]}})").entrypoint, (Argv{"sh"}));
  EXPECT_EQ(ParseImageRunConfig(R"({"config": {"Entrypoint": ["/init"], "Cmd": null}})").entrypoint,
            (Argv{"/init"}));
}

TEST(ImageRunConfigTest, EnvSplitsAtTheFirstEqualsSign) {
  auto c = ParseImageRunConfig(
      R"({"config": {"Env": ["PATH=/usr/bin:/bin", "OPTS=a=b", "EMPTY=", "NOEQUALS", 7]}})");
  std::map<std::string, std::string> want = {{"PATH", "/usr/bin:/bin"}, {"OPTS", "a=b"}, {"EMPTY", ""}};
  EXPECT_EQ(c.env, want);
}

TEST(ImageRunConfigTest, WorkingDir) {
  EXPECT_EQ(ParseImageRunConfig(R"({"config": {"WorkingDir": "/srv"}})").workdir, "/srv");
  EXPECT_EQ(ParseImageRunConfig(R"({"config": {"WorkingDir": 3}})").workdir, "");
}

TEST(ImageRunConfigTest, TheConfigObjectAloneIsAccepted) {
  auto c = ParseImageRunConfig(R"({"Cmd": ["top"], "WorkingDir": "/root"})");
  EXPECT_EQ(c.entrypoint, (Argv{"top"}));
  EXPECT_EQ(c.workdir, "/root");
}

TEST(ImageRunConfigTest, NonStringItemsAreSkipped) {
  auto c = ParseImageRunConfig(R"({"config": {"Entrypoint": ["a", 1, null, "b"], "Cmd": "not-an-array"}})");
  EXPECT_EQ(c.entrypoint, (Argv{"a", "b"}));
}

TEST(ImageRunConfigTest, MissingOrGarbageJsonGivesNothing) {
  for (const char* text : {"", "{", "not json", "[1, 2]", "42", R"({"config": "x"})", R"({"config": null})"}) {
    auto c = ParseImageRunConfig(text);
    EXPECT_TRUE(c.entrypoint.empty()) << text;
    EXPECT_TRUE(c.env.empty()) << text;
    EXPECT_TRUE(c.workdir.empty()) << text;
  }
}

}  // namespace
}  // namespace banger::images
