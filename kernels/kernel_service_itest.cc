// KernelService against the host's real distribution kernel and modules.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <gtest/gtest.h>

#include "base/command_runner.h"
#include "base/files.h"
#include "kernels/catalog.h"
#include "kernels/host_kernel.h"
#include "kernels/kernel_service.h"
#include "kernels/vmlinux.h"
#include "state/state_store.h"

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;

class HostKernelServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto host = FindHostKernel("/boot", "/lib/modules", "");
    if (!host.ok()) GTEST_SKIP() << "no distribution kernel installed: " << host.status().ToString();
    host_ = *host;
    auto dir = MakeTempDir("banger-kernelsvc-itest-");
    ASSERT_TRUE(dir.ok());
    root_ = *dir;
    guard_ = std::make_unique<ScopedRemove>(root_);
    auto store = StateStore::Open(root_ / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    runner_ = MakePosixCommandRunner();
  }

  void ExpectUsable(const KernelRecord& rec) {
    EXPECT_EQ(rec.version, host_.version);
    EXPECT_TRUE(fs::is_regular_file(rec.kernel_path));
    auto pvh = HasPvhEntry(rec.vmlinux_path);
    ASSERT_TRUE(pvh.ok()) << pvh.status().ToString();
    EXPECT_TRUE(*pvh) << "Debian's vmlinux carries the PVH note QEMU boots it by";
    fs::path mods = rec.modules_dir;
    EXPECT_TRUE(fs::is_regular_file(mods / "modules.dep"));
    EXPECT_TRUE(fs::is_regular_file(mods / "modules.dep.bin"));
    EXPECT_TRUE(fs::is_regular_file(mods / "modules.alias"));
    EXPECT_TRUE(fs::is_directory(mods / "kernel/drivers"));
    // Same file system as /lib/modules here, so the tree is hard links.
    struct stat a {}, b {};
    ASSERT_EQ(::stat((host_.modules_dir / "modules.dep").c_str(), &a), 0);
    ASSERT_EQ(::stat((mods / "modules.dep").c_str(), &b), 0);
    if (a.st_dev == b.st_dev) {
      EXPECT_EQ(a.st_ino, b.st_ino);
    }
    std::vector<std::string> entries;
    for (const auto& e : fs::directory_iterator(root_ / "kernels")) {
      entries.push_back(e.path().filename().string());
    }
    EXPECT_EQ(entries, std::vector<std::string>{rec.id}) << "no staging left";
  }

  HostKernel host_;
  fs::path root_;
  std::unique_ptr<ScopedRemove> guard_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<CommandRunner> runner_;
};

// Given the host's kernel, when imported by path, then the record has the
// bzImage, an extracted vmlinux with PVH note and the whole modules tree.
TEST_F(HostKernelServiceTest, ImportOfHostKernelPublishesVmlinuxAndModules) {
  KernelService svc(*store_, *runner_, root_ / "kernels", KernelCatalog{});
  auto start = std::chrono::steady_clock::now();
  auto rec = svc.Import({.name = "host",
                         .kernel = host_.kernel,
                         .modules_dir = host_.modules_dir,
                         .system_map = host_.system_map,
                         .config = host_.config});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  std::printf("[ MEASURE  ] imported host kernel %s (vmlinux + modules) in %lld ms\n",
              host_.version.c_str(), static_cast<long long>(ms));
  ExpectUsable(*rec);
  EXPECT_TRUE(fs::is_regular_file(fs::path(rec->kernel_path).parent_path() / "config"));
}

// Given the built-in catalog on a Debian 12 host, Ensure("default") pulls
// debian-6.1 from the host.
TEST_F(HostKernelServiceTest, EnsureDefaultWithBuiltinCatalogPullsDebian61) {
  if (!ReleaseMatches(host_.version, "6.1")) {
    GTEST_SKIP() << "host kernel " << host_.version << " is not Debian 12's 6.1";
  }
  auto cat = BuiltinKernelCatalog();
  ASSERT_TRUE(cat.ok());
  KernelService svc(*store_, *runner_, root_ / "kernels", *cat);
  auto rec = svc.Ensure("default");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->name, "debian-6.1");
  EXPECT_EQ(rec->source, "host:6.1");
  ExpectUsable(*rec);
}

}  // namespace
}  // namespace banger::kernels
