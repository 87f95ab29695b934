// The direct disk writer (images/ext4_writer.cc) against the path it
// replaces: the same layers flattened into a tree, `mkfs.ext4 -d` and the
// ownership fixup must give the same disk, entry for entry (type, owner, mode,
// xattrs, device numbers, link count, contents), and the writer's disk must
// pass `e2fsck -fn`. Real mkfs.ext4, e2fsck and libext2fs; no root needed.
#include "images/ext4_writer.h"

#include <ext2fs/ext2fs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "images/ext2_util.h"
#include "images/ext4_builder.h"
#include "images/ext4_fixup.h"
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
using testing::E2fsck;
using testing::Entry;
using testing::kCapNetRaw;
using testing::TempDir;

// Writes `layer` (uncompressed) as dir/NAME.tar; the layer is named sha256:NAME.
oci::LayerFile WriteLayer(const fs::path& dir, const std::string& name, const TarBuilder& layer) {
  fs::path p = dir / (name + ".tar");
  std::ofstream(p, std::ios::binary) << layer.Build();
  return {p, "sha256:" + name, ""};
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

// Three layers exercising every rule: owners, setuid/setgid/sticky, xattrs,
// devices, fifos, hard links, short and long symlinks, large files, files
// replaced by directories and back, whiteouts (also of a hard-linked file and
// of a whole directory), an opaque directory, and entries whose parents no
// layer lists.
std::vector<oci::LayerFile> WriteLayers(const fs::path& dir) {
  TarBuilder base;
  base.Add(Entry("./", AE_IFDIR, 0755));
  base.Dir("etc").File("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  TarEntry shadow = Entry("etc/shadow", AE_IFREG, 0640, 0, 42);
  shadow.content = "root:*:1::::::\n";
  base.Add(shadow).Add(Entry("etc/gshadow", AE_IFREG, 0000));
  base.Dir("usr").Dir("usr/bin");
  TarEntry su = Entry("usr/bin/su", AE_IFREG, 04755);
  su.content = "#!/bin/sh\n";
  base.Add(su).Hardlink("usr/bin/su-again", "usr/bin/su");
  TarEntry ping = Entry("usr/bin/ping", AE_IFREG, 02755);
  ping.xattrs = {{"security.capability", kCapNetRaw}, {"user.origin", "layer"}};
  ping.content = RandomBytes(300 * 1024 + 17, 1);
  base.Add(ping);
  base.Add(Entry("srv/app", AE_IFDIR, 02770, 1234, 5678));  // parent "srv" not listed
  TarEntry data = Entry("srv/app/data", AE_IFREG, 0640, 1234, 5678);
  data.content = "owned by 1234:5678\n";
  base.Add(data);
  base.Add(Entry("tmp", AE_IFDIR, 01777));
  base.Add(Entry("locked", AE_IFDIR, 0500)).Add(Entry("locked/inner", AE_IFREG, 0400));
  base.Dir("dev");
  TarEntry null = Entry("dev/null", AE_IFCHR, 0666);
  null.dev_major = 1;
  null.dev_minor = 3;
  TarEntry big = Entry("dev/big", AE_IFCHR, 0600);
  big.dev_major = 300;
  big.dev_minor = 70000;
  TarEntry sda = Entry("dev/sda", AE_IFBLK, 0660, 0, 6);
  sda.dev_major = 8;
  base.Add(null).Add(big).Add(sda).Add(Entry("dev/initctl", AE_IFIFO, 0620));
  base.Symlink("bin", "usr/bin").Symlink("etc/long", std::string(200, 'x') + "/target");
  base.Dir("old").File("old/gone", RandomBytes(2 << 20, 2)).File("old/kept-link-target", "t");
  base.Hardlink("etc/link-to-gone", "old/kept-link-target");
  base.Dir("opq").File("opq/lower", "x").File("empty", "");
  base.File("becomes-dir", "file first").Dir("becomes-file").File("becomes-file/child", "c");
  base.File("rewritten", RandomBytes(100000, 3));
  TarBuilder mid;
  mid.Whiteout("", "old").Whiteout("dev", "sda").Opaque("opq").File("opq/upper", "y");
  mid.Dir("becomes-dir").File("becomes-dir/inside", "now a directory");
  mid.File("becomes-file", "now a file");
  mid.File("rewritten", RandomBytes(5000, 4));
  mid.Add(Entry("etc", AE_IFDIR, 0700, 0, 0));  // a directory again: new mode, same contents
  TarBuilder top;
  top.File("deep/new/file", "implicit parents");
  top.Whiteout("usr/bin", "su-again");  // one name of the hard link goes
  top.File("opq/upper2", "z").Opaque("opq");  // opaque after an entry of the same layer
  std::vector<oci::LayerFile> out;
  int i = 0;
  for (const TarBuilder* b : {&base, &mid, &top}) {
    fs::path p = dir / ("layer" + std::to_string(i) + ".tar.gz");
    std::ofstream(p, std::ios::binary) << b->Build(oci::testing::Compression::kGzip);
    out.push_back({p, "sha256:layer" + std::to_string(i), ""});
    ++i;
  }
  return out;
}

Status BuildWithTree(const std::vector<oci::LayerFile>& layers, const fs::path& dir,
                     const fs::path& out) {
  fs::path tree = dir / "tree";
  BANGER_RETURN_IF_ERROR(MakeDirs(tree, 0755));
  TreeManifest manifest;
  BANGER_RETURN_IF_ERROR(oci::FlattenLayers(layers, tree, {}, &manifest).status());
  auto runner = MakePosixCommandRunner();
  return BuildExt4(*runner, tree, out, 64ull << 20, &manifest);
}

Status BuildStreamed(const std::vector<oci::LayerFile>& layers, const fs::path& out,
                     uint64_t size = 64ull << 20, bool grow = false) {
  auto runner = MakePosixCommandRunner();
  BANGER_ASSIGN_OR_RETURN(auto w, Ext4DiskWriter::Create(*runner, out, size, grow));
  for (const auto& l : layers) BANGER_RETURN_IF_ERROR(w->Apply(l));
  return w->Finish().status();
}

// Every entry of a disk: its metadata, link count and contents (file data or
// symlink target), read back with libext2fs.
struct Seen {
  EntryMeta meta;
  unsigned links = 0;
  std::string contents;
  bool operator==(const Seen&) const = default;
};

std::map<std::string, Seen> ReadDisk(const fs::path& image) {
  std::map<std::string, Seen> out;
  auto manifest = ReadExt4Manifest(image);
  EXPECT_TRUE(manifest.ok()) << manifest.status().ToString();
  if (!manifest.ok()) return out;
  ext2::FsHandle h;
  EXPECT_TRUE(ext2::Open(image, false, h).ok());
  ext2_filsys fs = h.get();
  for (auto& [path, meta] : *manifest) {
    Seen s;
    s.meta = meta;
    // Directory mtimes of implicit parents, the root and lost+found are the
    // build's, not the image's.
    if (S_ISDIR(meta.mode)) s.meta.mtime = 0;
    ext2_ino_t ino = EXT2_ROOT_INO;
    if (!path.empty()) {
      EXPECT_EQ(ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path.c_str(), &ino), 0);
    }
    ext2_inode_large in;
    ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&in), sizeof(in));
    s.links = in.i_links_count;
    if (S_ISREG(meta.mode) || S_ISLNK(meta.mode)) {
      if (S_ISLNK(meta.mode) && ext2fs_is_fast_symlink(reinterpret_cast<ext2_inode*>(&in))) {
        s.contents = std::string(reinterpret_cast<const char*>(in.i_block), in.i_size);
      } else {
        ext2_file_t f = nullptr;
        EXPECT_EQ(ext2fs_file_open(fs, ino, 0, &f), 0);
        std::string buf(EXT2_I_SIZE(&in), '\0');
        unsigned got = 0;
        if (!buf.empty()) {
          EXPECT_EQ(ext2fs_file_read(f, buf.data(), static_cast<unsigned>(buf.size()), &got), 0);
        }
        buf.resize(got);
        ext2fs_file_close(f);
        s.contents = std::move(buf);
      }
    }
    out[path] = std::move(s);
  }
  return out;
}

