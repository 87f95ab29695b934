// Integration tests for images/: OCI pulls from a real docker-registry on
// 127.0.0.1 through ImageService to a published disk. (The debootstrap build of
// debian-bookworm is checked by tests/e2e/ssh_test.cc, whose suite builds it
// once for its sandbox.)
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <set>

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "images/image_service.h"
#include "images/images_test_util.h"
#include "oci/http.h"
#include "oci/test_layers.h"
#include "tests/support/oci_registry.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::DebugfsStat;
using testing::E2fsck;
using testing::ListDir;
using testing::TempDir;

std::unique_ptr<StateStore> OpenStore(const fs::path& dir) {
  auto store = StateStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// A real registry: Debian's docker-registry as a child process on 127.0.0.1.

// A real registry (tests/support/oci_registry.h) plus the image layout these
// tests push: a config blob used as is and gzip layers.
class Registry {
 public:
  Status Start(const fs::path& root) { return process_.Start(root); }
  std::string HostPort() const { return process_.HostPort(); }

  /// Pushes a one-config, n-layer OCI image; returns the manifest digest.
  Result<std::string> PushImage(const std::string& repo, const std::string& tag,
                                const std::string& config, const std::vector<std::string>& layers) {
    std::vector<::banger::testing::OciBlob> blobs;
    for (const auto& l : layers) blobs.push_back({"application/vnd.oci.image.layer.v1.tar+gzip", l});
    auto img = ::banger::testing::OciTestImage::FromBlobs(blobs, config);
    ::banger::testing::OciPusher pusher(HostPort());
    BANGER_RETURN_IF_ERROR(pusher.PushImage(repo, tag, img));
    return img.Digest();
  }

 private:
  ::banger::testing::RegistryProcess process_;
};

class RegistryImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "building root disks with their owners needs root";
    if (!fs::exists("/usr/bin/docker-registry")) {
      GTEST_SKIP() << "/usr/bin/docker-registry is not installed (package docker-registry)";
    }
    ASSERT_TRUE(MakeDirs(tmp_.path() / "registry").ok());
    Status st = registry_.Start(tmp_.path() / "registry");
    ASSERT_TRUE(st.ok()) << st.ToString();
    store_ = OpenStore(tmp_.path() / "state");
    ASSERT_TRUE(store_);
    ImageServiceOptions opts;
    opts.images_dir = tmp_.path() / "images";
    opts.blobs_dir = tmp_.path() / "blobs";
    opts.catalog = BuiltinImageCatalog();
    opts.plain_http = true;  // default tree source: oci::PullAndFlatten
    service_ = std::make_unique<ImageService>(*store_, *runner_, clock_, opts);
  }

  static std::string Config() {
    return nlohmann::json{
        {"architecture", "amd64"},
        {"os", "linux"},
        {"config",
         {{"Entrypoint", {"/usr/local/bin/app"}},
          {"Cmd", {"--port", "8080"}},
          {"Env", {"PATH=/usr/local/bin:/bin", "MODE=prod"}},
          {"WorkingDir", "/srv"},
          {"User", "1000:1000"}}},
        {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}}
        .dump();
  }

  static std::vector<std::string> Layers() {
    using oci::testing::TarBuilder;
    using oci::testing::TarEntry;
    TarBuilder base;
    base.Dir("etc").File("etc/os-release", "NAME=\"registry test\"\n").Dir("srv");
    base.Add(TarEntry{.path = "srv/data", .content = "state\n", .mode = 0640, .uid = 1000, .gid = 1000});
    base.Add(TarEntry{.path = "usr/local/bin/app", .content = "#!/bin/sh\n", .mode = 04755});
    base.Add(TarEntry{.path = "etc/obsolete", .content = "old"});
    TarBuilder top;
    top.Whiteout("etc", "obsolete").Symlink("bin", "usr/local/bin");
    return {base.Build(oci::testing::Compression::kGzip), top.Build(oci::testing::Compression::kGzip)};
  }

  TempDir tmp_;
  Registry registry_;
  testing::FixedClock clock_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<ImageService> service_;
};

