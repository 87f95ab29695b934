#include "images/ext4_builder.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "images/images_test_util.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::DebugfsCat;
using testing::DebugfsStat;
using testing::E2fsck;
using testing::MakeFile;
using testing::TempDir;

class Ext4BuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "copying owners into the disk needs root";
    tree_ = tmp_.path() / "tree";
    ASSERT_TRUE(MakeDirs(tree_, 0755).ok());
  }
  TempDir tmp_;
  fs::path tree_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
};

TEST_F(Ext4BuilderTest, DiskKeepsOwnersModesAndSymlinksOfTheTree) {
  MakeFile(tree_ / "usr/bin/suid-tool", "#!/bin/sh\necho hi\n", 04755, 0, 0);
  MakeFile(tree_ / "home/dev/.profile", "export A=1\n", 0600, 1000, 1000);
  MakeFile(tree_ / "etc/shadow", "root:*:1::::::\n", 0600, 0, 42);
  ASSERT_EQ(::chown((tree_ / "home/dev").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod((tree_ / "home/dev").c_str(), 0750), 0);
  ASSERT_EQ(::symlink("/usr/bin/suid-tool", (tree_ / "usr/bin/alias").c_str()), 0);
  fs::path disk = tmp_.path() / "rootfs.ext4";

  ASSERT_TRUE(BuildExt4(*runner_, tree_, disk, 0).ok());

  std::string fsck;
  EXPECT_EQ(E2fsck(disk, &fsck), 0) << fsck;
  auto suid = DebugfsStat(disk, "/usr/bin/suid-tool");
  ASSERT_TRUE(suid);
  EXPECT_EQ(suid->type, "regular");
  EXPECT_EQ(suid->mode, 04755u);
  EXPECT_EQ(suid->uid, 0u);
  auto profile = DebugfsStat(disk, "/home/dev/.profile");
  ASSERT_TRUE(profile);
  EXPECT_EQ(profile->mode, 0600u);
  EXPECT_EQ(profile->uid, 1000u);
  EXPECT_EQ(profile->gid, 1000u);
  auto home = DebugfsStat(disk, "/home/dev");
  ASSERT_TRUE(home);
  EXPECT_EQ(home->type, "directory");
  EXPECT_EQ(home->mode, 0750u);
  EXPECT_EQ(home->uid, 1000u);
  auto shadow = DebugfsStat(disk, "/etc/shadow");
  ASSERT_TRUE(shadow);
  EXPECT_EQ(shadow->gid, 42u);
  auto link = DebugfsStat(disk, "/usr/bin/alias");
  ASSERT_TRUE(link);
  EXPECT_EQ(link->type, "symlink");
  EXPECT_EQ(link->link_target, "/usr/bin/suid-tool");
  auto root = DebugfsStat(disk, "/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(DebugfsCat(disk, "/home/dev/.profile"), "export A=1\n");
}

TEST_F(Ext4BuilderTest, DefaultSizeIsOneGiBSparseFileLabelledRootfs) {
  MakeFile(tree_ / "hello", "hello\n", 0644);
  fs::path disk = tmp_.path() / "rootfs.ext4";
  ASSERT_TRUE(BuildExt4(*runner_, tree_, disk, 0).ok());
  struct stat st;
  ASSERT_EQ(::stat(disk.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 1ull << 30);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 200ull << 20) << "disk is not sparse";
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto out = runner_->Run(CommandSpec{.argv = {"e2label", disk.string()}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(Trim(out->stdout_data), "rootfs");
}

TEST_F(Ext4BuilderTest, ExplicitSizeIsUsed) {
  MakeFile(tree_ / "hello", "hello\n", 0644);
  fs::path disk = tmp_.path() / "rootfs.ext4";
  ASSERT_TRUE(BuildExt4(*runner_, tree_, disk, 64ull << 20).ok());
  EXPECT_EQ(fs::file_size(disk), 64ull << 20);
  EXPECT_EQ(E2fsck(disk), 0);
}

TEST_F(Ext4BuilderTest, SizeSmallerThanTreeIsRefusedAndLeavesNoFile) {
  MakeFile(tree_ / "big", std::string(12 << 20, 'x'), 0644);
  fs::path disk = tmp_.path() / "rootfs.ext4";
  Status st = BuildExt4(*runner_, tree_, disk, 10ull << 20);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("smaller"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(disk));
}

TEST_F(Ext4BuilderTest, ExistingOutputIsNeverOverwritten) {
  fs::path disk = tmp_.path() / "rootfs.ext4";
  ASSERT_TRUE(WriteFileAtomic(disk, "precious", 0600).ok());
  Status st = BuildExt4(*runner_, tree_, disk, 0);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(*ReadFile(disk), "precious");
}

TEST_F(Ext4BuilderTest, MkfsFailureRemovesThePartialDisk) {
  testing::FailingRunner failing("mkfs.ext4");
  fs::path disk = tmp_.path() / "rootfs.ext4";
  Status st = BuildExt4(failing, tree_, disk, 0);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(disk.string()), std::string::npos) << st.message();
  EXPECT_EQ(failing.failures, 1);
  EXPECT_FALSE(fs::exists(disk));
}

TEST(DefaultDiskSizeTest, AtLeastOneGiBAndAQuarterAboveLargeTrees) {
  EXPECT_EQ(DefaultDiskSize(0), 1ull << 30);
  EXPECT_EQ(DefaultDiskSize(100ull << 20), 1ull << 30);
  EXPECT_EQ(DefaultDiskSize(4ull << 30), 5ull << 30);
  uint64_t odd = DefaultDiskSize((1ull << 30) + 12345);
  EXPECT_EQ(odd % (1 << 20), 0u);
  EXPECT_GE(odd, ((1ull << 30) + 12345) * 5 / 4);
}

TEST(MeasureTreeTest, CountsBlocksAndEntriesWithoutFollowingSymlinks) {
  TempDir tmp;
  MakeFile(tmp.path() / "a", "x", 0644);
  MakeFile(tmp.path() / "d/b", std::string(5000, 'y'), 0644);
  ASSERT_EQ(::symlink("/", (tmp.path() / "root-link").c_str()), 0);
  auto usage = MeasureTree(tmp.path());
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->entries, 5u);  // root, a, d, d/b, root-link
  // root + a (1 block) + d + b (2 blocks) + link
  EXPECT_EQ(usage->bytes, 6u * 4096);
}

}  // namespace
}  // namespace banger::images
