// Bundles (a .tar.zst holding a ready rootfs.ext4 and a manifest.json) and
// other archive handling: download with libcurl, sha256 verification, and
// extraction with libarchive that never writes outside the destination.
#pragma once

#include <filesystem>
#include <string>

#include "base/status.h"
#include "oci/puller.h"

namespace banger::images {

/// Downloads `url` (http, https or file) to `out` (created 0600, must not
/// exist) and returns the sha256 hex of what was written. Reports progress
/// with phase "download".
Result<std::string> DownloadFile(const std::string& url, const std::filesystem::path& out,
                                 const oci::ProgressFn& progress);

/// Extracts a bundle archive (any libarchive format/filter, zstd included)
/// into `dest`: the regular files rootfs.ext4 (required, sparse-aware) and
/// manifest.json (optional); other well-formed entries are ignored. Entries
/// with absolute paths or ".." components, and links named like the wanted
/// files, are refused with an error naming the entry.
Status ExtractBundle(const std::filesystem::path& archive, const std::filesystem::path& dest);

/// Extracts a whole root tree from a tar archive (any compression) into the
/// existing directory `dest`, keeping owners, modes, xattrs and times. Refuses
/// entries that would land outside `dest` (absolute, "..", through symlinks).
Status ExtractTree(const std::filesystem::path& archive, const std::filesystem::path& dest);

}  // namespace banger::images
