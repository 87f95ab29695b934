// Resources run out: the state directory on a small file system that fills
// up. Each step that writes (an image pull's download, a root disk build, a
// kernel import, a volume, an apply, the SQLite database) must fail with
// "no space left on <path> while <step>", leave no staging behind and the
// database consistent, and succeed once space is freed. Real services through
// Host::Open, real SQLite, a real registry on loopback, real mkfs.ext4; a fake
// runtime for the apply (a VM adds nothing to a full disk). The file system
// is a tmpfs this test mounts and always unmounts. docs/testing.md,
// "Resources run out".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "base/disk_space.h"
#include "base/files.h"
#include "base/strings.h"
#include "host/host.h"
#include "oci/test_layers.h"
#include "reconciler/engine.h"
#include "tests/support/fakes.h"
#include "tests/support/oci_registry.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string RandomBytes(size_t n) {
  std::mt19937_64 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Every file under `dir` whose name marks it as unfinished work.
std::vector<std::string> Leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); ++it) {
    std::string name = it->path().filename().string();
    if (name.find(".staging") != std::string::npos || name.find(".partial") != std::string::npos ||
        name.find(".download") != std::string::npos || name.rfind(".tmp", 0) == 0) {
      out.push_back(it->path().string());
    }
  }
  return out;
}

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs for the state directory needs root";
    if (!testing::RegistryProcess::Available()) GTEST_SKIP() << "docker-registry is not installed";
    small_ = dir_.path() / "small";
    ASSERT_TRUE(MakeDirs(small_, 0700).ok());
    // 128 MiB is a limit, not an allocation; the filler file decides the free space.
    ASSERT_EQ(::mount("banger-full-disk-test", small_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=128m,mode=0700"), 0)
        << std::strerror(errno);
    mounted_ = true;
    ASSERT_TRUE(MakeDirs(dir_.path() / "registry").ok());
    ASSERT_TRUE(registry_.Start(dir_.path() / "registry").ok());
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", "parallel: 1\n").ok());
    Reopen();
  }

  void TearDown() override {
    host_.reset();
    registry_.Stop();
    if (mounted_ && ::umount2(small_.c_str(), MNT_DETACH) != 0) ADD_FAILURE() << "umount " << small_;
  }

  void Reopen() {
    host_.reset();
    auto h = host::Host::Open({(small_ / "state").string(), (dir_.path() / "config.yaml").string()});
    ASSERT_TRUE(h.ok()) << h.error().ToString();
    host_ = std::move(*h);
  }

  // Leaves about `bytes` free on the small file system (a filler file).
  void LeaveFree(uint64_t bytes) {
    Free();
    auto free = FreeBytes(small_);
    ASSERT_TRUE(free.ok());
    ASSERT_GT(*free, bytes);
    int fd = ::open((small_ / "filler").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(*free - bytes)), 0);
    ::close(fd);
  }
  void Free() { ::unlink((small_ / "filler").c_str()); }

  // A one-layer image with `size` bytes of incompressible data.
  std::string PushImage(const std::string& repo, size_t size) {
    oci::testing::TarBuilder layer;
    layer.Dir("etc").File("etc/os-release", "ID=full\n").Dir("data").File("data/blob", RandomBytes(size));
    auto img = testing::OciTestImage::FromBlobs(
        {{"application/vnd.oci.image.layer.v1.tar+gzip", layer.Build(oci::testing::Compression::kGzip)}},
        R"({"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}})");
    testing::OciPusher pusher(registry_.HostPort());
    Status s = pusher.PushImage(repo, "1", img);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return registry_.HostPort() + "/" + repo + ":1";
  }

  // The host's kernel (scripts/setup.sh installs linux-image-amd64).
  static fs::path HostBzImage() {
    fs::path bz;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/boot", ec)) {
      if (e.path().filename().string().rfind("vmlinuz-", 0) == 0) bz = e.path();
    }
    return bz;
  }

  // PRAGMA integrity_check of the state database, by the sqlite3 tool.
  std::string IntegrityCheck() {
    auto runner = MakePosixCommandRunner();
    CommandSpec spec;
    spec.argv = {"sqlite3", (small_ / "state/state.db").string(), "PRAGMA integrity_check"};
    auto out = runner->Run(spec);
    if (!out.ok()) return out.error().ToString();
    return std::string(Trim(out->stdout_data + out->stderr_data));
  }

  void ExpectNoSpace(const Status& s, const std::string& step) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
    EXPECT_NE(s.message().find("no space left on " + small_.string() + "/state"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find(" while " + step), std::string::npos) << s.ToString();
  }

  // Pulls a 4 MiB image once (its blob stays cached), removes it and its
  // cached disk, then pulls again with `free` bytes left: the disk build must
  // fail naming `step` (an OCI step is followed by the reference), leave
  // nothing, and succeed once the space is back.
  void RootDiskBuildRunsOutThenSucceeds(const std::string& repo, uint64_t free, std::string step) {
    std::string ref = PushImage(repo, 4 << 20);
    auto first = host_->images().Pull(ref, {});
    ASSERT_TRUE(first.ok()) << first.error().ToString();
    ASSERT_TRUE(host_->images().Remove(first->name).ok());
    // The built disk stays in the root-disk cache (images/disk_cache.h) after
    // rm; drop it as `image prune` would, so the pull builds the disk again.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(small_ / "state" / "disks", ec)) {
      if (e.path().extension() == ".ext4") fs::remove(e.path(), ec);
    }
    if (step.back() == ' ') step += ref;
    LeaveFree(free);
    auto rec = host_->images().Pull(ref, {});
    ASSERT_FALSE(rec.ok());
    ExpectNoSpace(rec.error(), step);
    EXPECT_EQ(Leftovers(small_ / "state"), std::vector<std::string>{});
    EXPECT_TRUE(host_->images().List()->empty());
    EXPECT_EQ(IntegrityCheck(), "ok");

    Free();
    rec = host_->images().Pull(ref, {});
    ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  }

  TempDir dir_;
  fs::path small_;
  bool mounted_ = false;
  testing::RegistryProcess registry_;
  std::unique_ptr<host::Host> host_;
};

