// FileLock: an exclusive advisory lock (flock) on a file, held by one open
// file description. The kernel releases it when the holder closes it or dies,
// also on kill -9, so a dead holder never blocks anyone: liveness needs no
// pid checks. The holder writes its pid and purpose into the file so that
// others can say who holds it.
//
// Lock files may be removed by their holder (UnlinkAndRelease); acquirers
// check after locking that the path still names the file they locked and
// retry otherwise (the Nix PathLocks pattern), so removal is race-free.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/status.h"

namespace banger {

/// Who holds a lock, as written by the holder.
struct LockHolder {
  int pid = 0;
  std::string purpose;   // e.g. "apply", "watch", "delete"
  /// "pid 1234 (apply)", or "another process" when unknown.
  std::string Describe() const;
};

class FileLock {
 public:
  FileLock() = default;
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  /// Takes the lock if it is free; creates the file (mode 0600) if needed.
  /// Unavailable naming the holder ("held by pid 1234 (apply)") when busy.
  static Result<FileLock> TryAcquire(const std::filesystem::path& path, const std::string& purpose);

  /// Waits for the lock, polling every `poll` on `clock`, until `deadline`
  /// (DeadlineExceeded naming the holder) or until `cancelled` returns true
  /// (Cancelled). `on_wait` is called once, with the holder, if the lock
  /// was busy at first.
  static Result<FileLock> Acquire(const std::filesystem::path& path, const std::string& purpose,
                                  Clock& clock, std::chrono::steady_clock::time_point deadline,
                                  const std::function<void(const LockHolder&)>& on_wait = {},
                                  const std::function<bool()>& cancelled = {},
                                  std::chrono::milliseconds poll = std::chrono::milliseconds(50));

  bool held() const { return fd_ >= 0; }
  const std::filesystem::path& path() const { return path_; }

  /// Releases the lock (the file stays for the next holder).
  void Release();
  /// Removes the lock file while still holding the lock, then releases it.
  void UnlinkAndRelease();

 private:
  FileLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

/// Reads the holder recorded in a lock file (best effort; pid 0 if unknown).
LockHolder ReadLockHolder(const std::filesystem::path& path);

}  // namespace banger
