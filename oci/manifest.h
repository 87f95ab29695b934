// OCI / Docker schema 2 manifests and indexes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::oci {

inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";

/// Accept header value listing every manifest type banger understands.
std::string ManifestAcceptHeader();

struct Descriptor {
  std::string media_type;
  std::string digest;   // "sha256:..."
  int64_t size = -1;    // -1 when absent
  // Only for index entries.
  std::string os, architecture, variant;

  std::string PlatformString() const;  // "linux/arm64/v8"
};

struct Manifest {
  std::string media_type;
  bool is_index = false;
  Descriptor config;                   // image manifests
  std::vector<Descriptor> layers;      // image manifests, base layer first
  std::vector<Descriptor> manifests;   // indexes
};

/// Parses a manifest or index. The type comes from the JSON `mediaType`, else
/// `content_type`, else the shape (`manifests` vs `layers`). `what` names the
/// reference in errors. Schema 1 manifests are refused.
Result<Manifest> ParseManifest(std::string_view json, std::string_view content_type,
                               std::string_view what);

/// Picks the entry for `platform` ("os/arch[/variant]") from an index. Without
/// a variant, an entry with no variant wins over others. Error lists the
/// platforms available.
Result<Descriptor> SelectPlatform(const Manifest& index, std::string_view platform,
                                  std::string_view what);

/// True for layer media types banger can flatten (tar, +gzip, +zstd, Docker
/// rootfs diff, and their non-distributable forms).
bool IsSupportedLayerType(std::string_view media_type);

}  // namespace banger::oci
