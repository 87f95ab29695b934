#include "oci/flatten.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "base/files.h"
#include "base/sha256.h"
#include "oci/test_layers.h"

namespace banger::oci {
namespace {

namespace fs = std::filesystem;
using testing::Compression;
using testing::TarBuilder;
using testing::TarEntry;

class FlattenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = MakeTempDir("banger-flatten-");
    ASSERT_TRUE(t.ok()) << t.error().ToString();
    tmp_ = std::make_unique<ScopedRemove>(*t);
    dest_ = *t / "dest";
    sentinel_ = *t / "sentinel";
    layers_dir_ = *t / "layers";
    fs::create_directories(dest_);
    fs::create_directories(sentinel_);
    fs::create_directories(layers_dir_);
  }

  LayerFile Layer(const TarBuilder& b, Compression c = Compression::kNone) {
    std::string bytes = b.Build(c);
    std::string digest = "sha256:" + Sha256Hex(bytes);
    fs::path p = layers_dir_ / digest.substr(7);
    EXPECT_TRUE(WriteFileAtomic(p, bytes).ok());
    return LayerFile{p, digest, ""};
  }

  Result<FlattenStats> Flatten(const std::vector<LayerFile>& layers) {
    return FlattenLayers(layers, dest_);
  }

  bool Exists(const std::string& rel) {
    struct stat st {};
    return ::lstat((dest_ / rel).c_str(), &st) == 0;
  }
  std::string Read(const std::string& rel) {
    auto r = ReadFile(dest_ / rel);
    return r.ok() ? *r : "<missing>";
  }
  struct stat Lstat(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat((dest_ / rel).c_str(), &st), 0) << rel;
    return st;
  }
  // Everything in the temp dir besides dest, layers and an empty sentinel.
  void ExpectNothingOutsideDest() {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp_->path())) {
      names.insert(e.path().filename().string());
    }
    EXPECT_EQ(names, (std::set<std::string>{"dest", "layers", "sentinel"}));
    EXPECT_TRUE(fs::is_empty(sentinel_)) << "something was written into the sentinel dir";
  }

  std::unique_ptr<ScopedRemove> tmp_;
  fs::path dest_, sentinel_, layers_dir_;
};

TEST_F(FlattenTest, LaterLayerOverwritesFiles) {
  auto l1 = Layer(TarBuilder().Dir("etc").File("etc/hostname", "one\n").File("etc/keep", "k"));
  auto l2 = Layer(TarBuilder().File("etc/hostname", "two\n"));
  auto r = Flatten({l1, l2});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Read("etc/hostname"), "two\n");
  EXPECT_EQ(Read("etc/keep"), "k");
  EXPECT_EQ(r->entries, 4u);
}

TEST_F(FlattenTest, WhiteoutDeletesLowerFileAndDirAndIsNotInResult) {
  auto l1 = Layer(TarBuilder()
                      .Dir("a")
                      .File("a/gone", "x")
                      .File("a/stays", "y")
                      .Dir("a/subdir")
                      .File("a/subdir/deep", "z"));
  auto l2 = Layer(TarBuilder().Whiteout("a", "gone").Whiteout("a", "subdir").Whiteout("", "nothere"));
  auto r = Flatten({l1, l2});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(Exists("a/gone"));
  EXPECT_FALSE(Exists("a/subdir"));
  EXPECT_EQ(Read("a/stays"), "y");
  EXPECT_FALSE(Exists("a/.wh.gone"));
  EXPECT_FALSE(Exists("a/.wh.subdir"));
  EXPECT_FALSE(Exists(".wh.nothere"));
}

TEST_F(FlattenTest, OpaqueDirectoryKeepsOnlyThisLayersContent) {
  auto l1 = Layer(TarBuilder()
                      .Dir("d")
                      .File("d/old1", "1")
                      .Dir("d/sub")
                      .File("d/sub/old2", "2")
                      .Dir("other")
                      .File("other/untouched", "u"));
  // Marker after some entries and before others: both orders must work.
  auto l2 = Layer(TarBuilder()
                      .Dir("d")
                      .Dir("d/sub")
                      .File("d/sub/new1", "n1")
                      .Opaque("d")
                      .File("d/new2", "n2"));
  auto r = Flatten({l1, l2});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(Exists("d/old1"));
  EXPECT_FALSE(Exists("d/sub/old2"));
  EXPECT_EQ(Read("d/sub/new1"), "n1");
  EXPECT_EQ(Read("d/new2"), "n2");
  EXPECT_FALSE(Exists("d/.wh..wh..opq"));
  EXPECT_EQ(Read("other/untouched"), "u");
}

