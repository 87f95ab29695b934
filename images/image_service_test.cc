#include "images/image_service.h"

#include <sys/file.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "images/images_test_util.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::Barrier;
using testing::DebugfsCat;
using testing::DebugfsStat;
using testing::ListDir;
using testing::TempDir;

constexpr char kDigest[] = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
constexpr char kConfig[] =
    R"({"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/app"],"Cmd":["--serve"],"Env":["PATH=/bin","MODE=test"],"WorkingDir":"/srv","User":"1000:1000"}})";

/// Stands in for a registry: writes a small tree and reports a digest/config.
class FakeTreeSource {
 public:
  std::atomic<int> calls{0};
  std::atomic<int> trees{0};  // pulls that flattened (were not answered by the disk cache)
  /// Runs inside the pull, after the tree is written; may block or fail.
  std::function<Status(const std::string& ref)> hook;

  TreeSource AsTreeSource() {
    return [this](const std::string& ref, const fs::path& dest, const oci::PullOptions& opts)
               -> Result<oci::PulledImage> {
      ++calls;
      EXPECT_FALSE(opts.blob_dir.empty());
      EXPECT_TRUE(fs::is_directory(dest));
      EXPECT_TRUE(ListDir(dest).empty()) << "tree dir must start empty";
      oci::PulledImage img;
      img.reference = ref;
      img.manifest_digest = DigestOf(ref);
      img.config_json = kConfig;
      if (opts.reuse_check) {  // as the real puller: before any layer
        BANGER_ASSIGN_OR_RETURN(bool reuse, opts.reuse_check(img.manifest_digest));
        if (reuse) {
          img.flattened = false;
          return img;
        }
      }
      ++trees;
      MakeTree(dest, ref);
      if (hook) BANGER_RETURN_IF_ERROR(hook(ref));
      img.tree_bytes = 4096;
      return img;
    };
  }

  /// The team/alpine image (also under other references) has kDigest; any
  /// other reference is an image of its own.
  static std::string DigestOf(const std::string& ref) {
    if (ref.find("team/alpine") != std::string::npos || ref.find("mirror/alpine") != std::string::npos) {
      return kDigest;
    }
    return "sha256:" + Sha256Hex(ref);
  }

 private:
  static void MakeTree(const fs::path& dest, const std::string& ref) {
    testing::MakeFile(dest / "etc/os-release", "NAME=\"fake " + ref + "\"\n", 0644);
    testing::MakeFile(dest / "home/app/secret", "s3cret\n", 0600, 1000, 1000);
    testing::MakeFile(dest / "bin/app", "#!/bin/sh\n", 04755);
  }
};

class ImageServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "building root disks with their owners needs root";
    auto store = StateStore::Open(tmp_.path() / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    service_ = MakeService(fake_.AsTreeSource());
  }

  std::unique_ptr<ImageService> MakeService(TreeSource source, CommandRunner* runner = nullptr) {
    ImageServiceOptions opts;
    opts.images_dir = images_dir();
    opts.blobs_dir = tmp_.path() / "blobs";
    auto extra = ParseImageCatalog(R"(
images:
  team-alpine: {oci: localhost:5000/team/alpine:3.19}
)", "test");
    EXPECT_TRUE(extra.ok());
    opts.catalog = MergeImageCatalogs(BuiltinImageCatalog(), *extra);
    opts.tree_source = std::move(source);
    return std::make_unique<ImageService>(*store_, runner ? *runner : *runner_, clock_,
                                          std::move(opts));
  }

  fs::path images_dir() const { return tmp_.path() / "images"; }

  /// Entries of images_dir that are leftovers of a publish (staging, trees, locks).
  std::vector<std::string> Leftovers() const {
    std::vector<std::string> out;
    for (const auto& n : ListDir(images_dir())) {
      if (EndsWith(n, ".staging") || EndsWith(n, ".lock")) out.push_back(n);
    }
    return out;
  }

  TempDir tmp_;
  testing::FixedClock clock_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  std::unique_ptr<StateStore> store_;
  FakeTreeSource fake_;
  std::unique_ptr<ImageService> service_;
};

