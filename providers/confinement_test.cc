#include "providers/confinement.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/files.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

TEST(ConfineIdsTest, SlotsAreAboveTheSharedGroup) {
  ConfineIds ids;
  EXPECT_EQ(ids.shared_gid(), 1048576u);
  EXPECT_EQ(ids.IdOfSlot(0), 1048577u);
  EXPECT_EQ(ids.IdOfSlot(65535), 1048576u + 65536u);
  EXPECT_FALSE(ids.Owns(ids.shared_gid())) << "the shared group is nobody's uid";
  EXPECT_TRUE(ids.Owns(ids.IdOfSlot(0)));
  EXPECT_TRUE(ids.Owns(ids.IdOfSlot(65535)));
  EXPECT_FALSE(ids.Owns(ids.IdOfSlot(65536)));
  EXPECT_FALSE(ids.Owns(0));
  EXPECT_FALSE(ids.Owns(1000));
}

TEST(ConfineIdsTest, LowestFreeIdFillsGapsAndSaysWhenFull) {
  ConfineIds ids{100, 3};
  EXPECT_EQ(*LowestFreeId(ids, {}), 101u);
  EXPECT_EQ(*LowestFreeId(ids, {101, 103}), 102u);
  EXPECT_EQ(*LowestFreeId(ids, {101, 102}), 103u);
  auto full = LowestFreeId(ids, {101, 102, 103});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.error().message().find("101-103"), std::string::npos) << full.error().message();
}

class ConfineFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
    auto d = MakeTempDir("confine-test");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
    ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);  // searchable, as a state dir's parent must be
  }
  void TearDown() override {
    if (!dir_.empty()) (void)RemoveAll(dir_);
  }
  static struct stat Stat(const fs::path& p) {
    struct stat st{};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st;
  }
  fs::path dir_;
};

TEST_F(ConfineFsTest, PickSandboxIdKeepsItsOwnAndSkipsOthers) {
  ConfineIds ids{2000000, 10};
  fs::path sandboxes = dir_ / "sandboxes";
  ASSERT_TRUE(MakeDirs(sandboxes / "a", 0700).ok());
  ASSERT_TRUE(MakeDirs(sandboxes / "b", 0700).ok());
  ASSERT_EQ(::chown((sandboxes / "a").c_str(), ids.IdOfSlot(0), ids.IdOfSlot(0)), 0);
  ASSERT_EQ(::chown((sandboxes / "b").c_str(), ids.IdOfSlot(2), ids.IdOfSlot(2)), 0);
  EXPECT_EQ(*PickSandboxId(ids, sandboxes / "a"), ids.IdOfSlot(0)) << "a restart keeps the identity";
  EXPECT_EQ(*PickSandboxId(ids, sandboxes / "c"), ids.IdOfSlot(1)) << "lowest unused";
  ASSERT_TRUE(MakeDirs(sandboxes / "c", 0700).ok());  // root-owned: a fresh boot before it is owned
  EXPECT_EQ(*PickSandboxId(ids, sandboxes / "c"), ids.IdOfSlot(1));
}