TEST_F(FlattenTest, HardLinksShareAnInode) {
  auto l1 = Layer(TarBuilder().Dir("bin").File("bin/busybox", "ELF", 0755).Hardlink("bin/sh", "bin/busybox"));
  auto r = Flatten({l1});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  struct stat a = Lstat("bin/busybox"), b = Lstat("bin/sh");
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(Read("bin/sh"), "ELF");
}

TEST_F(FlattenTest, SymlinksAreStoredVerbatimAndNeverFollowed) {
  // An absolute symlink pointing at the sentinel: the link is created as-is,
  // and a later file with the same name replaces the link, not its target.
  auto l1 = Layer(TarBuilder()
                      .Symlink("abs", sentinel_.string())
                      .Symlink("rel", "../../x")
                      .Symlink("replaced", sentinel_.string() + "/victim"));
  auto l2 = Layer(TarBuilder().File("replaced", "plain file"));
  auto r = Flatten({l1, l2});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(S_ISLNK(Lstat("abs").st_mode));
  EXPECT_EQ(fs::read_symlink(dest_ / "abs"), sentinel_);
  EXPECT_EQ(fs::read_symlink(dest_ / "rel"), fs::path("../../x"));
  EXPECT_TRUE(S_ISREG(Lstat("replaced").st_mode));
  EXPECT_EQ(Read("replaced"), "plain file");
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, OwnersModesSetuidXattrsAndMtimes) {
  TarEntry su;
  su.path = "usr/bin/su";
  su.content = "suid";
  su.mode = 04755;
  su.uid = 0;
  su.gid = 0;
  TarEntry owned;
  owned.path = "home/alice/notes";
  owned.content = "hi";
  owned.mode = 0600;
  owned.uid = 1234;
  owned.gid = 5678;
  owned.mtime = 1600000000;
  owned.mtime_nsec = 123456789;
  owned.xattrs["user.banger.test"] = "value";
  TarEntry dir;
  dir.path = "home/alice";
  dir.type = AE_IFDIR;
  dir.mode = 0750;
  dir.uid = 1234;
  dir.gid = 5678;
  dir.mtime = 1500000000;
  TarEntry sticky;
  sticky.path = "tmp";
  sticky.type = AE_IFDIR;
  sticky.mode = 01777;
  auto l1 = Layer(TarBuilder().Dir("usr").Dir("usr/bin").Add(su).Dir("home").Add(dir).Add(owned).Add(sticky));
  auto r = Flatten({l1});
  ASSERT_TRUE(r.ok()) << r.error().ToString();

  EXPECT_EQ(Lstat("usr/bin/su").st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat("tmp").st_mode & 07777, 01777u);
  struct stat n = Lstat("home/alice/notes");
  EXPECT_EQ(n.st_mode & 07777, 0600u);
  EXPECT_EQ(n.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(n.st_mtim.tv_nsec, 123456789);
  // The directory keeps its own mtime although a file was written into it.
  struct stat d = Lstat("home/alice");
  EXPECT_EQ(d.st_mode & 07777, 0750u);
  EXPECT_EQ(d.st_mtim.tv_sec, 1500000000);
  if (::geteuid() == 0) {
    EXPECT_EQ(n.st_uid, 1234u);
    EXPECT_EQ(n.st_gid, 5678u);
    EXPECT_EQ(d.st_uid, 1234u);
  }
  char buf[64] = {};
  ssize_t len = ::lgetxattr((dest_ / "home/alice/notes").c_str(), "user.banger.test", buf, sizeof(buf));
  if (len < 0 && errno == ENOTSUP) GTEST_SKIP() << "file system without user xattrs";
  ASSERT_EQ(len, 5);
  EXPECT_EQ(std::string(buf, 5), "value");
}

TEST_F(FlattenTest, DevicesAndFifos) {
  if (::geteuid() != 0) GTEST_SKIP() << "creating device nodes needs root";
  TarEntry null;
  null.path = "dev/null";
  null.type = AE_IFCHR;
  null.mode = 0666;
  null.dev_major = 1;
  null.dev_minor = 3;
  TarEntry loop;
  loop.path = "dev/loop0";
  loop.type = AE_IFBLK;
  loop.mode = 0660;
  loop.dev_major = 7;
  loop.dev_minor = 0;
  TarEntry fifo;
  fifo.path = "run/initctl";
  fifo.type = AE_IFIFO;
  fifo.mode = 0600;
  auto r = Flatten({Layer(TarBuilder().Dir("dev").Add(null).Add(loop).Dir("run").Add(fifo))});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  struct stat n = Lstat("dev/null");
  EXPECT_TRUE(S_ISCHR(n.st_mode));
  EXPECT_EQ(major(n.st_rdev), 1u);
  EXPECT_EQ(minor(n.st_rdev), 3u);
  EXPECT_EQ(n.st_mode & 0777, 0666u);
  struct stat l = Lstat("dev/loop0");
  EXPECT_TRUE(S_ISBLK(l.st_mode));
  EXPECT_EQ(major(l.st_rdev), 7u);
  EXPECT_TRUE(S_ISFIFO(Lstat("run/initctl").st_mode));
}

TEST_F(FlattenTest, GzipZstdAndPlainLayersAreDetected) {
  auto l1 = Layer(TarBuilder().File("a", "gzip"), Compression::kGzip);
  auto l2 = Layer(TarBuilder().File("b", "zstd"), Compression::kZstd);
  auto l3 = Layer(TarBuilder().File("c", "plain"), Compression::kNone);
  auto r = Flatten({l1, l2, l3});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Read("a"), "gzip");
  EXPECT_EQ(Read("b"), "zstd");
  EXPECT_EQ(Read("c"), "plain");
}