TEST_F(ImageServiceTest, PullPublishesDiskMetadataAndRecord) {
  std::vector<std::string> phases;
  PullRequest req;
  req.progress = [&](const oci::PullProgress& p) { phases.push_back(p.phase); };
  auto rec = service_->Pull("localhost:5000/team/alpine:3.19", req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();

  EXPECT_EQ(rec->name, "alpine-3.19");
  EXPECT_EQ(rec->source, "localhost:5000/team/alpine:3.19");
  EXPECT_EQ(rec->digest, kDigest);
  EXPECT_EQ(rec->config_json, kConfig);
  EXPECT_EQ(rec->created_at, 1800000000);
  EXPECT_EQ(rec->size_bytes, 1ull << 30);
  fs::path dir = images_dir() / rec->id;
  EXPECT_EQ(rec->rootfs_path, (dir / "rootfs.ext4").string());
  EXPECT_EQ(ListDir(dir), (std::vector<std::string>{"metadata.json", "rootfs.ext4"}));
  EXPECT_EQ(ListDir(images_dir()), (std::vector<std::string>{rec->id}));
  EXPECT_EQ(fs::status(images_dir()).permissions(), fs::perms::owner_all);

  auto meta = nlohmann::json::parse(*ReadFile(dir / "metadata.json"));
  EXPECT_EQ(meta["name"], "alpine-3.19");
  EXPECT_EQ(meta["digest"], kDigest);
  EXPECT_EQ(meta["config"]["config"]["Entrypoint"][0], "/bin/app");

  auto stored = store_->GetImage("alpine-3.19");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->id, rec->id);
  EXPECT_EQ(stored->config_json, kConfig);

  auto secret = DebugfsStat(rec->rootfs_path, "/home/app/secret");
  ASSERT_TRUE(secret);
  EXPECT_EQ(secret->uid, 1000u);
  EXPECT_EQ(secret->mode, 0600u);
  auto app = DebugfsStat(rec->rootfs_path, "/bin/app");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->mode, 04755u);
  EXPECT_NE(std::find(phases.begin(), phases.end(), "mkfs"), phases.end());
  EXPECT_NE(std::find(phases.begin(), phases.end(), "publish"), phases.end());
}

TEST_F(ImageServiceTest, NameOverrideAndExplicitDiskSize) {
  PullRequest req;
  req.name = "web-base";
  req.disk_size_bytes = 256ull << 20;
  auto rec = service_->Pull("team-alpine", req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, "web-base");
  EXPECT_EQ(rec->source, "team-alpine");
  EXPECT_EQ(fs::file_size(rec->rootfs_path), 256ull << 20);

  req.name = "Not/A Name";
  auto bad = service_->Pull("team-alpine", req);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ImageServiceTest, FailureMidBuildLeavesNoStagingAndNoRecord) {
  fake_.hook = [](const std::string&) { return Unavailable("registry went away mid-layer"); };
  auto rec = service_->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(rec.status().message().find("alpine-3.19"), std::string::npos);
  EXPECT_TRUE(ListDir(images_dir()).empty()) << Join(ListDir(images_dir()), " ");
  EXPECT_FALSE(service_->IsPresent("alpine-3.19"));
}

TEST_F(ImageServiceTest, MkfsFailureLeavesNoStagingAndNoRecord) {
  testing::FailingRunner failing("mkfs.ext4");
  auto service = MakeService(fake_.AsTreeSource(), &failing);
  auto rec = service->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(failing.failures, 1);
  EXPECT_TRUE(ListDir(images_dir()).empty()) << Join(ListDir(images_dir()), " ");
  EXPECT_FALSE(service->IsPresent("alpine-3.19"));
}

