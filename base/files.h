// File helpers returning Status instead of throwing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger {

Result<std::string> ReadFile(const std::filesystem::path& path);

/// Writes via a temporary file in the same directory, fsync, then rename:
/// readers see the old or the new content, never a partial file.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view content,
                       unsigned mode = 0644);

/// Creates `path` and its parents; the final directory gets `mode` (0700 for
/// private state). An existing directory has its mode tightened to `mode`.
Status MakeDirs(const std::filesystem::path& path, unsigned mode = 0755);

/// A private directory: created (with parents) mode 0700; an existing one is
/// tightened to 0700, except that group search (0010) stays where the
/// directory's group is not this process's gid (it was handed to another
/// group on purpose, such as banger's confined QEMUs, docs/qemu.md).
Status MakePrivateDir(const std::filesystem::path& path);

/// Removes a file or a whole tree; missing is not an error.
Status RemoveAll(const std::filesystem::path& path);

/// Recursively lists regular files below `dir` whose names end in one of
/// `extensions`, sorted lexicographically by path.
Result<std::vector<std::filesystem::path>> ListFilesRecursive(
    const std::filesystem::path& dir, const std::vector<std::string>& extensions);

/// Creates a fresh private temporary directory under `parent` (or $TMPDIR).
Result<std::filesystem::path> MakeTempDir(std::string_view prefix,
                                          const std::filesystem::path& parent = {});

/// Where `program` would be executed from, without a shell: `program` itself
/// when it contains a '/', else the first absolute directory of $PATH
/// (default /usr/bin:/bin) followed by /usr/sbin and /sbin holding an
/// executable regular file of that name (an ordinary user's PATH lacks sbin,
/// where e2fsprogs, iproute2 and nftables install). Nothing when there is none.
std::optional<std::filesystem::path> FindProgram(std::string_view program);

/// The Debian package that ships `program` (by base name), or "" if unknown.
std::string_view DebianPackageOf(std::string_view program);

/// FindProgram, or NotFound naming the program and its Debian package:
///   `mkfs.ext4` was not found on PATH, /usr/sbin or /sbin (install the Debian package e2fsprogs)
Result<std::filesystem::path> ResolveProgram(std::string_view program);

/// Removes a directory tree when it goes out of scope unless Release()d.
class ScopedRemove {
 public:
  explicit ScopedRemove(std::filesystem::path path) : path_(std::move(path)) {}
  ~ScopedRemove();
  ScopedRemove(const ScopedRemove&) = delete;
  ScopedRemove& operator=(const ScopedRemove&) = delete;
  void Release() { path_.clear(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace banger