uint64_t FreeBlocks(const fs::path& image) {
  ext2::FsHandle h;
  EXPECT_TRUE(ext2::Open(image, false, h).ok());
  return ext2fs_free_blocks_count(h.get()->super);
}

class Ext4WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FindProgram("mkfs.ext4") || !FindProgram("e2fsck")) GTEST_FAIL() << "needs e2fsprogs";
  }
  TempDir tmp_;
};

TEST_F(Ext4WriterTest, WritesTheSameDiskAsTheTreeAndMkfs) {
  auto layers = WriteLayers(tmp_.path());
  fs::path tree_disk = tmp_.path() / "tree.ext4", streamed = tmp_.path() / "streamed.ext4";
  Status t = BuildWithTree(layers, tmp_.path(), tree_disk);
  ASSERT_TRUE(t.ok()) << t.ToString();
  Status s = BuildStreamed(layers, streamed);
  ASSERT_TRUE(s.ok()) << s.ToString();

  std::string fsck;
  EXPECT_EQ(E2fsck(streamed, &fsck), 0) << fsck;
  auto want = ReadDisk(tree_disk);
  auto got = ReadDisk(streamed);
  ASSERT_FALSE(want.empty());
  for (const auto& [path, w] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      ADD_FAILURE() << "/" << path << " is missing from the streamed disk";
      continue;
    }
    EXPECT_EQ(it->second.meta, w.meta) << "/" << path << " metadata";
    EXPECT_EQ(it->second.links, w.links) << "/" << path << " link count";
    EXPECT_TRUE(it->second.contents == w.contents) << "/" << path << " contents differ";
  }
  for (const auto& [path, g] : got) {
    EXPECT_TRUE(want.count(path)) << "/" << path << " is only in the streamed disk";
  }
  // The rules themselves, as a user would check them.
  EXPECT_EQ(got["usr/bin/ping"].meta.mode, S_IFREG | 02755u);
  EXPECT_EQ(got["usr/bin/su"].links, 1u) << "su-again was whited out";
  EXPECT_EQ(got["etc/link-to-gone"].links, 1u) << "its other name went with /old";
  EXPECT_EQ(got["etc/link-to-gone"].contents, "t");
  EXPECT_FALSE(got.count("old"));
  EXPECT_FALSE(got.count("opq/lower"));
  EXPECT_FALSE(got.count("opq/upper")) << "the top layer's opaque marker hides the middle layer";
  EXPECT_TRUE(got.count("opq/upper2"));
  EXPECT_EQ(got["becomes-dir/inside"].contents, "now a directory");
  EXPECT_EQ(got["becomes-file"].contents, "now a file");
  EXPECT_EQ(got["etc"].meta.mode, S_IFDIR | 0700u);
  EXPECT_TRUE(got.count("etc/passwd"));
  EXPECT_EQ(got["dev/big"].meta.rdev_major, 300u);
  EXPECT_EQ(got["dev/big"].meta.rdev_minor, 70000u);
  // The files lower layers wrote and upper ones removed left no blocks
  // behind: both disks hold the same data.
  uint64_t tree_free = FreeBlocks(tree_disk), streamed_free = FreeBlocks(streamed);
  EXPECT_NEAR(static_cast<double>(streamed_free), static_cast<double>(tree_free), 64)
      << "free blocks differ; the 2 MiB /old/gone is 512 blocks";
}

