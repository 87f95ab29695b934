// The ownership fixup (images/ext4_fixup.cc) on real layers, a real
// mkfs.ext4 and a real libext2fs/debugfs read-back: the disk an ordinary user
// builds equals the one root builds, entry for entry.
#include "images/ext4_fixup.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "images/ext4_builder.h"
#include "images/images_test_util.h"
#include "oci/flatten.h"
#include "oci/test_layers.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using oci::EntryMeta;
using oci::TreeManifest;
using oci::testing::TarBuilder;
using oci::testing::TarEntry;
using testing::DebugfsStat;
using testing::E2fsck;
using testing::Entry;
using testing::kCapNetRaw;
using testing::TempDir;

constexpr uid_t kNobody = 65534;
const std::string kLongName(255, 'n');

void WriteLayers(const fs::path& dir) {
  TarBuilder base;
  base.Dir("etc").File("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  TarEntry shadow = Entry("etc/shadow", AE_IFREG, 0640, 0, 42);
  shadow.content = "root:*:1::::::\n";
  base.Add(shadow).Add(Entry("etc/gshadow", AE_IFREG, 0000));
  base.Dir("usr").Dir("usr/bin");
  TarEntry su = Entry("usr/bin/su", AE_IFREG, 04755);
  su.content = "#!/bin/sh\n";
  base.Add(su).Hardlink("usr/bin/su-again", "usr/bin/su");
  TarEntry ping = Entry("usr/bin/ping", AE_IFREG, 0755);
  ping.xattrs = {{"security.capability", kCapNetRaw}, {"user.origin", "layer"}};
  base.Add(ping);
  base.Add(Entry("srv", AE_IFDIR, 0755)).Add(Entry("srv/app", AE_IFDIR, 02770, 1234, 5678));
  TarEntry data = Entry("srv/app/data", AE_IFREG, 0640, 1234, 5678);
  data.content = "owned by 1234:5678\n";
  base.Add(data);
  base.Add(Entry("tmp", AE_IFDIR, 01777));
  base.Add(Entry("locked", AE_IFDIR, 0500)).Add(Entry("locked/inner", AE_IFREG, 0400));
  base.Dir("dev");
  TarEntry null = Entry("dev/null", AE_IFCHR, 0666);
  null.dev_major = 1;
  null.dev_minor = 3;
  TarEntry sda = Entry("dev/sda", AE_IFBLK, 0660, 0, 6);
  sda.dev_major = 8;
  TarEntry big = Entry("dev/big", AE_IFCHR, 0600);
  big.dev_major = 300;
  big.dev_minor = 70000;
  base.Add(null).Add(sda).Add(big).Add(Entry("dev/initctl", AE_IFIFO, 0620));
  base.File("etc/" + kLongName, "long\n");
  base.Dir("old").File("old/gone", "x").Dir("opq").File("opq/lower", "x");
  TarEntry opq_dev = Entry("opq/lowerdev", AE_IFCHR, 0600);
  opq_dev.dev_major = 1;
  opq_dev.dev_minor = 5;
  base.Add(opq_dev);
  TarBuilder upper;
  upper.Whiteout("old", "gone").Whiteout("dev", "sda").Opaque("opq").File("opq/upper", "y");
  std::ofstream(dir / "base.tar", std::ios::binary) << base.Build();
  std::ofstream(dir / "upper.tar", std::ios::binary) << upper.Build();
}

// Flattens the layers in `dir` into dir/tree and builds dir/rootfs.ext4.
Status BuildFromLayers(const fs::path& dir) {
  std::vector<oci::LayerFile> layers = {{dir / "base.tar", "sha256:base", ""},
                                        {dir / "upper.tar", "sha256:upper", ""}};
  fs::path tree = dir / "tree";
  BANGER_RETURN_IF_ERROR(MakeDirs(tree, 0755));
  TreeManifest manifest;
  BANGER_ASSIGN_OR_RETURN(oci::FlattenStats stats,
                          oci::FlattenLayers(layers, tree, {}, &manifest));
  (void)stats;
  auto runner = MakePosixCommandRunner();
  return BuildExt4(*runner, tree, dir / "rootfs.ext4", 64ull << 20, &manifest);
}

class Ext4FixupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "builds as root and as nobody: needs root";
    if (!FindProgram("mkfs.ext4") || !FindProgram("debugfs")) GTEST_FAIL() << "needs e2fsprogs";
    root_dir_ = tmp_.path() / "as-root";
    user_dir_ = tmp_.path() / "as-user";
    ASSERT_TRUE(MakeDirs(root_dir_, 0700).ok());
    ASSERT_TRUE(MakeDirs(user_dir_, 0700).ok());
    // The temporary directory is 0700 root's; nobody needs to reach its own.
    ASSERT_EQ(::chmod(tmp_.path().c_str(), 0711), 0);
    ASSERT_EQ(::chown(user_dir_.c_str(), kNobody, kNobody), 0);
    WriteLayers(root_dir_);
    WriteLayers(user_dir_);
    ASSERT_EQ(::chown((user_dir_ / "base.tar").c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(::chown((user_dir_ / "upper.tar").c_str(), kNobody, kNobody), 0);
  }

  // The same build in a child process that is nobody:nogroup with no
  // supplementary groups and no capabilities.
  std::string BuildAsNobody() {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return "pipe failed";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      std::string err;
      if (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
          ::setresuid(kNobody, kNobody, kNobody) != 0) {
        err = "cannot become nobody";
      } else {
        // An ordinary user's PATH: no sbin.
        ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
        Status s = BuildFromLayers(user_dir_);
        if (!s.ok()) err = s.ToString();
      }
      if (!err.empty()) (void)!::write(pipefd[1], err.data(), err.size());
      ::_exit(err.empty() ? 0 : 1);
    }
    ::close(pipefd[1]);
    std::string err;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0) err.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return err.empty() ? "child failed" : err;
    return "";
  }

  TempDir tmp_;
  fs::path root_dir_, user_dir_;
};

