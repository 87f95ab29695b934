// A full disk said plainly: "no space left on PATH while STEP". Every step
// that writes to the state directory maps ENOSPC/EDQUOT, from its own
// syscalls, from SQLite or from an external tool's failure, through here.
// docs/testing.md, "Resources run out".
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "base/status.h"

namespace banger {

/// Whether `s` reports a full file system or an exhausted quota (ENOSPC,
/// EDQUOT): from a syscall (ErrnoStatus, SQLITE_FULL) or in the message of an
/// external tool (mkfs.ext4, debugfs, zstd, tar all print strerror's text).
bool IsNoSpace(const Status& s);

/// A full-disk failure as ResourceExhausted("no space left on PATH while
/// STEP (N KiB free): DETAIL"), PATH being where it wrote. Any other status is
/// returned unchanged, and so is one that already says so.
Status NoSpaceError(Status s, const std::filesystem::path& path, std::string_view step);

/// Free bytes for an unprivileged writer on the file system holding `path`.
Result<uint64_t> FreeBytes(const std::filesystem::path& path);

}  // namespace banger
