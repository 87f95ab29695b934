// JSON Schema (draft 2020-12) of a Sandbox YAML document, for editors
// (yaml-language-server and friends). The loader is the authority; the schema
// mirrors its rules as far as JSON Schema can express them.
#include <nlohmann/json.hpp>

#include "spec/loader.h"

namespace banger {
namespace {

using J = nlohmann::ordered_json;

J Str(const char* description) { return {{"type", "string"}, {"description", description}}; }

J Pattern(const char* pattern, const char* description) {
  return {{"type", "string"}, {"pattern", pattern}, {"description", description}};
}

J Obj(J properties, J required = J::array()) {
  J o = {{"type", "object"}, {"additionalProperties", false}, {"properties", std::move(properties)}};
  if (!required.empty()) o["required"] = std::move(required);
  return o;
}

constexpr char kSizePattern[] =
    "^[0-9]+(\\.[0-9]+)?\\s*(KiB|MiB|GiB|TiB|Ki|Mi|Gi|Ti|KB|MB|GB|TB|K|M|G|T|B)?$";

J Size(const char* description, bool allow_auto) {
  J any = J::array();
  if (allow_auto) any.push_back({{"const", "auto"}});
  any.push_back({{"type", "string"}, {"pattern", kSizePattern}});
  any.push_back({{"type", "integer"}, {"minimum", 0}});
  return {{"description", description}, {"anyOf", any}};
}

}  // namespace

std::string SpecJsonSchema() {
  J port = Obj(
      {{"host", {{"type", "integer"}, {"minimum", 1}, {"maximum", 65535},
                 {"description", "Port on the host. Unique per protocol."}}},
       {"guest", {{"type", "integer"}, {"minimum", 1}, {"maximum", 65535},
                  {"description", "Port in the guest."}}},
       {"protocol", {{"enum", {"tcp", "udp"}}, {"default", "tcp"}}},
       {"address", {{"type", "string"}, {"default", "127.0.0.1"},
                    {"description", "Host IPv4 address the port is published on (0.0.0.0: all)."}}}},
      J::array({"host", "guest"}));

  J file = Obj(
      {{"path", Pattern("^/", "Absolute path in the guest; no '..' components.")},
       {"content", Str("Inline file content.")},
       {"source", Str("Host file, relative to the spec file's directory. Its sha256 is part "
                      "of the spec hash.")},
       {"mode",
        {{"description", "Octal permission bits, read as octal even when unquoted (644)."},
         {"default", "0644"},
         {"anyOf",
          {{{"type", "string"}, {"pattern", "^(0[oO])?[0-7]{1,5}$"}},
           {{"type", "integer"}, {"minimum", 0}, {"maximum", 7777}}}}}}},
      J::array({"path"}));
  file["oneOf"] = J::array({J{{"required", J::array({"content"})}}, J{{"required", J::array({"source"})}}});

  J network = Obj({{"mode", {{"enum", {"bridged", "user", "nat", "isolated", "none"}}, {"default", "bridged"},
                             {"description", "bridged: a tap on a banger network; user: QEMU user-mode NAT "
                                             "(\"nat\" is its old name); isolated: user mode without outbound "
                                             "access; none: no network."}}},
                   {"name", Pattern("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                    "bridged: the kind: Network joined (default: \"default\").")},
                   {"address", Str("bridged: a fixed IPv4 address inside the network's subnet.")},
                   {"ports", {{"type", "array"},
                              {"items", port},
                              {"description", "Published ports; with mode bridged or user."}}}});

  J ssh_key = Pattern("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-[^ ]+|sk-[^ ]+) AAAA[A-Za-z0-9+/]+={0,2}( .*)?$",
                      "OpenSSH public key line.");
  J ssh_keys = {{"type", "array"}, {"items", ssh_key}};
  J ssh = Obj({{"authorizedKeys", ssh_keys}});

  J env_value_types = J::array({"string", "number", "boolean", "null"});
  J env = {{"type", "object"},
           {"propertyNames", {{"pattern", "^[A-Za-z_][A-Za-z0-9_]*$"}}},
           {"additionalProperties", {{"type", env_value_types}}},
           {"description", "Environment for provision and readiness commands."}};

  J command_string = {{"type", "string"}, {"minLength", 1}};
  J command_argv = {{"type", "array"}, {"items", {{"type", "string"}}}};
  J command = {{"description", "argv, or a string run with sh -c."},
               {"anyOf", J::array({command_string, command_argv})}};
  J timeout = {{"type", "string"},
               {"pattern", "^([0-9]+(ms|s|m|h))+$"},
               {"default", "120s"},
               {"description", "1s to 1h."}};
  J readiness = Obj({{"command", command}, {"timeout", timeout}});

  J provision = {{"type", "array"},
                 {"items", {{"type", "string"}, {"minLength", 1}}},
                 {"description", "Shell command lines run once after the first boot."}};

  J image = {{"type", "string"},
             {"minLength", 1},
             {"description", "Catalog image name (debian-bookworm, busybox) or an OCI reference "
                             "[registry[:port]/]repo[:tag][@sha256:<hex>]."}};
  J cpus = {{"type", "integer"}, {"minimum", 1}, {"maximum", 64}, {"default", 1}};

  J spec_props = J::object();
  spec_props["image"] = image;
  spec_props["kernel"] = Pattern("^([a-z0-9][a-z0-9._-]*)?$",
                                 "Catalog kernel name; empty or omitted means the default kernel.");
  spec_props["cpus"] = cpus;
  spec_props["memory"] = Size("Guest memory, 64MiB to 1TiB. Default 512MiB.", false);
  spec_props["disk"] =
      Size("Root disk size, at least 256MiB; auto (default) sizes it from the image.", true);
  spec_props["network"] = network;
  spec_props["ssh"] = ssh;
  spec_props["env"] = env;
  spec_props["files"] = {{"type", "array"}, {"items", file}};
  spec_props["provision"] = provision;
  spec_props["readiness"] = readiness;
  spec_props["restartPolicy"] = {{"enum", {"Always", "OnFailure", "Never"}}, {"default", "Always"}};
  spec_props["hypervisor"] = {{"enum", {"auto", "qemu", "firecracker"}}, {"default", "auto"}};
  spec_props["start"] = {{"enum", {"auto", "boot", "snapshot"}},
                         {"default", "auto"},
                         {"description", "auto: restore a template of the boot identity when the provider can "
                                         "(built on the first start); boot: always boot; snapshot: require a template."}};
  J volume = Obj(
      {{"name", Pattern("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "Volume name, unique within the sandbox.")},
       {"mountPath", Pattern("^(/[A-Za-z0-9._+@-]+)+$",
                             "Absolute guest path the volume is mounted at; not /, no '..', unique.")},
       {"size", Size("Volume size, at least 16MiB. Growing it is a restart; shrinking is refused.", false)},
       {"seedFrom", {{"enum", {"empty", "image"}},
                     {"default", "empty"},
                     {"description", "empty: a fresh file system; image: a copy of the image's files at "
                                     "mountPath. Only used when the volume is created."}}}},
      J::array({"name", "mountPath", "size"}));
  spec_props["volumes"] = {{"type", "array"},
                           {"items", volume},
                           {"description", "Persistent ext4 disks kept across restart and replace (docs/volumes.md)."}};
  spec_props["workspace"] = Obj(
      {{"source", {{"type", "string"}, {"minLength", 1},
                   {"description", "Host directory in a git working tree, relative to the spec file."}}},
       {"path", {{"type", "string"}, {"pattern", "^/."}, {"default", kDefaultWorkspacePath},
                 {"description", "Absolute directory in the guest."}}},
       {"mode", {{"enum", {"tracked", "full"}}, {"default", "tracked"}}},
       {"includeUntracked", {{"type", "boolean"}, {"default", false}}}},
      J::array({"source"}));
  J spec = Obj(spec_props, J::array({"image"}));

  J metadata = Obj(
      {{"name", Pattern("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "DNS label, unique per host.")},
       {"labels",
        {{"type", "object"},
         {"propertyNames",
          {{"pattern",
            "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"}}},
         {"additionalProperties",
          {{"type", "string"}, {"pattern", "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"}}}}}},
      J::array({"name"}));

  J network_doc = {
      {"type", "object"},
      {"additionalProperties", false},
      {"required", {"apiVersion", "kind", "metadata"}},
      {"properties",
       {{"apiVersion", {{"const", kApiVersion}}},
        {"kind", {{"const", kKindNetwork}}},
        {"metadata", metadata},
        {"spec", Obj({{"subnet", Str("IPv4 subnet, /8 to /29; chosen to avoid the host's routes when omitted.")},
                      {"nat", {{"type", "boolean"}, {"default", true}}},
                      {"isolated", {{"type", "boolean"}, {"default", false}}}})}}},
  };
  J schema = {
      {"$schema", "https://json-schema.org/draft/2020-12/schema"},
      {"$id", "https://banger.dev/schemas/sandbox-v1.json"},
      {"title", "banger Sandbox"},
      {"description", "A declarative microVM sandbox (see docs/spec-reference.md)."},
      {"type", "object"},
      {"additionalProperties", false},
      {"required", {"apiVersion", "kind", "metadata", "spec"}},
      {"properties",
       {{"apiVersion", {{"const", kApiVersion}}},
        {"kind", {{"const", kKindSandbox}}},
        {"metadata", metadata},
        {"spec", spec}}},
  };
  // A file holds Sandbox and Network documents.
  J both = {{"$schema", schema["$schema"]},
            {"$id", schema["$id"]},
            {"title", "banger document (Sandbox or Network)"},
            {"description", "A declarative microVM sandbox or network (see docs/spec-reference.md)."},
            {"oneOf", J::array({schema, network_doc})}};
  both["oneOf"][0].erase("$schema");
  both["oneOf"][0].erase("$id");
  return both.dump(2);
}

}  // namespace banger
