// Integration tests: pulls from a real docker-registry (Debian's distribution
// 2.8) on 127.0.0.1, and from deliberately faulty in-test HTTP servers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "oci/auth.h"
#include "oci/blob_store.h"
#include "oci/http.h"
#include "oci/puller.h"
#include "oci/registry_client.h"
#include "oci/test_http_server.h"
#include "oci/test_layers.h"
#include "tests/support/oci_registry.h"

namespace banger::oci {
namespace {

namespace fs = std::filesystem;
using testing::Compression;
using testing::TarBuilder;
using testing::TarEntry;
using testing::TestHttpServer;
using testing::TestRequest;
using testing::TestResponse;

constexpr std::string_view kLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr std::string_view kLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr std::string_view kLayerTar = "application/vnd.oci.image.layer.v1.tar";

std::string Digest(std::string_view data) { return "sha256:" + Sha256Hex(data); }

using Blob = ::banger::testing::OciBlob;
using TestImage = ::banger::testing::OciTestImage;
using Pusher = ::banger::testing::OciPusher;
using ::banger::testing::RegistryProcess;

int FreePort() { return ::banger::testing::FreeLoopbackPort(); }

// An image of `layers` whose config names `arch` (and no diff_ids).
TestImage MakeImage(const std::vector<Blob>& layers, const std::string& arch = "amd64") {
  nlohmann::json cfg = {{"architecture", arch},
                        {"os", "linux"},
                        {"config", {{"Entrypoint", {"/bin/sh"}}, {"Env", {"PATH=/bin"}}}},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}};
  return TestImage::FromBlobs(layers, cfg.dump());
}

std::string IndexJson(const std::vector<std::pair<const TestImage*, std::string>>& entries) {
  nlohmann::json idx = {{"schemaVersion", 2},
                        {"mediaType", "application/vnd.oci.image.index.v1+json"},
                        {"manifests", nlohmann::json::array()}};
  for (const auto& [img, platform] : entries) {
    std::vector<std::string> p = Split(platform, '/');
    nlohmann::json plat = {{"os", p[0]}, {"architecture", p[1]}};
    if (p.size() > 2) plat["variant"] = p[2];
    idx["manifests"].push_back({{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                {"digest", img->Digest()},
                                {"size", img->manifest.size()},
                                {"platform", plat}});
  }
  return idx.dump();
}

std::set<std::string> CacheFiles(const fs::path& blob_dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(blob_dir / "sha256", ec)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

std::string ReadOr(const fs::path& p) {
  auto r = ReadFile(p);
  return r.ok() ? *r : "<missing>";
}

bool Exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Layers exercising most of the flattening rules.
std::vector<Blob> RichLayers() {
  TarEntry owned;
  owned.path = "home/user/data";
  owned.content = "owned by 1000";
  owned.uid = 1000;
  owned.gid = 1000;
  owned.mode = 0640;
  TarEntry suid;
  suid.path = "bin/passwd";
  suid.content = "suid";
  suid.mode = 04755;
  std::string l1 = TarBuilder()
                       .Dir("bin")
                       .File("bin/busybox", "BUSYBOX", 0755)
                       .Hardlink("bin/sh", "bin/busybox")
                       .Symlink("bin/ls", "busybox")
                       .Symlink("usr-link", "/usr")
                       .Add(suid)
                       .Dir("etc")
                       .File("etc/os-release", "ID=test\n")
                       .File("etc/remove-me", "old")
                       .Dir("var")
                       .Dir("var/cache")
                       .File("var/cache/a", "lower a")
                       .File("var/cache/b", "lower b")
                       .Dir("home")
                       .Dir("home/user")
                       .Add(owned)
                       .Build(Compression::kGzip);
  std::string l2 = TarBuilder()
                       .Dir("etc")
                       .Whiteout("etc", "remove-me")
                       .Dir("var/cache")
                       .Opaque("var/cache")
                       .File("var/cache/c", "upper c")
                       .Build(Compression::kZstd);
  std::string l3 = TarBuilder().File("etc/motd", "hello from layer 3\n").Build(Compression::kNone);
  return {{std::string(kLayerGzip), l1}, {std::string(kLayerZstd), l2}, {std::string(kLayerTar), l3}};
}

void ExpectRichTree(const fs::path& root) {
  EXPECT_EQ(ReadOr(root / "bin/busybox"), "BUSYBOX");
  struct stat a {}, b {};
  ASSERT_EQ(::lstat((root / "bin/busybox").c_str(), &a), 0);
  ASSERT_EQ(::lstat((root / "bin/sh").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "bin/sh should be a hard link to bin/busybox";
  EXPECT_EQ(fs::read_symlink(root / "bin/ls"), fs::path("busybox"));
  EXPECT_EQ(fs::read_symlink(root / "usr-link"), fs::path("/usr"));
  struct stat s {};
  ASSERT_EQ(::lstat((root / "bin/passwd").c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 04755u);
  EXPECT_EQ(ReadOr(root / "etc/os-release"), "ID=test\n");
  EXPECT_FALSE(Exists(root / "etc/remove-me"));
  EXPECT_FALSE(Exists(root / "etc/.wh.remove-me"));
  EXPECT_FALSE(Exists(root / "var/cache/a"));
  EXPECT_FALSE(Exists(root / "var/cache/b"));
  EXPECT_FALSE(Exists(root / "var/cache/.wh..wh..opq"));
  EXPECT_EQ(ReadOr(root / "var/cache/c"), "upper c");
  EXPECT_EQ(ReadOr(root / "etc/motd"), "hello from layer 3\n");
  struct stat o {};
  ASSERT_EQ(::lstat((root / "home/user/data").c_str(), &o), 0);
  EXPECT_EQ(o.st_mode & 0777, 0640u);
  if (::geteuid() == 0) {
    EXPECT_EQ(o.st_uid, 1000u);
    EXPECT_EQ(o.st_gid, 1000u);
  }
}

class RegistryPullTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists("/usr/bin/docker-registry")) return;
    auto t = MakeTempDir("banger-registry-");
    ASSERT_TRUE(t.ok());
    registry_root_ = new fs::path(*t);
    registry_ = new RegistryProcess();
    Status s = registry_->Start(*registry_root_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    if (registry_root_) (void)RemoveAll(*registry_root_);
    delete registry_root_;
    registry_root_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << "/usr/bin/docker-registry is not installed";
    auto t = MakeTempDir("banger-pull-");
    ASSERT_TRUE(t.ok());
    tmp_ = std::make_unique<ScopedRemove>(*t);
    blobs_ = *t / "blobs";
  }
  fs::path NewDest(const std::string& name) {
    fs::path d = tmp_->path() / name;
    fs::create_directories(d);
    return d;
  }
  PullOptions Options() {
    PullOptions o;
    o.blob_dir = blobs_;
    o.initial_backoff = std::chrono::milliseconds(1);
    return o;
  }
  std::string Host() const { return registry_->HostPort(); }

  static RegistryProcess* registry_;
  static fs::path* registry_root_;
  std::unique_ptr<ScopedRemove> tmp_;
  fs::path blobs_;
};
RegistryProcess* RegistryPullTest::registry_ = nullptr;
fs::path* RegistryPullTest::registry_root_ = nullptr;

TEST_F(RegistryPullTest, PullsMultiLayerImageAndWarmRepullDownloadsNothing) {
  TestImage img = MakeImage(RichLayers());
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/rich", "v1", img).ok());

  std::vector<PullProgress> progress;
  PullOptions opts = Options();
  opts.progress = [&](const PullProgress& p) { progress.push_back(p); };
  fs::path dest = NewDest("rootfs1");
  auto r = PullAndFlatten(Host() + "/banger/rich:v1", dest, opts);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->reference, Host() + "/banger/rich:v1");
  EXPECT_EQ(r->manifest_digest, img.Digest());
  EXPECT_EQ(r->config_json, img.config.data);
  EXPECT_TRUE(r->index_digest.empty());
  ASSERT_EQ(r->layer_digests.size(), 3u);
  EXPECT_EQ(r->layer_digests[1], img.layers[1].Digest());
  uint64_t expected_bytes = img.manifest.size() + img.config.data.size();
  for (const Blob& l : img.layers) expected_bytes += l.data.size();
  EXPECT_EQ(r->bytes_downloaded, expected_bytes);
  EXPECT_GT(r->tree_bytes, 0u);
  ExpectRichTree(dest);
  bool saw_blob = false, saw_flatten = false;
  for (const PullProgress& p : progress) {
    saw_blob |= p.phase == "blob" && p.item == img.layers[0].Digest() &&
                p.done_bytes == img.layers[0].data.size();
    saw_flatten |= p.phase == "flatten";
  }
  EXPECT_TRUE(saw_blob);
  EXPECT_TRUE(saw_flatten);

  // Every blob is in the cache, private, and named by its digest.
  std::set<std::string> files = CacheFiles(blobs_);
  EXPECT_TRUE(files.count(img.Digest().substr(7)));
  EXPECT_TRUE(files.count(img.config.Digest().substr(7)));
  for (const Blob& l : img.layers) EXPECT_TRUE(files.count(l.Digest().substr(7)));
  struct stat st {};
  ASSERT_EQ(::stat((blobs_ / "sha256").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  fs::path dest2 = NewDest("rootfs2");
  auto again = PullAndFlatten(Host() + "/banger/rich:v1", dest2, Options());
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->bytes_downloaded, 0u);
  EXPECT_EQ(again->manifest_digest, img.Digest());
  EXPECT_EQ(again->tree_bytes, r->tree_bytes);
  ExpectRichTree(dest2);

  // By digest, too.
  fs::path dest3 = NewDest("rootfs3");
  auto by_digest = PullAndFlatten(Host() + "/banger/rich@" + img.Digest(), dest3, Options());
  ASSERT_TRUE(by_digest.ok()) << by_digest.error().ToString();
  EXPECT_EQ(by_digest->bytes_downloaded, 0u);

  auto refs = ReferencedDigests(blobs_, r->manifest_digest);
  ASSERT_TRUE(refs.ok()) << refs.error().ToString();
  EXPECT_EQ(refs->size(), 5u);
}

// Eight layers, each overwriting /order and adding its own file; layer 5
// whites out layer 2's file and makes /opq opaque. Applied out of order, the
// tree would differ.
std::vector<Blob> ManyLayers() {
  std::vector<Blob> out;
  for (int i = 0; i < 8; ++i) {
    std::string big(256 * 1024 + i, '\0');
    for (size_t k = 0; k < big.size(); ++k) big[k] = static_cast<char>((k * 31 + i * 7) % 253);
    TarBuilder b;
    b.File("order", "layer " + std::to_string(i) + "\n")
        .File("l" + std::to_string(i), "from layer " + std::to_string(i))
        .File("big" + std::to_string(i), big)
        .Dir("opq")
        .File("opq/f" + std::to_string(i), "x");
    if (i == 5) b.Whiteout("", "l2").Opaque("opq");
    out.push_back({std::string(i % 2 ? kLayerZstd : kLayerGzip), b.Build(i % 2 ? Compression::kZstd : Compression::kGzip)});
  }
  return out;
}

TEST_F(RegistryPullTest, LayersDownloadInParallelAndApplyInOrder) {
  TestImage img = MakeImage(ManyLayers());
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/many", "v1", img).ok());
  for (int parallel : {4, 1}) {
    SCOPED_TRACE("parallel_layers " + std::to_string(parallel));
    (void)RemoveAll(blobs_);
    std::vector<std::string> flattened;  // layers in the order they were applied
    PullOptions opts = Options();
    opts.parallel_layers = parallel;
    opts.progress = [&](const PullProgress& p) {
      if (p.phase == "flatten" && (flattened.empty() || flattened.back() != p.item)) flattened.push_back(p.item);
    };
    fs::path dest = NewDest("many" + std::to_string(parallel));
    auto r = PullAndFlatten(Host() + "/banger/many:v1", dest, opts);
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    std::vector<std::string> want;
    for (const Blob& l : img.layers) want.push_back(l.Digest());
    EXPECT_EQ(flattened, want);
    EXPECT_EQ(r->layer_digests, want);
    uint64_t expected_bytes = img.manifest.size() + img.config.data.size();
    for (const Blob& l : img.layers) expected_bytes += l.data.size();
    EXPECT_EQ(r->bytes_downloaded, expected_bytes);
    EXPECT_EQ(ReadOr(dest / "order"), "layer 7\n");
    EXPECT_FALSE(Exists(dest / "l2")) << "layer 5's whiteout was applied before layer 2";
    for (int i : {0, 1, 3, 4, 5, 6, 7}) EXPECT_EQ(ReadOr(dest / ("l" + std::to_string(i))), "from layer " + std::to_string(i));
    std::set<std::string> opq;
    for (const auto& e : fs::directory_iterator(dest / "opq")) opq.insert(e.path().filename().string());
    EXPECT_EQ(opq, (std::set<std::string>{"f5", "f6", "f7"}));
    EXPECT_EQ(fs::file_size(dest / "big7"), 256u * 1024 + 7);
  }
}

TEST_F(RegistryPullTest, AFailingLayerStopsThePullAppliesNothingAboveItAndLeavesNoTempFiles) {
  TestImage img = MakeImage(ManyLayers());
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/broken", "v1", img).ok());
  // The registry loses layer 3's data: its GET fails (not found, no retry helps).
  std::string hex = img.layers[3].Digest().substr(7);
  fs::path data = *registry_root_ / "storage/docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
  ASSERT_TRUE(fs::exists(data)) << data;
  fs::path saved = tmp_->path() / "layer3.saved";
  fs::rename(data, saved);
  fs::path dest = NewDest("broken");
  auto r = PullAndFlatten(Host() + "/banger/broken:v1", dest, Options());
  fs::rename(saved, data);  // before any assertion: other tests may push this blob
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(img.layers[3].Digest()), std::string::npos) << r.error().message();
  // Layers below 3 were applied, nothing from 3 or above.
  EXPECT_EQ(ReadOr(dest / "order"), "layer 2\n");
  EXPECT_FALSE(Exists(dest / "l3"));
  EXPECT_FALSE(Exists(dest / "l4"));
  std::set<std::string> files = CacheFiles(blobs_);
  EXPECT_FALSE(files.count(hex));
  for (const std::string& f : files) {
    EXPECT_EQ(f.find(".partial."), std::string::npos) << "temp file left: " << f;
  }
  // The blobs that did arrive are verified and reused by the next pull.
  fs::path dest2 = NewDest("fixed");
  auto again = PullAndFlatten(Host() + "/banger/broken:v1", dest2, Options());
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(ReadOr(dest2 / "order"), "layer 7\n");
  EXPECT_GE(again->bytes_downloaded, img.layers[3].data.size());
}

TEST_F(RegistryPullTest, ReuseCheckSeesTheManifestDigestAndSkipsTheLayers) {
  TestImage img = MakeImage(RichLayers());
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/reuse", "v1", img).ok());
  std::string seen;
  PullOptions opts = Options();
  opts.reuse_check = [&](const std::string& digest) -> Result<bool> {
    seen = digest;
    return true;
  };
  fs::path dest = NewDest("reuse");
  auto r = PullAndFlatten(Host() + "/banger/reuse:v1", dest, opts);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(seen, img.Digest());
  EXPECT_FALSE(r->flattened);
  EXPECT_EQ(r->config_json, img.config.data);
  EXPECT_TRUE(fs::is_empty(dest));
  std::set<std::string> files = CacheFiles(blobs_);
  EXPECT_EQ(files, (std::set<std::string>{img.Digest().substr(7), img.config.Digest().substr(7)}))
      << "layers were downloaded although the caller reuses its disk";
}

TEST_F(RegistryPullTest, ImageIndexSelectsPlatform) {
  TestImage amd = MakeImage({{std::string(kLayerGzip),
                                    TarBuilder().File("arch", "amd64").Build(Compression::kGzip)}});
  TestImage arm = MakeImage({{std::string(kLayerGzip),
                                    TarBuilder().File("arch", "arm64").Build(Compression::kGzip)}},
                                  "arm64");
  TestImage armv7 = MakeImage({{std::string(kLayerGzip),
                                      TarBuilder().File("arch", "armv7").Build(Compression::kGzip)}},
                                    "arm");
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/multi", amd.Digest(), amd).ok());
  ASSERT_TRUE(push.PushImage("banger/multi", arm.Digest(), arm).ok());
  ASSERT_TRUE(push.PushImage("banger/multi", armv7.Digest(), armv7).ok());
  std::string index =
      IndexJson({{&armv7, "linux/arm/v7"}, {&arm, "linux/arm64/v8"}, {&amd, "linux/amd64"}});
  Status ps = push.PushManifest("banger/multi", "latest", "application/vnd.oci.image.index.v1+json", index);
  ASSERT_TRUE(ps.ok()) << ps.ToString();

  fs::path d1 = NewDest("amd64");
  auto r = PullAndFlatten(Host() + "/banger/multi", d1, Options());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(ReadOr(d1 / "arch"), "amd64");
  EXPECT_EQ(r->manifest_digest, amd.Digest());
  EXPECT_EQ(r->index_digest, Digest(index));

  PullOptions o = Options();
  o.platform = "linux/arm64";
  fs::path d2 = NewDest("arm64");
  auto r2 = PullAndFlatten(Host() + "/banger/multi:latest", d2, o);
  ASSERT_TRUE(r2.ok()) << r2.error().ToString();
  EXPECT_EQ(ReadOr(d2 / "arch"), "arm64");

  auto refs = ReferencedDigests(blobs_, r->index_digest);
  ASSERT_TRUE(refs.ok());
  EXPECT_TRUE(refs->count(amd.Digest()) && refs->count(arm.Digest()));
  EXPECT_FALSE(refs->count(armv7.Digest()));  // never pulled, so not in the cache

  o.platform = "linux/s390x";
  fs::path d3 = NewDest("s390x");
  auto r3 = PullAndFlatten(Host() + "/banger/multi", d3, o);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.error().message().find("no manifest for platform linux/s390x; available: "
                                      "linux/arm/v7, linux/arm64/v8, linux/amd64"),
            std::string::npos)
      << r3.error().message();
}

TEST_F(RegistryPullTest, ConcurrentPullsOfDifferentImagesShareTheCache) {
  // Both images share their base layer; the second layer differs.
  std::string base = TarBuilder().File("base", std::string(512 * 1024, 'b')).Build(Compression::kGzip);
  TestImage one = MakeImage({{std::string(kLayerGzip), base},
                                   {std::string(kLayerGzip), TarBuilder().File("who", "one").Build(Compression::kGzip)}});
  TestImage two = MakeImage({{std::string(kLayerGzip), base},
                                   {std::string(kLayerZstd), TarBuilder().File("who", "two").Build(Compression::kZstd)}});
  Pusher push(Host());
  ASSERT_TRUE(push.PushImage("banger/one", "1", one).ok());
  ASSERT_TRUE(push.PushImage("banger/two", "2", two).ok());
  fs::path d1 = NewDest("one"), d2 = NewDest("two");
  Result<PulledImage> r1 = InvalidArgument("not run"), r2 = InvalidArgument("not run");
  std::thread t1([&] { r1 = PullAndFlatten(Host() + "/banger/one:1", d1, Options()); });
  std::thread t2([&] { r2 = PullAndFlatten(Host() + "/banger/two:2", d2, Options()); });
  t1.join();
  t2.join();
  ASSERT_TRUE(r1.ok()) << r1.error().ToString();
  ASSERT_TRUE(r2.ok()) << r2.error().ToString();
  EXPECT_EQ(ReadOr(d1 / "who"), "one");
  EXPECT_EQ(ReadOr(d2 / "who"), "two");
  EXPECT_EQ(fs::file_size(d1 / "base"), 512u * 1024u);
  for (const std::string& f : CacheFiles(blobs_)) {
    EXPECT_EQ(f.find(".partial."), std::string::npos) << "left a temp file: " << f;
  }
}

TEST_F(RegistryPullTest, UnknownTagIsNotFoundAndDestinationMustBeEmpty) {
  fs::path d = NewDest("x");
  auto r = PullAndFlatten(Host() + "/banger/nothing:here", d, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_NE(r.error().message().find("banger/nothing:here"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomic(d / "junk", "x").ok());
  auto r2 = PullAndFlatten(Host() + "/banger/nothing:here", d, Options());
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------
// Faulty registries.

class FakeRegistry {
 public:
  explicit FakeRegistry(const TestImage& img, std::string repo = "app") : repo_(std::move(repo)) {
    blobs_[img.config.Digest()] = img.config.data;
    for (const Blob& l : img.layers) blobs_[l.Digest()] = l.data;
    manifest_ = img.manifest;
  }
  // Hook: may answer a request itself; returns true when it did.
  std::function<bool(const TestRequest&, TestResponse&)> hook;

  TestResponse Handle(const TestRequest& req) {
    TestResponse resp;
    if (hook && hook(req, resp)) return resp;
    std::string prefix = "/v2/" + repo_ + "/";
    if (!StartsWith(req.target, prefix)) return TestResponse{404, {}, "unknown"};
    std::string rest = req.target.substr(prefix.size());
    if (StartsWith(rest, "manifests/")) {
      resp.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"},
                      {"Docker-Content-Digest", Digest(manifest_)}};
      resp.body = manifest_;
      return resp;
    }
    if (StartsWith(rest, "blobs/")) {
      auto it = blobs_.find(rest.substr(6));
      if (it == blobs_.end()) return TestResponse{404, {}, "no blob"};
      resp.body = it->second;
      return resp;
    }
    return TestResponse{404, {}, "unknown"};
  }
  std::map<std::string, std::string> blobs_;
  std::string manifest_;
  std::string repo_;
};

class FaultyRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = MakeTempDir("banger-faulty-");
    ASSERT_TRUE(t.ok());
    tmp_ = std::make_unique<ScopedRemove>(*t);
    blobs_ = *t / "blobs";
    dest_ = *t / "rootfs";
    fs::create_directories(dest_);
    std::string big(300 * 1024, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) % 251);
    img_ = MakeImage({{std::string(kLayerTar), TarBuilder().File("big", big).File("hello", "hi").Build()}});
  }
  PullOptions Options() {
    PullOptions o;
    o.blob_dir = blobs_;
    o.initial_backoff = std::chrono::milliseconds(1);
    return o;
  }
  const Blob& Layer() const { return img_.layers[0]; }

  std::unique_ptr<ScopedRemove> tmp_;
  fs::path blobs_, dest_;
  TestImage img_;
};

TEST_F(FaultyRegistryTest, BearerTokenFlowWithCredentialsAndTokenCache) {
  FakeRegistry reg(img_);
  TestHttpServer* server_ptr = nullptr;
  int token_requests = 0;
  std::string token_auth, token_query;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (StartsWith(req.target, "/token?")) {
      ++token_requests;
      token_auth = req.Header("authorization");
      token_query = req.target;
      resp.body = R"({"token":"tok-123","expires_in":300})";
      return true;
    }
    if (req.Header("authorization") != "Bearer tok-123") {
      resp.status = 401;
      resp.headers = {{"WWW-Authenticate",
                       "Bearer realm=\"http://" + server_ptr->HostPort() +
                           "/token\",service=\"fake-registry\",scope=\"repository:app:pull\""}};
      resp.body = R"({"errors":[{"code":"UNAUTHORIZED"}]})";
      return true;
    }
    return false;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  server_ptr = &server;
  fs::path cfg = tmp_->path() / "config.json";
  ASSERT_TRUE(WriteFileAtomic(cfg, R"({"auths":{")" + server.HostPort() + R"(":{"auth":")" +
                                       Base64Encode("alice:s3cret") + R"("}}})")
                  .ok());
  PullOptions o = Options();
  o.docker_config = cfg;
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(ReadOr(dest_ / "hello"), "hi");
  EXPECT_EQ(token_requests, 1) << "token should be cached for the repository scope";
  EXPECT_EQ(token_auth, "Basic " + Base64Encode("alice:s3cret"));
  EXPECT_NE(token_query.find("service=fake-registry"), std::string::npos) << token_query;
  EXPECT_NE(token_query.find("scope=repository%3Aapp%3Apull"), std::string::npos) << token_query;
}

