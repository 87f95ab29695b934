#include "images/catalog.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "images/catalog_data.h"

namespace banger::images {

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool IsPackageName(std::string_view s) {
  if (s.empty() || s.size() > 100 || !IsLowerAlnum(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsLowerAlnum(c) || c == '+' || c == '-' || c == '.';
  });
}

bool IsSuiteOrVariant(std::string_view s) {
  if (s.empty() || s.size() > 64 || !IsLowerAlnum(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

bool IsSha256Hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsPlausibleReference(std::string_view s) {
  if (s.empty() || s.size() > 512) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_' ||
           c == '/' || c == ':' || c == '@';
  });
}

class EntryParser {
 public:
  explicit EntryParser(std::string_view source) : source_(source) {}

  Status Error(const YAML::Node& node, const std::string& entry, const std::string& what) const {
    std::string where = source_;
    if (node.Mark().line >= 0) {
      where += ":" + std::to_string(node.Mark().line + 1) + ":" +
               std::to_string(node.Mark().column + 1);
    }
    return InvalidArgument(where + ": image catalog entry \"" + entry + "\": " + what);
  }

  Result<std::string> Scalar(const YAML::Node& node, const std::string& entry,
                             const std::string& field) const {
    if (!node.IsScalar()) return Error(node, entry, "field \"" + field + "\" must be a string");
    return node.Scalar();
  }

  Result<CatalogEntry> Parse(const std::string& name, const YAML::Node& node) const {
    if (!node.IsMap()) {
      return Error(node, name, "must be a map with one of oci, bundle or recipe (or null)");
    }
    CatalogEntry e;
    e.name = name;
    e.origin = source_;
    int sources = 0;
    bool have_suite = false, have_variant = false, have_include = false;
    for (const auto& kv : node) {
      std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "description") {
        BANGER_ASSIGN_OR_RETURN(e.description, Scalar(v, name, key));
      } else if (key == "oci") {
        ++sources;
        e.kind = SourceKind::kOci;
        BANGER_ASSIGN_OR_RETURN(e.oci_ref, Scalar(v, name, key));
        if (!IsPlausibleReference(e.oci_ref)) {
          return Error(v, name, "\"" + e.oci_ref + "\" is not an OCI reference");
        }
      } else if (key == "bundle") {
        ++sources;
        e.kind = SourceKind::kBundle;
        if (!v.IsMap()) return Error(v, name, "bundle must be a map with url and sha256");
        for (const auto& b : v) {
          std::string bkey = b.first.as<std::string>();
          if (bkey == "url") {
            BANGER_ASSIGN_OR_RETURN(e.bundle_url, Scalar(b.second, name, "bundle.url"));
          } else if (bkey == "sha256") {
            BANGER_ASSIGN_OR_RETURN(e.bundle_sha256, Scalar(b.second, name, "bundle.sha256"));
          } else {
            return Error(b.first, name, "unknown bundle field \"" + bkey + "\" (want url, sha256)");
          }
        }
        if (!(StartsWith(e.bundle_url, "http://") || StartsWith(e.bundle_url, "https://") ||
              StartsWith(e.bundle_url, "file:///"))) {
          return Error(v, name, "bundle.url must start with http://, https:// or file:///");
        }
        if (!IsSha256Hex(e.bundle_sha256)) {
          return Error(v, name, "bundle.sha256 must be 64 lower-case hex digits");
        }
      } else if (key == "recipe") {
        ++sources;
        e.kind = SourceKind::kRecipe;
        BANGER_ASSIGN_OR_RETURN(std::string r, Scalar(v, name, key));
        if (r == "busybox") {
          e.recipe = RecipeKind::kBusybox;
        } else if (r == "debootstrap") {
          e.recipe = RecipeKind::kDebootstrap;
        } else {
          return Error(v, name, "unknown recipe \"" + r + "\" (want busybox or debootstrap)");
        }
      } else if (key == "suite") {
        have_suite = true;
        BANGER_ASSIGN_OR_RETURN(e.suite, Scalar(v, name, key));
        if (!IsSuiteOrVariant(e.suite)) return Error(v, name, "invalid suite \"" + e.suite + "\"");
      } else if (key == "variant") {
        have_variant = true;
        BANGER_ASSIGN_OR_RETURN(e.variant, Scalar(v, name, key));
        if (!IsSuiteOrVariant(e.variant)) {
          return Error(v, name, "invalid variant \"" + e.variant + "\"");
        }
      } else if (key == "include") {
        have_include = true;
        if (!v.IsSequence()) return Error(v, name, "include must be a list of package names");
        for (const auto& p : v) {
          BANGER_ASSIGN_OR_RETURN(std::string pkg, Scalar(p, name, "include"));
          if (!IsPackageName(pkg)) return Error(p, name, "invalid package name \"" + pkg + "\"");
          e.include.push_back(pkg);
        }
      } else {
        std::string hint = ClosestMatch(
            key, {"description", "oci", "bundle", "recipe", "suite", "variant", "include"});
        return Error(kv.first, name,
                     "unknown field \"" + key + "\"" +
                         (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
      }
    }
    if (sources != 1) {
      return Error(node, name, "needs exactly one of oci, bundle or recipe");
    }
    bool debootstrap = e.kind == SourceKind::kRecipe && e.recipe == RecipeKind::kDebootstrap;
    if (debootstrap) {
      if (!have_suite) return Error(node, name, "recipe debootstrap needs a suite");
      if (e.variant.empty()) e.variant = "minbase";
    } else if (have_suite || have_variant || have_include) {
      return Error(node, name, "suite, variant and include apply only to recipe debootstrap");
    }
    return e;
  }

 private:
  std::string source_;
};

}  // namespace

std::string_view ToString(SourceKind k) {
  switch (k) {
    case SourceKind::kOci: return "oci";
    case SourceKind::kBundle: return "bundle";
    case SourceKind::kRecipe: return "recipe";
  }
  return "?";
}

std::string_view ToString(RecipeKind k) {
  switch (k) {
    case RecipeKind::kBusybox: return "busybox";
    case RecipeKind::kDebootstrap: return "debootstrap";
  }
  return "?";
}

bool IsValidImageName(std::string_view name) {
  if (name.empty() || name.size() > 128 || !IsLowerAlnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return IsLowerAlnum(c) || c == '.' || c == '_' || c == '-';
  });
}

const CatalogEntry* ImageCatalog::Find(std::string_view name) const {
  auto it = entries.find(std::string(name));
  return it == entries.end() ? nullptr : &it->second;
}

std::vector<std::string> ImageCatalog::Names() const {
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const auto& [name, e] : entries) out.push_back(name);
  return out;
}