TEST_F(RegistryImageTest, PullPublishesADiskWithTheImageOwnersAndConfig) {
  auto digest = registry_.PushImage("team/app", "1.0", Config(), Layers());
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  std::string ref = registry_.HostPort() + "/team/app:1.0";

  auto rec = service_->Pull(ref, {});
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, "app-1.0");
  EXPECT_EQ(rec->digest, *digest);
  auto cfg = nlohmann::json::parse(rec->config_json);
  EXPECT_EQ(cfg["config"]["Entrypoint"][0], "/usr/local/bin/app");
  EXPECT_EQ(cfg["config"]["User"], "1000:1000");

  EXPECT_EQ(E2fsck(rec->rootfs_path), 0);
  auto data = DebugfsStat(rec->rootfs_path, "/srv/data");
  ASSERT_TRUE(data);
  EXPECT_EQ(data->uid, 1000u);
  EXPECT_EQ(data->gid, 1000u);
  EXPECT_EQ(data->mode, 0640u);
  auto app = DebugfsStat(rec->rootfs_path, "/usr/local/bin/app");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->mode, 04755u);
  EXPECT_EQ(app->uid, 0u);
  EXPECT_FALSE(DebugfsStat(rec->rootfs_path, "/etc/obsolete")) << "whiteout not applied";
  auto bin = DebugfsStat(rec->rootfs_path, "/bin");
  ASSERT_TRUE(bin);
  EXPECT_EQ(bin->link_target, "usr/local/bin");
  EXPECT_EQ(ListDir(tmp_.path() / "images"), (std::vector<std::string>{rec->id}));
}

TEST_F(RegistryImageTest, EnsureOfASpecReferenceRecordsTheExactStringAndPrunesBlobsAfterRemove) {
  ASSERT_TRUE(registry_.PushImage("team/app", "2.0", Config(), Layers()).ok());
  std::string ref = registry_.HostPort() + "/team/app:2.0";
  auto rec = service_->Ensure(ref);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, ref);
  EXPECT_TRUE(service_->IsPresent(ref));
  size_t cached = ListDir(tmp_.path() / "blobs/sha256").size();
  EXPECT_GE(cached, 4u);  // manifest, config, two layers

  // While the image is installed its blobs stay.
  auto kept = service_->Prune();
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(kept->removed_blobs, 0u);
  EXPECT_EQ(ListDir(tmp_.path() / "blobs/sha256").size(), cached);

  ASSERT_TRUE(service_->Remove(ref).ok());
  auto pruned = service_->Prune();
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(pruned->removed_blobs, cached);
  EXPECT_GT(pruned->freed_bytes, 0u);
  EXPECT_TRUE(ListDir(tmp_.path() / "blobs/sha256").empty());
}