TEST_F(ConfineFsTest, OwnRuntimeDirChownsTheDirAndItsFiles) {
  fs::path run = dir_ / "run";
  ASSERT_TRUE(MakeDirs(run, 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(run / "disk.qcow2", "x", 0644).ok());
  ASSERT_TRUE(OwnRuntimeDir(run, 2000001, 2000001).ok());
  for (const fs::path& p : {run, run / "disk.qcow2"}) {
    struct stat st = Stat(p);
    EXPECT_EQ(st.st_uid, 2000001u) << p;
    EXPECT_EQ(st.st_gid, 2000001u) << p;
  }
  EXPECT_EQ(Stat(run).st_mode & 07777, 0700u);
  EXPECT_EQ(Stat(run / "disk.qcow2").st_mode & 07777, 0600u);
}

TEST_F(ConfineFsTest, GrantGroupAccessOpensExactlyThePathBelowTop) {
  fs::path top = dir_ / "state";
  fs::path file = top / "images" / "abc" / "rootfs.ext4";
  ASSERT_TRUE(MakeDirs(file.parent_path(), 0700).ok());
  ASSERT_EQ(::chmod(top.c_str(), 0700), 0);
  ASSERT_EQ(::chmod((top / "images").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFileAtomic(file, "disk", 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(top / "images" / "abc" / "config.json", "{}", 0600).ok());
  const uid_t uid = 2000005;
  const gid_t shared = 2000000;
  EXPECT_NE(AccessProblem(file, uid, {uid, shared}, false), "");
  ASSERT_TRUE(GrantGroupAccess(file, top, shared, true).ok());
  EXPECT_EQ(AccessProblem(file, uid, {uid, shared}, false), "");
  EXPECT_NE(AccessProblem(file, uid, {uid, shared}, true), "") << "read-only";
  EXPECT_NE(AccessProblem(file, uid, {uid}, false), "") << "only through the shared group";
  EXPECT_EQ(Stat(top).st_mode & 07777, 0710u) << "search, no listing";
  EXPECT_EQ(Stat(top / "images").st_mode & 07777, 0710u);
  EXPECT_EQ(Stat(file).st_mode & 07777, 0640u);
  EXPECT_EQ(Stat(top / "images" / "abc" / "config.json").st_mode & 07777, 0600u) << "siblings untouched";
  EXPECT_NE(AccessProblem(top / "images" / "abc" / "config.json", uid, {uid, shared}, false), "");
  // Outside top: nothing changes.
  fs::path outside = dir_ / "elsewhere";
  ASSERT_TRUE(WriteFileAtomic(outside, "x", 0600).ok());
  ASSERT_TRUE(GrantGroupAccess(outside, top, shared, true).ok());
  EXPECT_EQ(Stat(outside).st_mode & 07777, 0600u);
  ASSERT_TRUE(GrantGroupAccess(file, top, shared, true).ok()) << "idempotent";
}

TEST_F(ConfineFsTest, AccessProblemNamesTheBlockingDirectory) {
  fs::path d = dir_ / "a" / "b";
  ASSERT_TRUE(MakeDirs(d, 0700).ok());
  ASSERT_EQ(::chmod((dir_ / "a").c_str(), 0700), 0);
  ASSERT_TRUE(WriteFileAtomic(d / "f", "x", 0644).ok());
  std::string why = AccessProblem(d / "f", 2000001, {2000001}, false);
  EXPECT_NE(why.find((dir_ / "a").string() + " (mode 0700"), std::string::npos) << why;
  ASSERT_EQ(::chmod((dir_ / "a").c_str(), 0711), 0);
  ASSERT_EQ(::chmod(d.c_str(), 0711), 0);
  EXPECT_EQ(AccessProblem(d / "f", 2000001, {2000001}, false), "");
  EXPECT_NE(AccessProblem(d / "f", 2000001, {2000001}, true), "");
  ASSERT_EQ(::chown((d / "f").c_str(), 2000001, 2000001), 0);
  ASSERT_EQ(::chmod((d / "f").c_str(), 0600), 0);
  EXPECT_EQ(AccessProblem(d / "f", 2000001, {2000001}, true), "");
  EXPECT_NE(AccessProblem(d / "f", 2000002, {2000002}, false), "") << "another sandbox's uid";
}

// /proc/self/mountinfo of a hybrid host (this project's CI machines): v1
// memory and pids, cgroup2 with only hugetlb.
constexpr const char* kHybridMountinfo =
    "30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    "34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "35 30 0:31 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "37 30 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(CgroupSupportTest, PureV2WithControllers) {
  auto s = ParseCgroupSupport("29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
                              "cpuset cpu io memory hugetlb pids rdma misc\n");
  EXPECT_EQ(s.mode, CgroupMode::kV2);
  EXPECT_EQ(s.v2_root, "/sys/fs/cgroup");
  EXPECT_EQ(SandboxCgroupDirs(s, "sb1"), std::vector<fs::path>{"/sys/fs/cgroup/banger/sb1"});
  EXPECT_EQ(s.Describe(), "cgroup v2 (/sys/fs/cgroup)");
}

TEST(CgroupSupportTest, HybridHostFallsBackToV1MemoryAndPids) {
  auto s = ParseCgroupSupport(kHybridMountinfo, "hugetlb\n");
  ASSERT_EQ(s.mode, CgroupMode::kV1);
  EXPECT_EQ(SandboxCgroupDirs(s, "sb1"),
            (std::vector<fs::path>{"/sys/fs/cgroup/memory/banger/sb1", "/sys/fs/cgroup/pids/banger/sb1"}));
}

TEST(CgroupSupportTest, NoMemoryControllerAnywhereSaysWhy) {
  auto s = ParseCgroupSupport("37 30 0:33 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n", "cpu io\n");
  EXPECT_EQ(s.mode, CgroupMode::kNone);
  EXPECT_NE(s.why_not.find("lacks the memory or pids controller (has: cpu io)"), std::string::npos) << s.why_not;
  EXPECT_TRUE(SandboxCgroupDirs(s, "x").empty());
  EXPECT_EQ(ParseCgroupSupport("", "").mode, CgroupMode::kNone);
  EXPECT_TRUE(CreateSandboxCgroup(s, "x", {1, 1}).ok()) << "no cgroups: nothing to do";
  EXPECT_TRUE(RemoveSandboxCgroup(s, "x").ok());
}

TEST(CgroupSupportTest, RefusesNamesThatLeaveTheParent) {
  CgroupSupport s = ParseCgroupSupport(kHybridMountinfo, "");
  EXPECT_FALSE(CreateSandboxCgroup(s, "../x", {1, 1}).ok());
  EXPECT_FALSE(CreateSandboxCgroup(s, ".hidden", {1, 1}).ok());
}

TEST(CgroupSupportTest, MemoryLimitIsGuestPlusOverhead) {
  constexpr uint64_t kMiB = 1 << 20;
  EXPECT_GT(QemuMemoryLimit(256 * kMiB), 256 * kMiB);
  EXPECT_EQ(QemuMemoryLimit(1024 * kMiB) - QemuMemoryLimit(256 * kMiB), 768 * kMiB) << "a constant overhead";
  EXPECT_EQ(QemuMemoryLimit(0), QemuMemoryLimit(256 * kMiB)) << "0 = QEMU's default of 256 MiB";
}

// The real cgroups of this host: create, limit, join, read, remove.
TEST(CgroupHostTest, CreateJoinReadAndRemove) {
  if (::geteuid() != 0) GTEST_SKIP() << "cgroups need root";
  CgroupSupport s = DetectCgroups();
  if (s.mode == CgroupMode::kNone) GTEST_SKIP() << s.why_not;
  const std::string id = "unit-" + std::to_string(::getpid());
  ASSERT_TRUE(CreateSandboxCgroup(s, id, {64ull << 20, 16}).ok());
  auto m = ReadSandboxCgroupMemory(s, id);
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_EQ(m->max, 64ull << 20);
  ASSERT_TRUE(CreateSandboxCgroup(s, id, {128ull << 20, 16}).ok()) << "an update raises the limit";
  EXPECT_EQ(ReadSandboxCgroupMemory(s, id)->max, 128ull << 20);
  ASSERT_TRUE(CreateSandboxCgroup(s, id, {32ull << 20, 16}).ok()) << "and lowers it";
  EXPECT_EQ(ReadSandboxCgroupMemory(s, id)->max, 32ull << 20);
  ASSERT_TRUE(RemoveSandboxCgroup(s, id).ok());
  for (const auto& d : SandboxCgroupDirs(s, id)) EXPECT_FALSE(fs::exists(d)) << d;
  EXPECT_TRUE(RemoveSandboxCgroup(s, id).ok()) << "missing is fine";
}

}  // namespace
}  // namespace banger
