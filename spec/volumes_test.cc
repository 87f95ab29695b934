// spec.volumes: parsing, validation (file:line:col and field), canonical form.
#include <gtest/gtest.h>

#include <string>

#include "spec/loader.h"
#include "spec/spec_test_util.h"

namespace banger {
namespace {

using spec_test::DocWith;

LoadResult Parse(const std::string& text) { return ParseSpecText(text, "t.yaml"); }

TEST(VolumesSpecTest, ParsesVolumesWithDefaultsAndSortsByName) {
  LoadResult r = Parse(DocWith(
      "  volumes:\n"
      "    - {name: work, mountPath: /root, size: 1GiB, seedFrom: image}\n"
      "    - {name: data, mountPath: /srv/data, size: 64MiB}\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  const auto& v = r.specs[0].spec.volumes;
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].name, "data");
  EXPECT_EQ(v[0].mount_path, "/srv/data");
  EXPECT_EQ(v[0].size_bytes, 64ull << 20);
  EXPECT_EQ(v[0].seed_from, VolumeSeed::kEmpty);
  EXPECT_EQ(v[1].name, "work");
  EXPECT_EQ(v[1].seed_from, VolumeSeed::kImage);
  EXPECT_EQ(v[1].size_bytes, 1ull << 30);
}

struct VolumeCase {
  const char* name;
  std::string volumes;   // the lines after "  volumes:\n"
  std::string expected;  // Diagnostics::ToString()
};
void PrintTo(const VolumeCase& c, std::ostream* os) { *os << c.name; }

class VolumeRuleTest : public testing::TestWithParam<VolumeCase> {};

TEST_P(VolumeRuleTest, ReportsExactDiagnostic) {
  LoadResult r = Parse(DocWith("  volumes:\n" + GetParam().volumes));
  EXPECT_EQ(r.diagnostics.ToString(), GetParam().expected);
  EXPECT_TRUE(r.specs.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Rules, VolumeRuleTest,
    testing::Values(
        VolumeCase{"NotAList", "    name: data\n",
                   "t.yaml:8:5: error: spec.volumes: expected a list of volumes, got a mapping\n"},
        VolumeCase{"MissingFields", "    - {seedFrom: empty}\n",
                   "t.yaml:8:7: error: spec.volumes[0].name: required field is missing\n"
                   "t.yaml:8:7: error: spec.volumes[0].mountPath: required field is missing\n"
                   "t.yaml:8:7: error: spec.volumes[0].size: required field is missing\n"},
        VolumeCase{"BadName", "    - {name: Data_1, mountPath: /d, size: 1GiB}\n",
                   "t.yaml:8:14: error: spec.volumes[0].name: must be 1-63 characters of a-z, 0-9 and '-', "
                   "starting and ending with a letter or digit, got \"Data_1\"\n"},
        VolumeCase{"DuplicateName",
                   "    - {name: d, mountPath: /a, size: 1GiB}\n"
                   "    - {name: d, mountPath: /b, size: 1GiB}\n",
                   "t.yaml:9:14: error: spec.volumes[1].name: volume \"d\" is already declared by spec.volumes[0]\n"},
        VolumeCase{"RelativeMountPath", "    - {name: d, mountPath: data, size: 1GiB}\n",
                   "t.yaml:8:28: error: spec.volumes[0].mountPath: must be an absolute path, got \"data\"\n"},
        VolumeCase{"RootMountPath", "    - {name: d, mountPath: /, size: 1GiB}\n",
                   "t.yaml:8:28: error: spec.volumes[0].mountPath: must not be \"/\" (the root file system is "
                   "the sandbox's own disk), got \"/\"\n"},
        VolumeCase{"DotDotMountPath", "    - {name: d, mountPath: /srv/../etc, size: 1GiB}\n",
                   "t.yaml:8:28: error: spec.volumes[0].mountPath: must not contain '.' or '..' components, "
                   "got \"/srv/../etc\"\n"},
        VolumeCase{"TrailingSlash", "    - {name: d, mountPath: /srv/, size: 1GiB}\n",
                   "t.yaml:8:28: error: spec.volumes[0].mountPath: must not contain empty components ('//') or "
                   "end in '/', got \"/srv/\"\n"},
        VolumeCase{"OddCharacter", "    - {name: d, mountPath: \"/my data\", size: 1GiB}\n",
                   "t.yaml:8:28: error: spec.volumes[0].mountPath: may only contain letters, digits and '/', "
                   "'.', '_', '-', '+', '@', got \"/my data\"\n"},
        VolumeCase{"SameMountPath",
                   "    - {name: a, mountPath: /data, size: 1GiB}\n"
                   "    - {name: b, mountPath: /data, size: 1GiB}\n",
                   "t.yaml:9:28: error: spec.volumes[1].mountPath: \"/data\" is already the mountPath of "
                   "spec.volumes[0] (\"/data\")\n"},
        VolumeCase{"NestedMountPath",
                   "    - {name: a, mountPath: /data, size: 1GiB}\n"
                   "    - {name: b, mountPath: /data/sub, size: 1GiB}\n",
                   "t.yaml:9:28: error: spec.volumes[1].mountPath: \"/data/sub\" overlaps the mountPath of "
                   "spec.volumes[0] (\"/data\")\n"},
        VolumeCase{"TooSmall", "    - {name: d, mountPath: /d, size: 1MiB}\n",
                   "t.yaml:8:38: error: spec.volumes[0].size: must be between 16MiB and 64TiB, got \"1MiB\"\n"},
        VolumeCase{"BadSize", "    - {name: d, mountPath: /d, size: lots}\n",
                   "t.yaml:8:38: error: spec.volumes[0].size: size \"lots\" must start with a number (e.g. 512MiB, "
                   "2GiB)\n"},
        VolumeCase{"BadSeed", "    - {name: d, mountPath: /d, size: 1GiB, seedFrom: Image}\n",
                   "t.yaml:8:54: error: spec.volumes[0].seedFrom: must be one of empty, image; got \"Image\" "
                   "(did you mean \"image\"?)\n"},
        VolumeCase{"UnknownField", "    - {name: d, mountPath: /d, size: 1GiB, mountPth: /x}\n",
                   "t.yaml:8:44: error: spec.volumes[0].mountPth: unknown field (did you mean \"mountPath\"?)\n"}),
    [](const testing::TestParamInfo<VolumeCase>& p) { return std::string(p.param.name); });

TEST(VolumesSpecTest, CanonicalFormKeysVolumesByNameAndRoundTrips) {
  LoadResult r = Parse(DocWith(
      "  volumes:\n"
      "    - {name: work, mountPath: /root, size: 1024MiB, seedFrom: image}\n"
      "    - {name: data, mountPath: /data, size: 64MiB}\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  const SandboxSpec& spec = r.specs[0].spec;
  std::string json = CanonicalJson(spec);
  EXPECT_NE(json.find(R"("volumes":{"data":{"mountPath":"/data","seedFrom":"empty","size":"64MiB"},)"
                      R"("work":{"mountPath":"/root","seedFrom":"image","size":"1GiB"}})"),
            std::string::npos)
      << json;
  auto back = SpecFromCanonicalJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, spec);
  EXPECT_EQ(SpecHash(*back), SpecHash(spec));
}

TEST(VolumesSpecTest, NoVolumesKeepsTheCanonicalFormOfOlderSpecs) {
  LoadResult r = Parse(DocWith(""));
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(CanonicalJson(r.specs[0].spec).find("volumes"), std::string::npos);
}

TEST(VolumesSpecTest, OrderOfVolumesDoesNotChangeTheHash) {
  LoadResult a = Parse(DocWith("  volumes:\n    - {name: a, mountPath: /a, size: 1GiB}\n"
                               "    - {name: b, mountPath: /b, size: 1GiB}\n"));
  LoadResult b = Parse(DocWith("  volumes:\n    - {name: b, mountPath: /b, size: 1GiB}\n"
                               "    - {name: a, mountPath: /a, size: 1GiB}\n"));
  ASSERT_EQ(a.specs.size(), 1u);
  ASSERT_EQ(b.specs.size(), 1u);
  EXPECT_EQ(SpecHash(a.specs[0].spec), SpecHash(b.specs[0].spec));
}

TEST(VolumesSpecTest, SchemaDescribesVolumes) {
  std::string schema = SpecJsonSchema();
  EXPECT_NE(schema.find("\"seedFrom\""), std::string::npos);
  EXPECT_NE(schema.find("\"mountPath\""), std::string::npos);
}

}  // namespace
}  // namespace banger
