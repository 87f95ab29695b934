// Pulling an OCI image from a registry into a flattened root tree.
// Contract shared by oci/ (which implements it) and images/ (which builds
// root disks from the tree and publishes them).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "oci/flatten.h"
#include "oci/blob_store.h"  // PruneBlobs, ReferencedDigests for `banger image prune`

namespace banger::oci {

/// Progress of a long transfer; called from the pulling threads, one call at
/// a time (layers download in parallel, so "blob" reports of several layers
/// interleave).
struct PullProgress {
  std::string phase;          // "manifest", "blob", "flatten"
  std::string item;           // digest or layer being worked on
  uint64_t done_bytes = 0;
  uint64_t total_bytes = 0;   // 0 when unknown
};
using ProgressFn = std::function<void(const PullProgress&)>;

struct PullOptions {
  std::filesystem::path blob_dir;         // content-addressed cache: blob_dir/sha256/<hex>
  std::filesystem::path docker_config;    // ~/.docker/config.json for basic auth; may be empty
  std::string platform = "linux/amd64";
  bool plain_http = false;                // allow http:// (loopback registries in tests)
  ProgressFn progress;                    // may be empty
  // Retries of transient failures (connection reset, timeouts, 429, 5xx):
  // up to max_attempts tries, sleeping initial_backoff, 2x, 4x, ... between.
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{500};
  // A transfer that receives no data for this long in total (across its
  // retries) fails with "registry stalled: ..." (see StallPolicy in
  // registry_client.h). 0: $BANGER_REGISTRY_STALL_TIMEOUT (seconds) if set,
  // else 90 s.
  std::chrono::seconds stall_timeout{0};
  Clock* clock = nullptr;                 // for the backoff sleeps; nullptr: system clock
  // Layers are downloaded by up to this many connections at once and applied
  // to the tree in order as they arrive (layer N after N-1). At least 1.
  int parallel_layers = 4;
  // Called once the platform's image manifest is known (its digest), before
  // any layer is fetched. Returning true ends the pull there: the caller
  // already has what the layers would build (images/: a cached root disk), so
  // the result has the digest and config but no tree (flattened == false).
  std::function<Result<bool>(const std::string& manifest_digest)> reuse_check;
  // Where the layers go instead of dest_dir (images/: an ext4 disk written
  // straight from the layer streams). Called once, when the first layer is
  // downloaded (not at all if a download fails first), with the sum of the
  // layers' compressed sizes. Unset: the layers
  // are flattened into dest_dir and the result has the tree's manifest.
  std::function<Result<std::unique_ptr<LayerSink>>(uint64_t compressed_bytes)> layer_sink;
};

/// The stall timeout a pull uses: `configured` if > 0, else
/// $BANGER_REGISTRY_STALL_TIMEOUT (1-3600 seconds; anything else is an
/// InvalidArgument naming the variable), else 90 s.
Result<std::chrono::seconds> EffectiveStallTimeout(std::chrono::seconds configured);

struct PulledImage {
  std::string reference;        // normalised: registry/repository:tag or @digest
  std::string manifest_digest;  // "sha256:..." of the platform's image manifest
  std::string config_json;      // the image config blob (entrypoint, cmd, env, ...)
  uint64_t tree_bytes = 0;      // apparent size of the flattened tree (file bytes with a layer_sink)
  uint64_t bytes_downloaded = 0;  // manifest + blob bytes received; 0 on a warm re-pull
  std::string index_digest;     // the image index / manifest list digest, if any
  std::vector<std::string> layer_digests;  // base layer first
  TreeManifest manifest;  // exact metadata of every entry (owners, modes, xattrs, devices); empty with a layer_sink
  bool flattened = true;  // false: reuse_check said the tree is not needed
};

/// Resolves `reference`, fetches (or reuses from the cache) every blob,
/// verifies each sha256 (layers over up to options.parallel_layers
/// connections), and flattens the layers in order into `dest_dir` as they
/// arrive
/// (which must exist and be empty), applying whiteouts. Entries that would
/// escape dest_dir are refused with an error naming the layer and entry.
/// On a failure no further layer download starts; those in flight finish
/// (their verified blobs stay cached) before the error is returned.
/// Thread-safe: concurrent pulls share the blob cache safely.
Result<PulledImage> PullAndFlatten(const std::string& reference,
                                   const std::filesystem::path& dest_dir,
                                   const PullOptions& options);

}  // namespace banger::oci