TEST_F(FaultyRegistryTest, BasicAuthFromDockerConfig) {
  FakeRegistry reg(img_);
  std::string want = "Basic " + Base64Encode("bob:pw");
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.Header("authorization") == want) return false;
    resp.status = 401;
    resp.headers = {{"WWW-Authenticate", "Basic realm=\"fake\""}};
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  // Without credentials: a permission error that says where it looked.
  auto denied = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code(), StatusCode::kPermissionDenied);
  fs::path cfg = tmp_->path() / "config.json";
  ASSERT_TRUE(WriteFileAtomic(cfg, R"({"auths":{"http://)" + server.HostPort() +
                                       R"(/v2/":{"username":"bob","password":"pw"}}})")
                  .ok());
  PullOptions o = Options();
  o.docker_config = cfg;
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(ReadOr(dest_ / "hello"), "hi");
}

TEST_F(FaultyRegistryTest, CutBlobDownloadResumesWithRange) {
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  int cuts = 0;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    const std::string& data = Layer().data;
    std::string range = req.Header("range");
    size_t start = 0;
    if (StartsWith(range, "bytes=")) start = std::stoul(range.substr(6));
    if (start > 0) {
      resp.status = 206;
      resp.headers = {{"Content-Range", "bytes " + std::to_string(start) + "-" +
                                            std::to_string(data.size() - 1) + "/" +
                                            std::to_string(data.size())}};
    }
    resp.body = data.substr(start);
    if (cuts < 2) {  // cut the first two transfers part-way
      ++cuts;
      resp.cut_after = 100 * 1024;
    }
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(fs::file_size(dest_ / "big"), 300u * 1024u);
  std::vector<std::string> ranges;
  for (const TestRequest& req : server.requests()) {
    if (req.target == layer_path) ranges.push_back(req.Header("range"));
  }
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=102400-");
  EXPECT_EQ(ranges[2], "bytes=204800-");
  EXPECT_EQ(r->bytes_downloaded, img_.manifest.size() + img_.config.data.size() + Layer().data.size());
}