Result<ImageCatalog> ParseImageCatalog(std::string_view yaml, std::string_view source_name) {
  std::string source(source_name);
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    ImageCatalog catalog;
    if (root.IsNull()) return catalog;
    if (!root.IsMap()) return InvalidArgument(source + ": an image catalog must be a map");
    YAML::Node images = root["images"];
    if (!images || images.IsNull()) return catalog;
    if (!images.IsMap()) {
      return InvalidArgument(source + ":" + std::to_string(images.Mark().line + 1) +
                             ": \"images\" must be a map of name to source");
    }
    EntryParser parser(source);
    std::set<std::string> seen;
    for (const auto& kv : images) {
      std::string name = kv.first.as<std::string>();
      if (!IsValidImageName(name)) {
        return parser.Error(kv.first, name,
                            "invalid name (use 1-128 of a-z, 0-9, '.', '_', '-', starting "
                            "with a letter or digit)");
      }
      if (!seen.insert(name).second) return parser.Error(kv.first, name, "defined twice");
      if (kv.second.IsNull()) {
        catalog.removals.push_back(name);
        continue;
      }
      BANGER_ASSIGN_OR_RETURN(CatalogEntry e, parser.Parse(name, kv.second));
      catalog.entries.emplace(name, std::move(e));
    }
    return catalog;
  } catch (const YAML::Exception& e) {
    return InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

ImageCatalog MergeImageCatalogs(const ImageCatalog& base, const ImageCatalog& overlay) {
  ImageCatalog out = base;
  for (const auto& name : overlay.removals) out.entries.erase(name);
  for (const auto& [name, e] : overlay.entries) out.entries.insert_or_assign(name, e);
  return out;
}

const ImageCatalog& BuiltinImageCatalog() {
  static const ImageCatalog* catalog = [] {
    auto parsed = ParseImageCatalog(kBuiltinCatalogYaml, "builtin");
    if (!parsed) {
      // A broken built-in catalog is a build bug; catalog_test catches it.
      spdlog::error("built-in image catalog: {}", parsed.error().message());
      return new ImageCatalog();
    }
    return new ImageCatalog(std::move(parsed).value());
  }();
  return *catalog;
}

}  // namespace banger::images
