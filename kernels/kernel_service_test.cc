#include "kernels/kernel_service.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "base/files.h"
#include "base/sha256.h"
#include "kernels/test_util.h"
#include "kernels/vmlinux.h"

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;
using testing::CompressLikeKbuild;
using testing::MakeBzImage;
using testing::MakeTinyElf;

constexpr char kRelease[] = "6.9.0-test";

struct TarEntry {
  std::string path;
  std::string content;       // regular file content
  std::string symlink;       // non-empty: a symlink to this
  bool dir = false;
};

// Writes a tar.zst with exactly these entries (any names, also hostile ones).
void WriteTarZst(const fs::path& out, const std::vector<TarEntry>& entries) {
  archive* a = archive_write_new();
  archive_write_add_filter_zstd(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK);
  for (const TarEntry& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    if (t.dir) {
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, 0755);
    } else if (!t.symlink.empty()) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, t.symlink.c_str());
      archive_entry_set_perm(e, 0777);
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(t.content.size()));
    }
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    if (!t.content.empty()) archive_write_data(a, t.content.data(), t.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

class KernelServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir("banger-kernelsvc-test-");
    ASSERT_TRUE(dir.ok());
    root_ = *dir;
    guard_ = std::make_unique<ScopedRemove>(root_);
    auto store = StateStore::Open(root_ / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    runner_ = MakePosixCommandRunner();
    kernels_dir_ = root_ / "kernels";
    elf_ = MakeTinyElf(/*pvh=*/true, kRelease);
    bzimage_ = MakeBzImage(CompressLikeKbuild(*runner_, "gzip", elf_), kRelease);
    // A fake module tree for the release.
    src_ = root_ / "src";
    modules_ = src_ / "lib/modules" / kRelease;
    ASSERT_TRUE(MakeDirs(modules_ / "kernel/drivers/block").ok());
    ASSERT_TRUE(WriteFileAtomic(modules_ / "modules.dep", "kernel/drivers/block/virtio_blk.ko:\n").ok());
    ASSERT_TRUE(WriteFileAtomic(modules_ / "modules.order", "kernel/drivers/block/virtio_blk.ko\n").ok());
    ASSERT_TRUE(WriteFileAtomic(modules_ / "kernel/drivers/block/virtio_blk.ko", "ko-bytes").ok());
    fs::create_symlink("kernel/drivers", modules_ / "drivers-link");
    fs::create_symlink("/usr/src/linux-headers-x", modules_ / "build");  // absolute: not copied
    ASSERT_TRUE(MakeDirs(src_ / "boot").ok());
    ASSERT_TRUE(WriteFileAtomic(src_ / "boot" / ("vmlinuz-" + std::string(kRelease)), bzimage_).ok());
    ASSERT_TRUE(WriteFileAtomic(src_ / "boot" / ("System.map-" + std::string(kRelease)), "ffff T _text\n").ok());
    ASSERT_TRUE(WriteFileAtomic(src_ / "boot" / ("config-" + std::string(kRelease)), "CONFIG_PVH=y\n").ok());
  }

  std::unique_ptr<KernelService> MakeService(KernelCatalog catalog = {}, KernelServiceOptions o = {}) {
    if (o.host_boot_dir == "/boot") o.host_boot_dir = src_ / "boot";
    if (o.host_modules_root == "/lib/modules") o.host_modules_root = src_ / "lib/modules";
    return std::make_unique<KernelService>(*store_, *runner_, kernels_dir_, std::move(catalog), std::move(o));
  }

  KernelCatalog Catalog(const std::string& yaml) {
    auto c = ParseKernelCatalog(yaml, "test.yaml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : KernelCatalog{};
  }

  // Names in kernels_dir (published dirs and any leftovers).
  std::vector<std::string> KernelDirEntries() {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(kernels_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      out.push_back(it->path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path BzPath() { return src_ / "boot" / ("vmlinuz-" + std::string(kRelease)); }

  void ExpectPublished(const KernelRecord& rec, bool with_modules) {
    EXPECT_EQ(rec.version, kRelease);
    EXPECT_EQ(fs::path(rec.kernel_path).parent_path(), kernels_dir_ / rec.id);
    auto vmlinux = ReadFile(rec.vmlinux_path);
    ASSERT_TRUE(vmlinux.ok());
    EXPECT_TRUE(*vmlinux == elf_) << "vmlinux is the decompressed payload";
    EXPECT_TRUE(fs::is_regular_file(kernels_dir_ / rec.id / "kernel.json"));
    if (with_modules) {
      EXPECT_EQ(rec.modules_dir, (kernels_dir_ / rec.id / "modules").string());
      EXPECT_TRUE(fs::is_regular_file(fs::path(rec.modules_dir) / "modules.dep"));
      EXPECT_TRUE(fs::is_regular_file(fs::path(rec.modules_dir) / "kernel/drivers/block/virtio_blk.ko"));
    }
    std::vector<std::string> expected{rec.id};
    EXPECT_EQ(KernelDirEntries(), expected) << "no staging or other leftovers";
    auto stored = store_->GetKernel(rec.name);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    EXPECT_EQ(stored->id, rec.id);
    EXPECT_EQ(stored->vmlinux_path, rec.vmlinux_path);
  }

  fs::path root_, kernels_dir_, src_, modules_;
  std::unique_ptr<ScopedRemove> guard_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<CommandRunner> runner_;
  std::string elf_, bzimage_;
};

// Given a bzImage and its module tree, Import publishes bzImage, vmlinux,
// modules (hard-linked), System.map and config, records it, and leaves no
// staging directory.
TEST_F(KernelServiceTest, ImportPublishesKernelVmlinuxAndModules) {
  auto svc = MakeService();
  ImportKernelRequest req;
  req.name = "mine";
  req.kernel = BzPath();
  req.modules_dir = modules_;
  req.system_map = src_ / "boot" / ("System.map-" + std::string(kRelease));
  req.config = src_ / "boot" / ("config-" + std::string(kRelease));
  auto rec = svc->Import(req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ExpectPublished(*rec, /*with_modules=*/true);
  EXPECT_EQ(rec->source, "import:" + BzPath().string());
  EXPECT_EQ(fs::path(rec->kernel_path).filename(), "bzImage");
  EXPECT_TRUE(rec->initrd_path.empty());
  EXPECT_TRUE(fs::is_regular_file(kernels_dir_ / rec->id / "System.map"));
  EXPECT_TRUE(fs::is_regular_file(kernels_dir_ / rec->id / "config"));
  // Modules are hard links of the source (same file system here).
  struct stat a {}, b {};
  ASSERT_EQ(::stat((modules_ / "modules.dep").c_str(), &a), 0);
  ASSERT_EQ(::stat((fs::path(rec->modules_dir) / "modules.dep").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_TRUE(fs::is_symlink(fs::path(rec->modules_dir) / "drivers-link"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(fs::path(rec->modules_dir) / "build")))
      << "absolute symlinks out of the tree are not copied";

  auto list = svc->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "mine");

  auto again = svc->Import(req);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists) << again.status().ToString();
  EXPECT_EQ(KernelDirEntries(), std::vector<std::string>{rec->id});
}

// Given an ELF-only kernel, Import records the vmlinux as the kernel.
TEST_F(KernelServiceTest, ImportOfElfOnlyKernelUsesVmlinux) {
  ASSERT_TRUE(WriteFileAtomic(src_ / "vmlinux", elf_).ok());
  auto rec = MakeService()->Import({.name = "elf-only", .kernel = src_ / "vmlinux"});
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ExpectPublished(*rec, /*with_modules=*/false);
  EXPECT_EQ(rec->kernel_path, rec->vmlinux_path);
  EXPECT_FALSE(fs::exists(kernels_dir_ / rec->id / "bzImage"));
}

// Given modules of another release, Import refuses and publishes nothing.
TEST_F(KernelServiceTest, ImportRejectsModulesOfAnotherRelease) {
  fs::path other = src_ / "lib/modules/6.1.0-1-amd64";
  ASSERT_TRUE(MakeDirs(other).ok());
  ASSERT_TRUE(WriteFileAtomic(other / "modules.dep", "").ok());
  auto rec = MakeService()->Import({.name = "mixed", .kernel = BzPath(), .modules_dir = other});
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rec.status().message().find("are for release 6.1.0-1-amd64 but the kernel is 6.9.0-test"),
            std::string::npos)
      << rec.status().ToString();
  EXPECT_TRUE(KernelDirEntries().empty());
  EXPECT_EQ(store_->GetKernel("mixed").status().code(), StatusCode::kNotFound);
}

// Given bad names or a non-kernel file, Import refuses with a clear error.
TEST_F(KernelServiceTest, ImportValidatesNameAndFile) {
  auto svc = MakeService();
  for (const std::string bad : {"", "default", "../x", "Upper", "a/b"}) {
    auto r = svc->Import({.name = bad, .kernel = BzPath()});
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad << ": " << r.status().ToString();
  }
  ASSERT_TRUE(WriteFileAtomic(src_ / "notakernel", std::string(8192, 'x')).ok());
  auto r = svc->Import({.name = "junk", .kernel = src_ / "notakernel"});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("notakernel"), std::string::npos);
  auto missing = svc->Import({.name = "missing", .kernel = src_ / "nope"});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(KernelDirEntries().empty());
}

// Given a sandbox whose kernel_ref is the kernel, Remove is refused naming the
// sandbox; once the sandbox is gone, Remove deletes record and files.
TEST_F(KernelServiceTest, RemoveRefusedWhileSandboxUsesKernel) {
  auto svc = MakeService();
  auto rec = svc->Import({.name = "k1", .kernel = BzPath(), .modules_dir = modules_});
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  SandboxRecord sb;
  sb.name = "web-1";
  sb.id = "sb-1";
  sb.spec_json = "{}";
  sb.spec_hash = "h";
  sb.kernel_ref = "k1";
  ASSERT_TRUE(store_->PutSandbox(sb).ok());

  Status st = svc->Remove("k1");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("used by sandbox web-1"), std::string::npos) << st.ToString();
  EXPECT_TRUE(fs::exists(kernels_dir_ / rec->id));

  ASSERT_TRUE(store_->DeleteSandbox("web-1").ok());
  ASSERT_TRUE(svc->Remove("k1").ok());
  EXPECT_FALSE(fs::exists(kernels_dir_ / rec->id));
  EXPECT_TRUE(fs::exists(modules_ / "modules.dep")) << "the source of the hard links is untouched";
  EXPECT_EQ(store_->GetKernel("k1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(svc->Remove("k1").code(), StatusCode::kNotFound);
}

// Given a catalog entry with a host source (a fake /boot here), Pull imports
// the newest matching kernel with its modules; "default" resolves to it.
TEST_F(KernelServiceTest, EnsureDefaultPullsHostKernelOnce) {
  auto svc = MakeService(Catalog("default: host-k\nkernels:\n  host-k:\n    host: {version: '6.9'}\n"));
  auto rec = svc->Ensure("default");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, "host-k");
  EXPECT_EQ(rec->source, "host:6.9");
  ExpectPublished(*rec, /*with_modules=*/true);
  EXPECT_TRUE(fs::is_regular_file(kernels_dir_ / rec->id / "System.map"));

  auto again = svc->Ensure("");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, rec->id) << "present kernels are returned, not pulled again";
  auto found = svc->Find("default");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, rec->id);
  auto none = svc->Find("nope");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto pull = svc->Pull("host-k");
  EXPECT_EQ(pull.status().code(), StatusCode::kAlreadyExists);
  auto unknown = svc->Ensure("hots-k");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
}

// Given a file:// URL to a .tar.zst with a bzImage and modules, Pull verifies
// the sha256 and publishes; with a wrong sha256 it fails and publishes nothing.
TEST_F(KernelServiceTest, UrlTarZstSourceIsVerifiedBeforePublishing) {
  fs::path tarball = root_ / "kernel.tar.zst";
  WriteTarZst(tarball, {
                           {.path = "boot", .dir = true},
                           {.path = "boot/vmlinuz-6.9.0-test", .content = bzimage_},
                           {.path = "boot/config-6.9.0-test", .content = "CONFIG_X=y\n"},
                           {.path = "lib/modules/6.9.0-test", .dir = true},
                           {.path = "lib/modules/6.9.0-test/modules.dep",
                            .content = "kernel/drivers/block/virtio_blk.ko:\n"},
                           {.path = "lib/modules/6.9.0-test/kernel/drivers/block/virtio_blk.ko",
                            .content = "ko"},
                       });
  auto sha = Sha256File(tarball);
  ASSERT_TRUE(sha.ok());
  std::string bad_sha(64, '0');
  auto svc = MakeService(Catalog("kernels:\n  good:\n    url: file://" + tarball.string() +
                                 "\n    sha256: " + *sha + "\n  bad:\n    url: file://" +
                                 tarball.string() + "\n    sha256: " + bad_sha + "\n"));

  auto bad = svc->Pull("bad");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("sha256 mismatch"), std::string::npos) << bad.status().ToString();
  EXPECT_TRUE(KernelDirEntries().empty()) << "nothing published, no staging left";
  EXPECT_EQ(store_->GetKernel("bad").status().code(), StatusCode::kNotFound);

  uint64_t last_done = 0;
  auto good = svc->Pull("good", [&](uint64_t done, uint64_t) { last_done = std::max(last_done, done); });
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ExpectPublished(*good, /*with_modules=*/true);
  EXPECT_EQ(good->source, "url:file://" + tarball.string());
  EXPECT_EQ(last_done, fs::file_size(tarball));
  EXPECT_TRUE(fs::is_regular_file(kernels_dir_ / good->id / "config"));
}