TEST_F(ImageServiceTest, TwoConcurrentPullsOfOneNameHaveExactlyOneWinner) {
  // The second pull waits at the disk cache's lock for the first one's disk.
  auto pull = [&] { return service_->Pull("localhost:5000/team/alpine:3.19", {}); };
  auto a = std::async(std::launch::async, pull);
  auto b = std::async(std::launch::async, pull);
  Result<ImageRecord> ra = a.get(), rb = b.get();
  int wins = ra.ok() + rb.ok();
  ASSERT_EQ(wins, 1) << ra.status().ToString() << " / " << rb.status().ToString();
  const Result<ImageRecord>& loser = ra.ok() ? rb : ra;
  const Result<ImageRecord>& winner = ra.ok() ? ra : rb;
  EXPECT_EQ(loser.status().code(), StatusCode::kAlreadyExists) << loser.status().ToString();
  EXPECT_EQ(ListDir(images_dir()), (std::vector<std::string>{winner->id}));
  auto all = store_->ListImages();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
  EXPECT_TRUE(fs::exists(winner->rootfs_path));
  EXPECT_EQ(fake_.trees, 1) << "both pulls flattened the same image";
}

TEST_F(ImageServiceTest, PullsOfDifferentNamesRunInParallel) {
  // Each pull waits inside the download until the other one has arrived: if
  // the service serialised pulls, the first would time out.
  Barrier both(2);
  std::atomic<bool> overlapped{true};
  fake_.hook = [&](const std::string&) {
    if (!both.ArriveAndWait(std::chrono::seconds(20))) overlapped = false;
    return OkStatus();
  };
  auto a = std::async(std::launch::async,
                      [&] { return service_->Pull("localhost:5000/a/one:1", {}); });
  auto b = std::async(std::launch::async,
                      [&] { return service_->Pull("localhost:5000/b/two:2", {}); });
  auto ra = a.get();
  auto rb = b.get();
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_TRUE(overlapped) << "the second pull only started after the first finished";
  EXPECT_EQ(ra->name, "one-1");
  EXPECT_EQ(rb->name, "two-2");
  EXPECT_TRUE(Leftovers().empty()) << Join(Leftovers(), " ");
}

TEST_F(ImageServiceTest, PullOfAnInstalledNameIsAlreadyExistsWithoutDownloading) {
  ASSERT_TRUE(service_->Pull("localhost:5000/team/alpine:3.19", {}).ok());
  auto again = service_->Pull("localhost:5000/team/alpine:3.19", {});
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(fake_.calls, 1);
}

TEST_F(ImageServiceTest, EnsureSharesOnePullAmongConcurrentCallersAndKeepsTheSpecName) {
  const std::string ref = "localhost:5000/team/alpine:3.19";
  std::atomic<bool> release{false};
  fake_.hook = [&](const std::string&) {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return OkStatus();
  };
  std::vector<std::future<Result<ImageRecord>>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return service_->Ensure(ref); }));
  }
  // Let every caller reach Ensure before the one pull finishes.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  release = true;
  std::set<std::string> ids;
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->name, ref);
    ids.insert(r->id);
  }
  EXPECT_EQ(fake_.calls, 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_TRUE(service_->IsPresent(ref));
  // Installed now: no further pull.
  auto again = service_->Ensure(ref);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(fake_.calls, 1);
}

TEST_F(ImageServiceTest, EnsureBuildsCatalogImagesUnderTheirCatalogName) {
  auto rec = service_->Ensure("busybox");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, "busybox");
  EXPECT_EQ(rec->source, "busybox");
  EXPECT_TRUE(rec->config_json.empty());
  EXPECT_TRUE(DebugfsStat(rec->rootfs_path, "/bin/sh"));
  EXPECT_EQ(fake_.calls, 0);
}

TEST_F(ImageServiceTest, EnsureOfAnUnknownPlainNameSuggestsACatalogEntry) {
  auto rec = service_->Ensure("busybx");
  EXPECT_EQ(rec.status().code(), StatusCode::kNotFound);
  EXPECT_NE(rec.status().message().find("did you mean \"busybox\""), std::string::npos)
      << rec.status().message();
  EXPECT_TRUE(ListDir(images_dir()).empty());
}

TEST_F(ImageServiceTest, FindAndListReportInstalledImages) {
  auto none = service_->Find("alpine-3.19");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(service_->Pull("localhost:5000/team/alpine:3.19", {}).ok());
  auto some = service_->Find("alpine-3.19");
  ASSERT_TRUE(some.ok());
  ASSERT_TRUE(some->has_value());
  EXPECT_EQ((*some)->digest, kDigest);
  auto list = service_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "alpine-3.19");
}