TEST_F(FullDiskTest, ImagePullThatRunsOutWhileDownloadingFailsClearlyAndSucceedsOnceSpaceIsFreed) {
  std::string ref = PushImage("full/download", 4 << 20);
  LeaveFree(1 << 20);
  auto rec = host_->images().Pull(ref, {});
  ASSERT_FALSE(rec.ok());
  ExpectNoSpace(rec.error(), "downloading and unpacking the layers of " + ref);
  EXPECT_EQ(Leftovers(small_ / "state"), std::vector<std::string>{});
  auto listed = host_->images().List();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  EXPECT_EQ(IntegrityCheck(), "ok");

  Free();
  rec = host_->images().Pull(ref, {});
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  EXPECT_TRUE(fs::exists(rec->rootfs_path));
}

TEST_F(FullDiskTest, RootDiskBuildThatRunsOutFailsClearlyAndSucceedsOnceSpaceIsFreed) {
  // The disk is written straight from the cached layer (no tree): room for
  // half of its 4 MiB file.
  RootDiskBuildRunsOutThenSucceeds("full/mkfs", 2 << 20, "writing the root disk from the layers of ");
}

TEST_F(FullDiskTest, RootDiskBuildFromATreeThatRunsOutFailsClearlyAndSucceedsOnceSpaceIsFreed) {
  // The tree path (recipes, imports, BANGER_DISK_WRITER=tree): the layer is
  // unpacked into a tree first, then mkfs.ext4 -d copies it. Room for the
  // tree (4 MiB), not for the disk as well.
  ::setenv("BANGER_DISK_WRITER", "tree", 1);
  Reopen();
  ::unsetenv("BANGER_DISK_WRITER");
  RootDiskBuildRunsOutThenSucceeds("full/tree", 6 << 20, "building the root disk (mkfs.ext4 -d)");
}

TEST_F(FullDiskTest, KernelImportThatRunsOutFailsClearlyAndSucceedsOnceSpaceIsFreed) {
  fs::path bz = HostBzImage();
  ASSERT_FALSE(bz.empty()) << "no /boot/vmlinuz-* (scripts/setup.sh installs linux-image-amd64)";
  LeaveFree(1 << 20);
  kernels::ImportKernelRequest req;
  req.name = "full-kernel";
  req.kernel = bz;
  auto rec = host_->kernels().Import(req, {});
  ASSERT_FALSE(rec.ok());
  ExpectNoSpace(rec.error(), "importing kernel full-kernel");
  EXPECT_EQ(Leftovers(small_ / "state"), std::vector<std::string>{});
  EXPECT_TRUE(host_->kernels().List()->empty());
  EXPECT_EQ(IntegrityCheck(), "ok");

  Free();
  rec = host_->kernels().Import(req, {});
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
}

