#include "fetch/download.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "base/files.h"
#include "base/sha256.h"
#include "fetch/fetch_test_util.h"

namespace banger::fetch {
namespace {

namespace fs = std::filesystem;

TEST(DownloadTest, FileUrlIsCopiedPrivatelyAndItsSha256Returned) {
  TempDirForTest tmp;
  fs::path src = tmp.path() / "blob";
  std::string data(100000, 'k');
  ASSERT_TRUE(WriteFileAtomic(src, data).ok());
  uint64_t last_done = 0, last_total = 0;
  auto sha = DownloadFile("file://" + src.string(), tmp.path() / "copy",
                          [&](uint64_t done, uint64_t total) {
                            last_done = done;
                            last_total = total;
                          });
  ASSERT_TRUE(sha.ok()) << sha.status().ToString();
  EXPECT_EQ(*sha, Sha256Hex(data));
  EXPECT_EQ(*ReadFile(tmp.path() / "copy"), data);
  EXPECT_EQ(fs::status(tmp.path() / "copy").permissions(),
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(last_done, data.size());
  EXPECT_EQ(last_total, data.size());
}

TEST(DownloadTest, MissingFileIsNotFoundAndLeavesNothing) {
  TempDirForTest tmp;
  auto sha = DownloadFile("file://" + (tmp.path() / "nope").string(), tmp.path() / "x", {});
  EXPECT_EQ(sha.status().code(), StatusCode::kNotFound) << sha.status().ToString();
  EXPECT_FALSE(fs::exists(tmp.path() / "x"));
}

TEST(DownloadTest, ExistingDestinationIsNotOverwritten) {
  TempDirForTest tmp;
  fs::path src = tmp.path() / "blob";
  ASSERT_TRUE(WriteFileAtomic(src, "new").ok());
  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "dest", "old").ok());
  auto sha = DownloadFile("file://" + src.string(), tmp.path() / "dest", {});
  EXPECT_FALSE(sha.ok());
  EXPECT_EQ(*ReadFile(tmp.path() / "dest"), "old");
}

TEST(DownloadTest, LargerThanTheLimitIsRefusedAndRemoved) {
  TempDirForTest tmp;
  fs::path src = tmp.path() / "blob";
  ASSERT_TRUE(WriteFileAtomic(src, std::string(3 << 20, 'x')).ok());
  auto sha = DownloadFile("file://" + src.string(), tmp.path() / "copy", {},
                          {.max_bytes = uint64_t{1} << 20});
  ASSERT_FALSE(sha.ok());
  EXPECT_EQ(sha.status().code(), StatusCode::kInvalidArgument) << sha.status().ToString();
  EXPECT_NE(sha.status().message().find("1 MiB limit"), std::string::npos)
      << sha.status().ToString();
  EXPECT_FALSE(fs::exists(tmp.path() / "copy"));
}

TEST(DownloadTest, UnsupportedSchemeIsInvalidArgument) {
  TempDirForTest tmp;
  auto sha = DownloadFile("gopher://127.0.0.1/x", tmp.path() / "x", {});
  EXPECT_EQ(sha.status().code(), StatusCode::kInvalidArgument) << sha.status().ToString();
  EXPECT_FALSE(fs::exists(tmp.path() / "x"));
}

}  // namespace
}  // namespace banger::fetch
