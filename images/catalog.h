// The image catalog: well-known image names and how to produce each one
// (an OCI reference, a prebuilt bundle, or a local recipe). banger ships a
// built-in catalog (images/catalog.yaml, compiled in); a user's configuration
// can add entries and override built-in ones by name.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::images {

enum class SourceKind { kOci, kBundle, kRecipe };
enum class RecipeKind { kBusybox, kDebootstrap };
std::string_view ToString(SourceKind k);
std::string_view ToString(RecipeKind k);

struct CatalogEntry {
  std::string name;
  std::string description;
  std::string origin;  // "builtin" or the file the entry came from
  SourceKind kind = SourceKind::kRecipe;

  // kind == kOci
  std::string oci_ref;
  // kind == kBundle
  std::string bundle_url;     // http://, https:// or file://
  std::string bundle_sha256;  // 64 lower-case hex digits
  // kind == kRecipe
  RecipeKind recipe = RecipeKind::kBusybox;
  std::string suite;                  // debootstrap: "bookworm"
  std::string variant;                // debootstrap: "minbase" (default)
  std::vector<std::string> include;   // debootstrap: extra packages

  bool operator==(const CatalogEntry&) const = default;
};

/// Entries by name. A parsed overlay may also carry removals (name: null).
struct ImageCatalog {
  std::map<std::string, CatalogEntry> entries;
  std::vector<std::string> removals;  // names set to null in this catalog

  const CatalogEntry* Find(std::string_view name) const;
  std::vector<std::string> Names() const;
};

/// Parses a catalog document: a map with an `images:` key holding
/// `name: {oci: REF}` / `{bundle: {url, sha256}}` / `{recipe: ..., ...}` or
/// `name: null` (removes that name when merged over another catalog). Other
/// top-level keys are ignored so the `images:` section can live inside a
/// larger configuration file. Errors name `source_name`, the line and the entry.
Result<ImageCatalog> ParseImageCatalog(std::string_view yaml, std::string_view source_name);

/// `base` with `overlay`'s entries added or replacing same-named ones, and
/// its removals applied.
ImageCatalog MergeImageCatalogs(const ImageCatalog& base, const ImageCatalog& overlay);

/// The catalog compiled into banger (images/catalog.yaml).
const ImageCatalog& BuiltinImageCatalog();

/// True for names a catalog entry or an image may carry: 1-128 characters of
/// [a-z0-9._-], starting with a letter or digit.
bool IsValidImageName(std::string_view name);

}  // namespace banger::images