// Mode, owners, device numbers and xattrs of every entry; mtimes of the disk
// root and lost+found are those of the build, not of the image.
std::map<std::string, EntryMeta> Comparable(TreeManifest m) {
  std::map<std::string, EntryMeta> out;
  for (auto& [path, meta] : m) {
    if (path.empty() || path == "lost+found") meta.mtime = 0;
    out[path] = meta;
  }
  return out;
}

TEST_F(Ext4FixupTest, AUserBuildsTheSameDiskAsRoot) {
  ASSERT_TRUE(BuildFromLayers(root_dir_).ok());
  std::string err = BuildAsNobody();
  ASSERT_EQ(err, "");
  for (const fs::path& disk : {root_dir_ / "rootfs.ext4", user_dir_ / "rootfs.ext4"}) {
    std::string fsck;
    EXPECT_EQ(E2fsck(disk, &fsck), 0) << disk << ": " << fsck;
  }

  auto as_root = ReadExt4Manifest(root_dir_ / "rootfs.ext4");
  auto as_user = ReadExt4Manifest(user_dir_ / "rootfs.ext4");
  ASSERT_TRUE(as_root.ok()) << as_root.status().ToString();
  ASSERT_TRUE(as_user.ok()) << as_user.status().ToString();
  auto r = Comparable(*as_root);
  auto u = Comparable(*as_user);
  ASSERT_EQ(r.size(), u.size());
  for (const auto& [path, meta] : r) {
    ASSERT_TRUE(u.count(path)) << path << " missing from the user's disk";
    const EntryMeta& um = u.at(path);
    EXPECT_EQ(meta.mode, um.mode) << path;
    EXPECT_EQ(meta.uid, um.uid) << path;
    EXPECT_EQ(meta.gid, um.gid) << path;
    EXPECT_EQ(meta.rdev_major, um.rdev_major) << path;
    EXPECT_EQ(meta.rdev_minor, um.rdev_minor) << path;
    EXPECT_EQ(meta.xattrs, um.xattrs) << path;
    EXPECT_EQ(meta.mtime, um.mtime) << path;
  }

  // What a guest would see, read back with libext2fs and (independently) debugfs.
  for (const auto* m : {&*as_root, &*as_user}) {
    EXPECT_EQ(m->at("etc/passwd").uid, 0u);
    EXPECT_EQ(m->at("etc/passwd").mode, S_IFREG | 0644u);
    EXPECT_EQ(m->at("etc/shadow").gid, 42u);
    EXPECT_EQ(m->at("etc/gshadow").mode, S_IFREG | 0000u);
    EXPECT_EQ(m->at("usr/bin/su").mode, S_IFREG | 04755u);
    EXPECT_EQ(m->at("usr/bin/su-again").mode, S_IFREG | 04755u);
    EXPECT_EQ(m->at("srv/app").mode, S_IFDIR | 02770u);
    EXPECT_EQ(m->at("srv/app/data").uid, 1234u);
    EXPECT_EQ(m->at("srv/app/data").gid, 5678u);
    EXPECT_EQ(m->at("tmp").mode, S_IFDIR | 01777u);
    EXPECT_EQ(m->at("locked").mode, S_IFDIR | 0500u);
    EXPECT_EQ(m->at("locked/inner").mode, S_IFREG | 0400u);
    EXPECT_EQ(m->at("dev/null").mode, S_IFCHR | 0666u);
    EXPECT_EQ(m->at("dev/null").rdev_major, 1u);
    EXPECT_EQ(m->at("dev/null").rdev_minor, 3u);
    EXPECT_EQ(m->at("dev/big").rdev_major, 300u);
    EXPECT_EQ(m->at("dev/big").rdev_minor, 70000u);
    EXPECT_EQ(m->at("dev/initctl").mode, S_IFIFO | 0620u);
    EXPECT_EQ(m->at("etc/" + kLongName).mode, S_IFREG | 0644u);
    EXPECT_EQ(m->at("opq/upper").mode, S_IFREG | 0644u);
    EXPECT_EQ(m->count("dev/sda"), 0u) << "whited out in the upper layer";
    EXPECT_EQ(m->count("old/gone"), 0u) << "whited out in the upper layer";
    EXPECT_EQ(m->count("opq/lower"), 0u) << "hidden by the opaque directory";
    EXPECT_EQ(m->count("opq/lowerdev"), 0u) << "a device hidden by the opaque directory";
    std::vector<std::pair<std::string, std::string>> xattrs = {
        {"security.capability", kCapNetRaw}, {"user.origin", "layer"}};
    EXPECT_EQ(m->at("usr/bin/ping").xattrs, xattrs);
    EXPECT_EQ(m->at("usr/bin/su").xattrs.size(), 0u);
  }
  auto su = DebugfsStat(user_dir_ / "rootfs.ext4", "/usr/bin/su");
  ASSERT_TRUE(su.has_value());
  EXPECT_EQ(su->mode, 04755u);
  EXPECT_EQ(su->uid, 0u);
  auto data = DebugfsStat(user_dir_ / "rootfs.ext4", "/srv/app/data");
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(data->uid, 1234u);
  EXPECT_EQ(data->gid, 5678u);
  EXPECT_EQ(testing::DebugfsCat(user_dir_ / "rootfs.ext4", "/srv/app/data"),
            "owned by 1234:5678\n");
}

