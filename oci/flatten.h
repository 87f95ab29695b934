// Applies OCI image layers (tar, tar+gzip, tar+zstd; auto-detected) in order
// into a directory, honouring whiteouts, and refusing any entry that would
// write outside the directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

struct archive;
struct archive_entry;

namespace banger::oci {

struct LayerFile {
  std::filesystem::path path;  // the (possibly compressed) tar
  std::string digest;          // names the layer in errors: "sha256:..."
  std::string media_type;      // informational; compression is auto-detected
};

/// What one entry of a flattened tree must be inside the guest, whoever
/// extracted it. The tree on the host may differ (owned by the user running
/// banger, owner permission bits added so that user can read and write it,
/// no device nodes, no privileged xattrs); images::FixupExt4 makes the disk
/// match this record exactly.
struct EntryMeta {
  uint32_t mode = 0;  // full st_mode: file type | setuid/setgid/sticky | permissions
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev_major = 0;  // character and block devices
  uint32_t rdev_minor = 0;
  int64_t mtime = 0;  // seconds; used when the fixup creates the entry
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, value (exactly these)
  bool operator==(const EntryMeta&) const = default;
};

/// Tree-relative path ("etc/passwd"; "" is the root directory) -> metadata.
/// Character and block devices are only here, never in the tree: the fixup
/// creates them in the disk.
using TreeManifest = std::map<std::string, EntryMeta>;

/// Removes `path` and everything below it from `manifest`.
void EraseSubtree(TreeManifest& manifest, const std::string& path);

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
/// (target inside the tree), fifos, modes and mtimes are reproduced in the
/// tree; owners (as root), exact modes (owner read/write/search bits are
/// added for a non-root user so the tree stays readable) and xattrs (as root)
/// as far as the current user can. When `manifest` is given, every surviving
/// entry's exact metadata (owners, mode with setuid/setgid/sticky, xattrs,
/// device numbers) is recorded in it; character and block devices are only
/// recorded there, never created in the tree, so root and non-root runs
/// produce the same tree shape. Absolute paths,
/// `..` components, entries whose parent resolves through a symlink, and hard
/// links pointing outside the tree fail with InvalidArgument:
///   layer sha256:… entry "../x": path escapes the root
/// Nothing is ever created outside dest_dir.
Result<FlattenStats> FlattenLayers(const std::vector<LayerFile>& layers,
                                   const std::filesystem::path& dest_dir,
                                   const FlattenProgressFn& progress = {},
                                   TreeManifest* manifest = nullptr);

/// Where layers go, one at a time, base first: a directory tree
/// (LayerApplier) or an ext4 disk written straight from the streams
/// (images::Ext4DiskWriter). Both follow the rules of FlattenLayers.
class LayerSink {
 public:
  virtual ~LayerSink() = default;
  virtual Status Apply(const LayerFile& layer, const FlattenProgressFn& progress = {}) = 0;
  virtual Result<FlattenStats> Finish() = 0;
};

/// FlattenLayers one layer at a time, for callers that get layers as they
/// arrive (the puller downloads them in parallel): Apply them base first,
/// then Finish. Same rules and errors as FlattenLayers.
class LayerApplier : public LayerSink {
 public:
  static Result<std::unique_ptr<LayerApplier>> Open(const std::filesystem::path& dest_dir,
                                                    TreeManifest* manifest = nullptr);
  ~LayerApplier() override;
  LayerApplier(const LayerApplier&) = delete;
  LayerApplier& operator=(const LayerApplier&) = delete;
  Status Apply(const LayerFile& layer, const FlattenProgressFn& progress = {}) override;
  Result<FlattenStats> Finish() override;

 private:
  struct Impl;
  explicit LayerApplier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// --- Shared by the layer sinks -------------------------------------------

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

/// Reads the tar entries of `layer` (compression auto-detected) and calls
/// `fn` for each, then `progress` with the compressed bytes consumed. An
/// empty blob is an empty layer. A corrupt stream is DataLoss naming the
/// layer.
Status ForEachLayerEntry(const LayerFile& layer, const FlattenProgressFn& progress,
                         const std::function<Status(archive*, archive_entry*)>& fn);

/// Splits `raw` (an entry's path or its hard link target) into components
/// ("./a//b/" -> {"a", "b"}; "" or "./" -> {}); refuses absolute paths and
/// ".." components, naming `entry`:
///   layer sha256:... entry "../x": path escapes the root (a ".." component)
Result<std::vector<std::string>> SplitLayerPath(const LayerFile& layer, std::string_view entry,
                                                std::string_view raw);

/// The first `n` components joined with '/' ("" for none).
std::string JoinLayerPath(const std::vector<std::string>& comps, size_t n);

/// InvalidArgument "layer <digest> entry \"<entry>\": <why>".
Status LayerEntryError(const LayerFile& layer, std::string_view entry, std::string_view why);

/// The metadata a tar entry carries (type, permission bits incl.
/// setuid/setgid/sticky, owner, device numbers, mtime, xattrs).
EntryMeta EntryMetaOf(archive_entry* e);

/// libarchive's message for the last error of `a` (never empty).
std::string ArchiveErrorOf(archive* a, int r);

/// Apparent size of a tree: regular-file sizes (each inode once) plus symlink
/// lengths. Never follows symlinks.
Result<uint64_t> TreeApparentSize(const std::filesystem::path& dir);

}  // namespace banger::oci
