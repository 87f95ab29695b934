#include <gtest/gtest.h>

#include <string>

#include "base/sha256.h"
#include "spec/loader.h"
#include "spec/spec_test_util.h"

namespace banger {
namespace {

using spec_test::DocWith;
using spec_test::TempDir;

SandboxSpec MustParse(const std::string& yaml, const std::string& file = "t.yaml") {
  LoadResult r = ParseSpecText(yaml, file);
  EXPECT_EQ(r.diagnostics.ToString(), "");
  EXPECT_EQ(r.specs.size(), 1u);
  return r.specs.empty() ? SandboxSpec{} : r.specs[0].spec;
}

TEST(CanonicalTest, MinimalSpecHasAllDefaultsExplicit) {
  SandboxSpec s = MustParse(DocWith(""));
  EXPECT_EQ(CanonicalJson(s),
            R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"labels":{},"name":"web"},)"
            R"("spec":{"cpus":1,"disk":"auto","env":{},"files":[],"hypervisor":"auto",)"
            R"("image":"busybox","kernel":"","memory":"512MiB","network":{"address":"","mode":"bridged","name":"default","ports":[]},)"
            R"("provision":[],"readiness":{"command":[],"timeout":"2m"},"restartPolicy":"Always",)"
            R"("ssh":{"authorizedKeys":[]}}})");
}

TEST(CanonicalTest, HashIsSha256OfCanonicalJsonAndStable) {
  SandboxSpec s = MustParse(DocWith(""));
  EXPECT_EQ(SpecHash(s), Sha256Hex(CanonicalJson(s)));
  // Golden: stored specs are compared by this hash, so changing the canonical
  // form replaces every sandbox. Update deliberately, never casually.
  EXPECT_EQ(SpecHash(s), "ff87952382a542c4eee75ad542c4d18e4fba4827ddb3bc3a400d8e33a46fc480");
  EXPECT_EQ(SpecHash(s), SpecHash(MustParse(DocWith(""))));
}

TEST(CanonicalTest, EquivalentSpellingsHaveEqualCanonicalForm) {
  SandboxSpec a = MustParse(
      "apiVersion: banger.dev/v1\nkind: Sandbox\n"
      "metadata:\n  name: web\n  labels: {a: \"1\", b: \"2\"}\n"
      "spec:\n  image: busybox\n  memory: 1024MiB\n"
      "  env: {X: \"1\", Y: \"2\"}\n"
      "  network:\n    ports:\n      - {host: 9000, guest: 90}\n      - {host: 8000, guest: 80}\n"
      "  files:\n    - {path: /b, content: b}\n    - {path: /a, content: a, mode: 420}\n"
      "  readiness: {command: \"true\"}\n");
  SandboxSpec b = MustParse(
      "kind: Sandbox\napiVersion: banger.dev/v1\n"
      "spec:\n  files:\n    - {path: /a, content: a, mode: \"0644\"}\n    - {path: /b, content: b}\n"
      "  readiness: {command: [sh, -c, \"true\"], timeout: 120s}\n"
      "  network:\n    mode: bridged\n    ports:\n      - {host: 8000, guest: 80, protocol: tcp}\n"
      "      - {host: 9000, guest: 90}\n"
      "  env: {Y: 2, X: 1}\n  memory: 1GiB\n  image: busybox\n  cpus: 1\n  disk: auto\n"
      "  restartPolicy: Always\n  hypervisor: auto\n  kernel: \"\"\n"
      "metadata:\n  labels: {b: \"2\", a: \"1\"}\n  name: web\n");
  // mode 420 is read as octal 0420, unlike "0644": the two must differ...
  EXPECT_NE(CanonicalJson(a), CanonicalJson(b));
  // ...and with equal modes everything else is the same meaning.
  a.files[0].mode = 0644;
  EXPECT_EQ(CanonicalJson(a), CanonicalJson(b));
  EXPECT_EQ(SpecHash(a), SpecHash(b));
  EXPECT_EQ(a, b);
}

