#include "spec/loader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/sha256.h"
#include "spec/spec_test_util.h"

namespace banger {
namespace {

using spec_test::DocWith;
using spec_test::TempDir;

LoadResult Parse(const std::string& text) { return ParseSpecText(text, "t.yaml"); }

TEST(LoaderTest, ParsesAWorkspaceRelativeToTheSpecFile) {
  TempDir dir;
  dir.Write("repo/.git/HEAD", "ref: refs/heads/main\n");
  dir.Write("repo/src/x.c", "");
  dir.Write("specs/web.yaml", DocWith("  workspace:\n    source: ../repo/src\n    mode: full\n    includeUntracked: true\n"));
  LoadResult r = LoadSpecPaths({dir.path() / "specs/web.yaml"});
  ASSERT_FALSE(r.diagnostics.HasErrors()) << r.diagnostics.ToString();
  ASSERT_EQ(r.specs.size(), 1u);
  const auto& ws = r.specs[0].spec.workspace;
  ASSERT_TRUE(ws.has_value());
  EXPECT_EQ(ws->source, (dir.path() / "repo/src").string());
  EXPECT_EQ(ws->path, "/root/work");
  EXPECT_EQ(ws->mode, WorkspaceMode::kFull);
  EXPECT_TRUE(ws->include_untracked);
  // Without the field there is none.
  EXPECT_FALSE(Parse(DocWith("")).specs.at(0).spec.workspace.has_value());
}

TEST(LoaderTest, ParsesEveryField) {
  TempDir dir;
  dir.Write("files/motd.txt", "hello from a file\n");
  std::string yaml = R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: full
  labels:
    app: web
    banger.dev/tier: front_end.1
spec:
  image: registry.local:5000/team/app:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  kernel: linux-6.1
  cpus: 4
  memory: 2GiB
  disk: 8GiB
  network:
    mode: nat
    ports:
      - {host: 8080, guest: 80}
      - {host: 5353, guest: 53, protocol: udp}
  ssh:
    authorizedKeys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA me@host
  env:
    GREETING: hello
    COUNT: 3
    DEBUG: true
    EMPTY:
  files:
    - path: /etc/motd
      source: files/motd.txt
    - path: /usr/local/bin/run
      content: "#!/bin/sh\n"
      mode: 755
  provision:
    - apt-get update
    - touch /done
  readiness:
    command: ["curl", "-f", "http://localhost/"]
    timeout: 90s
  restartPolicy: OnFailure
  hypervisor: qemu
)";
  dir.Write("full.yaml", yaml);
  LoadResult r = LoadSpecPaths({dir.path() / "full.yaml"});
  ASSERT_FALSE(r.diagnostics.HasErrors()) << r.diagnostics.ToString();
  ASSERT_EQ(r.specs.size(), 1u);
  const SandboxSpec& s = r.specs[0].spec;
  EXPECT_EQ(r.specs[0].location, (SourceLocation{(dir.path() / "full.yaml").string(), 1, 1}));
  EXPECT_EQ(s.name, "full");
  EXPECT_EQ(s.labels, (std::map<std::string, std::string>{{"app", "web"},
                                                          {"banger.dev/tier", "front_end.1"}}));
  EXPECT_EQ(s.image,
            "registry.local:5000/team/app:1.2@sha256:"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  EXPECT_EQ(s.kernel, "linux-6.1");
  EXPECT_EQ(s.cpus, 4u);
  EXPECT_EQ(s.memory_bytes, 2ull << 30);
  EXPECT_EQ(s.disk_bytes, 8ull << 30);
  EXPECT_EQ(s.network.mode, NetworkMode::kUser);  // "nat" is user mode's old name
  ASSERT_EQ(s.network.ports.size(), 2u);
  // Normalised order: by host port.
  EXPECT_EQ(s.network.ports[0], (PortMapping{5353, 53, Protocol::kUdp}));
  EXPECT_EQ(s.network.ports[1], (PortMapping{8080, 80, Protocol::kTcp}));
  ASSERT_EQ(s.ssh_authorized_keys.size(), 1u);
  EXPECT_EQ(s.ssh_authorized_keys[0],
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA me@host");
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{
                       {"COUNT", "3"}, {"DEBUG", "true"}, {"EMPTY", ""}, {"GREETING", "hello"}}));
  ASSERT_EQ(s.files.size(), 2u);
  EXPECT_EQ(s.files[0].path, "/etc/motd");
  EXPECT_FALSE(s.files[0].content.has_value());
  EXPECT_EQ(s.files[0].source, (dir.path() / "files/motd.txt").string());
  EXPECT_EQ(s.files[0].source_sha256, Sha256Hex("hello from a file\n"));
  EXPECT_EQ(s.files[0].mode, 0644u);
  EXPECT_EQ(s.files[1].path, "/usr/local/bin/run");
  EXPECT_EQ(s.files[1].content, "#!/bin/sh\n");
  EXPECT_EQ(s.files[1].source_sha256, "");
  EXPECT_EQ(s.files[1].mode, 0755u);
  EXPECT_EQ(s.provision, (std::vector<std::string>{"apt-get update", "touch /done"}));
  EXPECT_EQ(s.readiness.command,
            (std::vector<std::string>{"curl", "-f", "http://localhost/"}));
  EXPECT_EQ(s.readiness.timeout, std::chrono::seconds(90));
  EXPECT_EQ(s.restart_policy, RestartPolicy::kOnFailure);
  EXPECT_EQ(s.hypervisor, HypervisorKind::kQemu);
}

TEST(LoaderTest, NetworkDocumentsLoadBesideSandboxes) {
  LoadResult r = Parse(
      "apiVersion: banger.dev/v1\nkind: Network\nmetadata: {name: backend}\n"
      "spec: {subnet: 10.213.7.0/24, nat: false, isolated: true}\n---\n" +
      DocWith("  network: {name: backend, address: 10.213.7.20, ports: [{host: 80, guest: 80, address: 0.0.0.0}]}\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.networks.size(), 1u);
  EXPECT_EQ(r.networks[0].spec, (NetworkSpecDoc{"backend", {}, "10.213.7.0/24", false, true}));
  EXPECT_EQ(r.networks[0].location.line, 1);
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.network.name, "backend");
  EXPECT_EQ(r.specs[0].spec.network.address, "10.213.7.20");
  EXPECT_EQ(r.specs[0].spec.network.ports[0].address, "0.0.0.0");
  auto back = NetworkSpecFromCanonicalJson(CanonicalNetworkJson(r.networks[0].spec));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, r.networks[0].spec);
}

TEST(LoaderTest, NetworkDocumentErrorsNameFileLineAndField) {
  LoadResult r = Parse(
      "apiVersion: banger.dev/v1\nkind: Network\nmetadata: {name: backend}\n"
      "spec:\n  subnet: 10.213.7.1/24\n  nat: yes-please\n  mtu: 9000\n---\n"
      "apiVersion: banger.dev/v1\nkind: Network\nmetadata: {name: tiny}\nspec: {subnet: 10.0.0.0/30}\n---\n"
      "apiVersion: banger.dev/v1\nkind: Network\nmetadata: {name: wide}\n---\n"
      "apiVersion: banger.dev/v1\nkind: Network\nmetadata: {name: wide}\n");
  EXPECT_EQ(r.diagnostics.ToString(),
            "t.yaml:5:11: error: spec.subnet: \"10.213.7.1/24\" has host bits set (did you mean 10.213.7.0/24?)\n"
            "t.yaml:6:8: error: spec.nat: must be true or false, got \"yes-please\"\n"
            "t.yaml:7:3: error: spec.mtu: unknown field\n"
            "t.yaml:12:16: error: spec.subnet: the prefix length must be between /8 and /29 (room for the bridge "
            "and sandboxes), got \"10.0.0.0/30\"\n"
            "t.yaml:18:1: error: network \"wide\" is defined twice (also at t.yaml:14:1)\n");
  EXPECT_TRUE(r.networks.empty());
}

TEST(LoaderTest, OmittedFieldsGetDefaults) {
  LoadResult r = Parse(DocWith(""));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  const SandboxSpec& s = r.specs[0].spec;
  EXPECT_EQ(s.cpus, 1u);
  EXPECT_EQ(s.memory_bytes, 512ull << 20);
  EXPECT_EQ(s.disk_bytes, 0u);
  EXPECT_EQ(s.kernel, "");
  EXPECT_EQ(s.network.mode, NetworkMode::kBridged);
  EXPECT_EQ(s.network.name, "default");
  EXPECT_EQ(s.network.address, "");
  EXPECT_TRUE(s.network.ports.empty());
  EXPECT_EQ(s.restart_policy, RestartPolicy::kAlways);
  EXPECT_EQ(s.hypervisor, HypervisorKind::kAuto);
  EXPECT_EQ(s.start, StartMode::kAuto);
  EXPECT_EQ(s.readiness.timeout, std::chrono::seconds(120));
  EXPECT_TRUE(s.readiness.command.empty());
}

TEST(LoaderTest, ReadinessStringRunsThroughShell) {
  LoadResult r = Parse(DocWith("  readiness:\n    command: test -e /ready && echo ok\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.readiness.command,
            (std::vector<std::string>{"sh", "-c", "test -e /ready && echo ok"}));
}

TEST(LoaderTest, AcceptsPlainIntegersAndOctalModeSpellings) {
  LoadResult r = Parse(DocWith(
      "  memory: 134217728\n"
      "  disk: auto\n"
      "  files:\n"
      "    - {path: /a, content: x, mode: \"0600\"}\n"
      "    - {path: /b, content: x, mode: 0o700}\n"
      "    - {path: /c, content: x, mode: 0640}\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  const SandboxSpec& s = r.specs[0].spec;
  EXPECT_EQ(s.memory_bytes, 128ull << 20);
  EXPECT_EQ(s.disk_bytes, 0u);
  EXPECT_EQ(s.files[0].mode, 0600u);
  EXPECT_EQ(s.files[1].mode, 0700u);
  EXPECT_EQ(s.files[2].mode, 0640u);
}

TEST(LoaderTest, AcceptsImageReferenceForms) {
  for (const char* image :
       {"busybox", "debian-bookworm", "alpine:3.19", "docker.io/library/alpine:3.19",
        "localhost/app", "127.0.0.1:5000/a/b:v1",
        "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}) {
    std::string yaml = "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata: {name: a}\n"
                       "spec: {image: \"" + std::string(image) + "\"}\n";
    LoadResult r = Parse(yaml);
    EXPECT_EQ(r.diagnostics.ToString(), "") << image;
    ASSERT_EQ(r.specs.size(), 1u) << image;
    EXPECT_EQ(r.specs[0].spec.image, image);
  }
}

struct RuleCase {
  const char* name;
  std::string yaml;
  std::string expected;  // Diagnostics::ToString()
};
void PrintTo(const RuleCase& c, std::ostream* os) { *os << c.name; }

class ValidationRuleTest : public testing::TestWithParam<RuleCase> {};

TEST_P(ValidationRuleTest, ReportsExactDiagnostic) {
  const RuleCase& c = GetParam();
  LoadResult r = Parse(c.yaml);
  EXPECT_EQ(r.diagnostics.ToString(), c.expected);
  EXPECT_TRUE(r.specs.empty());
}

const char kHeader[] = "apiVersion: banger.dev/v1\nkind: Sandbox\n";

INSTANTIATE_TEST_SUITE_P(
    Rules, ValidationRuleTest,
    testing::Values(
        RuleCase{"CpusNotANumber", DocWith("  cpus: two\n"),
                 "t.yaml:7:9: error: spec.cpus: must be an integer between 1 and 64, got \"two\"\n"},
        RuleCase{"CpusTooMany", DocWith("  cpus: 65\n"),
                 "t.yaml:7:9: error: spec.cpus: must be an integer between 1 and 64, got \"65\"\n"},
        RuleCase{"CpusZero", DocWith("  cpus: 0\n"),
                 "t.yaml:7:9: error: spec.cpus: must be an integer between 1 and 64, got \"0\"\n"},
        RuleCase{"CpusHuge", DocWith("  cpus: 99999999999999999999999999\n"),
                 "t.yaml:7:9: error: spec.cpus: must be an integer between 1 and 64, got "
                 "\"99999999999999999999999999\"\n"},
        RuleCase{"CpusWrongType", DocWith("  cpus: [1]\n"),
                 "t.yaml:7:9: error: spec.cpus: must be an integer between 1 and 64, got a "
                 "sequence\n"},
        RuleCase{"UnknownFieldSuggests", DocWith("  memroy: 1GiB\n"),
                 "t.yaml:7:3: error: spec.memroy: unknown field (did you mean \"memory\"?)\n"},
        RuleCase{"UnknownFieldWithoutSuggestion", DocWith("  colour: blue\n"),
                 "t.yaml:7:3: error: spec.colour: unknown field\n"},
        RuleCase{"UnknownTopLevelField", std::string(kHeader) + "metadata: {name: a}\n"
                 "spec: {image: busybox}\nstatus: {}\n",
                 "t.yaml:5:1: error: status: unknown field\n"},
        RuleCase{"FieldSetTwice", DocWith("  cpus: 1\n  cpus: 2\n"),
                 "t.yaml:8:3: error: spec.cpus: field is set twice (first at line 7)\n"},
        RuleCase{"MemoryTooSmall", DocWith("  memory: 32MiB\n"),
                 "t.yaml:7:11: error: spec.memory: must be between 64MiB and 1TiB, got "
                 "\"32MiB\"\n"},
        RuleCase{"MemoryTooLarge", DocWith("  memory: 2TiB\n"),
                 "t.yaml:7:11: error: spec.memory: must be between 64MiB and 1TiB, got "
                 "\"2TiB\"\n"},
        RuleCase{"MemoryNotASize", DocWith("  memory: lots\n"),
                 "t.yaml:7:11: error: spec.memory: size \"lots\" must start with a number "
                 "(e.g. 512MiB, 2GiB)\n"},
        RuleCase{"MemoryBadUnit", DocWith("  memory: 1GB2\n"),
                 "t.yaml:7:11: error: spec.memory: unknown size unit \"GB2\" (use KiB, MiB, "
                 "GiB, TiB, or K, M, G, T)\n"},
        RuleCase{"DiskTooSmall", DocWith("  disk: 100MiB\n"),
                 "t.yaml:7:9: error: spec.disk: must be between 256MiB and 64TiB, got "
                 "\"100MiB\"\n"},
        RuleCase{"NetworkWrongType", DocWith("  network: nat\n"),
                 "t.yaml:7:12: error: spec.network: expected a mapping, got \"nat\"\n"},
        RuleCase{"NetworkModeNearMiss", DocWith("  network: {mode: nta}\n"),
                 "t.yaml:7:19: error: spec.network.mode: must be one of bridged, user, nat, isolated, none; "
                 "got \"nta\" (did you mean \"nat\"?)\n"},
        RuleCase{"PortsNeedNat",
                 DocWith("  network:\n    mode: none\n    ports:\n      - {host: 80, guest: 80}\n"),
                 "t.yaml:10:7: error: spec.network.ports: ports can only be published with "
                 "network mode bridged or user, not \"none\"\n"},
        RuleCase{"NetworkNameOnlyWhenBridged",
                 DocWith("  network:\n    mode: user\n    name: backend\n"),
                 "t.yaml:9:11: error: spec.network.name: only applies to network mode bridged, not \"user\"\n"},
        RuleCase{"NetworkAddressMalformed",
                 DocWith("  network:\n    address: 10.1.2\n"),
                 "t.yaml:8:14: error: spec.network.address: \"10.1.2\" is not an IPv4 address (want a.b.c.d)\n"},
        RuleCase{"PortAddressMalformed",
                 DocWith("  network:\n    ports:\n      - {host: 80, guest: 80, address: localhost}\n"),
                 "t.yaml:9:40: error: spec.network.ports[0].address: \"localhost\" is not an IPv4 address "
                 "(want a.b.c.d) (use 127.0.0.1, 0.0.0.0 or a host address)\n"},
        RuleCase{"PortOnAllAddressesClashes",
                 DocWith("  network:\n    ports:\n      - {host: 80, guest: 80}\n"
                         "      - {host: 80, guest: 81, address: 0.0.0.0}\n"),
                 "t.yaml:10:16: error: spec.network.ports[1].host: host port 80/tcp is already published by "
                 "spec.network.ports[0]\n"},
        RuleCase{"PortOutOfRange",
                 DocWith("  network:\n    ports:\n      - {host: 70000, guest: 0}\n"),
                 "t.yaml:9:16: error: spec.network.ports[0].host: must be an integer between 1 "
                 "and 65535, got \"70000\"\n"
                 "t.yaml:9:30: error: spec.network.ports[0].guest: must be an integer between 1 "
                 "and 65535, got \"0\"\n"},
        RuleCase{"PortMissingGuest", DocWith("  network:\n    ports:\n      - host: 80\n"),
                 "t.yaml:9:9: error: spec.network.ports[0].guest: required field is missing\n"},
        RuleCase{"PortBadProtocol",
                 DocWith("  network:\n    ports:\n      - {host: 80, guest: 80, protocol: TCP}\n"),
                 "t.yaml:9:41: error: spec.network.ports[0].protocol: must be one of tcp, udp; "
                 "got \"TCP\" (did you mean \"tcp\"?)\n"},
        RuleCase{"DuplicateHostPort",
                 DocWith("  network:\n    ports:\n      - {host: 80, guest: 80}\n"
                         "      - {host: 80, guest: 8080}\n"),
                 "t.yaml:10:16: error: spec.network.ports[1].host: host port 80/tcp is already "
                 "published by spec.network.ports[0]\n"},
        RuleCase{"BadSshKey", DocWith("  ssh:\n    authorizedKeys: [\"ssh-dsa AAAAB3 me\"]\n"),
                 "t.yaml:8:22: error: spec.ssh.authorizedKeys[0]: not an OpenSSH public key: "
                 "expected one line like \"ssh-ed25519 AAAA... comment\" (ssh-ed25519, ssh-rsa, "
                 "ecdsa-sha2-* or sk-* keys)\n"},
        RuleCase{"BadEnvName", DocWith("  env:\n    1FOO: x\n"),
                 "t.yaml:8:5: error: spec.env[\"1FOO\"]: invalid variable name: use letters, "
                 "digits and '_', not starting with a digit\n"},
        RuleCase{"EnvValueNotString", DocWith("  env:\n    FOO: [1, 2]\n"),
                 "t.yaml:8:10: error: spec.env[\"FOO\"]: expected a string, got a sequence\n"},
        RuleCase{"FilePathRelative", DocWith("  files:\n    - {path: etc/motd, content: hi}\n"),
                 "t.yaml:8:14: error: spec.files[0].path: must be an absolute path, got "
                 "\"etc/motd\"\n"},
        RuleCase{"FilePathDotDot", DocWith("  files:\n    - {path: /etc/../x, content: hi}\n"),
                 "t.yaml:8:14: error: spec.files[0].path: must not contain '..', got "
                 "\"/etc/../x\"\n"},
        RuleCase{"FileContentAndSource",
                 DocWith("  files:\n    - path: /x\n      content: hi\n      source: x.txt\n"),
                 "t.yaml:10:7: error: spec.files[0].source: set exactly one of content and "
                 "source, not both\n"},
        RuleCase{"FileNeitherContentNorSource", DocWith("  files:\n    - path: /x\n"),
                 "t.yaml:8:7: error: spec.files[0]: one of content or source is required\n"},
        RuleCase{"FileModeNotOctal", DocWith("  files:\n    - {path: /x, content: hi, mode: 999}\n"),
                 "t.yaml:8:37: error: spec.files[0].mode: must be an octal file mode between "
                 "0000 and 07777 like \"0644\" or 644, got \"999\"\n"},
        RuleCase{"FileModeTooLarge",
                 DocWith("  files:\n    - {path: /x, content: hi, mode: \"17777\"}\n"),
                 "t.yaml:8:37: error: spec.files[0].mode: must be an octal file mode between "
                 "0000 and 07777 like \"0644\" or 644, got \"17777\"\n"},
        RuleCase{"FileSourceMissing",
                 DocWith("  files:\n    - {path: /x, source: /nonexistent/banger-test-file}\n"),
                 "t.yaml:8:26: error: spec.files[0].source: \"/nonexistent/banger-test-file\" "
                 "does not exist (looked for /nonexistent/banger-test-file)\n"},
        RuleCase{"FileSourceIsDirectory", DocWith("  files:\n    - {path: /x, source: /}\n"),
                 "t.yaml:8:26: error: spec.files[0].source: \"/\" is not a regular file (/)\n"},
        RuleCase{"FileWrittenTwice",
                 DocWith("  files:\n    - {path: /x, content: a}\n    - {path: /x, content: b}\n"),
                 "t.yaml:9:14: error: spec.files[1].path: \"/x\" is already written by "
                 "spec.files[0]\n"},
        RuleCase{"WorkspaceSourceMissing", DocWith("  workspace:\n    path: /root/work\n"),
                 "t.yaml:8:5: error: spec.workspace.source: required field is missing\n"},
        RuleCase{"WorkspaceSourceNotADirectory", DocWith("  workspace: {source: /nonexistent/banger-repo}\n"),
                 "t.yaml:7:23: error: spec.workspace.source: \"/nonexistent/banger-repo\" is not a "
                 "directory (looked for /nonexistent/banger-repo)\n"},
        RuleCase{"WorkspaceSourceNotInGit", DocWith("  workspace: {source: /proc/self}\n"),
                 "t.yaml:7:23: error: spec.workspace.source: \"/proc/self\" is not inside a git "
                 "working tree (/proc/self)\n"},
        RuleCase{"WorkspaceBadMode", DocWith("  workspace: {source: /proc/self, mode: shallow}\n"),
                 "t.yaml:7:23: error: spec.workspace.source: \"/proc/self\" is not inside a git "
                 "working tree (/proc/self)\n"
                 "t.yaml:7:41: error: spec.workspace.mode: must be one of tracked, full; got \"shallow\"\n"},
        RuleCase{"WorkspacePathRelative", DocWith("  workspace:\n    source: /proc/self\n    path: work\n"),
                 "t.yaml:8:13: error: spec.workspace.source: \"/proc/self\" is not inside a git "
                 "working tree (/proc/self)\n"
                 "t.yaml:9:11: error: spec.workspace.path: must be an absolute path, got \"work\"\n"},
        RuleCase{"WorkspaceUnknownField", DocWith("  workspace:\n    source: /proc/self\n    pth: /w\n"),
                 "t.yaml:8:13: error: spec.workspace.source: \"/proc/self\" is not inside a git "
                 "working tree (/proc/self)\n"
                 "t.yaml:9:5: error: spec.workspace.pth: unknown field (did you mean \"path\"?)\n"},
        RuleCase{"EmptyProvisionCommand", DocWith("  provision:\n    - \"  \"\n"),
                 "t.yaml:8:7: error: spec.provision[0]: must be a non-empty command line\n"},
        RuleCase{"ProvisionNotAList", DocWith("  provision: apt-get update\n"),
                 "t.yaml:7:14: error: spec.provision: expected a list of command lines, got "
                 "\"apt-get update\"\n"},
        RuleCase{"ReadinessTimeoutTooLong", DocWith("  readiness:\n    timeout: 2h\n"),
                 "t.yaml:8:14: error: spec.readiness.timeout: must be between 1s and 1h, got "
                 "\"2h\"\n"},
        RuleCase{"ReadinessTimeoutTooShort", DocWith("  readiness:\n    timeout: 500ms\n"),
                 "t.yaml:8:14: error: spec.readiness.timeout: must be between 1s and 1h, got "
                 "\"500ms\"\n"},
        RuleCase{"ReadinessTimeoutNotADuration", DocWith("  readiness:\n    timeout: soon\n"),
                 "t.yaml:8:14: error: spec.readiness.timeout: invalid duration \"soon\" (use "
                 "e.g. 30s, 500ms, 2m, 1h)\n"},
        RuleCase{"ReadinessEmptyCommand", DocWith("  readiness:\n    command: \"\"\n"),
                 "t.yaml:8:14: error: spec.readiness.command: must not be empty\n"},
        RuleCase{"RestartPolicyCase", DocWith("  restartPolicy: always\n"),
                 "t.yaml:7:18: error: spec.restartPolicy: must be one of Always, OnFailure, "
                 "Never; got \"always\" (did you mean \"Always\"?)\n"},
        RuleCase{"StartUnknown", DocWith("  start: restore\n"),
                 "t.yaml:7:10: error: spec.start: must be one of auto, boot, snapshot; got \"restore\"\n"},
        RuleCase{"HypervisorUnknown", DocWith("  hypervisor: kvm\n"),
                 "t.yaml:7:15: error: spec.hypervisor: must be one of auto, qemu, firecracker; "
                 "got \"kvm\"\n"},
        RuleCase{"ImageInvalid",
                 std::string(kHeader) + "metadata: {name: a}\nspec:\n  image: Bad Image!\n"
                 "  kernel: Linux/6\n",
                 "t.yaml:5:10: error: spec.image: invalid image \"Bad Image!\": expected a "
                 "catalog name like \"debian-bookworm\" or an OCI reference like "
                 "\"docker.io/library/alpine:3.19\"\n"
                 "t.yaml:6:11: error: spec.kernel: invalid kernel name \"Linux/6\": use "
                 "lower-case letters, digits, '.', '_' and '-', starting with a letter or "
                 "digit\n"},
        RuleCase{"ImageMissing", std::string(kHeader) + "metadata: {name: a}\nspec:\n  cpus: 2\n",
                 "t.yaml:5:3: error: spec.image: required field is missing\n"},
        RuleCase{"NameNotDnsLabel", DocWith("", "Web_1"),
                 "t.yaml:4:9: error: metadata.name: must be a DNS label (1-63 characters of "
                 "a-z, 0-9 and '-', starting and ending with a letter or digit), got "
                 "\"Web_1\"\n"},
        RuleCase{"NameMissing", std::string(kHeader) + "metadata:\n  labels: {}\nspec: {image: x}\n",
                 "t.yaml:4:3: error: metadata.name: required field is missing\n"},
        RuleCase{"LabelKeyAndValue",
                 std::string(kHeader) + "metadata:\n  name: a\n  labels:\n    \"bad key\": x\n"
                 "    ok: \"-bad-value\"\nspec: {image: x}\n",
                 "t.yaml:6:5: error: metadata.labels[\"bad key\"]: invalid label key: use "
                 "[prefix/]name where name is 1-63 characters of A-Z, a-z, 0-9, '-', '_' and "
                 "'.', starting and ending alphanumeric, and prefix is a DNS subdomain\n"
                 "t.yaml:7:9: error: metadata.labels[\"ok\"]: invalid label value "
                 "\"-bad-value\": use at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', "
                 "starting and ending alphanumeric\n"},
        RuleCase{"WrongApiVersionAndKind",
                 "apiVersion: banger.dev/v2\nkind: sandbox\nmetadata: {name: a}\nspec: {image: x}\n",
                 "t.yaml:1:13: error: apiVersion: must be \"banger.dev/v1\", got "
                 "\"banger.dev/v2\"\n"
                 "t.yaml:2:7: error: kind: must be \"Sandbox\" or \"Network\", got \"sandbox\" (did you mean "
                 "\"Sandbox\"?)\n"},
        RuleCase{"MissingEverything", "metadata: {name: a}\n",
                 "t.yaml:1:1: error: apiVersion: required field is missing\n"
                 "t.yaml:1:1: error: kind: required field is missing\n"
                 "t.yaml:1:1: error: spec: required field is missing\n"},
        RuleCase{"DocumentNotAMapping", "- just\n- a list\n",
                 "t.yaml:1:1: error: document: expected a mapping, got a sequence\n"},
        RuleCase{"YamlSyntaxError", DocWith("  cpus: [1, 2\n  memory: 1GiB\n"),
                 "t.yaml:8:9: error: invalid YAML: end of sequence flow not found\n"},
        RuleCase{"TabIndentation", DocWith("\tcpus: 2\n"),
                 "t.yaml:7:1: error: invalid YAML: illegal tab when looking for indentation\n"}),
    [](const testing::TestParamInfo<RuleCase>& param_info) { return std::string(param_info.param.name); });

TEST(LoaderTest, CollectsEveryProblemInOnePass) {
  LoadResult r = Parse(DocWith("  cpus: 0\n  memory: 1\n  hypervisor: xen\n  bogus: 1\n"));
  EXPECT_EQ(r.diagnostics.items().size(), 4u) << r.diagnostics.ToString();
  EXPECT_TRUE(r.specs.empty());
}

TEST(LoaderTest, MultipleDocumentsSkipEmptyOnes) {
  std::string text = DocWith("", "one") + "---\n# only a comment\n---\n" + DocWith("", "two") +
                     "---\n";
  LoadResult r = Parse(text);
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 2u);
  EXPECT_EQ(r.specs[0].spec.name, "one");
  EXPECT_EQ(r.specs[0].location, (SourceLocation{"t.yaml", 1, 1}));
  EXPECT_EQ(r.specs[1].spec.name, "two");
  EXPECT_EQ(r.specs[1].location, (SourceLocation{"t.yaml", 10, 1}));
}

TEST(LoaderTest, BadDocumentDoesNotHideGoodOnes) {
  std::string text = DocWith("", "one") + "---\n" + DocWith("  cpus: -1\n", "two");
  LoadResult r = Parse(text);
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.name, "one");
  EXPECT_EQ(r.diagnostics.ToString(),
            "t.yaml:14:9: error: spec.cpus: must be an integer between 1 and 64, got \"-1\"\n");
}

TEST(LoaderTest, DuplicateNameInOneFile) {
  std::string text = DocWith("", "web") + "---\n" + DocWith("", "web");
  LoadResult r = Parse(text);
  EXPECT_TRUE(r.specs.empty());
  EXPECT_EQ(r.diagnostics.ToString(),
            "t.yaml:8:1: error: sandbox \"web\" is defined twice (also at t.yaml:1:1)\n");
}

TEST(LoaderTest, DirectoryLoadsYamlFilesInPathOrder) {
  TempDir dir;
  dir.Write("b.yaml", DocWith("", "b"));
  dir.Write("a.yml", DocWith("", "a"));
  dir.Write("sub/c.yaml", DocWith("", "c"));
  dir.Write("notes.txt", "not a spec");
  dir.Write("z.yaml.bak", "garbage: [");
  LoadResult r = LoadSpecPaths({dir.path()});
  ASSERT_EQ(r.diagnostics.ToString(), "");
  std::vector<std::string> names;
  for (const auto& d : r.specs) names.push_back(d.spec.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(r.specs[2].location.file, (dir.path() / "sub/c.yaml").string());
}

TEST(LoaderTest, DuplicateNameAcrossFilesNamesBothPlaces) {
  TempDir dir;
  auto a = dir.Write("a.yaml", "# first\n---\n" + DocWith("", "web"));
  auto b = dir.Write("b.yaml", DocWith("", "web"));
  dir.Write("c.yaml", DocWith("", "other"));
  LoadResult r = LoadSpecPaths({dir.path()});
  EXPECT_EQ(r.diagnostics.ToString(), b.string() + ":1:1: error: sandbox \"web\" is defined twice "
                                                   "(also at " + a.string() + ":3:1)\n");
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.name, "other");
}

TEST(LoaderTest, MissingPathIsADiagnostic) {
  TempDir dir;
  auto missing = dir.path() / "nope.yaml";
  LoadResult r = LoadSpecPaths({missing});
  EXPECT_EQ(r.diagnostics.ToString(), missing.string() + ": error: no such file or directory\n");
  EXPECT_TRUE(r.specs.empty());
}

TEST(LoaderTest, RelativeSourceResolvesAgainstSpecDirectory) {
  TempDir dir;
  dir.Write("conf/app.conf", "port=1\n");
  auto spec = dir.Write("conf/sandbox.yaml",
                        DocWith("  files:\n    - {path: /etc/app.conf, source: app.conf}\n"));
  LoadResult r = LoadSpecPaths({spec});
  ASSERT_EQ(r.diagnostics.ToString(), "");
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].spec.files[0].source, (dir.path() / "conf/app.conf").string());
  // The same text parsed as if it lived elsewhere does not find the file.
  LoadResult elsewhere = ParseSpecText(
      DocWith("  files:\n    - {path: /etc/app.conf, source: app.conf}\n"), "/nonexistent/s.yaml");
  EXPECT_EQ(elsewhere.diagnostics.ToString(),
            "/nonexistent/s.yaml:8:37: error: spec.files[0].source: \"app.conf\" does not exist "
            "(looked for /nonexistent/app.conf)\n");
}

TEST(LoaderTest, AliasesAndAnchorsAreResolved) {
  LoadResult r = Parse(DocWith("  env: &e {A: \"1\"}\n  readiness:\n    command: &c [true]\n"));
  ASSERT_EQ(r.diagnostics.ToString(), "");
  EXPECT_EQ(r.specs[0].spec.env.at("A"), "1");
}

}  // namespace
}  // namespace banger
