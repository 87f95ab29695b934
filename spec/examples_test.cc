// Every example in examples/sandboxes/ must load cleanly, so docs never rot.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "spec/loader.h"

namespace banger {
namespace {

const std::filesystem::path kExamples =
    std::filesystem::path(BANGER_SOURCE_DIR) / "examples" / "sandboxes";

std::map<std::string, SandboxSpec> LoadExamples() {
  LoadResult r = LoadSpecPaths({kExamples});
  EXPECT_EQ(r.diagnostics.ToString(), "");
  EXPECT_FALSE(r.diagnostics.HasErrors());
  std::map<std::string, SandboxSpec> out;
  for (const auto& d : r.specs) out[d.spec.name] = d.spec;
  return out;
}

TEST(ExamplesTest, EveryExampleLoadsWithoutDiagnostics) {
  auto specs = LoadExamples();
  EXPECT_GE(specs.size(), 2u);
}

TEST(ExamplesTest, QuickIsTinyAndOffline) {
  auto specs = LoadExamples();
  ASSERT_TRUE(specs.count("quick"));
  const SandboxSpec& s = specs.at("quick");
  EXPECT_EQ(s.image, "busybox");
  EXPECT_EQ(s.cpus, 1u);
  EXPECT_EQ(s.memory_bytes, 256ull << 20);
  EXPECT_EQ(s.network.mode, NetworkMode::kNone);
  EXPECT_EQ(s.readiness.command, (std::vector<std::string>{"cat", "/etc/hostname"}));
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.files[0].path, "/etc/motd");
}

TEST(ExamplesTest, DebianPublishesSsh) {
  auto specs = LoadExamples();
  ASSERT_TRUE(specs.count("debian-ssh"));
  const SandboxSpec& s = specs.at("debian-ssh");
  EXPECT_EQ(s.image, "debian-bookworm");
  EXPECT_EQ(s.cpus, 2u);
  EXPECT_EQ(s.memory_bytes, 1ull << 30);
  EXPECT_EQ(s.disk_bytes, 4ull << 30);
  EXPECT_EQ(s.network.mode, NetworkMode::kBridged);
  ASSERT_EQ(s.network.ports.size(), 1u);
  EXPECT_EQ(s.network.ports[0], (PortMapping{2222, 22, Protocol::kTcp, "127.0.0.1"}));
  EXPECT_EQ(s.ssh_authorized_keys.size(), 1u);
  EXPECT_FALSE(s.env.empty());
  EXPECT_FALSE(s.files.empty());
  EXPECT_EQ(s.provision, (std::vector<std::string>{"echo provisioned > /var/tmp/provisioned"}));
  EXPECT_EQ(s.readiness.command,
            (std::vector<std::string>{"sh", "-c", "test -e /run/sshd.pid || pgrep sshd"}));
  EXPECT_EQ(s.readiness.timeout, std::chrono::seconds(120));
}

}  // namespace
}  // namespace banger
