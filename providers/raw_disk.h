// Per-sandbox raw disks (Firecracker has no qcow2): a reflink copy of the
// image's base where the file system can share extents (XFS, btrfs), else a
// sparse copy that writes only the base's data extents (SEEK_DATA/SEEK_HOLE).
// docs/benchmarks.md ("Raw disk copies") has the measured cost of each.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "base/status.h"

namespace banger {

enum class RawCopyMethod { kReflink, kSparse };
std::string_view RawCopyMethodName(RawCopyMethod m);

struct RawCopyResult {
  RawCopyMethod method = RawCopyMethod::kSparse;
  uint64_t bytes_written = 0;  // data bytes copied (0 for a reflink)
};

/// Copies `src` to a new file `dst` (mode 0600; an existing dst is replaced)
/// and grows it to `size` bytes when that is larger than src (0: src's size).
/// The copy is written to dst.partial and renamed, so `dst` is either absent
/// or complete. `allow_reflink` false forces the sparse copy (benchmarks).
Result<RawCopyResult> CopyRawDisk(const std::filesystem::path& src, const std::filesystem::path& dst,
                                  uint64_t size = 0, bool allow_reflink = true);

}  // namespace banger