TEST_F(FaultyRegistryTest, CutDownloadRestartsWhenRangeIsIgnored) {
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  int calls = 0;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    resp.body = Layer().data;  // always 200 with the whole blob
    if (calls++ == 0) resp.cut_after = 50 * 1024;
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(fs::file_size(dest_ / "big"), 300u * 1024u);
}

TEST_F(FaultyRegistryTest, WrongDigestBlobIsRejectedAndNothingIsCached) {
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    resp.body = Layer().data;
    resp.body[1000] ^= 0x55;  // same size, different content
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.error().message().find(Layer().Digest()), std::string::npos) << r.error().message();
  std::set<std::string> files = CacheFiles(blobs_);
  EXPECT_FALSE(files.count(Layer().Digest().substr(7)));
  for (const std::string& f : files) {
    EXPECT_EQ(f.find(".partial."), std::string::npos) << "temp file left: " << f;
  }
  EXPECT_EQ(files, (std::set<std::string>{img_.Digest().substr(7), img_.config.Digest().substr(7)}));
  EXPECT_TRUE(fs::is_empty(dest_));
}

TEST_F(FaultyRegistryTest, TransientErrorsAreRetriedThenGiveUp) {
  FakeRegistry reg(img_);
  int failures_left = 2;
  int manifest_calls = 0;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target.find("/manifests/") == std::string::npos) return false;
    ++manifest_calls;
    if (failures_left-- > 0) {
      resp.status = 503;
      return true;
    }
    return false;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_TRUE(r.ok()) << r.error().ToString();

  failures_left = 1000;
  manifest_calls = 0;
  fs::path d2 = tmp_->path() / "second";
  fs::create_directories(d2);
  PullOptions o = Options();
  o.max_attempts = 4;
  auto r2 = PullAndFlatten(server.HostPort() + "/app:2", d2, o);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(r2.error().message().find("4 attempts"), std::string::npos) << r2.error().message();
  // The HEAD is tried max_attempts times; no GET after a registry that stays down.
  EXPECT_EQ(manifest_calls, 4);
}

