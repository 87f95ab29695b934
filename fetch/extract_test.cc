#include "fetch/extract.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "base/files.h"
#include "fetch/fetch_test_util.h"

namespace banger::fetch {
namespace {

namespace fs = std::filesystem;

const ExtractOptions kKernelLike{.tar_only = true,
                                 .plain_files_only = true,
                                 .confine_symlinks = true,
                                 .require_entries = true};
const ExtractOptions kRootTree{.keep_ownership = true, .apply_root_entry = true};

class ExtractTest : public ::testing::Test {
 protected:
  fs::path Archive(const std::vector<TarItem>& items) {
    fs::path a = tmp_.path() / ("a" + std::to_string(n_++) + ".tar.zst");
    WriteTarZst(a, items);
    return a;
  }
  fs::path NewDest() {
    fs::path d = tmp_.path() / ("dest" + std::to_string(n_++)) / "inner";
    fs::create_directories(d);
    return d;
  }
  TempDirForTest tmp_;
  int n_ = 0;
};

TEST_F(ExtractTest, FilesDirectoriesAndLinksLandInsideDest) {
  fs::path a = Archive({{.path = "./boot", .type = AE_IFDIR, .mode = 0755},
                        {.path = "./boot/vmlinuz", .content = "kernel"},
                        {.path = "boot/link", .type = AE_IFLNK, .mode = 0777, .symlink = "vmlinuz"},
                        {.path = "boot/hard", .hardlink = "./boot/vmlinuz"}});
  for (const ExtractOptions& o : {kKernelLike, kRootTree}) {
    fs::path dest = NewDest();
    Status st = ExtractArchive(a, dest, o);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(*ReadFile(dest / "boot/vmlinuz"), "kernel");
    EXPECT_EQ(fs::read_symlink(dest / "boot/link"), "vmlinuz");
    EXPECT_EQ(*ReadFile(dest / "boot/hard"), "kernel");
  }
}

TEST_F(ExtractTest, HostileEntriesAreRefusedNamingTheEntryAndNothingLandsOutside) {
  for (const TarItem& evil : {TarItem{.path = "../escaped", .content = "x"},
                              TarItem{.path = "a/../../escaped", .content = "x"},
                              TarItem{.path = "/tmp/banger-fetch-abs-escape", .content = "x"},
                              TarItem{.path = "h", .hardlink = "../escaped"}}) {
    SCOPED_TRACE(evil.path);
    fs::path a = Archive({{.path = "ok", .content = "fine"}, evil});
    for (const ExtractOptions& o : {kKernelLike, kRootTree}) {
      fs::path dest = NewDest();
      Status st = ExtractArchive(a, dest, o);
      ASSERT_FALSE(st.ok());
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
      EXPECT_NE(st.message().find("refusing"), std::string::npos) << st.ToString();
      EXPECT_NE(st.message().find(a.string()), std::string::npos) << st.ToString();
      EXPECT_FALSE(fs::exists(dest.parent_path() / "escaped"));
      EXPECT_FALSE(fs::exists("/tmp/banger-fetch-abs-escape"));
    }
    auto named = ExtractNamedFiles(a, NewDest(), {"ok"});
    EXPECT_EQ(named.status().code(), StatusCode::kInvalidArgument) << named.status().ToString();
  }
}

TEST_F(ExtractTest, SymlinksLeavingTheArchiveAreRefusedOnlyWhenConfined) {
  fs::path a = Archive({{.path = "etc", .type = AE_IFLNK, .mode = 0777, .symlink = "/etc"},
                        {.path = "up", .type = AE_IFLNK, .mode = 0777, .symlink = "../x"}});
  Status st = ExtractArchive(a, NewDest(), kKernelLike);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("refusing symlink \"etc\""), std::string::npos) << st.ToString();
  fs::path dest = NewDest();
  st = ExtractArchive(a, dest, kRootTree);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(fs::read_symlink(dest / "etc"), "/etc");
}

TEST_F(ExtractTest, APlantedSymlinkIsNeverWrittenThrough) {
  fs::path outside = tmp_.path() / "outside";
  fs::create_directories(outside);
  fs::path a = Archive({{.path = "d", .type = AE_IFLNK, .mode = 0777, .symlink = outside.string()},
                        {.path = "d/pwned", .content = "x"}});
  for (const ExtractOptions& o : {ExtractOptions{}, kRootTree}) {
    fs::path dest = NewDest();
    // Either refused or the planted link replaced (UNLINK): never followed.
    Status st = ExtractArchive(a, dest, o);
    EXPECT_FALSE(fs::exists(outside / "pwned")) << st.ToString();
    if (st.ok()) {
      EXPECT_FALSE(fs::is_symlink(dest / "d"));
      EXPECT_EQ(*ReadFile(dest / "d/pwned"), "x");
    }
  }
}

TEST_F(ExtractTest, RootEntryModeAppliesToDestOnlyWhenAsked) {
  fs::path a = Archive({{.path = "./", .type = AE_IFDIR, .mode = 0751},
                        {.path = "./f", .content = "x"}});
  fs::path dest = NewDest();
  ::chmod(dest.c_str(), 0700);
  ASSERT_TRUE(ExtractArchive(a, dest, kKernelLike).ok());
  EXPECT_EQ(fs::status(dest).permissions(), fs::perms::owner_all);
  fs::path dest2 = NewDest();
  ::chmod(dest2.c_str(), 0700);
  ASSERT_TRUE(ExtractArchive(a, dest2, kRootTree).ok());
  EXPECT_EQ(static_cast<unsigned>(fs::status(dest2).permissions()), 0751u);
}

TEST_F(ExtractTest, EmptyArchiveIsAnErrorOnlyWhenEntriesAreRequired) {
  fs::path a = Archive({});
  Status st = ExtractArchive(a, NewDest(), kKernelLike);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("empty"), std::string::npos) << st.ToString();
  EXPECT_TRUE(ExtractArchive(a, NewDest(), kRootTree).ok());
}

