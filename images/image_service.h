// ImageService: installs root disk images (from the catalog, an OCI registry,
// a bundle, a recipe or a local tree), publishes them atomically under
// images_dir/<id>/ and records them in the StateStore.
//
// Publishing: the tree and disk are built in images_dir/<id>.tree.staging and
// images_dir/<id>.staging (guarded by the flock'd images_dir/<id>.lock so a
// concurrent Prune leaves them alone), the name is re-checked, the staging
// directory is renamed to images_dir/<id>, then InsertImage decides the
// single winner for a name. No lock is held while downloading or building:
// pulls of different names run fully in parallel. Any failure removes the
// staging directories.
//
// OCI images (registry and catalog) get their root disk from the DiskCache
// (images/disk_cache.h) when one was built from the same manifest digest and
// disk size: the published rootfs.ext4 is then a hard link to the cached disk,
// and nothing is flattened or formatted. `Remove` keeps the cached disk;
// `Prune` removes cached disks that no image links to any more.
//
// Thread safety: every method may be called from several threads at once.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/status.h"
#include "images/catalog.h"
#include "oci/puller.h"
#include "state/state_store.h"

namespace banger::images {

using ProgressFn = oci::ProgressFn;

/// Fills `dest_dir` (existing, empty) with the flattened tree of an OCI image.
/// The seam for tests; production uses oci::PullAndFlatten.
using TreeSource = std::function<Result<oci::PulledImage>(
    const std::string& reference, const std::filesystem::path& dest_dir,
    const oci::PullOptions& options)>;

struct ImageServiceOptions {
  std::filesystem::path images_dir;  // published images: images_dir/<id>/rootfs.ext4 (0700)
  std::filesystem::path blobs_dir;   // OCI blob cache handed to the tree source
  std::filesystem::path disks_dir;   // built-disk cache (images/disk_cache.h); empty: <images_dir>/../disks
  ImageCatalog catalog;              // builtin merged with the user's entries
  TreeSource tree_source;            // empty: oci::PullAndFlatten
  // OCI root disks are written straight from the layer streams
  // (images/ext4_writer.h); false, or $BANGER_DISK_WRITER=tree: flatten the
  // layers into a tree and `mkfs.ext4 -d` it (the path recipes and imports
  // always take, and the fallback when the streamed disk is too small).
  bool stream_disks = true;
  std::filesystem::path docker_config;  // registry credentials; may be empty
  bool plain_http = false;              // allow http:// registries (loopback tests)
  std::filesystem::path busybox = "/bin/busybox";  // for recipe busybox
  std::filesystem::path apt_dir = "/etc/apt";       // where recipe debootstrap finds the mirror
  std::chrono::milliseconds debootstrap_timeout{std::chrono::minutes(30)};
};

struct PullRequest {
  std::string name;            // empty: catalog name, or derived from the reference
  uint64_t disk_size_bytes = 0;  // 0: DefaultDiskSize of the tree, at least StreamedDiskSize
                                 // of the compressed layers for OCI images (bundles: as shipped)
  ProgressFn progress;         // may be empty; phases "manifest", "blob", "write" (the disk
                               // writer starts), "flatten" (a layer is applied), "recipe",
                               // "download", "extract", "mkfs", "publish"
};

struct PruneReport {
  std::vector<std::string> removed_staging;   // stray *.staging dirs and *.lock files
  std::vector<std::string> removed_orphans;   // images_dir/<id> without a DB row
  std::vector<std::string> removed_disks;     // cached root disks no image links (keys)
  uint64_t removed_blobs = 0;
  uint64_t freed_bytes = 0;
};

/// Removes cached OCI blobs that none of `keep_manifest_digests` needs and
/// returns (blobs removed, bytes freed). Default: oci::ReferencedDigests +
/// oci::PruneBlobs over options.blobs_dir.
using BlobPruner = std::function<Result<std::pair<uint64_t, uint64_t>>(
    const std::vector<std::string>& keep_manifest_digests)>;

/// "localhost:5000/team/alpine:3.19" -> "alpine-3.19"; "x/alpine@sha256:ab.." ->
/// "alpine-ab..(12 hex)"; no tag -> "alpine-latest". Lower-cased.
std::string DeriveImageName(const std::string& reference);

/// True if `s` names an OCI image reference rather than a catalog name
/// (it contains '/', ':' or '@').
bool LooksLikeOciReference(std::string_view s);

class ImageService {
 public:
  ImageService(StateStore& store, CommandRunner& runner, Clock& clock,
               ImageServiceOptions options);
  ~ImageService();
  ImageService(const ImageService&) = delete;
  ImageService& operator=(const ImageService&) = delete;

  /// Installs `name_or_ref` (a catalog name or an OCI reference) under
  /// request.name (default: the catalog name, or DeriveImageName). AlreadyExists
  /// if an image of that name is installed (also when a concurrent pull won).
  Result<ImageRecord> Pull(const std::string& name_or_ref, const PullRequest& request);

  /// The image named exactly `name_or_ref`: installed -> returned; a catalog
  /// name -> pulled from the catalog; an OCI reference -> pulled from the
  /// registry and recorded under that exact string. Concurrent calls for one
  /// name in this process share a single pull. NotFound for anything else.
  Result<ImageRecord> Ensure(const std::string& name_or_ref, const ProgressFn& progress = {});

  /// Cheap lookups (no network).
  bool IsPresent(const std::string& name);
  Result<std::optional<ImageRecord>> Find(const std::string& name);
  Result<std::vector<ImageRecord>> List();

  /// Builds a disk from a local directory or tar archive (any compression).
  Result<ImageRecord> Import(const std::filesystem::path& dir_or_tar, const std::string& name,
                             uint64_t disk_size_bytes = 0);

  /// Deletes an image. FailedPrecondition naming the sandboxes whose
  /// image_ref uses it; NotFound if not installed.
  Status Remove(const std::string& name);

  /// Removes stray staging directories and lock files (of pulls no longer
  /// running), published directories without a record, cached root disks no
  /// image links to, and cached blobs no image uses (skipped while any pull is
  /// running).
  Result<PruneReport> Prune();

  void SetBlobPruner(BlobPruner pruner) { blob_pruner_ = std::move(pruner); }
  const ImageCatalog& catalog() const { return options_.catalog; }
  const ImageServiceOptions& options() const { return options_; }
  const std::filesystem::path& disks_dir() const { return options_.disks_dir; }

 private:
  struct Source;     // what to build and how
  struct Built;      // what the build produced
  class Staging;     // lock + staging dirs of one publish attempt
  struct Inflight;   // a shared Ensure()

  Result<Source> Resolve(const std::string& name_or_ref, const std::string& name_override) const;
  Result<ImageRecord> Publish(const Source& source, const PullRequest& request);
  /// Removes what interrupted publishes left (staging and tree dirs, lock
  /// files, published dirs without a record) whose lock nobody holds; sets
  /// `pulls_running` when some publish is in progress.
  Status SweepStaging(PruneReport& report, bool& pulls_running);
  Status BuildInto(const Source& source, const PullRequest& request, Staging& staging,
                   Built& built);

  StateStore& store_;
  CommandRunner& runner_;
  Clock& clock_;
  ImageServiceOptions options_;
  BlobPruner blob_pruner_;

  std::mutex inflight_mu_;
  std::map<std::string, std::shared_ptr<Inflight>> inflight_;
};

}  // namespace banger::images
