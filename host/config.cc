#include "host/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "base/files.h"
#include "base/strings.h"
#include "spec/names.h"

namespace banger::host {

namespace {

std::string DefaultConfigPath() {
  if (::geteuid() == 0) return "/etc/banger/config.yaml";
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/banger/config.yaml";
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.config/banger/config.yaml";
  return "";
}

std::string Where(const std::string& path, const YAML::Node& n) {
  return path + ":" + std::to_string(n.Mark().line + 1) + ":" + std::to_string(n.Mark().column + 1);
}

std::string LineOf(const std::string& path, const YAML::Node& n) {
  return path + ":" + std::to_string(n.Mark().line + 1);
}

// The run: section (defaults of `banger run`'s flags).
Status ParseRun(const std::string& path, const YAML::Node& v, Config& c) {
  if (v.IsNull()) return OkStatus();
  if (!v.IsMap()) return InvalidArgument(Where(path, v) + ": run: must be a mapping");
  static const std::vector<std::string> kRunKeys = {"image", "cpus", "memory", "disk", "network"};
  for (auto it = v.begin(); it != v.end(); ++it) {
    std::string key = it->first.as<std::string>();
    const YAML::Node rv = it->second;
    if (!rv.IsScalar()) return InvalidArgument(Where(path, rv) + ": run." + key + ": must be a scalar");
    std::string text = rv.as<std::string>();
    if (key == "image") {
      if (!IsCatalogName(text) && !IsImageReference(text)) {
        return InvalidArgument(Where(path, rv) + ": run.image: \"" + text +
                               "\" is neither a catalog name nor an OCI reference");
      }
      c.run.image = text;
    } else if (key == "cpus") {
      int n = 0;
      try {
        n = rv.as<int>();
      } catch (const YAML::Exception&) {
        n = 0;
      }
      if (n < 1 || n > 64) return InvalidArgument(Where(path, rv) + ": run.cpus: must be an integer between 1 and 64");
      c.run.cpus = n;
    } else if (key == "memory" || key == "disk") {
      if (!(key == "disk" && text == "auto") && !ParseByteSize(text).ok()) {
        return InvalidArgument(Where(path, rv) + ": run." + key + ": expected a size such as 1GiB" +
                               (key == "disk" ? " or auto" : ""));
      }
      (key == "memory" ? c.run.memory : c.run.disk) = text;
    } else if (key == "network") {
      if (text != "bridged" && text != "user" && text != "isolated" && text != "none") {
        return InvalidArgument(Where(path, rv) + ": run.network: must be bridged, user, isolated or none");
      }
      c.run.network = text;
    } else {
      std::string hint = ClosestMatch(key, kRunKeys);
      return InvalidArgument(Where(path, it->first) + ": unknown key \"run." + key + "\"" +
                             (hint.empty() ? "" : " (did you mean \"run." + hint + "\"?)"));
    }
    c.sources["run." + key] = LineOf(path, rv);
  }
  return OkStatus();
}

// The text of one top-level section of a block-style YAML file, with every
// other line blanked so line numbers in later diagnostics stay those of the file.
std::string SectionText(const std::string& text, std::string_view key) {
  std::string out;
  bool keep = false;
  for (const auto& line : Split(text, '\n')) {
    bool top_level = !line.empty() && line[0] != ' ' && line[0] != '\t' && line[0] != '#';
    if (top_level) keep = StartsWith(line, std::string(key) + ":");
    out += (keep ? line : std::string()) + "\n";
  }
  return out;
}

// Applies $BANGER_NETNS over the file's network.netns.
Status ApplyEnvironment(Config& c) {
  if (const char* env = std::getenv("BANGER_NETNS")) {
    c.netns = env;
    c.sources["network.netns"] = "env BANGER_NETNS";
    if (std::string why = ValidateNetnsName(c.netns); !why.empty()) {
      return InvalidArgument("BANGER_NETNS: " + why);
    }
  }
  return OkStatus();
}

}  // namespace

std::string ValidateNetnsName(const std::string& name) {
  if (name.empty()) return "";
  if (name.size() > 64) return "network namespace name \"" + name.substr(0, 64) + "...\" is too long";
  if (name == "." || name == "..") return "\"" + name + "\" is not a network namespace name";
  for (char ch : name) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) {
      return "network namespace name \"" + name + "\" may hold only letters, digits, '-', '_' and '.'";
    }
  }
  return "";
}