// Given a URL to a raw bzImage, Pull publishes it without modules.
TEST_F(KernelServiceTest, UrlRawKernelSource) {
  auto sha = Sha256File(BzPath());
  ASSERT_TRUE(sha.ok());
  auto svc = MakeService(Catalog("kernels:\n  raw:\n    url: file://" + BzPath().string() +
                                 "\n    sha256: " + *sha + "\n"));
  auto rec = svc->Pull("raw");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ExpectPublished(*rec, /*with_modules=*/false);
  EXPECT_TRUE(rec->modules_dir.empty());
}

// Given a tarball with an entry escaping the destination, Pull refuses it
// naming the entry, and nothing is written outside or published.
TEST_F(KernelServiceTest, UrlTarballWithHostileEntryIsRefused) {
  for (const TarEntry& evil : {TarEntry{.path = "../escaped", .content = "x"},
                               TarEntry{.path = "/tmp/banger-abs-escape", .content = "x"},
                               TarEntry{.path = "boot/link", .symlink = "/etc"}}) {
    SCOPED_TRACE(evil.path);
    fs::path tarball = root_ / "evil.tar.zst";
    fs::remove(tarball);
    WriteTarZst(tarball, {{.path = "boot/vmlinuz", .content = bzimage_}, evil});
    auto sha = Sha256File(tarball);
    ASSERT_TRUE(sha.ok());
    auto svc = MakeService(Catalog("kernels:\n  evil:\n    url: file://" + tarball.string() +
                                   "\n    sha256: " + *sha + "\n"));
    auto rec = svc->Pull("evil");
    ASSERT_FALSE(rec.ok());
    EXPECT_NE(rec.status().message().find("refusing"), std::string::npos) << rec.status().ToString();
    EXPECT_TRUE(KernelDirEntries().empty());
    EXPECT_FALSE(fs::exists(root_ / "escaped"));
    EXPECT_FALSE(fs::exists(kernels_dir_.parent_path() / "escaped"));
    EXPECT_FALSE(fs::exists("/tmp/banger-abs-escape"));
  }
}

