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

TEST_F(RegistryImageTest, MissingTagFailsCleanly) {
  auto rec = service_->Pull(registry_.HostPort() + "/team/none:1", {});
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kNotFound) << rec.status().ToString();
  EXPECT_TRUE(ListDir(tmp_.path() / "images").empty());
}

}  // namespace
}  // namespace banger::images
