// The kernel catalog: named kernels and where each comes from. banger ships a
// built-in catalog (kernels/catalog.yaml, compiled in); a user's config can
// add entries or override them by name, and can change the default.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace banger::kernels {

/// The name that always resolves to the catalog's default kernel.
inline constexpr char kDefaultKernelAlias[] = "default";

/// The distribution kernel installed on this host.
struct HostSource {
  std::string version;  // release prefix pin ("6.1"); empty: newest
  bool operator==(const HostSource&) const = default;
};
/// An OCI image with /boot/vmlinux or /boot/vmlinuz[-R] and /lib/modules/R.
struct OciSource {
  std::string reference;
  bool operator==(const OciSource&) const = default;
};
/// A raw kernel or a .tar.zst bundle, verified by sha256.
struct UrlSource {
  std::string url;     // http://, https:// or file://
  std::string sha256;  // 64 lower-case hex digits
  bool operator==(const UrlSource&) const = default;
};
using KernelSource = std::variant<HostSource, OciSource, UrlSource>;

/// "host", "oci" or "url".
std::string_view SourceKind(const KernelSource& source);
/// One-line description stored in KernelRecord::source: "host:6.1",
/// "oci:REF", "url:URL".
std::string DescribeSource(const KernelSource& source);

struct KernelCatalogEntry {
  std::string name;
  std::string description;
  KernelSource source;
  std::string defined_at;  // "file:line" of the entry, for messages
  bool operator==(const KernelCatalogEntry&) const = default;
};

struct KernelCatalog {
  std::string default_name;                          // may be empty
  std::map<std::string, KernelCatalogEntry> entries;

  /// Maps the alias ("default", or an empty name) to default_name; other
  /// names are returned unchanged.
  std::string ResolveName(std::string_view name) const;
  /// The entry for `name` (after ResolveName). NotFound suggests the closest
  /// catalog name.
  Result<KernelCatalogEntry> Lookup(std::string_view name) const;
  std::vector<std::string> Names() const;
};

/// A kernel name: `[a-z0-9][a-z0-9._-]*`, at most 128 characters, not
/// "default" (the same grammar specs use for catalog names).
bool IsValidKernelName(std::string_view name);

/// Parses catalog YAML:
///   default: NAME            (optional)
///   kernels:
///     NAME: {description: TEXT, host: {version: PREFIX} | oci: REF | url: URL, sha256: HEX}
/// Every problem is reported as "source_name:line:col: ...". Unknown keys are
/// errors (with a did-you-mean). A `default` that names no entry is allowed
/// here (it may name an entry of the catalog this one is merged into); see
/// ValidateKernelCatalog.
Result<KernelCatalog> ParseKernelCatalog(std::string_view yaml, std::string_view source_name);

/// `overrides` entries replace `base` entries of the same name and add new
/// ones; its default (when set) replaces base's.
KernelCatalog MergeKernelCatalogs(const KernelCatalog& base, const KernelCatalog& overrides);

/// Checks that default_name (when set) names an entry.
Status ValidateKernelCatalog(const KernelCatalog& catalog);

/// The catalog compiled into banger (kernels/catalog.yaml).
std::string_view BuiltinKernelCatalogYaml();
Result<KernelCatalog> BuiltinKernelCatalog();

/// The built-in catalog merged with a user's catalog YAML (may be empty),
/// validated.
Result<KernelCatalog> LoadKernelCatalog(std::string_view user_yaml, std::string_view user_source_name);

}  // namespace banger::kernels
