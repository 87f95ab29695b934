#include "images/bundle.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "base/sha256.h"
#include "images/ext4_builder.h"
#include "images/image_service.h"
#include "images/images_test_util.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::DebugfsCat;
using testing::ListDir;
using testing::TarItem;
using testing::TempDir;
using testing::WriteTar;

constexpr char kManifest[] =
    R"({"name":"prebuilt","config":{"config":{"Cmd":["/bin/sh"],"Env":["X=1"]}}})";

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "building root disks with their owners needs root";
    // A real (small) root disk to ship inside the bundle.
    fs::path tree = tmp_.path() / "tree";
    testing::MakeFile(tree / "etc/os-release", "NAME=\"bundled\"\n", 0644);
    rootfs_ = tmp_.path() / "shipped.ext4";
    ASSERT_TRUE(BuildExt4(*runner_, tree, rootfs_, 16ull << 20).ok());
    rootfs_bytes_ = *ReadFile(rootfs_);
    auto store = StateStore::Open(tmp_.path() / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  /// Writes a bundle and returns its file:// URL and sha256.
  std::pair<std::string, std::string> MakeBundle(const std::string& name,
                                                 std::vector<TarItem> items) {
    fs::path p = tmp_.path() / "srv" / name;
    fs::create_directories(p.parent_path());
    WriteTar(p, items, true);
    return {"file://" + p.string(), *Sha256File(p)};
  }

  std::vector<TarItem> GoodItems() {
    return {{.path = "manifest.json", .content = kManifest},
            {.path = "./rootfs.ext4", .content = rootfs_bytes_, .mode = 0600}};
  }

  std::unique_ptr<ImageService> ServiceWith(const std::string& url, const std::string& sha) {
    auto cat = ParseImageCatalog("images:\n  prebuilt:\n    bundle: {url: '" + url +
                                     "', sha256: " + sha + "}\n",
                                 "test");
    EXPECT_TRUE(cat.ok()) << cat.status().ToString();
    ImageServiceOptions opts;
    opts.images_dir = tmp_.path() / "images";
    opts.blobs_dir = tmp_.path() / "blobs";
    opts.catalog = *cat;
    opts.tree_source = [](const std::string&, const fs::path&, const oci::PullOptions&)
        -> Result<oci::PulledImage> { return Internal("no registry in this test"); };
    return std::make_unique<ImageService>(*store_, *runner_, clock_, std::move(opts));
  }

  TempDir tmp_;
  testing::FixedClock clock_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  std::unique_ptr<StateStore> store_;
  fs::path rootfs_;
  std::string rootfs_bytes_;
};

TEST_F(BundleTest, InstallsAVerifiedBundleFromAFileUrl) {
  auto [url, sha] = MakeBundle("prebuilt.tar.zst", GoodItems());
  auto service = ServiceWith(url, sha);
  auto rec = service->Ensure("prebuilt");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->digest, "sha256:" + sha);
  EXPECT_EQ(rec->source, "prebuilt");
  EXPECT_EQ(rec->config_json, R"({"config":{"Cmd":["/bin/sh"],"Env":["X=1"]}})");
  EXPECT_EQ(*Sha256File(rec->rootfs_path), Sha256Hex(rootfs_bytes_));
  EXPECT_EQ(DebugfsCat(rec->rootfs_path, "/etc/os-release"), "NAME=\"bundled\"\n");
  fs::path dir = tmp_.path() / "images" / rec->id;
  EXPECT_EQ(ListDir(dir), (std::vector<std::string>{"manifest.json", "metadata.json", "rootfs.ext4"}));
  EXPECT_EQ(ListDir(tmp_.path() / "images"), (std::vector<std::string>{rec->id}));
}

TEST_F(BundleTest, WrongSha256IsDataLossAndPublishesNothing) {
  auto [url, sha] = MakeBundle("prebuilt.tar.zst", GoodItems());
  std::string wrong = sha;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  auto service = ServiceWith(url, wrong);
  auto rec = service->Ensure("prebuilt");
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(rec.status().message().find(sha), std::string::npos) << rec.status().message();
  EXPECT_TRUE(ListDir(tmp_.path() / "images").empty());
  EXPECT_FALSE(service->IsPresent("prebuilt"));
}

TEST_F(BundleTest, HostileEntryPathsAreRefusedAndNothingLandsOutside) {
  for (std::string hostile : {"../escaped", "/tmp/banger-bundle-escaped", "a/../../escaped"}) {
    std::vector<TarItem> items = GoodItems();
    items.insert(items.begin(), TarItem{.path = hostile, .content = "pwned"});
    auto [url, sha] = MakeBundle("hostile.tar.zst", items);
    auto service = ServiceWith(url, sha);
    auto rec = service->Ensure("prebuilt");
    ASSERT_FALSE(rec.ok()) << hostile;
    EXPECT_EQ(rec.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(rec.status().message().find(hostile), std::string::npos) << rec.status().message();
    EXPECT_FALSE(fs::exists(tmp_.path() / "escaped"));
    EXPECT_FALSE(fs::exists(tmp_.path() / "images/escaped"));
    EXPECT_FALSE(fs::exists("/tmp/banger-bundle-escaped"));
    EXPECT_TRUE(ListDir(tmp_.path() / "images").empty());
    fs::remove(tmp_.path() / "srv/hostile.tar.zst");
  }
}

TEST_F(BundleTest, RootfsMustBeARegularFile) {
  TempDir out;
  fs::path archive = tmp_.path() / "link.tar.zst";
  WriteTar(archive, {{.path = "rootfs.ext4", .type = AE_IFLNK, .mode = 0777, .symlink = "other.img"}},
           true);
  Status st = ExtractBundle(archive, out.path());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("regular file"), std::string::npos) << st.message();
  EXPECT_TRUE(ListDir(out.path()).empty());

  fs::path empty = tmp_.path() / "empty.tar.zst";
  WriteTar(empty, {{.path = "manifest.json", .content = "{}"}}, true);
  TempDir out2;
  st = ExtractBundle(empty, out2.path());
  EXPECT_NE(st.message().find("no rootfs.ext4"), std::string::npos) << st.message();
}

TEST_F(BundleTest, MissingFileIsNotFound) {
  TempDir out;
  auto sha = DownloadFile("file://" + (tmp_.path() / "nope.tar.zst").string(),
                          out.path() / "x", {});
  EXPECT_EQ(sha.status().code(), StatusCode::kNotFound) << sha.status().ToString();
  EXPECT_FALSE(fs::exists(out.path() / "x"));
}

TEST_F(BundleTest, DownloadReportsTheSha256OfWhatItWrote) {
  TempDir out;
  fs::path src = tmp_.path() / "blob";
  ASSERT_TRUE(WriteFileAtomic(src, "hello bundle").ok());
  auto sha = DownloadFile("file://" + src.string(), out.path() / "copy", {});
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(*sha, Sha256Hex("hello bundle"));
  EXPECT_EQ(*ReadFile(out.path() / "copy"), "hello bundle");
  EXPECT_EQ(fs::status(out.path() / "copy").permissions(),
            fs::perms::owner_read | fs::perms::owner_write);
}

}  // namespace
}  // namespace banger::images
