#include "kernels/catalog.h"

#include <gtest/gtest.h>

namespace banger::kernels {
namespace {

std::string ErrorOf(std::string_view yaml) {
  auto r = ParseKernelCatalog(yaml, "user.yaml");
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

// Given the built-in catalog, then it parses, its default is debian-6.1 from
// the host pinned to 6.1, and "default" resolves to it.
TEST(KernelCatalogTest, BuiltinCatalogShipsDebian61FromHost) {
  auto cat = BuiltinKernelCatalog();
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  EXPECT_EQ(cat->default_name, "debian-6.1");
  auto e = cat->Lookup("default");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->name, "debian-6.1");
  EXPECT_EQ(e->source, KernelSource(HostSource{"6.1"}));
  EXPECT_EQ(DescribeSource(e->source), "host:6.1");
  EXPECT_EQ(cat->ResolveName(""), "debian-6.1");
  EXPECT_EQ(cat->ResolveName("other"), "other");
  EXPECT_TRUE(ValidateKernelCatalog(*cat).ok());
}

// Given all three source kinds, they parse into the matching variants.
TEST(KernelCatalogTest, ParsesEverySourceKind) {
  auto cat = ParseKernelCatalog(R"(
default: mine
kernels:
  mine:
    description: my kernel
    url: file:///srv/k.tar.zst
    sha256: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  from-oci:
    oci: localhost:5000/kernels/linux:6.6
  newest-host:
    host: {}
  bare-host:
    host:
)", "user.yaml");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  ASSERT_EQ(cat->entries.size(), 4u);
  const auto& mine = cat->entries.at("mine");
  EXPECT_EQ(mine.description, "my kernel");
  EXPECT_EQ(mine.source, KernelSource(UrlSource{
                             "file:///srv/k.tar.zst",
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}));
  EXPECT_EQ(mine.defined_at, "user.yaml:4:3");
  EXPECT_EQ(cat->entries.at("from-oci").source,
            KernelSource(OciSource{"localhost:5000/kernels/linux:6.6"}));
  EXPECT_EQ(cat->entries.at("newest-host").source, KernelSource(HostSource{}));
  EXPECT_EQ(cat->entries.at("bare-host").source, KernelSource(HostSource{}));
  EXPECT_EQ(SourceKind(cat->entries.at("from-oci").source), "oci");
}

// Given malformed catalogs, each error names the file, the line and the problem.
TEST(KernelCatalogTest, ErrorsNameFileLineAndProblem) {
  EXPECT_EQ(ErrorOf("kernels:\n  k1:\n    hots: {}\n"),
            "user.yaml:3:5: unknown key \"hots\" in kernel \"k1\" (did you mean \"host\"?); "
            "allowed: description, host, oci, url, sha256");
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    url: https://x/k\n").find(
                "user.yaml:2:3: kernel \"k1\": a url source needs sha256"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    url: https://x/k\n    sha256: abc\n").find(
                "user.yaml:4:13: kernel \"k1\": sha256 must be 64 lower-case hex digits"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    url: ftp://x/k\n").find("must start with http://"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    host: {}\n    oci: a/b\n")
                .find("must have exactly one source (host, oci or url), found host, oci"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    description: none\n").find("found none"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  Bad_Name:\n    host: {}\n").find("invalid kernel name \"Bad_Name\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  default:\n    host: {}\n").find("invalid kernel name \"default\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1:\n    host: {versoin: '6.1'}\n").find("did you mean \"version\""),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels: [a, b]\n").find("user.yaml:1:10: kernels must be a mapping"),
            std::string::npos);
  EXPECT_NE(ErrorOf("kernels:\n  k1: {host: {}\n").find("user.yaml:"), std::string::npos)
      << "YAML syntax errors carry a position";
  EXPECT_NE(ErrorOf("defualt: x\n").find("did you mean \"default\""), std::string::npos);
}

// Given a user catalog, merging overrides same-named entries, adds new ones,
// and moves the default; a default naming nothing is rejected.
TEST(KernelCatalogTest, UserCatalogOverridesAndExtendsBuiltin) {
  auto merged = LoadKernelCatalog(R"(
default: custom
kernels:
  debian-6.1:
    host: {version: "6.1.0-56-amd64"}
  custom:
    oci: registry.local/kernels/custom:1
)", "config.yaml");
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  EXPECT_EQ(merged->default_name, "custom");
  EXPECT_EQ(merged->entries.at("debian-6.1").source, KernelSource(HostSource{"6.1.0-56-amd64"}));
  EXPECT_EQ(merged->Lookup("default")->name, "custom");

  auto bad = LoadKernelCatalog("default: debain-6.1\n", "config.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "default kernel \"debain-6.1\" is not in the kernel catalog (did you mean \"debian-6.1\"?)");

  auto same = LoadKernelCatalog("", "config.yaml");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->entries.size(), 1u);
}

// Given a name not in the catalog, Lookup suggests the closest one.
TEST(KernelCatalogTest, LookupOfUnknownNameSuggestsClosest) {
  auto cat = BuiltinKernelCatalog();
  ASSERT_TRUE(cat.ok());
  auto e = cat->Lookup("debian-6.2");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(e.status().message(),
            "kernel \"debian-6.2\" is not in the kernel catalog (did you mean \"debian-6.1\"?)");
  KernelCatalog empty;
  EXPECT_EQ(empty.Lookup("default").status().code(), StatusCode::kNotFound);
}

TEST(KernelCatalogTest, KernelNameGrammar) {
  EXPECT_TRUE(IsValidKernelName("debian-6.1"));
  EXPECT_TRUE(IsValidKernelName("k_1"));
  EXPECT_FALSE(IsValidKernelName(""));
  EXPECT_FALSE(IsValidKernelName("default"));
  EXPECT_FALSE(IsValidKernelName("-x"));
  EXPECT_FALSE(IsValidKernelName(".."));
  EXPECT_FALSE(IsValidKernelName("a/b"));
  EXPECT_FALSE(IsValidKernelName("UPPER"));
  EXPECT_FALSE(IsValidKernelName(std::string(129, 'a')));
}

}  // namespace
}  // namespace banger::kernels