TEST(CanonicalTest, AnyMeaningfulChangeAltersHash) {
  const std::string base = DocWith("  memory: 1GiB\n");
  const std::string h = SpecHash(MustParse(base));
  for (const std::string& changed :
       {DocWith("  memory: 2GiB\n"), DocWith("  memory: 1GiB\n  cpus: 2\n"),
        DocWith("  memory: 1GiB\n  kernel: other\n"), DocWith("  memory: 1GiB\n", "web2"),
        DocWith("  memory: 1GiB\n  env: {A: b}\n"),
        DocWith("  memory: 1GiB\n  network: {mode: none}\n"),
        DocWith("  memory: 1GiB\n  readiness: {timeout: 121s}\n"),
        DocWith("  memory: 1GiB\n  provision: [\"true\"]\n")}) {
    EXPECT_NE(SpecHash(MustParse(changed)), h) << changed;
  }
}

TEST(CanonicalTest, EditingASourceFileChangesTheHash) {
  TempDir dir;
  dir.Write("motd", "one\n");
  auto spec = dir.Write("s.yaml", DocWith("  files:\n    - {path: /etc/motd, source: motd}\n"));
  LoadResult before = LoadSpecPaths({spec});
  ASSERT_EQ(before.specs.size(), 1u) << before.diagnostics.ToString();
  dir.Write("motd", "two\n");
  LoadResult after = LoadSpecPaths({spec});
  ASSERT_EQ(after.specs.size(), 1u) << after.diagnostics.ToString();
  EXPECT_NE(SpecHash(before.specs[0].spec), SpecHash(after.specs[0].spec));
  EXPECT_NE(CanonicalJson(after.specs[0].spec).find(Sha256Hex("two\n")), std::string::npos);
}

TEST(CanonicalTest, JsonRoundTripPreservesEveryField) {
  TempDir dir;
  dir.Write("data.bin", "payload");
  auto path = dir.Write(
      "full.yaml",
      "apiVersion: banger.dev/v1\nkind: Sandbox\n"
      "metadata:\n  name: full\n  labels: {app: web, banger.dev/x: \"y\"}\n"
      "spec:\n  image: docker.io/library/alpine:3.19\n  kernel: k1\n  cpus: 3\n"
      "  memory: 1536MiB\n  disk: 10GiB\n"
      "  network:\n    mode: nat\n    ports: [{host: 53, guest: 53, protocol: udp}, "
      "{host: 22, guest: 22}]\n"
      "  ssh: {authorizedKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x\"]}\n"
      "  env: {A: \"quote \\\" and \\\\ and \\u00e9\", B: \"\"}\n"
      "  files:\n    - {path: /data, source: data.bin, mode: \"0600\"}\n"
      "    - {path: /etc/x, content: \"line1\\nline2\\ttab\\u0001\"}\n"
      "  provision: [\"echo a\", \"echo b\"]\n"
      "  readiness: {command: [\"cat\", \"/x\"], timeout: 1500ms}\n"
      "  restartPolicy: Never\n  hypervisor: firecracker\n");
  LoadResult r = LoadSpecPaths({path});
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  const SandboxSpec& s = r.specs[0].spec;
  std::string json = CanonicalJson(s);
  Result<SandboxSpec> back = SpecFromCanonicalJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
  EXPECT_EQ(CanonicalJson(*back), json);
  EXPECT_EQ(back->readiness.timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(back->files[0].source_sha256, Sha256Hex("payload"));
  EXPECT_EQ(back->files[1].content, std::string("line1\nline2\ttab\x01"));
  EXPECT_EQ(back->env.at("A"), "quote \" and \\ and \xc3\xa9");
}

TEST(CanonicalTest, RoundTripOfDefaults) {
  SandboxSpec s;
  s.name = "d";
  s.image = "busybox";
  Result<SandboxSpec> back = SpecFromCanonicalJson(CanonicalJson(s));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
}

TEST(CanonicalTest, FromJsonRejectsMalformedInput) {
  for (const char* bad :
       {"", "not json", "[]", "{}", R"({"apiVersion":"banger.dev/v2","kind":"Sandbox"})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"}})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"},"spec":{"image":"x","cpus":"many"}})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"},"spec":{"image":"x","memory":"lots"}})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"},"spec":{"image":"x","hypervisor":"xen"}})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"},"spec":{"image":"x","files":[{"path":"/a"}]}})",
        R"({"apiVersion":"banger.dev/v1","kind":"Sandbox","metadata":{"name":"a"},"spec":{"image":"x","files":[{"path":"/a","content":"","mode":"9"}]}})"}) {
    Result<SandboxSpec> r = SpecFromCanonicalJson(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

}  // namespace
}  // namespace banger