TEST_F(ImageServiceTest, RemoveIsRefusedWhileASandboxUsesTheImage) {
  auto rec = service_->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_TRUE(rec.ok());
  SandboxRecord sb;
  sb.name = "web-1";
  sb.id = "sb-00000001";
  sb.owner = "path:/specs";
  sb.spec_json = R"({"name":"web-1"})";
  sb.spec_hash = "h";
  sb.image_ref = "alpine-3.19";
  ASSERT_TRUE(store_->PutSandbox(sb).ok());

  Status st = service_->Remove("alpine-3.19");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("web-1"), std::string::npos) << st.message();
  EXPECT_TRUE(fs::exists(rec->rootfs_path));
  EXPECT_TRUE(service_->IsPresent("alpine-3.19"));

  ASSERT_TRUE(store_->DeleteSandbox("web-1").ok());
  st = service_->Remove("alpine-3.19");
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(service_->IsPresent("alpine-3.19"));
  EXPECT_TRUE(ListDir(images_dir()).empty());
  EXPECT_EQ(service_->Remove("alpine-3.19").code(), StatusCode::kNotFound);
}

TEST_F(ImageServiceTest, RemoveIsRefusedForASandboxWhoseSpecNamesTheImage) {
  ASSERT_TRUE(service_->Pull("localhost:5000/team/alpine:3.19", {}).ok());
  SandboxRecord sb;
  sb.name = "pending-1";
  sb.id = "sb-00000002";
  sb.owner = "path:/specs";
  sb.spec_json = R"({"name":"pending-1","image":"alpine-3.19"})";
  sb.spec_hash = "h";
  ASSERT_TRUE(store_->PutSandbox(sb).ok());
  EXPECT_EQ(service_->Remove("alpine-3.19").code(), StatusCode::kFailedPrecondition);
}

