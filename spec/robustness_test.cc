// Feeds mutated and garbage inputs to the loader: nothing may throw, and
// every input with content yields either a spec or a diagnostic.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/files.h"
#include "base/strings.h"
#include "spec/loader.h"
#include "spec/spec_test_util.h"

namespace banger {
namespace {

/// Deterministic xorshift64 so failures reproduce.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }

 private:
  uint64_t s_;
};

const char* const kFragments[] = {
    ":", "- ", "[", "]", "{", "}", "&a ", "*a", "!!int ", "---\n", "...\n", "\t", "\"", "'",
    "#", "|\n", ">\n", "? ", "\n  ", "99999999999999999999999999", "-1", "0x10", "~", "null",
    "\xff\xfe", "\x00", "\xc3", "<<: *a\n", "%YAML 1.2\n", "cpus", "memory", "image"};

std::string Mutate(const std::string& base, Rng& rng) {
  std::string s = base;
  size_t edits = 1 + rng.Below(4);
  for (size_t e = 0; e < edits; ++e) {
    size_t pos = rng.Below(s.size() + 1);
    switch (rng.Below(5)) {
      case 0:  // delete a span
        s.erase(pos, rng.Below(20));
        break;
      case 1:  // insert a fragment
        s.insert(pos, kFragments[rng.Below(std::size(kFragments))]);
        break;
      case 2:  // flip a byte
        if (!s.empty()) s[rng.Below(s.size())] = static_cast<char>(rng.Next() & 0xff);
        break;
      case 3: {  // duplicate a span
        size_t len = rng.Below(40);
        s.insert(pos, s.substr(pos, len));
        break;
      }
      default: {  // delete a whole line
        size_t start = s.rfind('\n', pos == 0 ? 0 : pos - 1);
        start = start == std::string::npos ? 0 : start + 1;
        size_t end = s.find('\n', start);
        s.erase(start, end == std::string::npos ? std::string::npos : end - start + 1);
        break;
      }
    }
  }
  return s;
}

/// True if the text has something other than whitespace, comments and
/// document markers; such text must produce a spec or a diagnostic.
bool HasContent(const std::string& text) {
  for (const auto& line : Split(text, '\n')) {
    std::string_view t = Trim(line);
    if (t.empty() || t.front() == '#' || t == "---" || t == "...") continue;
    return true;
  }
  return false;
}

void CheckNeverThrowsAndExplains(const std::string& input) {
  LoadResult r;
  ASSERT_NO_THROW(r = ParseSpecText(input, "fuzz.yaml")) << input;
  for (const Diagnostic& d : r.diagnostics.items()) {
    EXPECT_EQ(d.where.file, "fuzz.yaml");
    EXPECT_FALSE(d.message.empty());
  }
  if (r.specs.empty() && HasContent(input)) {
    // Content that is not a spec must say why (a bare scalar or list is
    // reported as "document: expected a mapping").
    EXPECT_FALSE(r.diagnostics.items().empty()) << "no diagnostic for: " << input;
  }
  // Whatever was accepted is renderable and round-trips.
  for (const SpecDocument& d : r.specs) {
    Result<SandboxSpec> back = SpecFromCanonicalJson(CanonicalJson(d.spec));
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << input;
    EXPECT_EQ(*back, d.spec);
  }
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  auto files = ListFilesRecursive(std::string(BANGER_SOURCE_DIR) + "/examples/sandboxes",
                                  {".yaml", ".yml"});
  if (files.ok()) {
    for (const auto& f : *files) {
      auto text = ReadFile(f);
      if (text.ok()) seeds.push_back(*text);
    }
  }
  seeds.push_back(
      "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a, labels: {x: y}}\n"
      "spec: {image: busybox, cpus: 2, memory: 1GiB, network: {mode: nat, ports: "
      "[{host: 80, guest: 80}]}, env: {A: b}, files: [{path: /x, content: y, mode: 600}], "
      "readiness: {command: \"true\", timeout: 5s}}\n");
  return seeds;
}

TEST(RobustnessTest, MutatedSpecsNeverThrowAndAlwaysExplain) {
  std::vector<std::string> seeds = Seeds();
  ASSERT_GE(seeds.size(), 3u);
  Rng rng(0x5eed1234abcdULL);
  for (int i = 0; i < 600; ++i) {
    const std::string& base = seeds[static_cast<size_t>(i) % seeds.size()];
    CheckNeverThrowsAndExplains(Mutate(base, rng));
    if (HasFailure()) {
      ADD_FAILURE() << "iteration " << i;
      return;
    }
  }
}

TEST(RobustnessTest, RandomBytesNeverThrow) {
  Rng rng(42);
  for (int i = 0; i < 300; ++i) {
    std::string s(rng.Below(200), '\0');
    for (char& c : s) c = static_cast<char>(rng.Next() & 0xff);
    CheckNeverThrowsAndExplains(s);
    if (HasFailure()) return;
  }
}

// yaml-cpp's LoadAll loops forever on these (the parser never advances past
// the stray token); the loader must stop and point at it.
TEST(RobustnessTest, StrayClosingTokensStopTheParser) {
  LoadResult r = ParseSpecText(",x", "fuzz.yaml");
  EXPECT_EQ(r.diagnostics.ToString(), "fuzz.yaml:1:1: error: invalid YAML: unexpected content\n");
  // Documents before the stuck token are still checked and kept.
  r = ParseSpecText(spec_test::DocWith("", "a") + "---\n,x\n", "fuzz.yaml");
  EXPECT_EQ(r.diagnostics.ToString(), "fuzz.yaml:8:1: error: invalid YAML: unexpected content\n");
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.name, "a");
  r = ParseSpecText(spec_test::DocWith("", "a") + "]\n", "fuzz.yaml");
  EXPECT_EQ(r.diagnostics.ToString(), "fuzz.yaml:7:1: error: invalid YAML: illegal flow end\n");
}

TEST(RobustnessTest, PathologicalInputsAreDiagnosed) {
  std::vector<std::string> inputs = {
      std::string(100000, '['),
      std::string(100000, '{'),
      "a: " + std::string(5000, '[') + std::string(5000, ']'),
      // Billion laughs: aliases are shared, never expanded.
      "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
      "spec: {image: busybox, env: *d}\n",
      "spec: *undefined\n",
      "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a}\n"
      "spec: {image: busybox, memory: 99999999999999999999999999999TiB}\n",
      "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a}\n"
      "spec: {image: busybox, memory: 1e400}\n",
      "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a}\n"
      "spec: {image: busybox, readiness: {timeout: 99999999999999999999h}}\n",
      "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: \"a\\0b\"}\nspec: {image: x}\n",
      "\tapiVersion: banger.dev/v1\n",
      "? [complex, key]\n: value\n",
      "!!binary aGVsbG8=\n",
      "%TAG ! tag:x,2000:\n--- !foo\nbar\n",
      std::string("apiVersion: banger.dev/v1\0kind: Sandbox\n", 40),
  };
  for (const std::string& in : inputs) {
    LoadResult r;
    ASSERT_NO_THROW(r = ParseSpecText(in, "fuzz.yaml"));
    EXPECT_TRUE(r.specs.empty()) << in.substr(0, 200);
    EXPECT_TRUE(r.diagnostics.HasErrors()) << in.substr(0, 200);
  }
}

}  // namespace
}  // namespace banger
