#include "images/disk_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/files.h"
#include "base/strings.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {

constexpr char kFormat[] = "v1";
constexpr char kDiskSuffix[] = ".ext4";
constexpr char kLockSuffix[] = ".lock";

bool IsHex64(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// "v1-<64 hex>-<digits|auto>"
bool IsKey(std::string_view k) {
  std::string prefix = std::string(kFormat) + "-";
  if (!StartsWith(k, prefix) || k.size() < prefix.size() + 66) return false;
  std::string_view hex = k.substr(prefix.size(), 64);
  std::string_view rest = k.substr(prefix.size() + 64);
  if (!IsHex64(hex) || rest.size() < 2 || rest[0] != '-') return false;
  rest.remove_prefix(1);
  if (rest == "auto") return true;
  return rest.size() <= 20 &&
         std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

DiskCache::Lock::Lock(Lock&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), key_(std::move(o.key_)), lock_path_(std::move(o.lock_path_)) {}

DiskCache::Lock& DiskCache::Lock::operator=(Lock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    key_ = std::move(o.key_);
    lock_path_ = std::move(o.lock_path_);
  }
  return *this;
}

DiskCache::Lock::~Lock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::string> DiskCache::Key(const std::string& manifest_digest, uint64_t disk_size_bytes) {
  constexpr std::string_view kSha = "sha256:";
  if (!StartsWith(manifest_digest, kSha) || !IsHex64(std::string_view(manifest_digest).substr(kSha.size()))) {
    return InvalidArgument("disk cache: \"" + manifest_digest + "\" is not a sha256 digest");
  }
  return std::string(kFormat) + "-" + manifest_digest.substr(kSha.size()) + "-" +
         (disk_size_bytes == 0 ? std::string("auto") : std::to_string(disk_size_bytes));
}

Result<DiskCache::Lock> DiskCache::AcquireImpl(const std::string& key, bool wait) const {
  if (!IsKey(key)) return InvalidArgument("disk cache: invalid key \"" + key + "\"");
  BANGER_RETURN_IF_ERROR(MakePrivateDir(dir_));
  fs::path lock_path = dir_ / (key + kLockSuffix);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ErrnoStatus(errno, "open " + lock_path.string());
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR && wait);
    if (rc != 0) {
      int err = errno;
      ::close(fd);
      if (!wait && err == EWOULDBLOCK) return Lock();
      return ErrnoStatus(err, "lock " + lock_path.string());
    }
    // Prune unlinks a lock file while holding it: a lock taken on an unlinked
    // file locks nothing, so take the one now at the path instead.
    struct stat held, now;
    if (::fstat(fd, &held) == 0 && ::stat(lock_path.c_str(), &now) == 0 &&
        held.st_ino == now.st_ino && held.st_dev == now.st_dev) {
      Lock l;
      l.fd_ = fd;
      l.key_ = key;
      l.lock_path_ = lock_path;
      return l;
    }
    ::close(fd);
  }
  return Unavailable("disk cache: could not lock " + lock_path.string());
}

Result<DiskCache::Lock> DiskCache::Acquire(const std::string& key) const {
  return AcquireImpl(key, /*wait=*/true);
}

Result<DiskCache::Lock> DiskCache::TryAcquire(const std::string& key) const {
  return AcquireImpl(key, /*wait=*/false);
}

Result<bool> DiskCache::LinkInto(const Lock& lock, const fs::path& dest) const {
  if (!lock.held()) return FailedPrecondition("disk cache: LinkInto without the lock");
  fs::path disk = DiskPath(lock.key());
  if (::link(disk.c_str(), dest.c_str()) == 0) return true;
  if (errno == ENOENT) {
    struct stat st;
    if (::lstat(disk.c_str(), &st) != 0) return false;  // not cached
  }
  if (errno == EXDEV) {
    spdlog::warn("disk cache: {} and {} are on different file systems; not reusing the disk",
                 disk.string(), dest.string());
    return false;
  }
  return ErrnoStatus(errno, "link " + disk.string() + " to " + dest.string());
}

Status DiskCache::Publish(const Lock& lock, const fs::path& built) const {
  if (!lock.held()) return FailedPrecondition("disk cache: Publish without the lock");
  fs::path disk = DiskPath(lock.key());
  if (::link(built.c_str(), disk.c_str()) != 0) {
    if (errno == EEXIST) return OkStatus();  // never replaced
    return ErrnoStatus(errno, "link " + built.string() + " to " + disk.string());
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return OkStatus();
}

Result<DiskCache::PruneResult> DiskCache::Prune() const {
  PruneResult out;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return out;
  std::vector<std::string> keys;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string n = e.path().filename().string();
    std::string key;
    if (EndsWith(n, kDiskSuffix)) key = n.substr(0, n.size() - (sizeof(kDiskSuffix) - 1));
    else if (EndsWith(n, kLockSuffix)) key = n.substr(0, n.size() - (sizeof(kLockSuffix) - 1));
    if (IsKey(key)) keys.push_back(key);
  }
  if (ec) return ErrnoStatus(ec.value(), "read directory " + dir_.string());
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const auto& key : keys) {
    BANGER_ASSIGN_OR_RETURN(Lock lock, TryAcquire(key));
    if (!lock.held()) continue;  // a pull is building or linking it
    fs::path disk = DiskPath(key);
    struct stat st;
    if (::lstat(disk.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode) || st.st_nlink > 1) continue;  // an image links it
      if (::unlink(disk.c_str()) != 0) return ErrnoStatus(errno, "remove " + disk.string());
      out.removed.push_back(key);
      out.freed_bytes += static_cast<uint64_t>(st.st_blocks) * 512;
      spdlog::info("prune: removed cached disk {}", disk.string());
    } else if (errno != ENOENT) {
      return ErrnoStatus(errno, "stat " + disk.string());
    }
    ::unlink(lock.lock_path_.c_str());  // while held; Acquire re-checks the inode
  }
  return out;
}

}  // namespace banger::images