// Given an OCI source, Pull uses the configured fetcher's tree (a merged-/usr
// layout with /lib -> usr/lib); without a fetcher it fails with
// FailedPrecondition.
TEST_F(KernelServiceTest, OciSourceUsesFetcherTree) {
  KernelCatalog cat = Catalog("kernels:\n  oci-k:\n    oci: localhost:5000/kernels/test:1\n");
  EXPECT_EQ(MakeService(cat)->Pull("oci-k").status().code(), StatusCode::kFailedPrecondition);

  std::vector<std::string> refs;
  KernelServiceOptions o;
  o.oci_fetcher = [&](const std::string& ref, const fs::path& dest, const KernelProgressFn&) -> Status {
    refs.push_back(ref);
    BANGER_RETURN_IF_ERROR(MakeDirs(dest / "usr/lib/modules" / kRelease));
    BANGER_RETURN_IF_ERROR(MakeDirs(dest / "boot"));
    fs::create_symlink("usr/lib", dest / "lib");
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(dest / "usr/lib/modules" / kRelease / "modules.dep", ""));
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(dest / "boot" / "vmlinux", elf_));
    return WriteFileAtomic(dest / "boot" / "vmlinuz", bzimage_);
  };
  auto rec = MakeService(cat, o)->Pull("oci-k");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(refs, std::vector<std::string>{"localhost:5000/kernels/test:1"});
  ExpectPublished(*rec, /*with_modules=*/false);
  EXPECT_TRUE(fs::is_regular_file(fs::path(rec->modules_dir) / "modules.dep"));
  EXPECT_EQ(rec->source, "oci:localhost:5000/kernels/test:1");
}

