#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "spec/loader.h"

namespace banger {
namespace {

using nlohmann::json;

std::set<std::string> Keys(const json& properties) {
  std::set<std::string> out;
  for (const auto& [k, v] : properties.items()) out.insert(k);
  return out;
}

TEST(SchemaTest, IsValidJsonSchemaDocument) {
  json schema = json::parse(SpecJsonSchema());  // throws (fails the test) if invalid
  EXPECT_EQ(schema.at("$schema"), "https://json-schema.org/draft/2020-12/schema");
  EXPECT_EQ(schema.at("type"), "object");
  EXPECT_EQ(schema.at("additionalProperties"), false);
  EXPECT_EQ(schema.at("properties").at("apiVersion").at("const"), "banger.dev/v1");
  EXPECT_EQ(schema.at("properties").at("kind").at("const"), "Sandbox");
}

TEST(SchemaTest, DescribesEveryFieldAndForbidsOthers) {
  json schema = json::parse(SpecJsonSchema());
  const json& props = schema.at("properties");
  EXPECT_EQ(Keys(props), (std::set<std::string>{"apiVersion", "kind", "metadata", "spec"}));
  EXPECT_EQ(Keys(props.at("metadata").at("properties")),
            (std::set<std::string>{"name", "labels"}));
  const json& spec = props.at("spec");
  EXPECT_EQ(spec.at("additionalProperties"), false);
  EXPECT_EQ(Keys(spec.at("properties")),
            (std::set<std::string>{"image", "kernel", "cpus", "memory", "disk", "network", "ssh",
                                   "env", "files", "provision", "readiness", "restartPolicy",
                                   "hypervisor"}));
  const json& sp = spec.at("properties");
  EXPECT_EQ(Keys(sp.at("network").at("properties")), (std::set<std::string>{"mode", "ports"}));
  EXPECT_EQ(Keys(sp.at("network").at("properties").at("ports").at("items").at("properties")),
            (std::set<std::string>{"host", "guest", "protocol"}));
  EXPECT_EQ(Keys(sp.at("ssh").at("properties")), (std::set<std::string>{"authorizedKeys"}));
  EXPECT_EQ(Keys(sp.at("files").at("items").at("properties")),
            (std::set<std::string>{"path", "content", "source", "mode"}));
  EXPECT_EQ(Keys(sp.at("readiness").at("properties")),
            (std::set<std::string>{"command", "timeout"}));
  EXPECT_EQ(sp.at("restartPolicy").at("enum"), json({"Always", "OnFailure", "Never"}));
  EXPECT_EQ(sp.at("hypervisor").at("enum"), json({"auto", "qemu", "firecracker"}));
  EXPECT_EQ(sp.at("network").at("properties").at("mode").at("enum"),
            json({"nat", "isolated", "none"}));
  EXPECT_EQ(sp.at("cpus").at("maximum"), 64);
}

TEST(SchemaTest, UnknownFieldsTheLoaderRejectsAreOutsideTheSchema) {
  // The loader and the schema must agree on the field set: a field the schema
  // lists is accepted by the loader.
  json schema = json::parse(SpecJsonSchema());
  for (const auto& [field, def] : schema.at("properties").at("spec").at("properties").items()) {
    if (field == "image") continue;  // already set in the document below
    std::string yaml = "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a}\n"
                       "spec:\n  image: busybox\n  " + field + ": ~\n";
    LoadResult r = ParseSpecText(yaml, "t.yaml");
    EXPECT_FALSE(r.diagnostics.HasErrors()) << field << ": " << r.diagnostics.ToString();
  }
}

}  // namespace
}  // namespace banger