TEST_F(FaultyRegistryTest, UnreachableRegistryIsUnavailable) {
  PullOptions o = Options();
  o.max_attempts = 2;
  auto r = PullAndFlatten("127.0.0.1:" + std::to_string(FreePort()) + "/app:1", dest_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kUnavailable);
}


// ---- hostile registries (issue 10) -------------------------------------------

// No pull leaves a partial blob in the cache or anything in the destination.
void ExpectNothingLeft(const fs::path& blobs, const fs::path& dest) {
  for (const std::string& f : CacheFiles(blobs)) {
    EXPECT_EQ(f.find(".partial."), std::string::npos) << "temp file left: " << f;
  }
  EXPECT_TRUE(fs::is_empty(dest));
}

std::chrono::milliseconds Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t);
}

TEST_F(FaultyRegistryTest, StalledBlobFailsWithinTheStallTimeoutNamingDigestAndAttempts) {
  // Headers and the first 1000 bytes, then nothing, on every attempt (Range
  // requests included). Before: 5 attempts of 60 s each (about 5 minutes).
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    resp.body = Layer().data;
    resp.stall_after = 1000;
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  PullOptions o = Options();
  o.stall_timeout = std::chrono::seconds(4);  // 1 s per attempt
  auto start = std::chrono::steady_clock::now();
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  auto took = Since(start);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDeadlineExceeded) << r.error().ToString();
  const std::string& m = r.error().message();
  EXPECT_NE(m.find("registry stalled: no data for"), std::string::npos) << m;
  EXPECT_NE(m.find(Layer().Digest()), std::string::npos) << m;
  EXPECT_NE(m.find(server.HostPort()), std::string::npos) << m;
  EXPECT_NE(m.find(" attempt"), std::string::npos) << m;
  // 4 s of silence in all, plus libcurl's lag in noticing the last stall
  // (kCurlStallLag): the same bound the defaults hold under 2 minutes.
  EXPECT_LT(took, std::chrono::seconds(4) + kCurlStallLag + std::chrono::seconds(3)) << m;
  EXPECT_GE(took, std::chrono::seconds(3)) << m;
  ExpectNothingLeft(blobs_, dest_);
}

