#include "host/templates.h"

#include <gtest/gtest.h>

#include "base/file_lock.h"
#include "base/files.h"
#include "providers/qemu_hypervisor.h"
#include "tests/support/qcow2.h"
#include "tests/support/test_util.h"

namespace banger::host {
namespace {

namespace fs = std::filesystem;
using testing::FakeClock;
using testing::Qcow2Header;
using testing::TempDir;

TemplateIdentity Identity(uint64_t memory = 256u << 20) {
  TemplateIdentity id;
  id.provider = "qemu";
  id.image_digest = "sha256:aa";
  id.image_disk = "/x/rootfs.ext4 created 1";
  id.kernel_sha256 = "bb";
  id.initramfs = "banger-initramfs-cc.img";
  id.memory_bytes = memory;
  id.machine = "auto/auto";
  id.network = "none";
  id.devices = "root";
  id.vmm = "dd";
  return id;
}

// Every part of the boot identity leads to another template: a state saved
// under any other value must never be restored.
TEST(TemplateIdentityTest, EveryFieldChangesTheHash) {
  const std::string base = Identity().Hash();
  std::vector<std::pair<const char*, void (*)(TemplateIdentity&)>> changes = {
      {"provider", [](TemplateIdentity& i) { i.provider = "firecracker"; }},
      {"image digest", [](TemplateIdentity& i) { i.image_digest = "sha256:ab"; }},
      {"image disk", [](TemplateIdentity& i) { i.image_disk += "2"; }},
      {"kernel", [](TemplateIdentity& i) { i.kernel_sha256 = "bc"; }},
      {"initramfs", [](TemplateIdentity& i) { i.initramfs = "banger-initramfs-cd.img"; }},
      {"cpus", [](TemplateIdentity& i) { i.cpus = 2; }},
      {"memory", [](TemplateIdentity& i) { i.memory_bytes *= 2; }},
      {"disk", [](TemplateIdentity& i) { i.disk_bytes = 1u << 30; }},
      {"machine", [](TemplateIdentity& i) { i.machine = "tcg/microvm"; }},
      {"network", [](TemplateIdentity& i) { i.network = "user"; }},
      {"devices", [](TemplateIdentity& i) { i.devices = "root+vol"; }},
      {"vmm (an upgraded QEMU)", [](TemplateIdentity& i) { i.vmm = "de"; }},
  };
  for (const auto& [what, change] : changes) {
    TemplateIdentity id = Identity();
    change(id);
    EXPECT_NE(id.Hash(), base) << what;
    EXPECT_EQ(Identity().Hash(), base) << "the hash is stable";
  }
}

class TemplatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = LayoutAt(dir_.path() / "state");
    ASSERT_TRUE(MakeDirs(layout_.sandboxes_dir, 0700).ok());
    ASSERT_TRUE(MakeDirs(layout_.run_dir, 0700).ok());
  }

  // A builder that writes a state file and a disk layer, counting calls.
  TemplateBuilder Builder(int* calls) {
    return [calls](const fs::path& staging) -> Result<VmTemplateFiles> {
      ++*calls;
      VmTemplateFiles f;
      f.state_file = staging / "state.bin";
      f.disk_layer = staging / "disk.qcow2";
      BANGER_RETURN_IF_ERROR(WriteFileAtomic(f.state_file, "state", 0600));
      BANGER_RETURN_IF_ERROR(WriteFileAtomic(f.disk_layer, Qcow2Header("/base.ext4"), 0600));
      return f;
    };
  }

  std::vector<std::string> Entries(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir dir_;
  StateLayout layout_;
  FakeClock clock_;
};

TEST(Qcow2BackingFileTest, ReadsTheNameFromTheHeader) {
  TempDir dir;
  fs::path p = dir.path() / "disk.qcow2";
  ASSERT_TRUE(WriteFileAtomic(p, Qcow2Header("/var/lib/banger/images/x/rootfs.ext4"), 0600).ok());
  auto b = Qcow2BackingFile(p);
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  EXPECT_EQ(*b, "/var/lib/banger/images/x/rootfs.ext4");

  ASSERT_TRUE(WriteFileAtomic(p, Qcow2Header(""), 0600).ok());
  b = Qcow2BackingFile(p);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, "");
}

TEST(Qcow2BackingFileTest, RefusesWhatIsNotAQcow2Header) {
  TempDir dir;
  fs::path p = dir.path() / "disk.qcow2";
  ASSERT_TRUE(WriteFileAtomic(p, std::string(512, 'x'), 0600).ok());
  auto b = Qcow2BackingFile(p);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), StatusCode::kDataLoss);
  EXPECT_NE(b.error().message().find("not a qcow2 image"), std::string::npos);
  // A name that runs past the end of the file.
  std::string h = Qcow2Header("/abc");
  h[19] = 100;
  ASSERT_TRUE(WriteFileAtomic(p, h.substr(0, 0x70), 0600).ok());
  EXPECT_FALSE(Qcow2BackingFile(p).ok());
}

