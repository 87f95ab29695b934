#include "kernels/catalog.h"

#include <yaml-cpp/yaml.h>

#include <optional>

#include "base/strings.h"

namespace banger::kernels {

extern const char kBuiltinKernelCatalogYaml[];

namespace {

std::string Where(std::string_view source, const YAML::Mark& m) {
  return std::string(source) + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

std::string Unknown(std::string_view source, const YAML::Node& key, const std::string& name,
                    const std::vector<std::string>& allowed, std::string_view where) {
  std::string hint = ClosestMatch(name, allowed);
  return Where(source, key.Mark()) + ": unknown key \"" + name + "\" in " + std::string(where) +
         (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)") + "; allowed: " +
         Join(allowed, ", ");
}

bool IsLowerHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<std::string> Scalar(std::string_view source, const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) {
    return InvalidArgument(Where(source, node.Mark()) + ": " + std::string(what) + " must be a string");
  }
  return node.Scalar();
}

Result<KernelCatalogEntry> ParseEntry(std::string_view source, const std::string& name,
                                      const YAML::Node& key, const YAML::Node& node) {
  if (!IsValidKernelName(name)) {
    return InvalidArgument(Where(source, key.Mark()) + ": invalid kernel name \"" + name +
                           "\": use [a-z0-9][a-z0-9._-]* (at most 128 characters), not \"" +
                           kDefaultKernelAlias + "\"");
  }
  if (!node.IsMap()) {
    return InvalidArgument(Where(source, node.Mark()) + ": kernel \"" + name +
                           "\" must be a mapping with one source (host, oci or url)");
  }
  static const std::vector<std::string> kKeys = {"description", "host", "oci", "url", "sha256"};
  KernelCatalogEntry e;
  e.name = name;
  e.defined_at = Where(source, key.Mark());
  std::vector<std::string> sources;
  std::optional<std::string> url, sha;
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string k = it->first.as<std::string>();
    const YAML::Node v = it->second;
    if (k == "description") {
      BANGER_ASSIGN_OR_RETURN(e.description, Scalar(source, v, "description"));
    } else if (k == "host") {
      sources.push_back(k);
      HostSource h;
      if (!v.IsNull() && !v.IsMap()) {
        return InvalidArgument(Where(source, v.Mark()) + ": kernel \"" + name +
                               "\": host must be a mapping ({} or {version: PREFIX})");
      }
      if (v.IsMap()) {
        for (auto hit = v.begin(); hit != v.end(); ++hit) {
          std::string hk = hit->first.as<std::string>();
          if (hk != "version") {
            return InvalidArgument(Unknown(source, hit->first, hk, {"version"}, "host"));
          }
          BANGER_ASSIGN_OR_RETURN(h.version, Scalar(source, hit->second, "host.version"));
          if (h.version.empty() || h.version.find('/') != std::string::npos) {
            return InvalidArgument(Where(source, hit->second.Mark()) + ": kernel \"" + name +
                                   "\": host.version must be a release prefix like \"6.1\"");
          }
        }
      }
      e.source = h;
    } else if (k == "oci") {
      sources.push_back(k);
      BANGER_ASSIGN_OR_RETURN(std::string ref, Scalar(source, v, "oci"));
      if (ref.empty() || ref.find_first_of(" \t\n") != std::string::npos) {
        return InvalidArgument(Where(source, v.Mark()) + ": kernel \"" + name +
                               "\": oci must be an image reference");
      }
      e.source = OciSource{ref};
    } else if (k == "url") {
      sources.push_back(k);
      BANGER_ASSIGN_OR_RETURN(std::string u, Scalar(source, v, "url"));
      if (!StartsWith(u, "http://") && !StartsWith(u, "https://") && !StartsWith(u, "file://")) {
        return InvalidArgument(Where(source, v.Mark()) + ": kernel \"" + name + "\": url \"" + u +
                               "\" must start with http://, https:// or file://");
      }
      url = u;
    } else if (k == "sha256") {
      BANGER_ASSIGN_OR_RETURN(std::string s, Scalar(source, v, "sha256"));
      if (StartsWith(s, "sha256:")) s = s.substr(7);
      if (!IsLowerHex64(s)) {
        return InvalidArgument(Where(source, v.Mark()) + ": kernel \"" + name +
                               "\": sha256 must be 64 lower-case hex digits");
      }
      sha = s;
    } else {
      return InvalidArgument(Unknown(source, it->first, k, kKeys, "kernel \"" + name + "\""));
    }
  }
  if (sources.size() != 1) {
    return InvalidArgument(e.defined_at + ": kernel \"" + name + "\" must have exactly one source " +
                           "(host, oci or url), found " +
                           (sources.empty() ? std::string("none") : Join(sources, ", ")));
  }
  if (url) {
    if (!sha) {
      return InvalidArgument(e.defined_at + ": kernel \"" + name +
                             "\": a url source needs sha256 (the download is verified)");
    }
    e.source = UrlSource{*url, *sha};
  } else if (sha) {
    return InvalidArgument(e.defined_at + ": kernel \"" + name + "\": sha256 only goes with url");
  }
  return e;
}

Result<KernelCatalog> ParseUnsafe(std::string_view yaml, std::string_view source) {
  KernelCatalog cat;
  YAML::Node root = YAML::Load(std::string(yaml));
  if (root.IsNull()) return cat;
  if (!root.IsMap()) {
    return InvalidArgument(Where(source, root.Mark()) + ": a kernel catalog must be a mapping");
  }
  static const std::vector<std::string> kTop = {"default", "kernels"};
  for (auto it = root.begin(); it != root.end(); ++it) {
    std::string k = it->first.as<std::string>();
    const YAML::Node v = it->second;
    if (k == "default") {
      BANGER_ASSIGN_OR_RETURN(cat.default_name, Scalar(source, v, "default"));
      if (!IsValidKernelName(cat.default_name)) {
        return InvalidArgument(Where(source, v.Mark()) + ": default \"" + cat.default_name +
                               "\" is not a valid kernel name");
      }
    } else if (k == "kernels") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) {
        return InvalidArgument(Where(source, v.Mark()) + ": kernels must be a mapping of name to entry");
      }
      for (auto kit = v.begin(); kit != v.end(); ++kit) {
        std::string name = kit->first.as<std::string>();
        BANGER_ASSIGN_OR_RETURN(KernelCatalogEntry e, ParseEntry(source, name, kit->first, kit->second));
        if (cat.entries.count(name)) {
          return InvalidArgument(e.defined_at + ": kernel \"" + name + "\" is defined twice");
        }
        cat.entries.emplace(name, std::move(e));
      }
    } else {
      return InvalidArgument(Unknown(source, it->first, k, kTop, "the kernel catalog"));
    }
  }
  return cat;
}

}  // namespace