TEST_F(FaultyRegistryTest, StalledManifestFailsToo) {
  FakeRegistry reg(img_);
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target.find("/manifests/") == std::string::npos) return false;
    resp.body = img_.manifest;
    resp.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}};
    resp.stall_after = req.method == "HEAD" ? std::string::npos : 10;
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  PullOptions o = Options();
  o.stall_timeout = std::chrono::seconds(3);
  auto start = std::chrono::steady_clock::now();
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("registry stalled"), std::string::npos) << r.error().message();
  EXPECT_LT(Since(start), std::chrono::seconds(10));
  ExpectNothingLeft(blobs_, dest_);
}

TEST_F(FaultyRegistryTest, SlowButMovingBlobKeepsGoingPastTheStallTimeout) {
  // 300 KiB at 24 KiB every 250 ms: about 3 s in all, longer than the whole
  // stall budget (2 s), but never silent for a second: it must succeed.
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    resp.body = Layer().data;
    resp.trickle_bytes = 24 * 1024;
    resp.trickle_interval = std::chrono::milliseconds(250);
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  PullOptions o = Options();
  o.stall_timeout = std::chrono::seconds(2);
  auto start = std::chrono::steady_clock::now();
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_GT(Since(start), std::chrono::seconds(2)) << "the transfer was not slower than the budget";
  EXPECT_EQ(fs::file_size(dest_ / "big"), 300u * 1024u);
  int layer_gets = 0;
  for (const TestRequest& req : server.requests()) layer_gets += req.target == layer_path;
  EXPECT_EQ(layer_gets, 1) << "a moving transfer was abandoned";
}

