#include "oci/auth.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/files.h"

namespace banger::oci {
namespace {

TEST(WwwAuthenticateTest, ParsesBearerChallenge) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull")");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->Param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(c->Param("service"), "registry.docker.io");
  EXPECT_EQ(c->Param("scope"), "repository:library/debian:pull");
}

TEST(WwwAuthenticateTest, QuotedCommasEscapesSpacesAndUnquotedValues) {
  auto c = ParseWwwAuthenticate(
      R"(bearer  Realm="http://127.0.0.1:1/t" , scope="repository:a:pull,push", error=insufficient_scope, note="say \"hi\"")");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->scheme, "bearer");
  EXPECT_EQ(c->Param("realm"), "http://127.0.0.1:1/t");
  EXPECT_EQ(c->Param("scope"), "repository:a:pull,push");
  EXPECT_EQ(c->Param("error"), "insufficient_scope");
  EXPECT_EQ(c->Param("note"), "say \"hi\"");
}

TEST(WwwAuthenticateTest, BasicWithRealm) {
  auto c = ParseWwwAuthenticate(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->scheme, "basic");
  EXPECT_EQ(c->Param("realm"), "Registry Realm");
}

TEST(WwwAuthenticateTest, RejectsMalformed) {
  EXPECT_FALSE(ParseWwwAuthenticate("").ok());
  EXPECT_FALSE(ParseWwwAuthenticate(R"(Bearer realm="unterminated)").ok());
  EXPECT_FALSE(ParseWwwAuthenticate("Bearer realm").ok());
}

TEST(Base64Test, RoundTrips) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "user:pa:ss", std::string("\0\xff\x10", 3)}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64Encode("alice:secret"), "YWxpY2U6c2VjcmV0");
  EXPECT_FALSE(Base64Decode("a*b=").ok());
}

TEST(DockerConfigTest, FindsAuthByRegistryInAnyKeyForm) {
  const std::string json = R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "YWxpY2U6c2VjcmV0"},
      "localhost:5000": {"auth": "Ym9iOnB3OndpdGg6Y29sb25z"},
      "https://ghcr.io": {"username": "carol", "password": "tok"}
    }
  })";
  auto hub = LookupDockerCredentialsInJson(json, "docker.io", "cfg");
  ASSERT_TRUE(hub.ok());
  ASSERT_TRUE(hub->has_value());
  EXPECT_EQ((*hub)->username, "alice");
  EXPECT_EQ((*hub)->password, "secret");
  auto local = LookupDockerCredentialsInJson(json, "localhost:5000", "cfg");
  ASSERT_TRUE(local.ok() && local->has_value());
  EXPECT_EQ((*local)->username, "bob");
  EXPECT_EQ((*local)->password, "pw:with:colons");
  auto gh = LookupDockerCredentialsInJson(json, "ghcr.io", "cfg");
  ASSERT_TRUE(gh.ok() && gh->has_value());
  EXPECT_EQ((*gh)->username, "carol");
  auto none = LookupDockerCredentialsInJson(json, "quay.io", "cfg");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(DockerConfigTest, MalformedConfigNamesTheFile) {
  auto r = LookupDockerCredentialsInJson(R"({"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}})",
                                         "x.io", "/home/u/.docker/config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("/home/u/.docker/config.json"), std::string::npos);
  EXPECT_FALSE(LookupDockerCredentialsInJson("{not json", "x.io", "cfg").ok());
}

TEST(DockerConfigTest, MissingFileMeansNoCredentials) {
  auto r = LookupDockerCredentials("/nonexistent/banger/config.json", "x.io");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  auto t = MakeTempDir("banger-auth-");
  ASSERT_TRUE(t.ok());
  ScopedRemove guard(*t);
  ASSERT_TRUE(WriteFileAtomic(*t / "config.json", R"({"auths":{"x.io":{"auth":"dTpw"}}})").ok());
  auto f = LookupDockerCredentials(*t / "config.json", "x.io");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->username, "u");
  EXPECT_EQ((*f)->password, "p");
}

}  // namespace
}  // namespace banger::oci
