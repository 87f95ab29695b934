#include "kernels/host_kernel.h"

#include <gtest/gtest.h>

#include "base/files.h"

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;

TEST(HostKernelTest, ReleasesCompareNumerically) {
  EXPECT_LT(CompareKernelReleases("6.1.0-9-amd64", "6.1.0-56-amd64"), 0);
  EXPECT_LT(CompareKernelReleases("6.1.0-56-amd64", "6.10.0-1-amd64"), 0);
  EXPECT_EQ(CompareKernelReleases("6.1.0", "6.1.0"), 0);
  EXPECT_GT(CompareKernelReleases("6.1.0-1", "6.1.0"), 0);
  EXPECT_TRUE(ReleaseMatches("6.1.0-56-amd64", "6.1"));
  EXPECT_TRUE(ReleaseMatches("6.1.0-56-amd64", "6.1.0-56-amd64"));
  EXPECT_TRUE(ReleaseMatches("6.1.0-56-amd64", ""));
  EXPECT_FALSE(ReleaseMatches("6.10.0-1-amd64", "6.1"));
}

// Given a boot dir with several kernels, one of them lacking modules, then the
// newest complete one matching the pin is chosen and the reasons are listed
// when none fits.
TEST(HostKernelTest, PicksNewestCompleteKernelMatchingPin) {
  auto dir = MakeTempDir("banger-hostkernel-test-");
  ASSERT_TRUE(dir.ok());
  ScopedRemove guard(*dir);
  fs::path boot = *dir / "boot", mods = *dir / "modules";
  auto add = [&](const std::string& r, bool with_modules) {
    ASSERT_TRUE(MakeDirs(boot).ok());
    ASSERT_TRUE(WriteFileAtomic(boot / ("vmlinuz-" + r), "k").ok());
    ASSERT_TRUE(WriteFileAtomic(boot / ("System.map-" + r), "m").ok());
    if (with_modules) {
      ASSERT_TRUE(MakeDirs(mods / r).ok());
      ASSERT_TRUE(WriteFileAtomic(mods / r / "modules.dep", "").ok());
    }
  };
  add("6.1.0-9-amd64", true);
  add("6.1.0-56-amd64", true);
  add("6.1.0-60-amd64", false);
  add("6.10.0-1-amd64", true);
  ASSERT_TRUE(WriteFileAtomic(boot / "config-6.1.0-56-amd64", "CONFIG_X=y").ok());

  auto newest = FindHostKernel(boot, mods, "");
  ASSERT_TRUE(newest.ok()) << newest.status().ToString();
  EXPECT_EQ(newest->version, "6.10.0-1-amd64");
  EXPECT_TRUE(newest->config.empty());

  auto pinned = FindHostKernel(boot, mods, "6.1");
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_EQ(pinned->version, "6.1.0-56-amd64");
  EXPECT_EQ(pinned->kernel, boot / "vmlinuz-6.1.0-56-amd64");
  EXPECT_EQ(pinned->modules_dir, mods / "6.1.0-56-amd64");
  EXPECT_EQ(pinned->config, boot / "config-6.1.0-56-amd64");

  auto none = FindHostKernel(boot, mods, "6.1.0-60");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("6.1.0-60-amd64 (no " +
                                         (mods / "6.1.0-60-amd64" / "modules.dep").string()),
            std::string::npos)
      << none.status().ToString();
}

}  // namespace
}  // namespace banger::kernels