TEST_F(RegistryImageTest, PullAfterRemoveAndUnderAnotherNameReusesTheDiskWithoutLayers) {
  // One set of layer bytes for both pushes: gzip headers carry a time, so two
  // builds a second apart would be two digests.
  const std::vector<std::string> layers = Layers();
  auto digest = registry_.PushImage("team/app", "3.0", Config(), layers);
  ASSERT_TRUE(digest.ok()) << digest.status().ToString();
  ASSERT_TRUE(registry_.PushImage("mirror/app", "stable", Config(), layers).ok());
  std::string ref = registry_.HostPort() + "/team/app:3.0";
  auto first = service_->Pull(ref, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  struct stat disk {};
  ASSERT_EQ(::stat(first->rootfs_path.c_str(), &disk), 0);
  ASSERT_TRUE(service_->Remove(first->name).ok());

  // Take the layers out of the blob cache: a pull that flattened would fetch
  // them again, a pull that reuses the cached disk does not need them.
  std::set<std::string> layer_files;
  for (const auto& n : ListDir(tmp_.path() / "blobs/sha256")) {
    auto body = ReadFile(tmp_.path() / "blobs/sha256" / n);
    ASSERT_TRUE(body.ok());
    if (!body->empty() && (*body)[0] != '{') layer_files.insert(n);  // not JSON: a layer
  }
  ASSERT_EQ(layer_files.size(), 2u);
  for (const auto& n : layer_files) fs::remove(tmp_.path() / "blobs/sha256" / n);

  std::vector<std::string> phases;
  PullRequest req;
  req.progress = [&](const oci::PullProgress& p) { phases.push_back(p.phase); };
  auto again = service_->Pull(ref, req);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  struct stat st {};
  ASSERT_EQ(::stat(again->rootfs_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, disk.st_ino) << "the root disk was rebuilt";
  EXPECT_EQ(again->digest, *digest);
  EXPECT_EQ(again->config_json, first->config_json);
  for (const auto& n : layer_files) EXPECT_FALSE(fs::exists(tmp_.path() / "blobs/sha256" / n)) << "layer fetched again";
  for (const char* p : {"blob", "flatten", "mkfs"}) {
    EXPECT_EQ(std::count(phases.begin(), phases.end(), p), 0) << p;
  }

  // The same digest under another reference and name shares the disk.
  PullRequest other;
  other.name = "mirrored";
  auto mirrored = service_->Pull(registry_.HostPort() + "/mirror/app:stable", other);
  ASSERT_TRUE(mirrored.ok()) << mirrored.status().ToString();
  ASSERT_EQ(::stat(mirrored->rootfs_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, disk.st_ino);
  EXPECT_EQ(E2fsck(mirrored->rootfs_path), 0);

  // Once no image links it, prune removes the cached disk.
  ASSERT_TRUE(service_->Remove("mirrored").ok());
  ASSERT_TRUE(service_->Remove(again->name).ok());
  auto pruned = service_->Prune();
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(pruned->removed_disks.size(), 1u);
  EXPECT_TRUE(ListDir(tmp_.path() / "disks").empty());
}

TEST_F(RegistryImageTest, PullWritesTheDiskFromTheLayersWithoutATree) {
  ASSERT_TRUE(registry_.PushImage("team/app", "4.0", Config(), Layers()).ok());
  std::vector<std::string> phases;
  PullRequest req;
  req.progress = [&](const oci::PullProgress& p) { phases.push_back(p.phase); };
  auto rec = service_->Pull(registry_.HostPort() + "/team/app:4.0", req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(std::count(phases.begin(), phases.end(), "write"), 1) << "the disk writer was not used";
  EXPECT_EQ(std::count(phases.begin(), phases.end(), "mkfs"), 0) << "a tree was built and copied";
  EXPECT_EQ(E2fsck(rec->rootfs_path), 0);
  auto app = DebugfsStat(rec->rootfs_path, "/usr/local/bin/app");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->mode, 04755u);
}

TEST_F(RegistryImageTest, AnImageThatOutgrowsTheStreamedDiskIsBuiltFromATree) {
  // 1,100 files on a 16 MiB disk: the streamed disk has 1,024 inodes (one per
  // 16 KiB); the tree path counts the entries first and makes enough.
  oci::testing::TarBuilder many;
  many.Dir("files");
  for (int i = 0; i < 1100; ++i) many.File("files/f" + std::to_string(i), std::to_string(i));
  ASSERT_TRUE(registry_.PushImage("team/many", "1", Config(), {many.Build(oci::testing::Compression::kGzip)}).ok());
  std::vector<std::string> phases;
  PullRequest req;
  req.disk_size_bytes = 16ull << 20;
  req.progress = [&](const oci::PullProgress& p) { phases.push_back(p.phase); };
  auto rec = service_->Pull(registry_.HostPort() + "/team/many:1", req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(std::count(phases.begin(), phases.end(), "write"), 1);
  EXPECT_EQ(std::count(phases.begin(), phases.end(), "mkfs"), 1) << "no fallback to the tree";
  EXPECT_EQ(E2fsck(rec->rootfs_path), 0);
  auto last = DebugfsStat(rec->rootfs_path, "/files/f1099");
  ASSERT_TRUE(last);
  EXPECT_EQ(ListDir(tmp_.path() / "images"), (std::vector<std::string>{rec->id}))
      << "the failed streamed disk or the tree was left behind";
}

TEST_F(RegistryImageTest, MissingTagFailsCleanly) {
  auto rec = service_->Pull(registry_.HostPort() + "/team/none:1", {});
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kNotFound) << rec.status().ToString();
  EXPECT_TRUE(ListDir(tmp_.path() / "images").empty());
}

}  // namespace
}  // namespace banger::images
