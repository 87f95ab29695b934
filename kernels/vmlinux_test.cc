#include "kernels/vmlinux.h"

#include <sys/resource.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "base/command_runner.h"
#include "base/files.h"
#include "kernels/test_util.h"

namespace banger::kernels {
namespace {

namespace fs = std::filesystem;
using testing::CompressLikeKbuild;
using testing::MakeBzImage;
using testing::MakeTinyElf;

class VmlinuxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir("banger-vmlinux-test-");
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    dir_ = *dir;
    guard_ = std::make_unique<ScopedRemove>(dir_);
    runner_ = MakePosixCommandRunner();
  }

  fs::path Write(const std::string& name, const std::string& content) {
    fs::path p = dir_ / name;
    EXPECT_TRUE(WriteFileAtomic(p, content).ok());
    return p;
  }

  // Everything in the test directory other than `keep`.
  std::vector<std::string> Entries() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  std::unique_ptr<ScopedRemove> guard_;
  std::unique_ptr<CommandRunner> runner_;
};

class VmlinuxCompressionTest : public VmlinuxTest,
                               public ::testing::WithParamInterface<std::string> {};

// Given a bzImage whose payload is a tiny ELF compressed like kbuild does,
// when extracted, then the output is byte-identical to the original ELF.
TEST_P(VmlinuxCompressionTest, ExtractedBytesEqualOriginalElf) {
  const std::string elf = MakeTinyElf(/*pvh=*/true);
  const std::string payload = CompressLikeKbuild(*runner_, GetParam(), elf);
  ASSERT_FALSE(payload.empty());
  fs::path bz = Write("bzImage", MakeBzImage(payload));

  auto info = ReadBzImageInfo(bz);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(ToString(info->compression), GetParam());
  EXPECT_EQ(info->version, "6.9.0-test");

  fs::path out = dir_ / "vmlinux";
  Status st = ExtractVmlinux(bz, out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto got = ReadFile(out);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), elf.size());
  EXPECT_TRUE(*got == elf);
  auto pvh = HasPvhEntry(out);
  ASSERT_TRUE(pvh.ok()) << pvh.status().ToString();
  EXPECT_TRUE(*pvh);
  EXPECT_EQ(Entries(), (std::vector<std::string>{"bzImage", "vmlinux"}));
}

INSTANTIATE_TEST_SUITE_P(AllKbuildCompressions, VmlinuxCompressionTest,
                         ::testing::Values("gzip", "xz", "zstd", "lz4", "bzip2", "lzma"),
                         [](const auto& p) { return p.param; });

// Given an input that is already an x86-64 ELF, extraction copies it.
TEST_F(VmlinuxTest, ElfInputIsCopiedUnchanged) {
  const std::string elf = MakeTinyElf(/*pvh=*/false);
  fs::path in = Write("vmlinux.in", elf);
  fs::path out = dir_ / "vmlinux";
  ASSERT_TRUE(ExtractVmlinux(in, out).ok());
  auto got = ReadFile(out);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == elf);
  auto pvh = HasPvhEntry(out);
  ASSERT_TRUE(pvh.ok());
  EXPECT_FALSE(*pvh) << "a GNU build-id note is not a PVH entry";
  auto version = ElfKernelVersion(out);
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, "6.9.0-test");
}

// Given a bzImage cut short inside its payload, extraction fails naming the
// file and leaves neither the output nor a temporary file behind.
TEST_F(VmlinuxTest, TruncatedBzImageFailsAndLeavesNothing) {
  const std::string elf = MakeTinyElf(true);
  std::string img = MakeBzImage(CompressLikeKbuild(*runner_, "xz", elf));
  fs::path bz = Write("bzImage", img.substr(0, img.size() / 2));
  Status st = ExtractVmlinux(bz, dir_ / "vmlinux");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(bz.string()), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st.ToString();
  EXPECT_EQ(Entries(), (std::vector<std::string>{"bzImage"}));
}

