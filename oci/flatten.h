// Applies OCI image layers (tar, tar+gzip, tar+zstd; auto-detected) in order
// into a directory, honouring whiteouts, and refusing any entry that would
// write outside the directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger::oci {

struct LayerFile {
  std::filesystem::path path;  // the (possibly compressed) tar
  std::string digest;          // names the layer in errors: "sha256:..."
  std::string media_type;      // informational; compression is auto-detected
};

struct FlattenStats {
  uint64_t entries = 0;
  uint64_t file_bytes = 0;  // bytes of regular-file data written
};

/// Called after each entry with the compressed bytes consumed so far.
using FlattenProgressFn =
    std::function<void(const LayerFile& layer, uint64_t done_bytes, uint64_t total_bytes)>;

/// Flattens `layers` (base first) into `dest_dir`, which must exist.
/// Rules: `.wh.NAME` deletes NAME from lower layers; `.wh..wh..opq` empties the
/// directory of lower-layer content; whiteout files never appear. Regular
/// files, directories, symlinks (stored verbatim, never followed), hard links
/// (target inside the tree), devices and fifos (as root), owners (as root),
/// modes including setuid, xattrs and mtimes are reproduced. Absolute paths,
/// `..` components, entries whose parent resolves through a symlink, and hard
/// links pointing outside the tree fail with InvalidArgument:
///   layer sha256:… entry "../x": path escapes the root
/// Nothing is ever created outside dest_dir.
Result<FlattenStats> FlattenLayers(const std::vector<LayerFile>& layers,
                                   const std::filesystem::path& dest_dir,
                                   const FlattenProgressFn& progress = {});

/// Apparent size of a tree: regular-file sizes (each inode once) plus symlink
/// lengths. Never follows symlinks.
Result<uint64_t> TreeApparentSize(const std::filesystem::path& dir);

}  // namespace banger::oci