TEST_F(Ext4WriterTest, RefusesWhatTheFlattenerRefusesWithTheSameError) {
  struct Case {
    std::string name;
    TarBuilder layer;
  };
  std::vector<Case> cases;
  cases.push_back({"dotdot", TarBuilder().File("../escape", "x")});
  cases.push_back({"absolute", TarBuilder().File("/etc/escape", "x")});
  cases.push_back({"through-symlink", TarBuilder().Symlink("l", "/etc").File("l/escape", "x")});
  cases.push_back({"hardlink-outside", TarBuilder().Hardlink("h", "../../etc/shadow")});
  cases.push_back({"bad-whiteout", TarBuilder().File("a/.wh..", "")});
  for (auto& c : cases) {
    fs::path dir = tmp_.path() / c.name;
    ASSERT_TRUE(MakeDirs(dir / "tree", 0755).ok());
    std::vector<oci::LayerFile> layers = {WriteLayer(dir, c.name, c.layer)};
    auto flat = oci::FlattenLayers(layers, dir / "tree");
    ASSERT_FALSE(flat.ok()) << c.name;
    Status s = BuildStreamed(layers, dir / "disk.ext4");
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(s.message(), flat.status().message()) << c.name;
    EXPECT_FALSE(fs::exists(dir / "disk.ext4")) << c.name << ": a failed disk is removed";
  }
}

