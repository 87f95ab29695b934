#include "images/recipes.h"

#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include <gtest/gtest.h>

#include "images/ext4_builder.h"
#include "images/images_test_util.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::DebugfsCat;
using testing::DebugfsStat;
using testing::E2fsck;
using testing::TempDir;

constexpr char kBusybox[] = "/bin/busybox";

TEST(BusyboxRecipeTest, BuildsABootableLookingDiskInUnderASecond) {
  if (!fs::exists(kBusybox)) GTEST_SKIP() << "no " << kBusybox << " (package busybox-static)";
  TempDir tmp;
  auto runner = MakePosixCommandRunner();
  fs::path tree = tmp.path() / "tree";
  ASSERT_TRUE(MakeDirs(tree, 0755).ok());
  fs::path disk = tmp.path() / "rootfs.ext4";

  auto start = std::chrono::steady_clock::now();
  Status st = BuildBusyboxTree(*runner, kBusybox, tree);
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = BuildExt4(*runner, tree, disk, 0);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(1))
      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";

  EXPECT_EQ(E2fsck(disk), 0);
  auto sh = DebugfsStat(disk, "/bin/sh");
  ASSERT_TRUE(sh) << "/bin/sh missing";
  EXPECT_EQ(sh->type, "symlink");
  EXPECT_EQ(sh->link_target, "/bin/busybox");
  auto bb = DebugfsStat(disk, "/bin/busybox");
  ASSERT_TRUE(bb);
  EXPECT_EQ(bb->type, "regular");
  EXPECT_EQ(bb->mode, 0755u);
  EXPECT_EQ(bb->size, fs::file_size(kBusybox));
  auto init = DebugfsStat(disk, "/sbin/init");
  ASSERT_TRUE(init);
  EXPECT_EQ(init->link_target, "/bin/busybox");
  EXPECT_TRUE(DebugfsStat(disk, "/usr/bin/env")) << "applet symlinks missing";
  EXPECT_NE(DebugfsCat(disk, "/etc/os-release").find("NAME=\"banger busybox\""), std::string::npos);
  EXPECT_NE(DebugfsCat(disk, "/etc/passwd").find("root:x:0:0:"), std::string::npos);
  EXPECT_NE(DebugfsCat(disk, "/etc/inittab").find("::sysinit:"), std::string::npos);
  EXPECT_EQ(DebugfsCat(disk, "/etc/hostname"), "busybox\n");
  for (const char* dir : {"/proc", "/sys", "/dev", "/run", "/root"}) {
    auto d = DebugfsStat(disk, dir);
    ASSERT_TRUE(d) << dir;
    EXPECT_EQ(d->type, "directory") << dir;
  }
  auto t = DebugfsStat(disk, "/tmp");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->mode, 01777u);
}

TEST(BusyboxRecipeTest, RefusesADynamicallyLinkedBusybox) {
  TempDir tmp;
  auto runner = MakePosixCommandRunner();
  Status st = BuildBusyboxTree(*runner, "/bin/ls", tmp.path());  // dynamically linked
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("busybox-static"), std::string::npos);
  EXPECT_TRUE(testing::ListDir(tmp.path()).empty());
}

TEST(AptSourcesTest, ReadsOneLineAndDeb822Sources) {
  TempDir tmp;
  ASSERT_TRUE(MakeDirs(tmp.path() / "sources.list.d").ok());
  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "sources.list",
                              "# comment\n"
                              "deb-src http://src.example/debian bookworm main\n"
                              "deb [arch=amd64 signed-by=/k/one.gpg] http://one.example/debian "
                              "bullseye main contrib\n")
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "sources.list.d/debian.sources",
                              "Types: deb deb-src\n"
                              "URIs: http://two.example/debian\n"
                              "Suites: bookworm bookworm-updates\n"
                              "Components: main\n"
                              "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                              "\n"
                              "Types: deb\n"
                              "URIs: http://off.example/debian\n"
                              "Suites: trixie\n"
                              "Enabled: no\n")
                  .ok());
  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "sources.list.d/other.sources.disabled",
                              "Types: deb\nURIs: http://ignored.example\nSuites: sid\n")
                  .ok());
  auto sources = ReadAptSources(tmp.path());
  ASSERT_TRUE(sources.ok()) << sources.status().ToString();
  ASSERT_EQ(sources->size(), 2u);
  EXPECT_EQ((*sources)[0].uri, "http://one.example/debian");
  EXPECT_EQ((*sources)[0].keyring, "/k/one.gpg");
  EXPECT_EQ((*sources)[1].uri, "http://two.example/debian");
  EXPECT_EQ((*sources)[1].keyring, "/usr/share/keyrings/debian-archive-keyring.gpg");

  auto bookworm = FindAptMirror(tmp.path(), "bookworm");
  ASSERT_TRUE(bookworm.ok());
  EXPECT_EQ(bookworm->uri, "http://two.example/debian");
  auto trixie = FindAptMirror(tmp.path(), "trixie");
  EXPECT_EQ(trixie.status().code(), StatusCode::kNotFound);
  EXPECT_NE(trixie.status().message().find("trixie"), std::string::npos);
}

TEST(AptSourcesTest, NoConfigurationMeansNoMirror) {
  TempDir tmp;
  auto m = FindAptMirror(tmp.path(), "bookworm");
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
}

TEST(ScratchTreeTest, UnmountsMountsInsideInsteadOfDeletingThroughThem) {
  TempDir tmp;
  fs::path outside = tmp.path() / "outside";
  ASSERT_TRUE(MakeDirs(outside).ok());
  ASSERT_TRUE(WriteFileAtomic(outside / "keep", "must survive").ok());
  fs::path tree = tmp.path() / "tree";
  ASSERT_TRUE(MakeDirs(tree / "mnt").ok());
  if (::mount(outside.c_str(), (tree / "mnt").c_str(), nullptr, MS_BIND, nullptr) != 0) {
    GTEST_SKIP() << "cannot bind-mount here: " << std::strerror(errno);
  }
  struct Unmount {  // in case the code under test fails to
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } guard{tree / "mnt"};
  ASSERT_TRUE(fs::exists(tree / "mnt/keep"));
  {
    ScratchTree scratch(tree);
    Status st = scratch.Remove();
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_FALSE(fs::exists(tree));
  EXPECT_EQ(*ReadFile(outside / "keep"), "must survive");
}

}  // namespace
}  // namespace banger::images