// Given a fetch that fails midway, nothing is published and staging is gone.
TEST_F(KernelServiceTest, FailedFetchLeavesNoStaging) {
  KernelServiceOptions o;
  o.oci_fetcher = [&](const std::string&, const fs::path& dest, const KernelProgressFn&) -> Status {
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(dest / "partial", "x"));
    return Unavailable("registry went away");
  };
  auto svc = MakeService(Catalog("kernels:\n  oci-k:\n    oci: localhost:5000/k:1\n"), o);
  auto rec = svc->Pull("oci-k");
  EXPECT_EQ(rec.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(rec.status().message().find("pull kernel oci-k"), std::string::npos) << rec.status().ToString();
  EXPECT_TRUE(KernelDirEntries().empty());
}

// Given two concurrent Pulls of one name that both reach the publish step,
// exactly one wins, the other gets AlreadyExists, and no files are left over.
TEST_F(KernelServiceTest, ConcurrentPullOfOneNameHasOneWinner) {
  std::barrier both_staged(2);
  KernelServiceOptions o;
  o.before_publish = [&](const std::string&) { both_staged.arrive_and_wait(); };
  auto svc = MakeService(Catalog("kernels:\n  host-k:\n    host: {}\n"), o);
  Result<KernelRecord> r1 = Internal("unset"), r2 = Internal("unset");
  std::thread t1([&] { r1 = svc->Pull("host-k"); });
  std::thread t2([&] { r2 = svc->Pull("host-k"); });
  t1.join();
  t2.join();
  ASSERT_NE(r1.ok(), r2.ok()) << r1.status().ToString() << " / " << r2.status().ToString();
  const auto& winner = r1.ok() ? r1 : r2;
  const auto& loser = r1.ok() ? r2 : r1;
  EXPECT_EQ(loser.status().code(), StatusCode::kAlreadyExists) << loser.status().ToString();
  ExpectPublished(*winner, /*with_modules=*/true);
}

