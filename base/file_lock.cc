#include "base/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

#include "base/files.h"
#include "base/strings.h"

namespace banger {

namespace fs = std::filesystem;

std::string LockHolder::Describe() const {
  if (pid <= 0) return "another process";
  return "pid " + std::to_string(pid) + (purpose.empty() ? "" : " (" + purpose + ")");
}

FileLock::FileLock(FileLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

FileLock::~FileLock() { Release(); }

void FileLock::Release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void FileLock::UnlinkAndRelease() {
  if (fd_ >= 0) ::unlink(path_.c_str());
  Release();
}

namespace {

enum class Attempt { kAcquired, kBusy };

// One non-blocking attempt. On success `fd` holds the lock on the file that
// `path` names right now.
Result<Attempt> TryOnce(const fs::path& path, int& fd_out) {
  for (int round = 0; round < 16; ++round) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return ErrnoStatus(errno, "open lock file " + path.string());
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return Attempt::kBusy;
      return ErrnoStatus(err, "lock " + path.string());
    }
    // The previous holder may have unlinked the file between our open and
    // flock: then we hold a lock nobody else can see. Check and retry.
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev) {
      fd_out = fd;
      return Attempt::kAcquired;
    }
    ::close(fd);
  }
  return Internal("lock file " + path.string() + " keeps being replaced");
}

// The holder line is padded to a fixed size and written in place: no
// truncation, because ext4 flushes a file truncated to zero when it is
// closed (auto_da_alloc), which made every lock cost a disk write.
void WriteHolder(int fd, const std::string& purpose) {
  constexpr size_t kSize = 64;
  std::string text = std::to_string(::getpid()) + " " + purpose.substr(0, 40);
  text.resize(kSize - 1, ' ');
  text += '\n';
  ssize_t n = ::pwrite(fd, text.data(), text.size(), 0);
  (void)n;
}

}  // namespace

LockHolder ReadLockHolder(const fs::path& path) {
  LockHolder h;
  auto text = ReadFile(path);
  if (!text) return h;
  std::string_view t = Trim(*text);
  size_t sp = t.find(' ');
  h.pid = std::atoi(std::string(t.substr(0, sp)).c_str());
  if (sp != std::string_view::npos) h.purpose = std::string(Trim(t.substr(sp + 1)));
  return h;
}

Result<FileLock> FileLock::TryAcquire(const fs::path& path, const std::string& purpose) {
  int fd = -1;
  BANGER_ASSIGN_OR_RETURN(Attempt a, TryOnce(path, fd));
  if (a == Attempt::kBusy) {
    return Unavailable(path.filename().string() + " is held by " + ReadLockHolder(path).Describe());
  }
  WriteHolder(fd, purpose);
  return FileLock(fd, path);
}

Result<FileLock> FileLock::Acquire(const fs::path& path, const std::string& purpose, Clock& clock,
                                   std::chrono::steady_clock::time_point deadline,
                                   const std::function<void(const LockHolder&)>& on_wait,
                                   const std::function<bool()>& cancelled,
                                   std::chrono::milliseconds poll) {
  bool told = false;
  while (true) {
    int fd = -1;
    BANGER_ASSIGN_OR_RETURN(Attempt a, TryOnce(path, fd));
    if (a == Attempt::kAcquired) {
      WriteHolder(fd, purpose);
      return FileLock(fd, path);
    }
    if (!told) {
      told = true;
      if (on_wait) on_wait(ReadLockHolder(path));
    }
    if (cancelled && cancelled()) return Cancelled("gave up waiting for " + path.filename().string());
    if (clock.SteadyNow() >= deadline) {
      return DeadlineExceeded("timed out waiting for " + path.filename().string() + ", held by " +
                              ReadLockHolder(path).Describe());
    }
    clock.SleepFor(poll);
  }
}

}  // namespace banger