TEST_F(FaultyRegistryTest, StallTimeoutComesFromTheEnvironment) {
  ::setenv("BANGER_REGISTRY_STALL_TIMEOUT", "7", 1);
  auto t = EffectiveStallTimeout(std::chrono::seconds(0));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->count(), 7);
  EXPECT_EQ(EffectiveStallTimeout(std::chrono::seconds(3))->count(), 3);  // explicit wins
  for (const char* bad : {"0", "-5", "abc", "3601", "99999999999", "5s"}) {
    ::setenv("BANGER_REGISTRY_STALL_TIMEOUT", bad, 1);
    auto e = EffectiveStallTimeout(std::chrono::seconds(0));
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().message().find("BANGER_REGISTRY_STALL_TIMEOUT"), std::string::npos);
    // A pull with a bad value is refused before anything is fetched.
    auto r = PullAndFlatten("127.0.0.1:1/app:1", dest_, Options());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << bad;
  }
  ::unsetenv("BANGER_REGISTRY_STALL_TIMEOUT");
  EXPECT_EQ(EffectiveStallTimeout(std::chrono::seconds(0))->count(), 90);
}

TEST_F(FaultyRegistryTest, HugeManifestIsRefusedAtEightMiB) {
  // Announces 300 MB and sends 9 MiB: refused once 8 MiB arrived.
  FakeRegistry reg(img_);
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target.find("/manifests/") == std::string::npos || req.method == "HEAD") return false;
    resp.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"},
                    {"Content-Length", std::to_string(300u << 20)}};
    resp.body = "{\"schemaVersion\":2,\"x\":\"" + std::string(9u << 20, 'm');
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  // HEAD names no cached digest, so the GET follows.
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find("larger than 8 MiB"), std::string::npos) << r.error().message();
  ExpectNothingLeft(blobs_, dest_);
}