TEST_F(ExtractTest, GarbageIsDataLossNamingTheArchive) {
  fs::path junk = tmp_.path() / "junk.tar";
  ASSERT_TRUE(WriteFileAtomic(junk, std::string(4096, '\x7f')).ok());
  Status st = ExtractArchive(junk, NewDest(), kKernelLike);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find(junk.string()), std::string::npos) << st.ToString();
}

TEST_F(ExtractTest, NamedFilesAreExtractedPrivatelyAndOthersIgnored) {
  fs::path a = Archive({{.path = "./rootfs.ext4", .content = "disk"},
                        {.path = "other", .content = "ignored"},
                        {.path = "manifest.json", .content = "{}"}});
  fs::path dest = NewDest();
  auto found = ExtractNamedFiles(a, dest, {"rootfs.ext4", "manifest.json", "absent"});
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(*found, (std::vector<std::string>{"rootfs.ext4", "manifest.json"}));
  EXPECT_EQ(*ReadFile(dest / "rootfs.ext4"), "disk");
  EXPECT_FALSE(fs::exists(dest / "other"));
  EXPECT_EQ(fs::status(dest / "rootfs.ext4").permissions(),
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(ExtractTest, NamedFileThatIsALinkOrRepeatedIsRefused) {
  fs::path link = Archive({{.path = "rootfs.ext4", .type = AE_IFLNK, .mode = 0777,
                            .symlink = "other.img"}});
  auto found = ExtractNamedFiles(link, NewDest(), {"rootfs.ext4"});
  EXPECT_EQ(found.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(found.status().message().find("regular file"), std::string::npos);
  fs::path twice = Archive({{.path = "rootfs.ext4", .content = "a"},
                            {.path = "./rootfs.ext4", .content = "b"}});
  found = ExtractNamedFiles(twice, NewDest(), {"rootfs.ext4"});
  EXPECT_EQ(found.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(found.status().message().find("appears twice"), std::string::npos);
}

}  // namespace
}  // namespace banger::fetch