// Given a payload whose compressed stream is damaged in the middle, extraction
// fails with DataLoss and leaves nothing behind.
TEST_F(VmlinuxTest, CorruptPayloadFailsAndLeavesNothing) {
  for (const std::string tool : {"gzip", "xz", "zstd"}) {
    SCOPED_TRACE(tool);
    const std::string elf = MakeTinyElf(true);
    std::string payload = CompressLikeKbuild(*runner_, tool, elf);
    for (size_t i = payload.size() / 3; i < payload.size() / 3 + 64; ++i) payload[i] ^= 0x5a;
    fs::path bz = Write("bzImage", MakeBzImage(payload));
    Status st = ExtractVmlinux(bz, dir_ / "vmlinux");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find(bz.string()), std::string::npos) << st.ToString();
    EXPECT_EQ(Entries(), (std::vector<std::string>{"bzImage"}));
  }
}

// Given a file that is neither a bzImage nor an ELF, extraction says so.
TEST_F(VmlinuxTest, NonKernelIsRejected) {
  fs::path junk = Write("junk", std::string(4096, 'x'));
  Status st = ExtractVmlinux(junk, dir_ / "vmlinux");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("HdrS"), std::string::npos) << st.ToString();
  EXPECT_FALSE(fs::exists(dir_ / "vmlinux"));
}

// Given a bzImage whose payload uses an unknown compression, the error says so.
TEST_F(VmlinuxTest, UnknownCompressionIsRejected) {
  fs::path bz = Write("bzImage", MakeBzImage(std::string(1000, 'Q')));
  Status st = ExtractVmlinux(bz, dir_ / "vmlinux");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("unknown payload compression"), std::string::npos) << st.ToString();
  EXPECT_FALSE(fs::exists(dir_ / "vmlinux"));
}

// Given a bzImage wrapping an ARM64 ELF, extraction refuses the non-x86 result.
TEST_F(VmlinuxTest, NonX86ElfPayloadIsRejected) {
  const std::string elf = MakeTinyElf(true, "6.9.0-arm", /*machine=*/183);
  fs::path bz = Write("bzImage", MakeBzImage(CompressLikeKbuild(*runner_, "gzip", elf)));
  Status st = ExtractVmlinux(bz, dir_ / "vmlinux");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not x86-64"), std::string::npos) << st.ToString();
  EXPECT_EQ(Entries(), (std::vector<std::string>{"bzImage"}));
}

// Given a compressed payload that is not an ELF at all, extraction refuses it.
TEST_F(VmlinuxTest, PayloadThatIsNotElfIsRejected) {
  fs::path bz = Write("bzImage",
                      MakeBzImage(CompressLikeKbuild(*runner_, "gzip", std::string(5000, 'z'))));
  Status st = ExtractVmlinux(bz, dir_ / "vmlinux");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not an ELF"), std::string::npos) << st.ToString();
  EXPECT_FALSE(fs::exists(dir_ / "vmlinux"));
}

// Found by fuzz/vmlinux_fuzz.cc: program headers claiming 65535 entries of
// 65535 bytes made HasPvhEntry allocate (and zero) 4 GiB before noticing that
// the file is a few hundred bytes long.
TEST_F(VmlinuxTest, HeaderSizesBeyondTheFileAreRefusedBeforeAllocating) {
  std::string elf = MakeTinyElf(/*pvh=*/true, "6.9.0-test", 62, /*filler_bytes=*/0);
  testing::PutLe16(elf, 54, 0xffff);  // e_phentsize
  testing::PutLe16(elf, 56, 0xffff);  // e_phnum
  fs::path p = Write("vmlinux", elf);
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  auto pvh = HasPvhEntry(p);
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  ASSERT_FALSE(pvh.ok());
  EXPECT_NE(pvh.error().message().find("truncated"), std::string::npos) << pvh.error().ToString();
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 256 * 1024) << "peak RSS grew by " << (after.ru_maxrss - before.ru_maxrss) << " KiB";
}

}  // namespace
}  // namespace banger::kernels