TEST_F(FaultyRegistryTest, DeeplyNestedIndexIsRefusedAtTheSecondLevel) {
  // A chain of 64 indexes, each naming the next for linux/amd64.
  std::map<std::string, std::string> by_digest;
  std::string next_digest = img_.Digest();
  std::string next_type = "application/vnd.oci.image.manifest.v1+json";
  size_t next_size = img_.manifest.size();
  by_digest[img_.Digest()] = img_.manifest;
  std::string top;
  for (int level = 0; level < 64; ++level) {
    nlohmann::json idx = {{"schemaVersion", 2},
                          {"mediaType", "application/vnd.oci.image.index.v1+json"},
                          {"manifests", {{{"mediaType", next_type},
                                          {"digest", next_digest},
                                          {"size", next_size},
                                          {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
    top = idx.dump();
    next_digest = Digest(top);
    next_type = "application/vnd.oci.image.index.v1+json";
    next_size = top.size();
    by_digest[next_digest] = top;
  }
  FakeRegistry reg(img_);
  int manifest_gets = 0;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    size_t at = req.target.find("/manifests/");
    if (at == std::string::npos) return false;
    std::string sel = req.target.substr(at + 11);
    std::string body = sel == "1" ? top : by_digest.count(sel) ? by_digest[sel] : "";
    if (body.empty()) return false;
    if (req.method == "GET") ++manifest_gets;
    resp.headers = {{"Content-Type", body == img_.manifest ? "application/vnd.oci.image.manifest.v1+json"
                                                           : "application/vnd.oci.image.index.v1+json"},
                    {"Docker-Content-Digest", Digest(body)}};
    resp.body = body;
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_NE(r.error().message().find("nested image indexes are not supported"), std::string::npos)
      << r.error().message();
  EXPECT_LE(manifest_gets, 2) << "the client followed the chain";
  ExpectNothingLeft(blobs_, dest_);
}

TEST_F(FaultyRegistryTest, BlobAlwaysShorterThanItsContentLengthGivesUp) {
  // Declares the full length, sends half, ignores Range: every attempt
  // restarts and is cut again.
  FakeRegistry reg(img_);
  std::string layer_path = "/v2/app/blobs/" + Layer().Digest();
  int gets = 0;
  reg.hook = [&](const TestRequest& req, TestResponse& resp) {
    if (req.target != layer_path) return false;
    ++gets;
    resp.body = Layer().data;
    resp.cut_after = Layer().data.size() / 2;
    return true;
  };
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  PullOptions o = Options();
  o.max_attempts = 3;
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kUnavailable) << r.error().ToString();
  EXPECT_NE(r.error().message().find("3 attempts"), std::string::npos) << r.error().message();
  EXPECT_EQ(gets, 3);
  ExpectNothingLeft(blobs_, dest_);
  EXPECT_FALSE(CacheFiles(blobs_).count(Layer().Digest().substr(7)));
}

TEST_F(FaultyRegistryTest, GzipBombOnASmallFilesystemFailsCleanly) {
  // 64 MiB of zeros (about 64 KiB gzipped) flattened onto a 16 MiB tmpfs.
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  fs::path small = tmp_->path() / "small";
  fs::create_directories(small);
  auto runner = MakePosixCommandRunner();
  auto mounted = RunChecked(*runner, {.argv = {"mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                                               small.string()}});
  ASSERT_TRUE(mounted.ok()) << mounted.error().ToString();
  struct Unmount {
    CommandRunner& r;
    fs::path p;
    ~Unmount() { (void)RunChecked(r, {.argv = {"umount", "-l", p.string()}}); }
  } unmount{*runner, small};
  fs::path dest = small / "rootfs";
  fs::create_directories(dest);
  TestImage bomb = MakeImage({{std::string(kLayerGzip),
                               TarBuilder().File("zeros", std::string(64u << 20, '\0')).Build(Compression::kGzip)}});
  ASSERT_LT(bomb.layers[0].data.size(), 1u << 20);
  FakeRegistry reg(bomb);
  TestHttpServer server([&](const TestRequest& r) { return reg.Handle(r); });
  ASSERT_TRUE(server.ok());
  auto r = PullAndFlatten(server.HostPort() + "/app:1", dest, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("No space left"), std::string::npos) << r.error().ToString();
  // The partial tree is the caller's staging to remove (the image service
  // does); the blob cache keeps no partial file.
  for (const std::string& f : CacheFiles(blobs_)) {
    EXPECT_EQ(f.find(".partial."), std::string::npos) << "temp file left: " << f;
  }
}
}  // namespace
}  // namespace banger::oci