TEST_F(Ext4FixupTest, EntriesMissingFromTheManifestOfAUsersTreeBecomeRoots) {
  // A recipe's tree (no manifest) built by a user: its files are the user's
  // on the host and root's in the guest; other owners are kept.
  fs::path tree = tmp_.path() / "own-tree";
  ASSERT_TRUE(MakeDirs(tree / "etc", 0755).ok());
  std::ofstream(tree / "etc/hostname") << "x\n";
  std::ofstream(tree / "etc/other") << "y\n";
  for (const char* p : {"", "etc", "etc/hostname"}) {
    ASSERT_EQ(::lchown((tree / p).c_str(), 4321, 4321), 0);
  }
  ASSERT_EQ(::chmod((tree / "etc/hostname").c_str(), 04711), 0);
  ASSERT_EQ(::lchown((tree / "etc/other").c_str(), 777, 4321), 0);
  auto runner = MakePosixCommandRunner();
  fs::path disk = tmp_.path() / "own.ext4";
  ASSERT_TRUE(BuildExt4(*runner, tree, disk, 16ull << 20).ok());
  FixupOptions opts;
  opts.map_uid_to_root = 4321;
  opts.map_gid_to_root = 4321;
  auto stats = FixupExt4(disk, {}, opts);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GE(stats->changed, 2u);
  auto m = ReadExt4Manifest(disk);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->at("etc").uid, 0u);
  EXPECT_EQ(m->at("etc/hostname").uid, 0u);
  EXPECT_EQ(m->at("etc/hostname").gid, 0u);
  EXPECT_EQ(m->at("etc/hostname").mode, S_IFREG | 04711u) << "modes are kept";
  EXPECT_EQ(m->at("etc/other").uid, 777u) << "another owner is kept";
  EXPECT_EQ(m->at("etc/other").gid, 0u);
  EXPECT_EQ(E2fsck(disk), 0);
}

TEST_F(Ext4FixupTest, AManifestEntryOfAnotherTypeThanTheDiskIsAnError) {
  ASSERT_TRUE(BuildFromLayers(root_dir_).ok());
  TreeManifest wrong;
  wrong["etc/passwd"] = EntryMeta{.mode = S_IFDIR | 0755};
  auto st = FixupExt4(root_dir_ / "rootfs.ext4", wrong, {});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("/etc/passwd"), std::string::npos) << st.status().ToString();
  TreeManifest missing;
  missing["etc/nope"] = EntryMeta{.mode = S_IFREG | 0644};
  st = FixupExt4(root_dir_ / "rootfs.ext4", missing, {});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("/etc/nope is in the image but missing"), std::string::npos)
      << st.status().ToString();
}

}  // namespace
}  // namespace banger::images