TEST_F(TemplatesTest, BuildsOncePublishesAndFindsItAgain) {
  int calls = 0;
  auto t = EnsureTemplate(layout_, clock_, Identity(), Builder(&calls));
  ASSERT_TRUE(t.ok()) << t.error().ToString();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(t->hash, Identity().Hash());
  EXPECT_TRUE(fs::exists(t->files.state_file));
  EXPECT_EQ(t->files.state_file.parent_path(), TemplatesDir(layout_) / t->hash);
  auto again = EnsureTemplate(layout_, clock_, Identity(), Builder(&calls));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(calls, 1) << "a published template is never rebuilt";
  EXPECT_EQ(Entries(TemplatesDir(layout_)), std::vector<std::string>{t->hash});
  // Another boot identity is another template.
  auto other = EnsureTemplate(layout_, clock_, Identity(512u << 20), Builder(&calls));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(calls, 2);
  EXPECT_NE(other->hash, t->hash);
}

TEST_F(TemplatesTest, AFailedBuildPublishesNothingAndLeavesNoStaging) {
  auto t = EnsureTemplate(layout_, clock_, Identity(), [](const fs::path& staging) -> Result<VmTemplateFiles> {
    (void)WriteFileAtomic(staging / "state.bin", "half", 0600);
    return Internal("QEMU died while saving");
  });
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message().find("QEMU died while saving"), std::string::npos);
  EXPECT_TRUE(Entries(TemplatesDir(layout_)).empty());
  auto found = FindTemplate(layout_, Identity().Hash());
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST_F(TemplatesTest, KnowsWhichSandboxIsLayeredOnItAndKeepsItWhileUsed) {
  int calls = 0;
  auto t = EnsureTemplate(layout_, clock_, Identity(), Builder(&calls));
  ASSERT_TRUE(t.ok());
  fs::path sb = layout_.sandboxes_dir / "sb1";
  ASSERT_TRUE(MakeDirs(sb, 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(sb / "disk.qcow2", Qcow2Header(t->files.disk_layer.string()), 0600).ok());
  fs::path cold = layout_.sandboxes_dir / "sb2";  // booted from its image
  ASSERT_TRUE(MakeDirs(cold, 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(cold / "disk.qcow2", Qcow2Header("/images/x/rootfs.ext4"), 0600).ok());

  EXPECT_EQ(TemplateOfRuntimeDir(sb), t->hash);
  EXPECT_EQ(TemplateOfRuntimeDir(cold), "");
  EXPECT_EQ(TemplateOfRuntimeDir(layout_.sandboxes_dir / "missing"), "");
  auto found = FindTemplate(layout_, t->hash);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->used_by, std::vector<std::string>{"sb1"});

  Status s = RemoveTemplate(layout_, **found);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("sb1"), std::string::npos) << s.message();
  ASSERT_TRUE(RemoveAll(sb).ok());
  EXPECT_TRUE(RemoveTemplate(layout_, **found).ok());
  EXPECT_TRUE(Entries(TemplatesDir(layout_)).empty());
}

TEST_F(TemplatesTest, CleansUpAbandonedBuildsButNotOneInProgress) {
  const std::string hash = Identity().Hash();
  const std::string busy = Identity(512u << 20).Hash();
  ASSERT_TRUE(MakeDirs(TemplatesDir(layout_), 0700).ok());
  // Left by a crashed build of `hash`: its build VM's runtime dir and a
  // staging dir; an interrupted removal; and a build of `busy` in progress.
  for (const fs::path& p : {layout_.sandboxes_dir / ("tpl-" + ShortHash(hash)),
                            TemplatesDir(layout_) / (".staging-" + ShortHash(hash) + "-4242"),
                            TemplatesDir(layout_) / (".removing-" + hash),
                            layout_.sandboxes_dir / ("tpl-" + ShortHash(busy)),
                            TemplatesDir(layout_) / (".staging-" + ShortHash(busy) + "-77"),
                            layout_.sandboxes_dir / "a-sandbox"}) {
    ASSERT_TRUE(MakeDirs(p, 0700).ok());
    ASSERT_TRUE(WriteFileAtomic(p / "f", "x", 0600).ok());
  }
  ASSERT_TRUE(MakeDirs(layout_.run_dir / "locks", 0700).ok());
  auto held = FileLock::TryAcquire(layout_.run_dir / "locks" / ("template-" + ShortHash(busy) + ".lock"), "build");
  ASSERT_TRUE(held.ok());

  std::vector<fs::path> stopped;
  Status s = CleanUpAbandonedTemplateBuilds(layout_, [&](const fs::path& dir) {
    stopped.push_back(dir);
    return OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(stopped, std::vector<fs::path>{layout_.sandboxes_dir / ("tpl-" + ShortHash(hash))});
  EXPECT_EQ(Entries(layout_.sandboxes_dir), (std::vector<std::string>{"a-sandbox", "tpl-" + ShortHash(busy)}));
  EXPECT_EQ(Entries(TemplatesDir(layout_)), std::vector<std::string>{".staging-" + ShortHash(busy) + "-77"});

  // A build VM that cannot be stopped keeps its directory (its disk is in use).
  held = Internal("released");
  s = CleanUpAbandonedTemplateBuilds(layout_, [&](const fs::path&) { return Internal("kill failed"); });
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("kill failed"), std::string::npos);
  EXPECT_EQ(Entries(layout_.sandboxes_dir), (std::vector<std::string>{"a-sandbox", "tpl-" + ShortHash(busy)}));
  EXPECT_TRUE(Entries(TemplatesDir(layout_)).empty()) << "the staging dir is removed once its lock is free";
}

}  // namespace
}  // namespace banger::host
