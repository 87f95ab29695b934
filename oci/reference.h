// Parsing of image references: [registry[:port]/]repository[:tag][@sha256:hex].
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace banger::oci {

/// Longest name (registry host "/" repository) a reference may have.
inline constexpr size_t kMaxNameLength = 255;

struct Reference {
  std::string registry;    // "docker.io", "localhost:5000", "127.0.0.1:41234"
  std::string repository;  // "library/debian", "team/app"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:<64 hex>" or empty

  /// "registry/repository:tag", "registry/repository@digest" or both.
  std::string ToString() const;
  /// The digest when present, else the tag: what goes after /manifests/.
  std::string ManifestSelector() const { return digest.empty() ? tag : digest; }
  /// Host (and port) to talk HTTP to; docker.io maps to registry-1.docker.io.
  std::string ApiHost() const;
  /// True for localhost / 127.0.0.0/8 / [::1] registries, which default to http.
  bool IsLoopback() const;
};

/// Parses with docker-style defaults: a bare name gets docker.io and library/,
/// a missing tag becomes "latest". The first path component is a registry when
/// it contains '.' or ':' or is "localhost". A name longer than
/// kMaxNameLength after those defaults is refused, so ToString() of an
/// accepted reference always parses back to the same reference.
Result<Reference> ParseReference(std::string_view text);

/// True if `digest` is "sha256:" followed by 64 lower-case hex characters.
bool IsValidDigest(std::string_view digest);

}  // namespace banger::oci
