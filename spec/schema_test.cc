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

/// The Sandbox branch of the schema (a file holds Sandbox or Network documents).
json SandboxSchema() { return json::parse(SpecJsonSchema()).at("oneOf").at(0); }
json NetworkSchema() { return json::parse(SpecJsonSchema()).at("oneOf").at(1); }

TEST(SchemaTest, IsValidJsonSchemaDocument) {
  json top = json::parse(SpecJsonSchema());  // throws (fails the test) if invalid
  EXPECT_EQ(top.at("$schema"), "https://json-schema.org/draft/2020-12/schema");
  json schema = SandboxSchema();
  EXPECT_EQ(schema.at("type"), "object");
  EXPECT_EQ(schema.at("additionalProperties"), false);
  EXPECT_EQ(schema.at("properties").at("apiVersion").at("const"), "banger.dev/v1");
  EXPECT_EQ(schema.at("properties").at("kind").at("const"), "Sandbox");
  EXPECT_EQ(NetworkSchema().at("properties").at("kind").at("const"), "Network");
  EXPECT_EQ(Keys(NetworkSchema().at("properties").at("spec").at("properties")),
            (std::set<std::string>{"subnet", "nat", "isolated"}));
}

TEST(SchemaTest, DescribesEveryFieldAndForbidsOthers) {
  json schema = SandboxSchema();
  const json& props = schema.at("properties");
  EXPECT_EQ(Keys(props), (std::set<std::string>{"apiVersion", "kind", "metadata", "spec"}));
  EXPECT_EQ(Keys(props.at("metadata").at("properties")),
            (std::set<std::string>{"name", "labels"}));
  const json& spec = props.at("spec");
  EXPECT_EQ(spec.at("additionalProperties"), false);
  EXPECT_EQ(Keys(spec.at("properties")),
            (std::set<std::string>{"image", "kernel", "cpus", "memory", "disk", "network", "ssh",
                                   "env", "files", "provision", "readiness", "restartPolicy",
                                   "hypervisor", "volumes", "workspace", "start"}));
  EXPECT_EQ(Keys(spec.at("properties").at("workspace").at("properties")),
            (std::set<std::string>{"source", "path", "mode", "includeUntracked"}));
  const json& sp = spec.at("properties");
  EXPECT_EQ(Keys(sp.at("network").at("properties")), (std::set<std::string>{"mode", "name", "address", "ports"}));
  EXPECT_EQ(Keys(sp.at("network").at("properties").at("ports").at("items").at("properties")),
            (std::set<std::string>{"host", "guest", "protocol", "address"}));
  EXPECT_EQ(Keys(sp.at("ssh").at("properties")), (std::set<std::string>{"authorizedKeys"}));
  EXPECT_EQ(Keys(sp.at("files").at("items").at("properties")),
            (std::set<std::string>{"path", "content", "source", "mode"}));
  EXPECT_EQ(Keys(sp.at("readiness").at("properties")),
            (std::set<std::string>{"command", "timeout"}));
  EXPECT_EQ(sp.at("restartPolicy").at("enum"), json({"Always", "OnFailure", "Never"}));
  EXPECT_EQ(sp.at("hypervisor").at("enum"), json({"auto", "qemu", "firecracker"}));
  EXPECT_EQ(sp.at("network").at("properties").at("mode").at("enum"),
            json({"bridged", "user", "nat", "isolated", "none"}));
  EXPECT_EQ(sp.at("cpus").at("maximum"), 64);
}

TEST(SchemaTest, UnknownFieldsTheLoaderRejectsAreOutsideTheSchema) {
  // The loader and the schema must agree on the field set: a field the schema
  // lists is accepted by the loader.
  json schema = SandboxSchema();
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
