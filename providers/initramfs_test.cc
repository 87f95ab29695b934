#include "providers/initramfs.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "agent/config.h"
#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    auto d = MakeTempDir("initramfs-test");
    EXPECT_TRUE(d.ok());
    path_ = *d;
  }
  ~TempDir() { (void)RemoveAll(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void Write(const fs::path& p, std::string_view content) {
  ASSERT_TRUE(MakeDirs(p.parent_path()).ok());
  ASSERT_TRUE(WriteFileAtomic(p, content).ok());
}

std::vector<std::string> Names(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::string base = p.substr(p.rfind('/') + 1);
    out.push_back(base.substr(0, base.find(".ko")));
  }
  return out;
}

// A miniature modules.dep in the shape of Debian's, with a softdep alias.
void WriteSyntheticModules(const fs::path& dir) {
  Write(dir / "modules.dep",
        "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\n"
        "kernel/fs/mbcache.ko:\n"
        "kernel/lib/crc16.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko "
        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n");
  Write(dir / "modules.softdep", "# comment\nsoftdep ext4 pre: crypto-crc32c\n");
  Write(dir / "modules.alias", "alias crypto-crc32c crc32c_generic\nalias pci:v*d* virtio_pci\n");
  Write(dir / "modules.builtin", "kernel/drivers/virtio/virtio_mmio.ko\n");
}

TEST(InitramfsTest, ResolvesDependenciesFirstFromSyntheticModulesDep) {
  TempDir t;
  WriteSyntheticModules(t.path());
  auto order = ResolveModuleLoadOrder(t.path(), {"virtio_blk", "virtio_net", "virtio_mmio", "ext4"});
  ASSERT_TRUE(order.ok()) << order.error().ToString();
  EXPECT_EQ(Names(*order),
            (std::vector<std::string>{"virtio_ring", "virtio", "virtio_blk", "failover", "net_failover",
                                      "virtio_net", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}));
  EXPECT_EQ(order->back(), "kernel/fs/ext4/ext4.ko.xz");  // built-in virtio_mmio is skipped
}

TEST(InitramfsTest, UnknownModuleIsNotFoundNamingIt) {
  TempDir t;
  WriteSyntheticModules(t.path());
  auto order = ResolveModuleLoadOrder(t.path(), {"virtio_blk", "nosuchmod"});
  ASSERT_FALSE(order.ok());
  EXPECT_EQ(order.error().code(), StatusCode::kNotFound);
  EXPECT_NE(order.error().message().find("nosuchmod"), std::string::npos);
}

TEST(InitramfsTest, MissingModulesDepNamesTheFile) {
  TempDir t;
  auto order = ResolveModuleLoadOrder(t.path(), {"ext4"});
  ASSERT_FALSE(order.ok());
  EXPECT_NE(order.error().message().find("modules.dep"), std::string::npos);
}

fs::path HostModulesDir() {
  // The Debian kernel the VM tests boot (HOST-NOTES.md), not necessarily the running one.
  for (const auto& e : fs::directory_iterator("/lib/modules")) {
    if (StartsWith(e.path().filename().string(), "6.1.") && fs::exists(e.path() / "modules.dep")) {
      return e.path();
    }
  }
  return {};
}

TEST(InitramfsTest, HostModuleOrderMatchesHostNotesForVirtioSubset) {
  fs::path dir = HostModulesDir();
  if (dir.empty()) GTEST_SKIP() << "no Debian 6.1 kernel modules under /lib/modules";
  auto order = ResolveModuleLoadOrder(dir, DefaultGuestModules());
  ASSERT_TRUE(order.ok()) << order.error().ToString();
  std::vector<std::string> names = Names(*order);
  // HOST-NOTES.md's measured order for the virtio modules (legacy/modern are
  // independent of each other; modprobe loads modern first, as we do).
  std::vector<std::string> virtio;
  for (const auto& n : names) {
    if (n.find("virtio") != std::string::npos || n.find("failover") != std::string::npos) virtio.push_back(n);
  }
  EXPECT_EQ(virtio, (std::vector<std::string>{"virtio_ring", "virtio", "virtio_pci_modern_dev",
                                              "virtio_pci_legacy_dev", "virtio_pci", "virtio_mmio",
                                              "virtio_blk", "failover", "net_failover", "virtio_net",
                                              "virtio_console"}));
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  for (const char* m : {"crc16", "mbcache", "jbd2", "crc32c_generic"}) {
    EXPECT_LT(pos(m), pos("ext4")) << m;
  }
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size()) << "duplicates";
}

TEST(InitramfsTest, HostModuleOrderAgreesWithModprobe) {
  fs::path dir = HostModulesDir();
  if (dir.empty()) GTEST_SKIP() << "no Debian 6.1 kernel modules under /lib/modules";
  if (!fs::exists("/usr/sbin/modprobe") && !fs::exists("/sbin/modprobe")) GTEST_SKIP() << "no modprobe";
  auto runner = MakePosixCommandRunner();
  std::vector<std::string> expected;
  for (const auto& m : DefaultGuestModules()) {
    auto out = RunChecked(*runner, {.argv = {"modprobe", "-S", dir.filename().string(), "--show-depends", m}});
    ASSERT_TRUE(out.ok()) << out.error().ToString();
    for (const auto& line : Split(out->stdout_data, '\n')) {
      std::vector<std::string> words = Split(std::string(Trim(line)), ' ');
      if (words.size() < 2 || words[0] != "insmod") continue;
      std::string rel = words[1].substr(dir.string().size() + 1);
      if (std::find(expected.begin(), expected.end(), rel) == expected.end()) expected.push_back(rel);
    }
  }
  auto order = ResolveModuleLoadOrder(dir, DefaultGuestModules());
  ASSERT_TRUE(order.ok()) << order.error().ToString();
  EXPECT_EQ(*order, expected);
}

TEST(InitramfsTest, BuildsDeterministicArchiveWithAgentModulesAndOrder) {
  TempDir t;
  fs::path mods = t.path() / "modules";
  WriteSyntheticModules(mods);
  for (const char* m : {"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko",
                        "kernel/crypto/crc32c_generic.ko"}) {
    Write(mods / m, std::string("module ") + m);
  }
  // ext4 is xz-compressed in the synthetic tree: compress with xz through the runner.
  Write(mods / "kernel/fs/ext4/ext4.ko", "ext4 module body");
  auto runner = MakePosixCommandRunner();
  ASSERT_TRUE(RunChecked(*runner, {.argv = {"xz", "-f", (mods / "kernel/fs/ext4/ext4.ko").string()}}).ok());
  Write(t.path() / "agent", "#!agent");
  fs::path a = t.path() / "a.img", b = t.path() / "b.img";
  ASSERT_TRUE(BuildInitramfs(mods, t.path() / "agent", a, {"ext4"}).ok());
  ASSERT_TRUE(BuildInitramfs(mods, t.path() / "agent", b, {"ext4"}).ok());
  EXPECT_EQ(*ReadFile(a), *ReadFile(b)) << "two builds from the same inputs differ";
  auto entries = ListCpio(a);
  ASSERT_TRUE(entries.ok()) << entries.error().ToString();
  auto has = [&](const std::string& e) {
    return std::find(entries->begin(), entries->end(), e) != entries->end();
  };
  EXPECT_TRUE(has("init 100755"));
  EXPECT_TRUE(has("dev/console 20600"));
  EXPECT_TRUE(has("newroot 40755"));
  EXPECT_TRUE(has("lib/banger/modules/kernel/fs/ext4/ext4.ko 100644")) << "decompressed name";
  EXPECT_TRUE(has("lib/banger/modules.order 100644"));
}

TEST(InitramfsTest, SandboxInitrdAppendsConfigCpioTheAgentCanParse) {
  TempDir t;
  std::string base = "\x1f\x8b pretend-gzip-initramfs";  // 25 bytes: needs padding
  Write(t.path() / "kernel.img", base);
  GuestConfig g;
  g.hostname = "web-1";
  g.network = GuestNetwork{"eth0", "10.0.0.2", 24, "10.0.0.1", {"10.0.0.1"}};
  g.files.push_back({"/etc/motd", std::string("hi\0there", 8), 0600});
  g.authorized_keys = {"ssh-ed25519 AAAA user@host"};
  g.env = {{"A", "1"}};
  g.entrypoint = {"sleep", "1000"};
  g.workdir = "/srv";
  g.init = GuestInitMode::kAgent;
  g.hosts = {{"10.99.0.7", {"peer", "peer.banger"}}};
  g.volumes = {{"bvol0", "/srv/data"}, {"bvol1", "/root"}};
  g.root_serial = kRootDiskSerial;
  fs::path out = t.path() / "initrd.img";
  ASSERT_TRUE(WriteSandboxInitrd(t.path() / "kernel.img", g, out).ok());
  std::string bytes = *ReadFile(out);
  ASSERT_GE(bytes.size(), 28u);
  EXPECT_EQ(bytes.substr(0, base.size()), base);
  EXPECT_EQ(bytes.substr(base.size(), 3), std::string(3, '\0'));
  EXPECT_EQ(bytes.substr(28, 6), "070701") << "newc magic right after the padding";
  EXPECT_EQ(fs::status(out).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  Write(t.path() / "tail.cpio", bytes.substr(28));
  auto entries = ListCpio(t.path() / "tail.cpio");
  ASSERT_TRUE(entries.ok()) << entries.error().ToString();
  EXPECT_EQ(*entries, (std::vector<std::string>{"banger 40700", "banger/config.json 100600"}));

  std::string err;
  auto parsed = agent::ParseAgentConfig(GuestConfigToJson(g), &err);
  ASSERT_TRUE(parsed) << err;
  EXPECT_EQ(parsed->hostname, "web-1");
  EXPECT_EQ(parsed->network->address, "10.0.0.2");
  EXPECT_EQ(parsed->network->gateway, "10.0.0.1");
  EXPECT_EQ(parsed->files[0].content, std::string("hi\0there", 8));
  EXPECT_EQ(parsed->files[0].mode, 0600u);
  EXPECT_EQ(parsed->authorized_keys, g.authorized_keys);
  EXPECT_EQ(parsed->env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(parsed->entrypoint, g.entrypoint);
  EXPECT_EQ(parsed->workdir, "/srv");
  EXPECT_EQ(parsed->init, "agent");
  EXPECT_EQ(parsed->hosts, g.hosts);
  EXPECT_EQ(parsed->root_serial, "banger-root");
  ASSERT_EQ(parsed->volumes.size(), 2u);
  EXPECT_EQ(parsed->volumes[0].serial, "bvol0");
  EXPECT_EQ(parsed->volumes[0].mount_path, "/srv/data");
  EXPECT_EQ(parsed->volumes[1].mount_path, "/root");
  EXPECT_FALSE(parsed->hold);
  EXPECT_EQ(GuestConfigToJson(g).find("\"hold\""), std::string::npos) << "hold is written only when set";
  g.hold_for_identity = true;
  parsed = agent::ParseAgentConfig(GuestConfigToJson(g), &err);
  ASSERT_TRUE(parsed) << err;
  EXPECT_TRUE(parsed->hold);
}

TEST(GuestConfigTest, Base64MatchesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace banger
