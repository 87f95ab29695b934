// The real VolumeFiles (host/volume_files.cc) with the real mkfs.ext4 and
// debugfs: a seeded volume holds the image's files at mountPath, an empty one
// is a fresh file system, a failed build leaves nothing behind, a leftover
// partial file is replaced, growing never shrinks.
#include "host/volume_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "base/files.h"
#include "images/ext4_builder.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

class VolumeFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FindProgram("mkfs.ext4") || !FindProgram("debugfs")) GTEST_SKIP() << "e2fsprogs is not installed";
    runner_ = MakePosixCommandRunner();
    files_ = MakeVolumeFiles(*runner_, dir_.path() / "volumes");
  }

  // An image root disk with /etc/os-release and /srv/app/data/readme.
  fs::path MakeImage() {
    fs::path tree = dir_.path() / "tree";
    EXPECT_TRUE(MakeDirs(tree / "etc", 0755).ok());
    EXPECT_TRUE(MakeDirs(tree / "srv/app/data", 0750).ok());
    EXPECT_TRUE(WriteFileAtomic(tree / "etc/os-release", "ID=test\n", 0644).ok());
    EXPECT_TRUE(WriteFileAtomic(tree / "srv/app/data/readme", "seeded\n", 0640).ok());
    fs::path image = dir_.path() / "rootfs.ext4";
    Status s = images::BuildExt4(*runner_, tree, image, 64ull << 20);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return image;
  }

  // `debugfs -R "cat PATH" FILE`.
  std::string CatInside(const std::string& file, const std::string& path) {
    auto out = runner_->Run(CommandSpec{.argv = {"debugfs", "-R", "cat " + path, file}});
    return out.ok() ? out->stdout_data : "";
  }

  std::vector<std::string> Leftovers() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() / "volumes", ec)) {
      std::string name = e.path().filename().string();
      if (name[0] == '.') out.push_back(e.path().string());
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<CommandRunner> runner_;
  std::unique_ptr<VolumeFiles> files_;
};

TEST_F(VolumeFilesTest, SeededVolumeHoldsTheImageFilesAtMountPath) {
  fs::path image = MakeImage();
  auto built = files_->Create({"web", "data", 32ull << 20, image.string(), "/srv/app"});
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_TRUE(built->seed_found);
  EXPECT_EQ(built->path, (dir_.path() / "volumes/web/data.ext4").string());
  EXPECT_EQ(CatInside(built->path, "/data/readme"), "seeded\n");
  struct stat st{};
  ASSERT_EQ(::stat(built->path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 32ull << 20);
  ASSERT_EQ(::stat((dir_.path() / "volumes/web").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(Leftovers().empty()) << Leftovers()[0];
}

TEST_F(VolumeFilesTest, MissingSeedPathGivesAnEmptyVolume) {
  fs::path image = MakeImage();
  auto built = files_->Create({"web", "data", 32ull << 20, image.string(), "/nothing/here"});
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_FALSE(built->seed_found);
  EXPECT_TRUE(fs::exists(built->path));
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(VolumeFilesTest, FailedBuildLeavesNothingAndALeftoverPartialIsReplaced) {
  fs::path image = MakeImage();
  // Too small: the build fails, nothing is published, staging and the old partial go.
  ASSERT_TRUE(MakeDirs(dir_.path() / "volumes/web", 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "volumes/web/.data.ext4.partial", "junk", 0600).ok());
  auto bad = files_->Create({"web", "data", 1024, image.string(), "/srv/app"});
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(fs::exists(dir_.path() / "volumes/web/data.ext4"));
  EXPECT_TRUE(Leftovers().empty()) << Leftovers()[0];
  auto good = files_->Create({"web", "data", 32ull << 20, "", ""});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(VolumeFilesTest, GrowNeverShrinksAndRemoveTakesTheDirectoryWithTheLastVolume) {
  auto built = files_->Create({"web", "data", 32ull << 20, "", ""});
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  ASSERT_TRUE(files_->Grow(built->path, 64ull << 20).ok());
  EXPECT_EQ(fs::file_size(built->path), 64ull << 20);
  ASSERT_TRUE(files_->Grow(built->path, 16ull << 20).ok());
  EXPECT_EQ(fs::file_size(built->path), 64ull << 20);
  ASSERT_TRUE(files_->Remove(built->path).ok());
  ASSERT_TRUE(files_->Remove(built->path).ok());
  EXPECT_FALSE(fs::exists(dir_.path() / "volumes/web"));
}

}  // namespace
}  // namespace banger
