#include "images/catalog.h"

#include <gtest/gtest.h>

#include "base/files.h"

namespace banger::images {
namespace {

Status ParseError(const std::string& yaml) {
  auto c = ParseImageCatalog(yaml, "user.yaml");
  EXPECT_FALSE(c.ok()) << yaml;
  return c.ok() ? OkStatus() : c.error();
}

TEST(CatalogTest, BuiltinCatalogShipsBusyboxAndDebianBookworm) {
  const ImageCatalog& c = BuiltinImageCatalog();
  const CatalogEntry* bb = c.Find("busybox");
  ASSERT_NE(bb, nullptr);
  EXPECT_EQ(bb->kind, SourceKind::kRecipe);
  EXPECT_EQ(bb->recipe, RecipeKind::kBusybox);
  const CatalogEntry* deb = c.Find("debian-bookworm");
  ASSERT_NE(deb, nullptr);
  EXPECT_EQ(deb->recipe, RecipeKind::kDebootstrap);
  EXPECT_EQ(deb->suite, "bookworm");
  EXPECT_EQ(deb->variant, "minbase");
  for (const char* pkg : {"systemd-sysv", "openssh-server", "iproute2", "ca-certificates", "procps"}) {
    EXPECT_NE(std::find(deb->include.begin(), deb->include.end(), pkg), deb->include.end()) << pkg;
  }
}

TEST(CatalogTest, CompiledCatalogMatchesTheYamlFileInTheSourceTree) {
  auto text = ReadFile(std::string(BANGER_SOURCE_DIR) + "/images/catalog.yaml");
  ASSERT_TRUE(text.ok());
  auto parsed = ParseImageCatalog(*text, "catalog.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->Names(), BuiltinImageCatalog().Names());
  for (auto [name, entry] : parsed->entries) {
    entry.origin = "builtin";
    EXPECT_EQ(entry, *BuiltinImageCatalog().Find(name)) << name;
  }
}

TEST(CatalogTest, ParsesEverySourceKind) {
  auto c = ParseImageCatalog(R"(
settings: {ignored: true}
images:
  alpine:
    description: Alpine from the team registry
    oci: localhost:5000/team/alpine:3.19
  prebuilt:
    bundle:
      url: file:///srv/images/prebuilt.tar.zst
      sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  tiny:
    recipe: busybox
  trixie:
    recipe: debootstrap
    suite: trixie
    include: [openssh-server, libstdc++6]
)", "user.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->entries.size(), 4u);
  EXPECT_EQ(c->Find("alpine")->kind, SourceKind::kOci);
  EXPECT_EQ(c->Find("alpine")->oci_ref, "localhost:5000/team/alpine:3.19");
  EXPECT_EQ(c->Find("alpine")->description, "Alpine from the team registry");
  EXPECT_EQ(c->Find("alpine")->origin, "user.yaml");
  EXPECT_EQ(c->Find("prebuilt")->kind, SourceKind::kBundle);
  EXPECT_EQ(c->Find("prebuilt")->bundle_url, "file:///srv/images/prebuilt.tar.zst");
  EXPECT_EQ(c->Find("tiny")->recipe, RecipeKind::kBusybox);
  EXPECT_EQ(c->Find("trixie")->variant, "minbase");  // default
  EXPECT_EQ(c->Find("trixie")->include,
            (std::vector<std::string>{"openssh-server", "libstdc++6"}));
}

TEST(CatalogTest, EmptyDocumentIsAnEmptyCatalog) {
  auto c = ParseImageCatalog("", "empty.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->entries.empty());
}

TEST(CatalogTest, ErrorsNameFileLineAndEntry) {
  Status st = ParseError("images:\n  web:\n    recipe: busybox\n    sutie: bookworm\n");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("user.yaml:4"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("\"web\""), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("did you mean \"suite\""), std::string::npos) << st.message();
}

TEST(CatalogTest, RejectsBadEntries) {
  struct Case {
    const char* yaml;
    const char* expect;
  };
  const Case cases[] = {
      {"images:\n  a: {oci: x/y, recipe: busybox}\n", "exactly one"},
      {"images:\n  a: {description: nothing}\n", "exactly one"},
      {"images:\n  a: {recipe: nix}\n", "unknown recipe"},
      {"images:\n  a: {recipe: debootstrap}\n", "needs a suite"},
      {"images:\n  a: {recipe: busybox, suite: bookworm}\n", "only to recipe debootstrap"},
      {"images:\n  a: {recipe: debootstrap, suite: 'book worm'}\n", "invalid suite"},
      {"images:\n  a: {recipe: debootstrap, suite: bookworm, include: ['rm -rf']}\n",
       "invalid package name"},
      {"images:\n  a: {bundle: {url: 'ftp://x/y.tar.zst', sha256: "
       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}}\n",
       "must start with"},
      {"images:\n  a: {bundle: {url: 'file:///x.tar.zst', sha256: abc}}\n", "64 lower-case hex"},
      {"images:\n  a: {oci: 'bad ref with spaces'}\n", "not an OCI reference"},
      {"images:\n  Bad_Name: {recipe: busybox}\n", "invalid name"},
      {"images:\n  a: busybox\n", "must be a map"},
      {"images: [a, b]\n", "must be a map"},
      {"images:\n  a: {recipe: [busybox\n", "user.yaml:"},
  };
  for (const Case& c : cases) {
    Status st = ParseError(c.yaml);
    EXPECT_NE(st.message().find(c.expect), std::string::npos)
        << "yaml: " << c.yaml << "\nerror: " << st.message();
  }
}

TEST(CatalogTest, UserEntriesOverrideAddAndRemoveBuiltinOnes) {
  auto user = ParseImageCatalog(R"(
images:
  busybox: {oci: localhost:5000/mirror/busybox:1.36}
  debian-bookworm: null
  extra: {recipe: busybox}
)", "config.yaml");
  ASSERT_TRUE(user.ok()) << user.status().ToString();
  ImageCatalog merged = MergeImageCatalogs(BuiltinImageCatalog(), *user);
  ASSERT_NE(merged.Find("busybox"), nullptr);
  EXPECT_EQ(merged.Find("busybox")->kind, SourceKind::kOci);
  EXPECT_EQ(merged.Find("busybox")->origin, "config.yaml");
  EXPECT_EQ(merged.Find("debian-bookworm"), nullptr);
  ASSERT_NE(merged.Find("extra"), nullptr);
  // The built-in catalog itself is untouched.
  EXPECT_NE(BuiltinImageCatalog().Find("debian-bookworm"), nullptr);
}

TEST(CatalogTest, ImageNameRules) {
  EXPECT_TRUE(IsValidImageName("alpine-3.19"));
  EXPECT_TRUE(IsValidImageName("debian_bookworm"));
  EXPECT_FALSE(IsValidImageName(""));
  EXPECT_FALSE(IsValidImageName("-x"));
  EXPECT_FALSE(IsValidImageName(".hidden"));
  EXPECT_FALSE(IsValidImageName("a/b"));
  EXPECT_FALSE(IsValidImageName("UPPER"));
  EXPECT_FALSE(IsValidImageName(std::string(129, 'a')));
}

}  // namespace
}  // namespace banger::images