TEST_F(ImageServiceTest, PruneRemovesStrayStagingButNotARunningPull) {
  // A pull that is running while Prune runs.
  Barrier in_pull(2), may_finish(2);
  fake_.hook = [&](const std::string&) {
    in_pull.ArriveAndWait(std::chrono::seconds(30));
    may_finish.ArriveAndWait(std::chrono::seconds(30));
    return OkStatus();
  };
  auto running = std::async(std::launch::async,
                            [&] { return service_->Pull("localhost:5000/team/alpine:3.19", {}); });
  ASSERT_TRUE(in_pull.ArriveAndWait(std::chrono::seconds(30)));
  // Leftovers of a crashed pull (made now: a pull starting sweeps them
  // itself): staging dir, tree dir and its (unheld) lock.
  ASSERT_TRUE(MakeDirs(images_dir() / "img-0123456789ab.staging/x", 0700).ok());
  ASSERT_TRUE(MakeDirs(images_dir() / "img-0123456789ab.tree.staging/etc", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(images_dir() / "img-0123456789ab.lock", "").ok());
  ASSERT_TRUE(MakeDirs(images_dir() / "img-aaaaaaaaaaaa.staging", 0700).ok());  // no lock at all
  // Something that is not banger's: left alone.
  ASSERT_TRUE(MakeDirs(images_dir() / "notes", 0700).ok());

  auto report = service_->Prune();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  may_finish.ArriveAndWait(std::chrono::seconds(30));
  auto rec = running.get();
  ASSERT_TRUE(rec.ok()) << "prune broke a running pull: " << rec.status().ToString();

  std::set<std::string> removed(report->removed_staging.begin(), report->removed_staging.end());
  EXPECT_EQ(removed, (std::set<std::string>{"img-0123456789ab.staging",
                                            "img-0123456789ab.tree.staging",
                                            "img-0123456789ab.lock", "img-aaaaaaaaaaaa.staging"}));
  EXPECT_TRUE(report->removed_orphans.empty());
  EXPECT_EQ(ListDir(images_dir()), (std::vector<std::string>{rec->id, "notes"}));
}

TEST_F(ImageServiceTest, APullFirstRemovesWhatAnInterruptedPublishLeft) {
  // A crash at each stage of an earlier publish: mid-build, before and
  // after the rename (a published dir without a row).
  ASSERT_TRUE(MakeDirs(images_dir() / "img-0123456789ab.staging/x", 0700).ok());
  ASSERT_TRUE(MakeDirs(images_dir() / "img-0123456789ab.tree.staging/etc", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(images_dir() / "img-0123456789ab.lock", "").ok());
  ASSERT_TRUE(MakeDirs(images_dir() / "img-cccccccccccc", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(images_dir() / "img-cccccccccccc/rootfs.ext4", "x").ok());
  ASSERT_TRUE(WriteFileAtomic(images_dir() / "img-cccccccccccc.lock", "").ok());
  auto rec = service_->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(ListDir(images_dir()), std::vector<std::string>{rec->id});
}

TEST_F(ImageServiceTest, PruneRemovesPublishedDirectoriesWithoutARecord) {
  auto rec = service_->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_TRUE(rec.ok());
  // A crash between rename and insert leaves a published dir with no row.
  ASSERT_TRUE(MakeDirs(images_dir() / "img-bbbbbbbbbbbb", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(images_dir() / "img-bbbbbbbbbbbb/rootfs.ext4", "x").ok());
  auto report = service_->Prune();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->removed_orphans, (std::vector<std::string>{"img-bbbbbbbbbbbb"}));
  EXPECT_GT(report->freed_bytes, 0u);
  EXPECT_EQ(ListDir(images_dir()), (std::vector<std::string>{rec->id}));
}

TEST_F(ImageServiceTest, PruneHandsTheRecordedDigestsToTheBlobPruner) {
  ASSERT_TRUE(service_->Pull("localhost:5000/team/alpine:3.19", {}).ok());
  ASSERT_TRUE(service_->Ensure("busybox").ok());
  std::vector<std::string> kept;
  service_->SetBlobPruner([&](const std::vector<std::string>& keep)
                              -> Result<std::pair<uint64_t, uint64_t>> {
    kept = keep;
    return std::make_pair(uint64_t{3}, uint64_t{12345});
  });
  auto report = service_->Prune();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(kept, (std::vector<std::string>{kDigest}));
  EXPECT_EQ(report->removed_blobs, 3u);
  EXPECT_EQ(report->freed_bytes, 12345u);
}

// --- disk cache ---------------------------------------------------------------

fs::path DisksDir(const fs::path& images_dir) { return images_dir.parent_path() / "disks"; }

ino_t Inode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

TEST_F(ImageServiceTest, PullAfterRemoveReusesTheCachedDiskWithoutFlattenOrMkfs) {
  testing::CountingRunner counting;
  auto service = MakeService(fake_.AsTreeSource(), &counting);
  const std::string ref = "localhost:5000/team/alpine:3.19";
  auto first = service->Pull(ref, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(counting.Runs("mkfs.ext4"), 1);
  ino_t disk = Inode(first->rootfs_path);
  ASSERT_TRUE(service->Remove("alpine-3.19").ok());
  EXPECT_FALSE(fs::exists(first->rootfs_path));

  std::vector<std::string> phases;
  PullRequest req;
  req.progress = [&](const oci::PullProgress& p) { phases.push_back(p.phase); };
  auto again = service->Pull(ref, req);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(fake_.trees, 1) << "the second pull flattened the layers again";
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 1) << "the second pull ran mkfs.ext4 again";
  EXPECT_EQ(Inode(again->rootfs_path), disk);
  EXPECT_NE(again->id, first->id);
  EXPECT_EQ(again->digest, kDigest);
  EXPECT_EQ(again->config_json, kConfig);
  EXPECT_EQ(again->size_bytes, 1ull << 30);
  EXPECT_NE(std::find(phases.begin(), phases.end(), "cached"), phases.end());
  EXPECT_EQ(std::find(phases.begin(), phases.end(), "mkfs"), phases.end());
  auto app = DebugfsStat(again->rootfs_path, "/bin/app");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->mode, 04755u);
  EXPECT_TRUE(Leftovers().empty()) << Join(Leftovers(), " ");
}

TEST_F(ImageServiceTest, TwoNamesOfOneDigestShareOneDiskAndADifferentSizeIsAnotherDisk) {
  testing::CountingRunner counting;
  auto service = MakeService(fake_.AsTreeSource(), &counting);
  auto a = service->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  PullRequest other;
  other.name = "alpine-mirror";
  auto b = service->Pull("localhost:5001/mirror/alpine:stable", other);  // same digest
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 1);
  EXPECT_EQ(fake_.trees, 1);
  EXPECT_EQ(Inode(a->rootfs_path), Inode(b->rootfs_path));
  struct stat st {};
  ASSERT_EQ(::stat(a->rootfs_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u) << "two images and the cache entry";

  PullRequest sized;
  sized.name = "alpine-small";
  sized.disk_size_bytes = 256ull << 20;
  auto c = service->Pull("localhost:5000/team/alpine:3.19", sized);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 2);
  EXPECT_NE(Inode(c->rootfs_path), Inode(a->rootfs_path));
  EXPECT_EQ(fs::file_size(c->rootfs_path), 256ull << 20);

  // Other images are built as before.
  ASSERT_TRUE(service->Pull("localhost:5000/other/image:1", {}).ok());
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 3);
  EXPECT_EQ(ListDir(DisksDir(images_dir())).size(), 6u) << Join(ListDir(DisksDir(images_dir())), " ");
}