// Given concurrent Ensure calls for one absent kernel, it is fetched once and
// every caller gets the same record.
TEST_F(KernelServiceTest, ConcurrentEnsureFetchesOnce) {
  std::atomic<int> fetches{0};
  std::atomic<int> callers{0};
  KernelServiceOptions o;
  o.oci_fetcher = [&](const std::string&, const fs::path& dest, const KernelProgressFn&) -> Status {
    ++fetches;
    // Hold the pull until every caller has entered Ensure.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (callers.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    BANGER_RETURN_IF_ERROR(MakeDirs(dest / "boot"));
    return WriteFileAtomic(dest / "boot" / "vmlinuz", bzimage_);
  };
  auto svc = MakeService(Catalog("kernels:\n  oci-k:\n    oci: localhost:5000/k:1\n"), o);
  std::vector<Result<KernelRecord>> results(3, Result<KernelRecord>(Internal("unset")));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      ++callers;
      results[static_cast<size_t>(i)] = svc->Ensure("oci-k");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(fetches.load(), 1);
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->id, results[0]->id);
  }
  EXPECT_EQ(KernelDirEntries(), std::vector<std::string>{results[0]->id});
}

// Given a stray staging directory from an interrupted publish, it is removed.
TEST_F(KernelServiceTest, RemoveStaleStagingCleansInterruptedPublishes) {
  ASSERT_TRUE(MakeDirs(kernels_dir_ / "k-1234.staging/modules").ok());
  auto svc = MakeService();
  auto n = svc->RemoveStaleStaging();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  EXPECT_TRUE(KernelDirEntries().empty());
}

// A crash after the rename and before the row (kernel.publish.after_rename)
// leaves an unrecorded kernel dir and its lock; a crash before it, a staging
// dir. The next publish removes them; a recorded kernel stays.
TEST_F(KernelServiceTest, APublishFirstRemovesWhatAnInterruptedOneLeft) {
  auto svc = MakeService();
  ImportKernelRequest req;
  req.name = "kept";
  req.kernel = BzPath();
  auto kept = svc->Import(req);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  ASSERT_TRUE(MakeDirs(kernels_dir_ / "mine-0000abcd/modules").ok());
  ASSERT_TRUE(WriteFileAtomic(kernels_dir_ / "mine-0000abcd.lock", "").ok());
  ASSERT_TRUE(MakeDirs(kernels_dir_ / "mine-1111abcd.staging").ok());
  req.name = "mine";
  auto rec = svc->Import(req);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  std::vector<std::string> want = {kept->id, rec->id};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(KernelDirEntries(), want);
}

}  // namespace
}  // namespace banger::kernels