Result<Config> LoadConfig(const std::string& explicit_path) {
  Config c;
  std::string path = explicit_path;
  if (path.empty()) {
    const char* env = std::getenv("BANGER_CONFIG");
    if (env && *env) path = env;
  }
  if (path.empty()) {
    path = DefaultConfigPath();
    std::error_code ec;
    if (path.empty() || !std::filesystem::exists(path, ec)) {
      BANGER_RETURN_IF_ERROR(ApplyEnvironment(c));
      return c;
    }
  }
  BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  c.path = path;
  try {
    YAML::Node root = YAML::Load(text);
    if (root.IsNull()) {
      BANGER_RETURN_IF_ERROR(ApplyEnvironment(c));
      return c;
    }
    if (!root.IsMap()) return InvalidArgument(Where(path, root) + ": config must be a mapping");
    static const std::vector<std::string> kKeys = {"defaultKernel", "accel",   "machine", "hypervisor", "parallel",
                                                   "images",        "kernels", "network", "run"};
    for (auto it = root.begin(); it != root.end(); ++it) {
      std::string key = it->first.as<std::string>();
      const YAML::Node v = it->second;  // a copy: it-> returns a proxy that dies with the expression
      if (key != "images" && key != "kernels" && key != "network" && key != "run") {
        c.sources[key] = LineOf(path, v);
      }
      if (key == "defaultKernel") {
        c.default_kernel = v.as<std::string>();
      } else if (key == "accel") {
        c.accel = v.as<std::string>();
        if (c.accel != "auto" && c.accel != "kvm" && c.accel != "tcg") {
          return InvalidArgument(Where(path, v) + ": accel: must be auto, kvm or tcg");
        }
      } else if (key == "machine") {
        c.machine = v.as<std::string>();
        if (c.machine != "auto" && c.machine != "microvm" && c.machine != "q35") {
          return InvalidArgument(Where(path, v) + ": machine: must be auto, microvm or q35");
        }
      } else if (key == "hypervisor") {
        c.hypervisor = v.as<std::string>();
        if (c.hypervisor != "auto" && c.hypervisor != "qemu" && c.hypervisor != "firecracker") {
          return InvalidArgument(Where(path, v) + ": hypervisor: must be auto, qemu or firecracker");
        }
      } else if (key == "parallel") {
        c.parallel = v.as<int>();
        if (c.parallel < 1 || c.parallel > 64) {
          return InvalidArgument(Where(path, v) + ": parallel: must be between 1 and 64");
        }
      } else if (key == "network") {
        if (v.IsNull()) continue;
        if (!v.IsMap()) return InvalidArgument(Where(path, v) + ": network: must be a mapping");
        static const std::vector<std::string> kNetworkKeys = {"netns"};
        for (auto nit = v.begin(); nit != v.end(); ++nit) {
          std::string nkey = nit->first.as<std::string>();
          const YAML::Node nv = nit->second;
          if (nkey == "netns") {
            c.netns = nv.IsNull() ? "" : nv.as<std::string>();
            c.sources["network.netns"] = LineOf(path, nv);
            if (std::string why = ValidateNetnsName(c.netns); !why.empty()) {
              return InvalidArgument(Where(path, nv) + ": network.netns: " + why);
            }
          } else {
            std::string hint = ClosestMatch(nkey, kNetworkKeys);
            return InvalidArgument(Where(path, nit->first) + ": unknown key \"network." + nkey + "\"" +
                                   (hint.empty() ? "" : " (did you mean \"network." + hint + "\"?)"));
          }
        }
      } else if (key == "run") {
        BANGER_RETURN_IF_ERROR(ParseRun(path, v, c));
      } else if (key == "images" || key == "kernels") {
        // Catalog entries, parsed by the image and kernel catalogs, which
        // report errors against this file's own lines.
        (key == "images" ? c.image_catalog_yaml : c.kernel_catalog_yaml) = SectionText(text, key);
      } else {
        std::string hint = ClosestMatch(key, kKeys);
        return InvalidArgument(Where(path, it->first) + ": unknown key \"" + key + "\"" +
                               (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
      }
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  BANGER_RETURN_IF_ERROR(ApplyEnvironment(c));
  return c;
}

std::vector<ConfigEntry> ConfigEntries(const Config& c) {
  std::vector<ConfigEntry> out = {
      {"defaultKernel", c.default_kernel.empty() ? "(kernel catalog default)" : c.default_kernel, ""},
      {"accel", c.accel, ""},
      {"machine", c.machine, ""},
      {"hypervisor", c.hypervisor, ""},
      {"parallel", std::to_string(c.parallel), ""},
      {"network.netns", c.netns.empty() ? "(host namespace)" : c.netns, ""},
      {"run.image", c.run.image, ""},
      {"run.cpus", std::to_string(c.run.cpus), ""},
      {"run.memory", c.run.memory, ""},
      {"run.disk", c.run.disk, ""},
      {"run.network", c.run.network, ""},
  };
  for (auto& e : out) {
    auto it = c.sources.find(e.key);
    e.source = it == c.sources.end() ? "default" : it->second;
  }
  return out;
}

std::string RenderConfig(const Config& c, const std::vector<ConfigEntry>& extra) {
  std::vector<ConfigEntry> entries = extra;
  for (auto& e : ConfigEntries(c)) entries.push_back(std::move(e));
  // "key: value" lines, nested one level for dotted keys, each with its source.
  std::vector<std::pair<std::string, std::string>> lines;  // text, source
  std::string section;
  for (const auto& e : entries) {
    size_t dot = e.key.find('.');
    std::string scalar;
    {
      YAML::Emitter v;
      v << e.value;
      scalar = v.c_str();
    }
    if (dot == std::string::npos) {
      section.clear();
      lines.push_back({e.key + ": " + scalar, e.source});
      continue;
    }
    std::string sec = e.key.substr(0, dot);
    if (sec != section) {
      section = sec;
      lines.push_back({sec + ":", ""});
    }
    lines.push_back({"  " + e.key.substr(dot + 1) + ": " + scalar, e.source});
  }
  size_t width = 0;
  for (const auto& l : lines) width = std::max(width, l.first.size());
  std::string out = std::string("# source: ") + (c.path.empty() ? "built-in defaults (no config file)" : c.path) + "\n";
  for (const auto& l : lines) {
    out += l.first;
    if (!l.second.empty()) out += std::string(width - l.first.size() + 2, ' ') + "# " + l.second;
    out += "\n";
  }
  YAML::Emitter e;
  bool any = false;
  if (!c.image_catalog_yaml.empty() || !c.kernel_catalog_yaml.empty()) {
    e << YAML::BeginMap;
    any = true;
  }
  if (!c.image_catalog_yaml.empty()) {
    e << YAML::Key << "images" << YAML::Value << YAML::Load(c.image_catalog_yaml)["images"];
  }
  if (!c.kernel_catalog_yaml.empty()) {
    e << YAML::Key << "kernels" << YAML::Value << YAML::Load(c.kernel_catalog_yaml)["kernels"];
  }
  if (any) {
    e << YAML::EndMap;
    out += std::string("# catalog entries from ") + c.path + "\n" + e.c_str() + "\n";
  }
  return out;
}

}  // namespace banger::host
