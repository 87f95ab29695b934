// Integration tests for images/: a debootstrap build through the host's apt
// mirror, and OCI pulls from a real docker-registry on 127.0.0.1 through
// ImageService to a published disk.
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
#include "images/recipes.h"
#include "oci/http.h"
#include "oci/test_layers.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::DebugfsCat;
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

TEST(DebootstrapImageTest, BuildsDebianBookwormWithSshdThroughTheHostMirror) {
  if (::geteuid() != 0) GTEST_SKIP() << "debootstrap needs root";
  auto mirror = FindAptMirror("/etc/apt", "bookworm");
  if (!mirror.ok()) GTEST_SKIP() << "no apt mirror configured: " << mirror.status().message();
  TempDir tmp;
  auto store = OpenStore(tmp.path() / "state");
  ASSERT_TRUE(store);
  auto runner = MakePosixCommandRunner();
  testing::FixedClock clock;
  ImageServiceOptions opts;
  opts.images_dir = tmp.path() / "images";
  opts.blobs_dir = tmp.path() / "blobs";
  opts.catalog = BuiltinImageCatalog();
  ImageService service(*store, *runner, clock, opts);

  auto start = std::chrono::steady_clock::now();
  auto rec = service.Ensure("debian-bookworm");
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                               start).count();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  std::printf("[ MEASURE  ] debian-bookworm build: %lld s, disk %llu bytes\n",
              static_cast<long long>(secs), static_cast<unsigned long long>(rec->size_bytes));
  EXPECT_EQ(rec->name, "debian-bookworm");
  std::string fsck;
  EXPECT_EQ(E2fsck(rec->rootfs_path, &fsck), 0) << fsck;
  std::string os_release = DebugfsCat(rec->rootfs_path, "/etc/os-release");
  if (os_release.empty()) os_release = DebugfsCat(rec->rootfs_path, "/usr/lib/os-release");
  EXPECT_NE(os_release.find("Debian GNU/Linux 12 (bookworm)"), std::string::npos) << os_release;
  auto sshd = DebugfsStat(rec->rootfs_path, "/usr/sbin/sshd");
  ASSERT_TRUE(sshd) << "/usr/sbin/sshd missing";
  EXPECT_EQ(sshd->type, "regular");
  EXPECT_TRUE(DebugfsStat(rec->rootfs_path, "/usr/sbin/ip")) << "iproute2 missing";
  EXPECT_TRUE(DebugfsStat(rec->rootfs_path, "/sbin/init")) << "systemd-sysv missing";
  // The tree is gone and nothing was left mounted.
  EXPECT_EQ(ListDir(opts.images_dir), (std::vector<std::string>{rec->id}));
  auto mounts = ReadFile("/proc/self/mountinfo");
  ASSERT_TRUE(mounts.ok());
  EXPECT_EQ(mounts->find(opts.images_dir.string()), std::string::npos);
}

// ---------------------------------------------------------------------------
// A real registry: Debian's docker-registry as a child process on 127.0.0.1.

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

class Registry {
 public:
  Status Start(const fs::path& root) {
    port_ = FreePort();
    fs::path cfg = root / "config.yml";
    std::string yaml = "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                       "    rootdirectory: " + (root / "storage").string() +
                       "\nhttp:\n  addr: " + HostPort() + "\n";
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(cfg, yaml, 0600));
    auto runner = MakePosixCommandRunner();
    CommandSpec spec;
    spec.argv = {"/usr/bin/docker-registry", "serve", cfg.string()};
    spec.log_file = root / "registry.log";
    BANGER_ASSIGN_OR_RETURN(id_, runner->StartDetached(spec));
    auto http = oci::MakeCurlHttpClient();
    for (int i = 0; i < 200; ++i) {
      oci::HttpRequest req;
      req.url = "http://" + HostPort() + "/v2/";
      req.connect_timeout = std::chrono::seconds(1);
      auto r = http->Do(req);
      if (r.ok() && r->status == 200) return OkStatus();
      if (!ProcessAlive(id_)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return Unavailable("docker-registry did not come up: " +
                       ReadFile(root / "registry.log").value_or(""));
  }
  ~Registry() {
    if (id_.pid == 0) return;
    (void)SignalProcess(id_, SIGTERM);
    for (int i = 0; i < 200 && ProcessAlive(id_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ProcessAlive(id_)) (void)SignalProcess(id_, SIGKILL);
  }
  std::string HostPort() const { return "127.0.0.1:" + std::to_string(port_); }

  Status PushBlob(const std::string& repo, const std::string& data) {
    auto http = oci::MakeCurlHttpClient();
    oci::HttpRequest post;
    post.method = "POST";
    post.url = "http://" + HostPort() + "/v2/" + repo + "/blobs/uploads/";
    BANGER_ASSIGN_OR_RETURN(oci::HttpResponse r, http->Do(post));
    if (r.status != 202) return Internal("upload start: HTTP " + std::to_string(r.status));
    std::string loc = r.Header("location");
    if (StartsWith(loc, "/")) loc = "http://" + HostPort() + loc;
    oci::HttpRequest put;
    put.method = "PUT";
    put.url = loc + (loc.find('?') == std::string::npos ? "?" : "&") + "digest=sha256%3A" +
              Sha256Hex(data);
    put.headers = {"Content-Type: application/octet-stream"};
    put.body = data;
    BANGER_ASSIGN_OR_RETURN(oci::HttpResponse p, http->Do(put));
    if (p.status != 201) return Internal("upload: HTTP " + std::to_string(p.status));
    return OkStatus();
  }

  /// Pushes a one-config, n-layer OCI image; returns the manifest digest.
  Result<std::string> PushImage(const std::string& repo, const std::string& tag,
                                const std::string& config, const std::vector<std::string>& layers) {
    BANGER_RETURN_IF_ERROR(PushBlob(repo, config));
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                        {"config",
                         {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                          {"digest", "sha256:" + Sha256Hex(config)},
                          {"size", config.size()}}},
                        {"layers", nlohmann::json::array()}};
    for (const auto& l : layers) {
      BANGER_RETURN_IF_ERROR(PushBlob(repo, l));
      m["layers"].push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                             {"digest", "sha256:" + Sha256Hex(l)},
                             {"size", l.size()}});
    }
    std::string manifest = m.dump();
    auto http = oci::MakeCurlHttpClient();
    oci::HttpRequest put;
    put.method = "PUT";
    put.url = "http://" + HostPort() + "/v2/" + repo + "/manifests/" + tag;
    put.headers = {"Content-Type: application/vnd.oci.image.manifest.v1+json"};
    put.body = manifest;
    BANGER_ASSIGN_OR_RETURN(oci::HttpResponse p, http->Do(put));
    if (p.status != 201) return Internal("manifest put: HTTP " + std::to_string(p.status));
    return "sha256:" + Sha256Hex(manifest);
  }

 private:
  int port_ = 0;
  ProcessIdentity id_;
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
