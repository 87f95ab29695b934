#include "images/disk_cache.h"

#include <sys/stat.h>

#include <future>

#include <gtest/gtest.h>

#include "base/files.h"
#include "images/images_test_util.h"

namespace banger::images {
namespace {

namespace fs = std::filesystem;
using testing::ListDir;
using testing::TempDir;

constexpr char kDigest[] = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

TEST(DiskCacheTest, KeyNamesTheDigestAndTheSizeAndRefusesOtherDigests) {
  auto k = DiskCache::Key(kDigest, 0);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, "v1-2222222222222222222222222222222222222222222222222222222222222222-auto");
  EXPECT_EQ(*DiskCache::Key(kDigest, 268435456),
            "v1-2222222222222222222222222222222222222222222222222222222222222222-268435456");
  for (const char* bad : {"", "sha256:abc", "sha512:2222", "sha256:../../etc/passwd",
                          "sha256:2222222222222222222222222222222222222222222222222222222222222/2"}) {
    EXPECT_EQ(DiskCache::Key(bad, 0).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(DiskCacheTest, PublishLinksOnceAndLinkIntoSharesTheInode) {
  TempDir tmp;
  DiskCache cache(tmp.path() / "disks");
  std::string key = *DiskCache::Key(kDigest, 0);
  auto lock = cache.Acquire(key);
  ASSERT_TRUE(lock.ok()) << lock.status().ToString();
  EXPECT_EQ(fs::status(cache.dir()).permissions(), fs::perms::owner_all);
  auto miss = cache.LinkInto(*lock, tmp.path() / "a.ext4");
  ASSERT_TRUE(miss.ok());
  EXPECT_FALSE(*miss);

  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "built.ext4", "disk-1", 0600).ok());
  ASSERT_TRUE(cache.Publish(*lock, tmp.path() / "built.ext4").ok());
  ASSERT_TRUE(WriteFileAtomic(tmp.path() / "other.ext4", "disk-2", 0600).ok());
  ASSERT_TRUE(cache.Publish(*lock, tmp.path() / "other.ext4").ok());  // never replaces
  auto hit = cache.LinkInto(*lock, tmp.path() / "a.ext4");
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_TRUE(*hit);
  EXPECT_EQ(*ReadFile(tmp.path() / "a.ext4"), "disk-1");
  EXPECT_TRUE(fs::equivalent(tmp.path() / "a.ext4", cache.DiskPath(key)));
}

TEST(DiskCacheTest, PruneKeepsLinkedAndLockedDisksAndRemovesTheRest) {
  TempDir tmp;
  DiskCache cache(tmp.path() / "disks");
  std::string linked = *DiskCache::Key(kDigest, 0);
  std::string unlinked = *DiskCache::Key(kDigest, 1 << 20);
  std::string busy = *DiskCache::Key(kDigest, 2 << 20);
  for (const auto& key : {linked, unlinked, busy}) {
    auto lock = cache.Acquire(key);
    ASSERT_TRUE(lock.ok());
    ASSERT_TRUE(WriteFileAtomic(tmp.path() / key, key, 0600).ok());
    ASSERT_TRUE(cache.Publish(*lock, tmp.path() / key).ok());
    if (key != linked) fs::remove(tmp.path() / key);  // only the cache links it now
  }
  ASSERT_TRUE(WriteFileAtomic(cache.dir() / "notes.txt", "mine", 0600).ok());
  auto held = cache.Acquire(busy);
  ASSERT_TRUE(held.ok());
  // Prune runs in another thread: flock is per open file, so the lock held
  // here keeps it away as another process's would.
  auto pruned = std::async(std::launch::async, [&] { return cache.Prune(); }).get();
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(pruned->removed, std::vector<std::string>{unlinked});
  std::vector<std::string> left = ListDir(cache.dir());
  std::vector<std::string> want = {"notes.txt", busy + ".ext4", busy + ".lock", linked + ".ext4",
                                   linked + ".lock"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(left, want);
  // A pull taking the key after prune unlinked its lock file gets a live lock.
  auto again = cache.Acquire(unlinked);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(fs::exists(cache.dir() / (unlinked + ".lock")));
}

}  // namespace
}  // namespace banger::images