TEST_F(FullDiskTest, ApplyThatRunsOutRecordsAClearFailureAndTheNextApplyConverges) {
  // The engine with the host's real artifacts, volumes and store, and a fake
  // runtime: a VM adds nothing to a full disk.
  std::string ref = PushImage("full/apply", 2 << 20);
  testing::FakeRuntime runtime;
  NullEventSink sink;
  EngineOptions eo = host_->DefaultEngineOptions(1);
  eo.network_driver = nullptr;
  eo.provider_for = nullptr;
  Engine engine(host_->store(), &runtime, host_->artifacts(), host_->clock(), sink, eo);
  // A kernel of the host's bzImage alone (the catalog's default would copy
  // all of /lib/modules onto the small file system).
  kernels::ImportKernelRequest kreq;
  kreq.name = "k";
  kreq.kernel = HostBzImage();
  ASSERT_FALSE(kreq.kernel.empty());
  auto k = host_->kernels().Import(kreq, {});
  ASSERT_TRUE(k.ok()) << k.error().ToString();
  SandboxSpec spec = testing::MakeSpec("web", ref);
  spec.kernel = "k";
  spec.network.mode = NetworkMode::kNone;
  spec.volumes.push_back(VolumeSpec{.name = "data", .mount_path = "/data", .size_bytes = 16ull << 20});
  PlanOptions po;
  po.owner = "path:/specs";
  po.default_kernel = "";
  auto plan = [&] {
    auto observed = host_->store().ListSandboxes();
    EXPECT_TRUE(observed.ok());
    return ComputePlan({testing::MakeDoc(spec)}, *observed, po);
  };

  LeaveFree(512 << 10);
  ApplyReport rep = engine.Apply(plan());
  ASSERT_EQ(rep.results.size(), 1u);
  ASSERT_FALSE(rep.results[0].status.ok());
  EXPECT_NE(rep.results[0].status.message().find("no space left on " + small_.string() + "/state"),
            std::string::npos) << rep.results[0].status.ToString();
  auto rec = host_->store().GetSandbox("web");
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  EXPECT_EQ(rec->phase, SandboxPhase::kFailed);
  EXPECT_NE(rec->last_error.find("no space left on"), std::string::npos) << rec->last_error;
  EXPECT_EQ(Leftovers(small_ / "state"), std::vector<std::string>{});
  EXPECT_EQ(IntegrityCheck(), "ok");
  auto ops = host_->store().UnfinishedOperations();
  ASSERT_TRUE(ops.ok());
  EXPECT_TRUE(ops->empty());

  // The image is there now; almost nothing else fits (the volume, the
  // journal): whichever write runs out first says so.
  Free();
  auto image = host_->artifacts().EnsureImage(ref, {});
  ASSERT_TRUE(image.ok()) << image.error().ToString();
  LeaveFree(16 << 10);
  rep = engine.Apply(plan());
  ASSERT_EQ(rep.results.size(), 1u);
  ASSERT_FALSE(rep.results[0].status.ok());
  EXPECT_NE(rep.results[0].status.message().find("no space left on " + small_.string() + "/state"),
            std::string::npos) << rep.results[0].status.ToString();
  EXPECT_EQ(Leftovers(small_ / "state"), std::vector<std::string>{});
  EXPECT_TRUE(host_->store().ListVolumes("web")->empty());
  EXPECT_EQ(IntegrityCheck(), "ok");

  Free();
  rep = engine.Apply(plan());
  ASSERT_EQ(rep.results.size(), 1u);
  EXPECT_TRUE(rep.results[0].status.ok()) << rep.results[0].status.ToString();
  EXPECT_EQ(host_->store().GetSandbox("web")->phase, SandboxPhase::kReady);
  EXPECT_EQ(host_->store().ListVolumes("web")->size(), 1u);
}

TEST_F(FullDiskTest, FullDatabaseFailsClearlyStaysConsistentAndTheNextRunConverges) {
  LeaveFree(64 << 10);
  // Write events until the database cannot grow: each is a few KiB.
  Status failed;
  std::string payload = RandomBytes(2000);
  for (int i = 0; i < 100000 && failed.ok(); ++i) {
    EventRecord e;
    e.sandbox = "web";
    e.type = "Normal";
    e.reason = "Filler";
    e.message = std::to_string(i) + payload;
    failed = host_->store().AddEvent(e);
  }
  ASSERT_FALSE(failed.ok()) << "the database never filled the file system";
  EXPECT_EQ(failed.code(), StatusCode::kResourceExhausted) << failed.ToString();
  EXPECT_NE(failed.message().find("no space left on " + (small_ / "state/state.db").string() + " while "),
            std::string::npos) << failed.ToString();

  // Still readable while full, and consistent.
  EXPECT_TRUE(host_->store().ListSandboxes().ok());
  EXPECT_EQ(IntegrityCheck(), "ok");

  // Space freed: reopened (as the next banger run does) it accepts writes again.
  Free();
  Reopen();
  EventRecord e;
  e.sandbox = "web";
  e.type = "Normal";
  e.reason = "After";
  e.message = "space freed";
  EXPECT_TRUE(host_->store().AddEvent(e).ok());
  EXPECT_EQ(IntegrityCheck(), "ok");
}

}  // namespace
}  // namespace banger
