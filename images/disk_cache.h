// DiskCache: built root disks kept by what they were built from, so that an
// image is never flattened and formatted twice.
//
// Layout (state root/disks, beside images/ on the same file system, so that
// hard links work): disks/<key>.ext4 and disks/<key>.lock, where key = "v1-<manifest sha256 hex>-<size>" and size is
// the requested disk size in bytes or "auto" (the default size of the tree).
// "v1" names the disk format (mkfs.ext4 -d + FixupExt4); a change in how
// disks are built bumps it.
//
// A published image's rootfs.ext4 is a hard link to the cached disk: names of
// one digest share one inode, nothing is copied, and the cached file is only
// ever created whole (link(2) of a finished disk) and never written again.
// The link count is the reference count: a cached disk with no other link
// (st_nlink == 1) is used by no image (and so by no sandbox, whose overlays
// back onto an image's rootfs.ext4) and is removed by Prune. `image rm` keeps
// it, so pulling the image again links it back without any rebuild.
//
// Concurrency: Lock(key) takes an exclusive flock on disks/<key>.lock; a pull
// holds it from the manifest lookup until its disk is in the cache, so
// concurrent pulls of one digest (any names, any processes) build once and
// the others link the result. Prune only removes entries whose lock it gets
// without waiting.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger::images {

class DiskCache {
 public:
  explicit DiskCache(std::filesystem::path dir) : dir_(std::move(dir)) {}

  /// The cache key of a disk built from `manifest_digest` ("sha256:<64 hex>")
  /// at `disk_size_bytes` (0: default size). InvalidArgument for any other
  /// digest form.
  static Result<std::string> Key(const std::string& manifest_digest, uint64_t disk_size_bytes);

  /// An exclusive lock on one key; released on destruction (or process exit).
  class Lock {
   public:
    Lock() = default;
    Lock(Lock&& o) noexcept;
    Lock& operator=(Lock&& o) noexcept;
    ~Lock();
    bool held() const { return fd_ >= 0; }
    const std::string& key() const { return key_; }

   private:
    friend class DiskCache;
    int fd_ = -1;
    std::string key_;
    std::filesystem::path lock_path_;
  };

  /// Blocks until this process holds `key`'s lock (creating the directory,
  /// 0700, and the lock file, 0600, as needed).
  Result<Lock> Acquire(const std::string& key) const;

  /// With `lock` held: if the disk is cached, hard-links it to `dest` (which
  /// must not exist) and returns true; false when it is not cached.
  Result<bool> LinkInto(const Lock& lock, const std::filesystem::path& dest) const;

  /// With `lock` held: makes the finished disk `built` the cached disk of the
  /// key (a hard link; `built` stays where it is). Never replaces an entry.
  Status Publish(const Lock& lock, const std::filesystem::path& built) const;

  struct PruneResult {
    std::vector<std::string> removed;  // keys whose disk was removed
    uint64_t freed_bytes = 0;
  };
  /// Removes cached disks no image links to (st_nlink == 1) and lock files
  /// without a disk, skipping keys whose lock is held.
  Result<PruneResult> Prune() const;

  std::filesystem::path DiskPath(const std::string& key) const { return dir_ / (key + ".ext4"); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  /// Non-blocking Acquire: a Lock that is not held() when someone else holds it.
  Result<Lock> TryAcquire(const std::string& key) const;
  Result<Lock> AcquireImpl(const std::string& key, bool wait) const;

  std::filesystem::path dir_;
};

}  // namespace banger::images