std::string_view SourceKind(const KernelSource& source) {
  if (std::holds_alternative<HostSource>(source)) return "host";
  if (std::holds_alternative<OciSource>(source)) return "oci";
  return "url";
}

std::string DescribeSource(const KernelSource& source) {
  if (const auto* h = std::get_if<HostSource>(&source)) {
    return h->version.empty() ? "host" : "host:" + h->version;
  }
  if (const auto* o = std::get_if<OciSource>(&source)) return "oci:" + o->reference;
  return "url:" + std::get<UrlSource>(source).url;
}

bool IsValidKernelName(std::string_view name) {
  if (name.empty() || name.size() > 128 || name == kDefaultKernelAlias) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::string KernelCatalog::ResolveName(std::string_view name) const {
  if (name.empty() || name == kDefaultKernelAlias) return default_name;
  return std::string(name);
}

Result<KernelCatalogEntry> KernelCatalog::Lookup(std::string_view name) const {
  std::string resolved = ResolveName(name);
  if (resolved.empty()) {
    return NotFound("no default kernel is configured (set `default:` in the kernel catalog)");
  }
  auto it = entries.find(resolved);
  if (it == entries.end()) {
    std::string hint = ClosestMatch(resolved, Names());
    return NotFound("kernel \"" + resolved + "\" is not in the kernel catalog" +
                    (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  return it->second;
}

std::vector<std::string> KernelCatalog::Names() const {
  std::vector<std::string> out;
  for (const auto& [n, e] : entries) out.push_back(n);
  return out;
}

Result<KernelCatalog> ParseKernelCatalog(std::string_view yaml, std::string_view source_name) {
  try {
    return ParseUnsafe(yaml, source_name);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(Where(source_name, e.mark) + ": " + e.msg);
  }
}

KernelCatalog MergeKernelCatalogs(const KernelCatalog& base, const KernelCatalog& overrides) {
  KernelCatalog out = base;
  for (const auto& [name, entry] : overrides.entries) out.entries[name] = entry;
  if (!overrides.default_name.empty()) out.default_name = overrides.default_name;
  return out;
}

Status ValidateKernelCatalog(const KernelCatalog& catalog) {
  if (!catalog.default_name.empty() && !catalog.entries.count(catalog.default_name)) {
    std::string hint = ClosestMatch(catalog.default_name, catalog.Names());
    return InvalidArgument("default kernel \"" + catalog.default_name +
                           "\" is not in the kernel catalog" +
                           (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  return OkStatus();
}

std::string_view BuiltinKernelCatalogYaml() { return kBuiltinKernelCatalogYaml; }

Result<KernelCatalog> BuiltinKernelCatalog() {
  return ParseKernelCatalog(BuiltinKernelCatalogYaml(), "builtin:kernels/catalog.yaml");
}

Result<KernelCatalog> LoadKernelCatalog(std::string_view user_yaml, std::string_view user_source_name) {
  BANGER_ASSIGN_OR_RETURN(KernelCatalog cat, BuiltinKernelCatalog());
  if (!Trim(user_yaml).empty()) {
    BANGER_ASSIGN_OR_RETURN(KernelCatalog user, ParseKernelCatalog(user_yaml, user_source_name));
    cat = MergeKernelCatalogs(cat, user);
  }
  BANGER_RETURN_IF_ERROR(ValidateKernelCatalog(cat));
  return cat;
}

}  // namespace banger::kernels