TEST_F(ImageServiceTest, PruneRemovesACachedDiskOnlyOnceNoImageLinksIt) {
  testing::CountingRunner counting;
  auto service = MakeService(fake_.AsTreeSource(), &counting);
  auto a = service->Pull("localhost:5000/team/alpine:3.19", {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  PullRequest other;
  other.name = "alpine-mirror";
  ASSERT_TRUE(service->Pull("localhost:5001/mirror/alpine:stable", other).ok());
  const std::string key =
      "v1-1111111111111111111111111111111111111111111111111111111111111111-auto";
  fs::path cached = DisksDir(images_dir()) / (key + ".ext4");
  ASSERT_TRUE(fs::exists(cached));

  ASSERT_TRUE(service->Remove("alpine-3.19").ok());
  auto r1 = service->Prune();
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_TRUE(r1->removed_disks.empty()) << "alpine-mirror still links the disk";
  EXPECT_TRUE(fs::exists(cached));

  ASSERT_TRUE(service->Remove("alpine-mirror").ok());
  EXPECT_TRUE(fs::exists(cached)) << "image rm of the last name keeps the cached disk";
  auto r2 = service->Prune();
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->removed_disks, std::vector<std::string>{key});
  EXPECT_GT(r2->freed_bytes, 0u);
  EXPECT_TRUE(ListDir(DisksDir(images_dir())).empty()) << Join(ListDir(DisksDir(images_dir())), " ");

  // Pruned: the next pull builds again.
  ASSERT_TRUE(service->Pull("localhost:5000/team/alpine:3.19", {}).ok());
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 2);
}

TEST_F(ImageServiceTest, ConcurrentPullsOfOneDigestUnderTwoNamesBuildOnce) {
  testing::CountingRunner counting;
  auto service = MakeService(fake_.AsTreeSource(), &counting);
  std::atomic<int> in_hook{0};
  fake_.hook = [&](const std::string&) {
    ++in_hook;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // widen the window
    return OkStatus();
  };
  PullRequest r1, r2;
  r1.name = "one";
  r2.name = "two";
  auto a = std::async(std::launch::async,
                      [&] { return service->Pull("localhost:5000/team/alpine:3.19", r1); });
  auto b = std::async(std::launch::async,
                      [&] { return service->Pull("localhost:5001/mirror/alpine:3.19", r2); });
  auto ra = a.get(), rb = b.get();
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(fake_.trees, 1);
  EXPECT_EQ(counting.Runs("mkfs.ext4"), 1);
  EXPECT_EQ(Inode(ra->rootfs_path), Inode(rb->rootfs_path));
}

