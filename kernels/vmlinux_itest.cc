// Extraction of the host's real distribution kernel.
#include <chrono>
#include <filesystem>
#include <memory>

#include <gtest/gtest.h>

#include "base/files.h"
#include "kernels/host_kernel.h"
#include "kernels/vmlinux.h"

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;

// Given the host's installed Debian kernel (xz-compressed bzImage), when its
// vmlinux is extracted, then it is an x86-64 ELF carrying the PVH entry note
// (so QEMU can boot it directly) and its banner names the same release.
TEST(VmlinuxHostTest, HostKernelExtractsToElfWithPvhNote) {
  auto host = FindHostKernel("/boot", "/lib/modules", "");
  if (!host.ok()) GTEST_SKIP() << "no distribution kernel installed: " << host.status().ToString();
  auto dir = MakeTempDir("banger-vmlinux-itest-");
  ASSERT_TRUE(dir.ok());
  ScopedRemove guard(*dir);

  auto info = ReadBzImageInfo(host->kernel);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->version, host->version);

  fs::path out = *dir / "vmlinux";
  auto start = std::chrono::steady_clock::now();
  Status st = ExtractVmlinux(host->kernel, out);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::printf("[ MEASURE  ] extracted %s (%s, %llu -> %llu bytes) in %lld ms\n",
              host->kernel.c_str(), std::string(ToString(info->compression)).c_str(),
              static_cast<unsigned long long>(fs::file_size(host->kernel)),
              static_cast<unsigned long long>(fs::file_size(out)), static_cast<long long>(ms));

  auto pvh = HasPvhEntry(out);
  ASSERT_TRUE(pvh.ok()) << pvh.status().ToString();
  EXPECT_TRUE(*pvh);
  auto version = ElfKernelVersion(out);
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, host->version);
  EXPECT_GT(fs::file_size(out), fs::file_size(host->kernel));
}

}  // namespace
}  // namespace banger::kernels