TEST_F(FlattenTest, ReplacesDirectoryWithFileAndFileWithDirectory) {
  auto l1 = Layer(TarBuilder().Dir("x").File("x/inner", "1").File("y", "file"));
  auto l2 = Layer(TarBuilder().File("x", "now a file").Dir("y").File("y/inner", "2"));
  auto r = Flatten({l1, l2});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Read("x"), "now a file");
  EXPECT_EQ(Read("y/inner"), "2");
}

TEST_F(FlattenTest, ParentDirectoriesAreCreatedWhenMissing) {
  auto r = Flatten({Layer(TarBuilder().File("./a/b/c/file", "deep"))});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(Read("a/b/c/file"), "deep");
}

TEST_F(FlattenTest, EmptyLayerIsAccepted) {
  std::string digest = "sha256:" + Sha256Hex("");
  fs::path p = layers_dir_ / "empty";
  ASSERT_TRUE(WriteFileAtomic(p, "").ok());
  auto r = Flatten({LayerFile{p, digest, ""}});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(fs::is_empty(dest_));
}

TEST_F(FlattenTest, CorruptLayerIsDataLoss) {
  fs::path p = layers_dir_ / "bad";
  std::string gz = TarBuilder().File("a", std::string(10000, 'a')).Build(Compression::kGzip);
  gz.resize(gz.size() / 2);
  ASSERT_TRUE(WriteFileAtomic(p, gz).ok());
  auto r = Flatten({LayerFile{p, "sha256:bad", ""}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.error().message().find("sha256:bad"), std::string::npos);
}

// --- hostile layers ---

TEST_F(FlattenTest, DotDotEntryIsRefusedAndNamesLayerAndEntry) {
  auto layer = Layer(TarBuilder().File("ok", "fine").File("../x", "evil"));
  auto r = Flatten({layer});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("layer " + layer.digest), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("entry \"../x\": path escapes the root"), std::string::npos)
      << r.error().message();
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, DeepDotDotIsRefused) {
  auto r = Flatten({Layer(TarBuilder().File("a/../../../sentinel/evil", "evil"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("path escapes the root"), std::string::npos);
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, AbsolutePathIsRefused) {
  std::string target = (sentinel_ / "abs").string();
  auto r = Flatten({Layer(TarBuilder().File(target, "evil"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("entry \"" + target + "\": path escapes the root"),
            std::string::npos)
      << r.error().message();
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, WriteThroughSymlinkIsRefused) {
  // link -> <sentinel> (absolute, outside), then link/evil.
  auto r = Flatten({Layer(TarBuilder().Symlink("link", sentinel_.string()).File("link/evil", "x"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("entry \"link/evil\": path escapes the root"),
            std::string::npos)
      << r.error().message();
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, WriteThroughSymlinkFromLowerLayerIsRefused) {
  auto l1 = Layer(TarBuilder().Symlink("tmp", "/tmp").Symlink("up", "..").Dir("real"));
  auto l2 = Layer(TarBuilder().File("up/sentinel/evil", "x"));
  auto r = Flatten({l1, l2});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("layer " + l2.digest + " entry \"up/sentinel/evil\": path escapes the root"),
            std::string::npos)
      << r.error().message();
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, SymlinkEscapeViaDirectoryEntryIsRefused) {
  auto r = Flatten({Layer(TarBuilder().Symlink("d", sentinel_.string()).Dir("d/sub"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("path escapes the root"), std::string::npos);
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, HardLinkToAbsoluteHostFileIsRefused) {
  auto r = Flatten({Layer(TarBuilder().Hardlink("passwd", "/etc/passwd"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("path escapes the root"), std::string::npos)
      << r.error().message();
  EXPECT_FALSE(Exists("passwd"));
  ExpectNothingOutsideDest();
}

TEST_F(FlattenTest, HardLinkWithDotDotTargetIsRefused) {
  auto r = Flatten({Layer(TarBuilder().Hardlink("passwd", "../../etc/passwd"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("path escapes the root"), std::string::npos);
  EXPECT_FALSE(Exists("passwd"));
}

TEST_F(FlattenTest, HardLinkThroughSymlinkedDirectoryIsRefused) {
  // etc -> /etc inside the tree, then a hard link to etc/passwd would link
  // the host's file.
  auto r = Flatten({Layer(TarBuilder().Symlink("etc", "/etc").Hardlink("passwd", "etc/passwd"))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("path escapes the root"), std::string::npos)
      << r.error().message();
  EXPECT_FALSE(Exists("passwd"));
}

TEST_F(FlattenTest, WhiteoutThroughSymlinkDoesNotDeleteOutside) {
  ASSERT_TRUE(WriteFileAtomic(sentinel_ / "precious", "keep").ok());
  auto l1 = Layer(TarBuilder().Symlink("s", sentinel_.string()));
  auto l2 = Layer(TarBuilder().Whiteout("s", "precious").Opaque("s"));
  auto r = Flatten({l1, l2});
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(fs::exists(sentinel_ / "precious"));
  fs::remove(sentinel_ / "precious");
}

TEST(TreeApparentSizeTest, CountsHardLinkedFilesOnce) {
  auto t = MakeTempDir("banger-size-");
  ASSERT_TRUE(t.ok());
  ScopedRemove guard(*t);
  ASSERT_TRUE(WriteFileAtomic(*t / "a", std::string(1000, 'a')).ok());
  ASSERT_EQ(::link((*t / "a").c_str(), (*t / "b").c_str()), 0);
  fs::create_directories(*t / "d");
  ASSERT_TRUE(WriteFileAtomic(*t / "d" / "c", std::string(24, 'c')).ok());
  fs::create_symlink("a", *t / "l");
  auto size = TreeApparentSize(*t);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 1000u + 24u + 1u);
}

// Found by fuzz/flatten_fuzz.cc: a corrupt tar header (a 9 KiB layer kept as
// fuzz/corpus/flatten/regress-archive-error-without-message) makes libarchive
// fail without an error message; appending its NULL message to the error
// crashed the pull. It must be a DataLoss naming the layer.
TEST_F(FlattenTest, CorruptHeaderWithoutLibarchiveMessageIsAnError) {
  auto bytes = ReadFile(fs::path(BANGER_SOURCE_DIR) / "fuzz/corpus/flatten/regress-archive-error-without-message");
  ASSERT_TRUE(bytes.ok()) << bytes.error().ToString();
  fs::path p = layers_dir_ / "corrupt";
  ASSERT_TRUE(WriteFileAtomic(p, *bytes).ok());
  auto r = Flatten({LayerFile{p, "sha256:corrupt", ""}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDataLoss) << r.error().ToString();
  EXPECT_NE(r.error().message().find("layer sha256:corrupt"), std::string::npos) << r.error().ToString();
  ExpectNothingOutsideDest();
}

}  // namespace
}  // namespace banger::oci