TEST_F(ImageServiceTest, PruneLeavesTheDiskOfARunningBuildAlone) {
  Barrier in_pull(2), may_finish(2);
  fake_.hook = [&](const std::string&) {
    in_pull.ArriveAndWait(std::chrono::seconds(30));
    may_finish.ArriveAndWait(std::chrono::seconds(30));
    return OkStatus();
  };
  // A stale cached disk of the same key, linked by no image (as after a
  // crash between the cache link and the publish): the running pull holds
  // the key's lock, so Prune must not touch it.
  auto running = std::async(std::launch::async,
                            [&] { return service_->Pull("localhost:5000/team/alpine:3.19", {}); });
  ASSERT_TRUE(in_pull.ArriveAndWait(std::chrono::seconds(30)));
  const std::string key =
      "v1-1111111111111111111111111111111111111111111111111111111111111111-auto";
  ASSERT_TRUE(fs::exists(DisksDir(images_dir()) / (key + ".lock")));
  auto report = service_->Prune();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->removed_disks.empty());
  may_finish.ArriveAndWait(std::chrono::seconds(30));
  auto rec = running.get();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_TRUE(fs::exists(DisksDir(images_dir()) / (key + ".ext4")));
}

TEST_F(ImageServiceTest, ImportFromADirectoryKeepsOwners) {
  fs::path tree = tmp_.path() / "mytree";
  testing::MakeFile(tree / "etc/hostname", "mine\n", 0644);
  testing::MakeFile(tree / "home/u/key", "k\n", 0400, 1234, 1234);
  auto rec = service_->Import(tree, "mine");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->source, "import:" + tree.string());
  auto key = DebugfsStat(rec->rootfs_path, "/home/u/key");
  ASSERT_TRUE(key);
  EXPECT_EQ(key->uid, 1234u);
  EXPECT_EQ(key->mode, 0400u);
  EXPECT_TRUE(fs::exists(tree / "etc/hostname")) << "import must not consume the source";
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(ImageServiceTest, ImportFromATarKeepsNumericOwnersAndRefusesEscapes) {
  fs::path tar = tmp_.path() / "root.tar.zst";
  testing::WriteTar(tar,
                    {{.path = "etc", .type = AE_IFDIR, .mode = 0755},
                     {.path = "etc/motd", .content = "hi\n"},
                     {.path = "home/svc/data", .content = "d", .mode = 0640, .uid = 4242,
                      .gid = 4343},
                     {.path = "bin/sh", .type = AE_IFLNK, .mode = 0777, .symlink = "busybox"}},
                    true);
  auto rec = service_->Import(tar, "from-tar");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  auto data = DebugfsStat(rec->rootfs_path, "/home/svc/data");
  ASSERT_TRUE(data);
  EXPECT_EQ(data->uid, 4242u);
  EXPECT_EQ(data->gid, 4343u);
  EXPECT_EQ(data->mode, 0640u);
  EXPECT_EQ(DebugfsCat(rec->rootfs_path, "/etc/motd"), "hi\n");

  fs::path evil = tmp_.path() / "evil.tar";
  testing::WriteTar(evil, {{.path = "../../escaped", .content = "x"}}, false);
  auto bad = service_->Import(evil, "evil");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
  EXPECT_NE(bad.status().message().find("../../escaped"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp_.path() / "escaped"));
  EXPECT_FALSE(fs::exists(images_dir() / "escaped"));
  EXPECT_TRUE(Leftovers().empty()) << Join(Leftovers(), " ");
}

TEST(DeriveImageNameTest, UsesRepositoryAndTagOrDigest) {
  EXPECT_EQ(DeriveImageName("localhost:5000/team/alpine:3.19"), "alpine-3.19");
  EXPECT_EQ(DeriveImageName("localhost:5000/alpine"), "alpine-latest");
  EXPECT_EQ(DeriveImageName("docker.io/library/Debian:Bookworm-Slim"), "debian-bookworm-slim");
  EXPECT_EQ(DeriveImageName("reg.example/x/app@sha256:"
                            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
            "app-abcdef012345");
  EXPECT_TRUE(LooksLikeOciReference("localhost:5000/x"));
  EXPECT_TRUE(LooksLikeOciReference("alpine:3.19"));
  EXPECT_FALSE(LooksLikeOciReference("busybox"));
}

}  // namespace
}  // namespace banger::images