TEST_F(Ext4WriterTest, RefusesNamesExt4CannotHoldAndEmptySymlinks) {
  for (auto [name, layer] : std::vector<std::pair<std::string, TarBuilder>>{
           {"long-name", TarBuilder().File("dir/" + std::string(256, 'n'), "x")},
           {"empty-symlink", TarBuilder().Symlink("l", "")}}) {
    ASSERT_TRUE(MakeDirs(tmp_.path() / name, 0755).ok());
    std::vector<oci::LayerFile> layers = {WriteLayer(tmp_.path(), name, layer)};
    EXPECT_FALSE(oci::FlattenLayers(layers, tmp_.path() / name).ok()) << name << ": the tree path accepts it";
    Status s = BuildStreamed(layers, tmp_.path() / (name + ".ext4"));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s.ToString();
    EXPECT_NE(s.message().find("sha256:" + name), std::string::npos) << s.ToString();
  }
}

TEST_F(Ext4WriterTest, ADiskTooSmallIsFullAndLeavesNothing) {
  TarBuilder b;
  b.File("big", RandomBytes(12 << 20, 5));
  fs::path out = tmp_.path() / "small.ext4";
  Status s = BuildStreamed({WriteLayer(tmp_.path(), "big", b)}, out, 8ull << 20);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("is full"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(out));

  // Out of inodes rather than blocks: 8 MiB has 512.
  TarBuilder many;
  for (int i = 0; i < 600; ++i) many.File("f" + std::to_string(i), "");
  s = BuildStreamed({WriteLayer(tmp_.path(), "many", many)}, out, 8ull << 20);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(Ext4WriterTest, GrowsToTheDefaultSizeWhenTheTreeNeedsIt) {
  TarBuilder b;
  b.File("data", RandomBytes(9 << 20, 6));
  fs::path out = tmp_.path() / "grown.ext4";
  Status s = BuildStreamed({WriteLayer(tmp_.path(), "l", b)}, out, 16ull << 20, /*grow=*/true);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fs::file_size(out), DefaultDiskSize(9 << 20));
  std::string fsck;
  EXPECT_EQ(E2fsck(out, &fsck), 0) << fsck;
  EXPECT_EQ(ReadDisk(out)["data"].contents, RandomBytes(9 << 20, 6));
}

TEST_F(Ext4WriterTest, AnOrdinaryUserWritesTheSameDiskAsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "compares root's disk with nobody's: needs root";
  constexpr uid_t kNobody = 65534;
  auto layers = WriteLayers(tmp_.path());
  fs::path as_root = tmp_.path() / "root.ext4";
  ASSERT_TRUE(BuildStreamed(layers, as_root).ok());
  fs::path user_dir = tmp_.path() / "user";
  ASSERT_TRUE(MakeDirs(user_dir, 0700).ok());
  ASSERT_EQ(::chmod(tmp_.path().c_str(), 0711), 0);
  ASSERT_EQ(::chown(user_dir.c_str(), kNobody, kNobody), 0);
  for (const auto& l : layers) ASSERT_EQ(::chmod(l.path.c_str(), 0644), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = ::setgroups(0, nullptr) == 0 && ::setresgid(kNobody, kNobody, kNobody) == 0 &&
              ::setresuid(kNobody, kNobody, kNobody) == 0;
    ::setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);
    ::_exit(ok && BuildStreamed(layers, user_dir / "user.ext4").ok() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "nobody's build failed";
  EXPECT_EQ(ReadDisk(user_dir / "user.ext4"), ReadDisk(as_root));
}

}  // namespace
}  // namespace banger::images
