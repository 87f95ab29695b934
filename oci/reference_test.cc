#include "oci/reference.h"

#include <gtest/gtest.h>

namespace banger::oci {
namespace {

struct RefCase {
  const char* input;
  const char* registry;
  const char* repository;
  const char* tag;
  const char* digest;
  const char* rendered;
};

constexpr char kDigest[] = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ReferenceTest, ParsesWithDockerDefaults) {
  const std::string d = kDigest;
  const RefCase cases[] = {
      {"debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
      {"debian:12", "docker.io", "library/debian", "12", "", "docker.io/library/debian:12"},
      {"alice/app:v1.2", "docker.io", "alice/app", "v1.2", "", "docker.io/alice/app:v1.2"},
      {"docker.io/debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
      {"index.docker.io/library/debian:bookworm", "docker.io", "library/debian", "bookworm", "",
       "docker.io/library/debian:bookworm"},
      {"localhost:5000/x", "localhost:5000", "x", "latest", "", "localhost:5000/x:latest"},
      {"localhost/x:t", "localhost", "x", "t", "", "localhost/x:t"},
      {"127.0.0.1:41234/team/app:1", "127.0.0.1:41234", "team/app", "1", "",
       "127.0.0.1:41234/team/app:1"},
      {"ghcr.io/org/sub/img:tag_1-x", "ghcr.io", "org/sub/img", "tag_1-x", "",
       "ghcr.io/org/sub/img:tag_1-x"},
      {"quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
       "quay.io", "a/b", "", kDigest, "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
      {"reg.example:8443/a:v@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
       "reg.example:8443", "a", "v", kDigest,
       "reg.example:8443/a:v@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
      {"my-registry.local/a.b/c__d", "my-registry.local", "a.b/c__d", "latest", "",
       "my-registry.local/a.b/c__d:latest"},
  };
  for (const RefCase& c : cases) {
    SCOPED_TRACE(c.input);
    auto r = ParseReference(c.input);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(r->registry, c.registry);
    EXPECT_EQ(r->repository, c.repository);
    EXPECT_EQ(r->tag, c.tag);
    EXPECT_EQ(r->digest, c.digest);
    EXPECT_EQ(r->ToString(), c.rendered);
  }
}

TEST(ReferenceTest, RejectsMalformedReferences) {
  const char* bad[] = {
      "",
      "UPPER/case",
      "debian:",
      "debian:bad/tag",
      ":tag",
      "localhost:5000/",
      "a//b",
      "a/-b",
      "a/b-",
      "debian@sha256:1234",
      "debian@md5:0123456789abcdef0123456789abcdef",
      "debian@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
      "reg/a:-tag",
      "a..b",
      "sp ace",
      "x/../y",
  };
  for (const char* in : bad) {
    SCOPED_TRACE(in);
    auto r = ParseReference(in);
    EXPECT_FALSE(r.ok());
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(r.error().message().find("invalid image reference"), std::string::npos);
    }
  }
}

// Found by fuzz/oci_reference_fuzz.cc: a 504-character name without a registry
// was accepted, but printed with "docker.io/" in front it no longer parsed.
// Names are bounded at 255 after normalisation, as the distribution spec says.
TEST(ReferenceTest, BoundsTheNormalisedNameSoEveryAcceptedReferencePrintsBack) {
  std::string longest = "team/" + std::string(oci::kMaxNameLength - 15, 'a');  // 255 with "docker.io/"
  auto ok = ParseReference(longest + ":v1");
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->ToString().size(), oci::kMaxNameLength + 3);
  auto again = ParseReference(ok->ToString());
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->repository, ok->repository);

  auto too_long = ParseReference("team/" + std::string(oci::kMaxNameLength - 14, 'a'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().message().find("longer than 255 characters"), std::string::npos)
      << too_long.error().message();
  // The implicit "library/" counts too.
  EXPECT_FALSE(ParseReference(std::string(oci::kMaxNameLength - 17, 'a')).ok());
  EXPECT_TRUE(ParseReference(std::string(oci::kMaxNameLength - 18, 'a')).ok());
}

TEST(ReferenceTest, ApiHostAndLoopback) {
  EXPECT_EQ(ParseReference("debian")->ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(ParseReference("localhost:5000/x")->ApiHost(), "localhost:5000");
  EXPECT_TRUE(ParseReference("localhost:5000/x")->IsLoopback());
  EXPECT_TRUE(ParseReference("127.0.0.1:9/x")->IsLoopback());
  EXPECT_FALSE(ParseReference("ghcr.io/x")->IsLoopback());
  EXPECT_FALSE(ParseReference("localhost.example.com/x")->IsLoopback());
  EXPECT_EQ(ParseReference("a/b:t")->ManifestSelector(), "t");
  EXPECT_EQ(ParseReference(std::string("a/b:t@") + kDigest)->ManifestSelector(), kDigest);
}

}  // namespace
}  // namespace banger::oci
