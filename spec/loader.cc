// YAML -> SandboxSpec. yaml-cpp is wrapped by spec/yaml_tree.cc; every
// problem becomes a diagnostic, nothing throws out of here.
#include "spec/loader.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "base/files.h"
#include "base/ipv4.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "spec/names.h"
#include "spec/yaml_tree.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kTiB = 1ull << 40;
constexpr uint64_t kMinMemory = 64 * kMiB;
constexpr uint64_t kMaxMemory = kTiB;
constexpr uint64_t kMinDisk = 256 * kMiB;
constexpr uint64_t kMaxDisk = 64 * kTiB;
constexpr uint32_t kMaxCpus = 64;
constexpr std::chrono::milliseconds kMinTimeout = std::chrono::seconds(1);
constexpr std::chrono::milliseconds kMaxTimeout = std::chrono::hours(1);

const std::vector<std::string> kTopFields = {"apiVersion", "kind", "metadata", "spec"};
const std::vector<std::string> kMetadataFields = {"name", "labels"};
const std::vector<std::string> kSpecFields = {
    "image", "kernel", "cpus",      "memory",    "disk",          "network",   "ssh",
    "env",   "files",  "provision", "readiness", "restartPolicy", "hypervisor",
    "volumes", "workspace", "start"};
const std::vector<std::string> kNetworkFields = {"mode", "name", "address", "ports"};
const std::vector<std::string> kPortFields = {"host", "guest", "protocol", "address"};
const std::vector<std::string> kNetworkDocSpecFields = {"subnet", "nat", "isolated"};
const std::vector<std::string> kSshFields = {"authorizedKeys"};
const std::vector<std::string> kFileFields = {"path", "content", "source", "mode"};
const std::vector<std::string> kReadinessFields = {"command", "timeout"};
const std::vector<std::string> kVolumeFields = {"name", "mountPath", "size", "seedFrom"};
constexpr uint64_t kMinVolume = 16 * kMiB;
constexpr uint64_t kMaxVolume = 64 * kTiB;
const std::vector<std::string> kWorkspaceFields = {"source", "path", "mode", "includeUntracked"};

/// Quotes a user value for a message: JSON-style escapes, cut at 60 chars.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (++n > 60) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Describe(const YamlNode& n) {
  switch (n.type()) {
    case YamlType::kMap: return "a mapping";
    case YamlType::kSequence: return "a sequence";
    case YamlType::kNull: return "null";
    case YamlType::kScalar: return Quote(n.Scalar());
  }
  return "nothing";
}

std::string Join(const std::string& path, const std::string& field) {
  return path.empty() ? field : path + "." + field;
}

std::string Index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string KeyPath(const std::string& path, const std::string& key) {
  return path + "[" + Quote(key) + "]";
}

std::string FormatLocation(const SourceLocation& loc) {
  std::string out = loc.file;
  if (loc.line > 0) out += ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  return out;
}

std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates) {
  std::string m = ClosestMatch(word, candidates);
  return m.empty() ? std::string() : " (did you mean \"" + m + "\"?)";
}

struct Field {
  YamlNode key;
  YamlNode value;
};
using FieldMap = std::map<std::string, Field>;

template <typename E>
using EnumTable = std::vector<std::pair<std::string, E>>;

/// Parses and validates one YAML document. Reports every problem it finds;
/// returns a spec only when there were none.
class DocParser {
 public:
  DocParser(std::string file, fs::path base_dir, Diagnostics* diags)
      : file_(std::move(file)), base_dir_(std::move(base_dir)), diags_(diags) {}

  std::optional<SandboxSpec> Parse(const YamlNode& root) {
    SandboxSpec spec;
    auto top = Fields(root, "", kTopFields);
    if (!top) return std::nullopt;

    if (const Field* f = Find(*top, "apiVersion")) {
      if (auto v = String(*f, "apiVersion"); v && *v != kApiVersion) {
        Error(f->value, "apiVersion",
              std::string("must be \"") + kApiVersion + "\", got " + Quote(*v));
      }
    } else {
      Error(root, "apiVersion", "required field is missing");
    }
    if (const Field* f = Find(*top, "kind")) {
      if (auto v = String(*f, "kind"); v && *v != kKindSandbox) {
        Error(f->value, "kind", std::string("must be \"") + kKindSandbox + "\" or \"" + kKindNetwork +
                                    "\", got " + Quote(*v) + DidYouMean(*v, {kKindSandbox, kKindNetwork}));
      }
    } else {
      Error(root, "kind", "required field is missing");
    }
    if (const Field* f = Find(*top, "metadata")) {
      ParseMetadata(f->value, spec.name, spec.labels);
    } else {
      Error(root, "metadata", "required field is missing");
    }
    if (const Field* f = Find(*top, "spec")) {
      ParseSpec(f->value, spec);
    } else {
      Error(root, "spec", "required field is missing");
    }
    if (errors_ > 0) return std::nullopt;
    NormalizeSpec(spec);
    return spec;
  }

  /// A `kind: Network` document (the caller checked the kind).
  std::optional<NetworkSpecDoc> ParseNetworkDocument(const YamlNode& root) {
    NetworkSpecDoc net;
    auto top = Fields(root, "", kTopFields);
    if (!top) return std::nullopt;
    if (const Field* f = Find(*top, "apiVersion")) {
      if (auto v = String(*f, "apiVersion"); v && *v != kApiVersion) {
        Error(f->value, "apiVersion", std::string("must be \"") + kApiVersion + "\", got " + Quote(*v));
      }
    } else {
      Error(root, "apiVersion", "required field is missing");
    }
    if (const Field* f = Find(*top, "metadata")) {
      ParseMetadata(f->value, net.name, net.labels);
    } else {
      Error(root, "metadata", "required field is missing");
    }
    if (const Field* f = Find(*top, "spec")) {
      if (auto m = Fields(f->value, "spec", kNetworkDocSpecFields)) {
        if (const Field* sub = Find(*m, "subnet")) {
          if (auto v = String(*sub, "spec.subnet")) {
            Result<Ipv4Prefix> p = ParseIpv4Prefix(*v);
            if (!p.ok()) {
              Error(sub->value, "spec.subnet", p.error().message());
            } else if (p->length < 8 || p->length > 29) {
              Error(sub->value, "spec.subnet",
                    "the prefix length must be between /8 and /29 (room for the bridge and sandboxes), got " +
                        Quote(*v));
            } else {
              net.subnet = ToString(*p);
            }
          }
        }
        if (const Field* b = Find(*m, "nat")) {
          if (auto v = Bool(b->value, "spec.nat")) net.nat = *v;
        }
        if (const Field* b = Find(*m, "isolated")) {
          if (auto v = Bool(b->value, "spec.isolated")) net.isolated = *v;
        }
      }
    }
    if (errors_ > 0) return std::nullopt;
    return net;
  }

  SourceLocation Loc(const YamlNode& n) const {
    if (n.line() < 0) return {file_, 0, 0};
    return {file_, n.line() + 1, n.column() + 1};
  }

  /// Where the fields later checks need were written (SpecDocument::field_locations).
  const std::map<std::string, SourceLocation>& field_locations() const { return field_locations_; }

 private:
  std::map<std::string, SourceLocation> field_locations_;

  void Error(const YamlNode& at, const std::string& path, const std::string& message) {
    diags_->AddError(Loc(at), (path.empty() ? std::string("document") : path) + ": " + message);
    ++errors_;
  }

  static const Field* Find(const FieldMap& m, const std::string& name) {
    auto it = m.find(name);
    return it == m.end() ? nullptr : &it->second;
  }

  /// The fields of a mapping. Unknown and repeated fields are reported;
  /// null values count as omitted.
  std::optional<FieldMap> Fields(const YamlNode& n, const std::string& path,
                                 const std::vector<std::string>& known) {
    if (!n.IsMap()) {
      Error(n, path, "expected a mapping, got " + Describe(n));
      return std::nullopt;
    }
    FieldMap out;
    std::map<std::string, int> seen;  // name -> line of first occurrence
    for (const auto& [key, value] : n.entries()) {
      if (!key.IsScalar()) {
        Error(key, path, "field names must be strings, got " + Describe(key));
        continue;
      }
      const std::string& name = key.Scalar();
      std::string child = Join(path, name);
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        Error(key, child, "unknown field" + DidYouMean(name, known));
        continue;
      }
      if (auto s = seen.find(name); s != seen.end()) {
        Error(key, child, "field is set twice (first at line " + std::to_string(s->second) + ")");
        continue;
      }
      seen[name] = Loc(key).line;
      if (value.IsNull()) continue;
      out.emplace(name, Field{key, value});
    }
    return out;
  }

  std::optional<std::string> Text(const YamlNode& n, const std::string& path) {
    if (!n.IsScalar()) {
      Error(n, path, "expected a string, got " + Describe(n));
      return std::nullopt;
    }
    if (!IsValidUtf8(n.Scalar())) {
      Error(n, path, "must be valid UTF-8 text without NUL bytes");
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<std::string> String(const Field& f, const std::string& path) {
    return Text(f.value, path);
  }

  /// A decimal integer within [lo, hi]; `what` describes the rule.
  std::optional<uint64_t> Integer(const YamlNode& n, const std::string& path, uint64_t lo,
                                  uint64_t hi) {
    std::string rule =
        "must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi);
    if (!n.IsScalar()) {
      Error(n, path, rule + ", got " + Describe(n));
      return std::nullopt;
    }
    const std::string& s = n.Scalar();
    uint64_t v = 0;
    bool ok = !s.empty() && s.size() <= 19;
    for (char c : s) {
      if (c < '0' || c > '9') {
        ok = false;
        break;
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || v < lo || v > hi) {
      Error(n, path, rule + ", got " + Quote(s));
      return std::nullopt;
    }
    return v;
  }

  std::optional<uint64_t> Size(const YamlNode& n, const std::string& path, uint64_t lo,
                               uint64_t hi) {
    auto text = Text(n, path);
    if (!text) return std::nullopt;
    Result<uint64_t> v = ParseByteSize(*text);
    if (!v.ok()) {
      Error(n, path, v.error().message());
      return std::nullopt;
    }
    if (*v < lo || *v > hi) {
      Error(n, path,
            "must be between " + FormatByteSize(lo) + " and " + FormatByteSize(hi) + ", got " +
                Quote(*text));
      return std::nullopt;
    }
    return *v;
  }

  template <typename E>
  std::optional<E> Enum(const Field& f, const std::string& path, const EnumTable<E>& table) {
    auto text = String(f, path);
    if (!text) return std::nullopt;
    std::vector<std::string> names;
    for (const auto& [name, value] : table) {
      if (name == *text) return value;
      names.push_back(name);
    }
    Error(f.value, path,
          "must be one of " + banger::Join(names, ", ") + "; got " + Quote(*text) +
              DidYouMean(*text, names));
    return std::nullopt;
  }

  bool ExpectSequence(const YamlNode& n, const std::string& path, std::string_view what) {
    if (n.IsSequence()) return true;
    Error(n, path, "expected " + std::string(what) + ", got " + Describe(n));
    return false;
  }

  /// A mapping of user-chosen keys to strings (labels, env).
  /// `key_error` / `value_error` return "" when fine, else the problem.
  template <typename KeyCheck, typename ValueCheck>
  std::map<std::string, std::string> StringMap(const YamlNode& n, const std::string& path,
                                               KeyCheck key_error, ValueCheck value_error) {
    std::map<std::string, std::string> out;
    if (!n.IsMap()) {
      Error(n, path, "expected a mapping, got " + Describe(n));
      return out;
    }
    for (const auto& [key, value] : n.entries()) {
      if (!key.IsScalar()) {
        Error(key, path, "keys must be strings, got " + Describe(key));
        continue;
      }
      const std::string& k = key.Scalar();
      std::string child = KeyPath(path, k);
      if (std::string problem = key_error(k); !problem.empty()) {
        Error(key, child, problem);
        continue;
      }
      if (out.count(k)) {
        Error(key, child, "key is set twice");
        continue;
      }
      std::string text;
      if (!value.IsNull()) {
        auto v = Text(value, child);
        if (!v) continue;
        text = *v;
      }
      if (std::string problem = value_error(text); !problem.empty()) {
        Error(value.IsNull() ? key : value, child, problem);
        continue;
      }
      out[k] = text;
    }
    return out;
  }

  std::optional<bool> Bool(const YamlNode& n, const std::string& path) {
    if (n.IsScalar()) {
      const std::string& s = n.Scalar();
      if (s == "true") return true;
      if (s == "false") return false;
    }
    Error(n, path, "must be true or false, got " + Describe(n));
    return std::nullopt;
  }

  void ParseMetadata(const YamlNode& n, std::string& name, std::map<std::string, std::string>& labels) {
    auto m = Fields(n, "metadata", kMetadataFields);
    if (!m) return;
    if (const Field* f = Find(*m, "name")) {
      if (auto v = String(*f, "metadata.name")) {
        if (!IsDnsLabel(*v)) {
          Error(f->value, "metadata.name",
                "must be a DNS label (1-63 characters of a-z, 0-9 and '-', starting and ending "
                "with a letter or digit), got " + Quote(*v));
        } else {
          name = *v;
        }
      }
    } else {
      Error(n, "metadata.name", "required field is missing");
    }
    if (const Field* f = Find(*m, "labels")) {
      labels = StringMap(
          f->value, "metadata.labels",
          [](const std::string& k) {
            return IsLabelKey(k) ? std::string()
                                 : "invalid label key: use [prefix/]name where name is 1-63 "
                                   "characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and "
                                   "ending alphanumeric, and prefix is a DNS subdomain";
          },
          [](const std::string& v) {
            return IsLabelValue(v) ? std::string()
                                   : "invalid label value " + Quote(v) +
                                         ": use at most 63 characters of A-Z, a-z, 0-9, '-', "
                                         "'_' and '.', starting and ending alphanumeric";
          });
    }
  }

  void ParseSpec(const YamlNode& n, SandboxSpec& spec) {
    auto m = Fields(n, "spec", kSpecFields);
    if (!m) return;
    if (const Field* f = Find(*m, "image")) {
      if (auto v = String(*f, "spec.image")) {
        if (v->empty()) {
          Error(f->value, "spec.image", "must not be empty");
        } else if (!IsCatalogName(*v) && !IsImageReference(*v)) {
          Error(f->value, "spec.image",
                "invalid image " + Quote(*v) +
                    ": expected a catalog name like \"debian-bookworm\" or an OCI reference like "
                    "\"docker.io/library/alpine:3.19\"");
        } else {
          spec.image = *v;
        }
      }
    } else {
      Error(n, "spec.image", "required field is missing");
    }
    if (const Field* f = Find(*m, "kernel")) {
      if (auto v = String(*f, "spec.kernel")) {
        if (!v->empty() && !IsCatalogName(*v)) {
          Error(f->value, "spec.kernel",
                "invalid kernel name " + Quote(*v) +
                    ": use lower-case letters, digits, '.', '_' and '-', starting with a letter "
                    "or digit");
        } else {
          spec.kernel = *v;
        }
      }
    }
    if (const Field* f = Find(*m, "cpus")) {
      if (auto v = Integer(f->value, "spec.cpus", 1, kMaxCpus)) {
        spec.cpus = static_cast<uint32_t>(*v);
      }
    }
    if (const Field* f = Find(*m, "memory")) {
      if (auto v = Size(f->value, "spec.memory", kMinMemory, kMaxMemory)) spec.memory_bytes = *v;
    }
    if (const Field* f = Find(*m, "disk")) {
      if (f->value.IsScalar() && f->value.Scalar() == "auto") {
        spec.disk_bytes = 0;
      } else if (auto v = Size(f->value, "spec.disk", kMinDisk, kMaxDisk)) {
        spec.disk_bytes = *v;
      }
    }
    if (const Field* f = Find(*m, "network")) ParseNetwork(f->value, spec.network);
    if (const Field* f = Find(*m, "ssh")) ParseSsh(f->value, spec);
    if (const Field* f = Find(*m, "env")) {
      spec.env = StringMap(
          f->value, "spec.env",
          [](const std::string& k) {
            return IsEnvName(k) ? std::string()
                                : "invalid variable name: use letters, digits and '_', not "
                                  "starting with a digit";
          },
          [](const std::string&) { return std::string(); });
    }
    if (const Field* f = Find(*m, "files")) ParseFiles(f->value, spec);
    if (const Field* f = Find(*m, "workspace")) ParseWorkspace(f->value, spec);
    if (const Field* f = Find(*m, "provision")) {
      if (ExpectSequence(f->value, "spec.provision", "a list of command lines")) {
        std::vector<YamlNode> items = f->value.items();
        for (size_t i = 0; i < items.size(); ++i) {
          const YamlNode& item = items[i];
          std::string p = Index("spec.provision", i);
          if (auto v = Text(item, p)) {
            if (Trim(*v).empty()) {
              Error(item, p, "must be a non-empty command line");
            } else {
              spec.provision.push_back(*v);
            }
          }
        }
      }
    }
    if (const Field* f = Find(*m, "readiness")) ParseReadiness(f->value, spec.readiness);
    if (const Field* f = Find(*m, "restartPolicy")) {
      static const EnumTable<RestartPolicy> kTable = {{"Always", RestartPolicy::kAlways},
                                                      {"OnFailure", RestartPolicy::kOnFailure},
                                                      {"Never", RestartPolicy::kNever}};
      if (auto v = Enum(*f, "spec.restartPolicy", kTable)) spec.restart_policy = *v;
    }
    if (const Field* f = Find(*m, "hypervisor")) {
      static const EnumTable<HypervisorKind> kTable = {{"auto", HypervisorKind::kAuto},
                                                       {"qemu", HypervisorKind::kQemu},
                                                       {"firecracker", HypervisorKind::kFirecracker}};
      if (auto v = Enum(*f, "spec.hypervisor", kTable)) spec.hypervisor = *v;
      field_locations_["spec.hypervisor"] = Loc(f->value);
    }
    if (const Field* f = Find(*m, "start")) {
      static const EnumTable<StartMode> kTable = {
          {"auto", StartMode::kAuto}, {"boot", StartMode::kBoot}, {"snapshot", StartMode::kSnapshot}};
      if (auto v = Enum(*f, "spec.start", kTable)) spec.start = *v;
      field_locations_["spec.start"] = Loc(f->value);
    }
    if (const Field* f = Find(*m, "volumes")) ParseVolumes(f->value, spec);
  }

  // --- spec.volumes (docs/volumes.md) ---
  static std::string MountPathProblem(const std::string& path) {
    if (path.empty() || path.front() != '/') return "must be an absolute path";
    if (path == "/") return "must not be \"/\" (the root file system is the sandbox's own disk)";
    if (path.size() > 1024) return "must be at most 1024 characters";
    for (char c : path) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
                c == '.' || c == '_' || c == '-' || c == '+' || c == '@';
      if (!ok) return "may only contain letters, digits and '/', '.', '_', '-', '+', '@'";
    }
    for (const auto& part : Split(path.substr(1), '/')) {
      if (part.empty()) return "must not contain empty components ('//') or end in '/'";
      if (part == "." || part == "..") return "must not contain '.' or '..' components";
    }
    return "";
  }

  /// Whether one mount path is the other or lies below it.
  static bool Nested(const std::string& a, const std::string& b) {
    auto below = [](const std::string& x, const std::string& y) {
      return x.size() > y.size() && StartsWith(x, y) && x[y.size()] == '/';
    };
    return a == b || below(a, b) || below(b, a);
  }

  void ParseVolumes(const YamlNode& n, SandboxSpec& spec) {
    const std::string path = "spec.volumes";
    if (!ExpectSequence(n, path, "a list of volumes")) return;
    std::map<std::string, size_t> names;
    std::vector<std::pair<std::string, size_t>> mounts;
    std::vector<YamlNode> items = n.items();
    for (size_t i = 0; i < items.size(); ++i) {
      const YamlNode& item = items[i];
      std::string p = Index(path, i);
      auto m = Fields(item, p, kVolumeFields);
      if (!m) continue;
      VolumeSpec vol;
      bool ok = true;
      if (const Field* f = Find(*m, "name")) {
        auto v = String(*f, Join(p, "name"));
        if (!v) {
          ok = false;
        } else if (!IsDnsLabel(*v)) {
          Error(f->value, Join(p, "name"),
                "must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit, got " +
                    Quote(*v));
          ok = false;
        } else if (auto s = names.find(*v); s != names.end()) {
          Error(f->value, Join(p, "name"), "volume " + Quote(*v) + " is already declared by " + Index(path, s->second));
          ok = false;
        } else {
          names[*v] = i;
          vol.name = *v;
        }
      } else {
        Error(item, Join(p, "name"), "required field is missing");
        ok = false;
      }
      if (const Field* f = Find(*m, "mountPath")) {
        auto v = String(*f, Join(p, "mountPath"));
        if (!v) {
          ok = false;
        } else if (std::string problem = MountPathProblem(*v); !problem.empty()) {
          Error(f->value, Join(p, "mountPath"), problem + ", got " + Quote(*v));
          ok = false;
        } else {
          auto clash = std::find_if(mounts.begin(), mounts.end(),
                                    [&](const auto& other) { return Nested(other.first, *v); });
          if (clash != mounts.end()) {
            Error(f->value, Join(p, "mountPath"),
                  Quote(*v) + (clash->first == *v ? " is already the mountPath of " : " overlaps the mountPath of ") +
                      Index(path, clash->second) + " (" + Quote(clash->first) + ")");
            ok = false;
          } else {
            mounts.emplace_back(*v, i);
            vol.mount_path = *v;
          }
        }
      } else {
        Error(item, Join(p, "mountPath"), "required field is missing");
        ok = false;
      }
      if (const Field* f = Find(*m, "size")) {
        auto v = Size(f->value, Join(p, "size"), kMinVolume, kMaxVolume);
        if (v) vol.size_bytes = *v;
        ok = ok && v.has_value();
      } else {
        Error(item, Join(p, "size"), "required field is missing");
        ok = false;
      }
      if (const Field* f = Find(*m, "seedFrom")) {
        static const EnumTable<VolumeSeed> kTable = {{"empty", VolumeSeed::kEmpty}, {"image", VolumeSeed::kImage}};
        auto v = Enum(*f, Join(p, "seedFrom"), kTable);
        if (v) vol.seed_from = *v;
        ok = ok && v.has_value();
      }
      if (ok) spec.volumes.push_back(std::move(vol));
    }
  }

  void ParseNetwork(const YamlNode& n, NetworkSpec& net) {
    const std::string path = "spec.network";
    auto m = Fields(n, path, kNetworkFields);
    if (!m) return;
    bool mode_ok = true;
    if (const Field* f = Find(*m, "mode")) {
      // "nat" is the old name of user mode, kept so existing specs load.
      static const EnumTable<NetworkMode> kTable = {{"bridged", NetworkMode::kBridged},
                                                    {"user", NetworkMode::kUser},
                                                    {"nat", NetworkMode::kUser},
                                                    {"isolated", NetworkMode::kIsolated},
                                                    {"none", NetworkMode::kNone}};
      auto v = Enum(*f, path + ".mode", kTable);
      if (v) net.mode = *v;
      mode_ok = v.has_value();
    }
    for (const char* which : {"name", "address"}) {
      const Field* f = Find(*m, which);
      if (f == nullptr) continue;
      const std::string p = Join(path, which);
      auto v = String(*f, p);
      if (!v) continue;
      if (mode_ok && net.mode != NetworkMode::kBridged) {
        Error(f->value, p, std::string("only applies to network mode bridged, not ") + Quote(ToString(net.mode)));
        continue;
      }
      if (std::string_view(which) == "name") {
        if (!IsDnsLabel(*v)) {
          Error(f->value, p, "must be the name of a kind: Network document (a DNS label), got " + Quote(*v));
        } else {
          net.name = *v;
        }
      } else {
        Result<Ipv4> a = ParseIpv4(*v);
        if (!a.ok()) {
          Error(f->value, p, a.error().message());
        } else {
          net.address = ToString(*a);
        }
      }
    }
    const Field* ports = Find(*m, "ports");
    if (!ports) return;
    const std::string ports_path = path + ".ports";
    if (!ExpectSequence(ports->value, ports_path, "a list of port mappings")) return;
    std::vector<YamlNode> items = ports->value.items();
    if (mode_ok && (net.mode == NetworkMode::kNone || net.mode == NetworkMode::kIsolated) && !items.empty()) {
      Error(ports->value, ports_path,
            "ports can only be published with network mode bridged or user, not " +
                Quote(ToString(net.mode)));
    }
    std::map<std::pair<uint16_t, Protocol>, std::vector<std::pair<std::string, size_t>>> used;
    for (size_t i = 0; i < items.size(); ++i) {
      const YamlNode& item = items[i];
      std::string p = Index(ports_path, i);
      auto pm = Fields(item, p, kPortFields);
      if (!pm) continue;
      PortMapping port;
      bool ok = true;
      for (const char* which : {"host", "guest"}) {
        if (const Field* f = Find(*pm, which)) {
          auto v = Integer(f->value, Join(p, which), 1, 65535);
          if (!v) {
            ok = false;
          } else if (std::string_view(which) == "host") {
            port.host = static_cast<uint16_t>(*v);
          } else {
            port.guest = static_cast<uint16_t>(*v);
          }
        } else {
          Error(item, Join(p, which), "required field is missing");
          ok = false;
        }
      }
      if (const Field* f = Find(*pm, "protocol")) {
        static const EnumTable<Protocol> kTable = {{"tcp", Protocol::kTcp},
                                                   {"udp", Protocol::kUdp}};
        if (auto v = Enum(*f, Join(p, "protocol"), kTable)) {
          port.protocol = *v;
        } else {
          ok = false;
        }
      }
      if (const Field* f = Find(*pm, "address")) {
        if (auto v = String(*f, Join(p, "address"))) {
          Result<Ipv4> a = ParseIpv4(*v);
          if (!a.ok()) {
            Error(f->value, Join(p, "address"), a.error().message() + " (use 127.0.0.1, 0.0.0.0 or a host address)");
            ok = false;
          } else {
            port.address = ToString(*a);
          }
        } else {
          ok = false;
        }
      }
      if (!ok) continue;
      auto& same_port = used[std::make_pair(port.host, port.protocol)];
      auto clash = std::find_if(same_port.begin(), same_port.end(), [&](const auto& other) {
        return other.first == port.address || other.first == "0.0.0.0" || port.address == "0.0.0.0";
      });
      if (clash != same_port.end()) {
        Error(Find(*pm, "host")->value, Join(p, "host"),
              "host port " + std::to_string(port.host) + "/" + std::string(ToString(port.protocol)) +
                  " is already published by " + Index(ports_path, clash->second));
        continue;
      }
      same_port.emplace_back(port.address, i);
      net.ports.push_back(port);
    }
  }

  void ParseSsh(const YamlNode& n, SandboxSpec& spec) {
    auto m = Fields(n, "spec.ssh", kSshFields);
    if (!m) return;
    const Field* keys = Find(*m, "authorizedKeys");
    if (!keys) return;
    const std::string path = "spec.ssh.authorizedKeys";
    if (!ExpectSequence(keys->value, path, "a list of public keys")) return;
    std::vector<YamlNode> items = keys->value.items();
    for (size_t i = 0; i < items.size(); ++i) {
      const YamlNode& item = items[i];
      std::string p = Index(path, i);
      auto v = Text(item, p);
      if (!v) continue;
      std::string key(Trim(*v));
      if (!IsSshPublicKey(key)) {
        Error(item, p,
              "not an OpenSSH public key: expected one line like \"ssh-ed25519 AAAA... "
              "comment\" (ssh-ed25519, ssh-rsa, ecdsa-sha2-* or sk-* keys)");
        continue;
      }
      spec.ssh_authorized_keys.push_back(std::move(key));
    }
  }

  std::optional<uint32_t> Mode(const YamlNode& n, const std::string& path) {
    const std::string rule =
        "must be an octal file mode between 0000 and 07777 like \"0644\" or 644";
    if (!n.IsScalar()) {
      Error(n, path, rule + ", got " + Describe(n));
      return std::nullopt;
    }
    std::string_view s = n.Scalar();
    if (StartsWith(s, "0o") || StartsWith(s, "0O")) s.remove_prefix(2);
    uint32_t v = 0;
    bool ok = !s.empty() && s.size() <= 5;
    for (char c : s) {
      if (c < '0' || c > '7') {
        ok = false;
        break;
      }
      v = v * 8 + static_cast<uint32_t>(c - '0');
    }
    if (!ok || v > 07777) {
      Error(n, path, rule + ", got " + Quote(n.Scalar()));
      return std::nullopt;
    }
    return v;
  }

  void ParseFiles(const YamlNode& n, SandboxSpec& spec) {
    const std::string path = "spec.files";
    if (!ExpectSequence(n, path, "a list of files")) return;
    std::map<std::string, size_t> seen_paths;
    std::vector<YamlNode> items = n.items();
    for (size_t i = 0; i < items.size(); ++i) {
      const YamlNode& item = items[i];
      std::string p = Index(path, i);
      auto m = Fields(item, p, kFileFields);
      if (!m) continue;
      FileSpec file;
      bool ok = true;
      if (const Field* f = Find(*m, "path")) {
        auto v = String(*f, Join(p, "path"));
        if (!v) {
          ok = false;
        } else if (std::string problem = GuestPathProblem(*v); !problem.empty()) {
          Error(f->value, Join(p, "path"), problem + ", got " + Quote(*v));
          ok = false;
        } else if (auto s = seen_paths.find(*v); s != seen_paths.end()) {
          Error(f->value, Join(p, "path"),
                Quote(*v) + " is already written by " + Index(path, s->second));
          ok = false;
        } else {
          seen_paths[*v] = i;
          file.path = *v;
        }
      } else {
        Error(item, Join(p, "path"), "required field is missing");
        ok = false;
      }
      if (const Field* f = Find(*m, "mode")) {
        auto v = Mode(f->value, Join(p, "mode"));
        if (v) file.mode = *v;
        ok = ok && v.has_value();
      }
      const Field* content = Find(*m, "content");
      const Field* source = Find(*m, "source");
      if (content && source) {
        Error(source->key, Join(p, "source"),
              "set exactly one of content and source, not both");
        ok = false;
      } else if (!content && !source) {
        Error(item, p, "one of content or source is required");
        ok = false;
      } else if (content) {
        auto v = String(*content, Join(p, "content"));
        if (v) file.content = *v;
        ok = ok && v.has_value();
      } else {
        ok = ParseSource(*source, Join(p, "source"), file) && ok;
      }
      if (ok) spec.files.push_back(std::move(file));
    }
  }

  // spec.workspace: {source, path, mode, includeUntracked}. The source must be
  // a directory inside a git working tree (checked here, so a typo is an
  // error naming the line, not a failed boot step).
  void ParseWorkspace(const YamlNode& n, SandboxSpec& spec) {
    const std::string p = "spec.workspace";
    auto m = Fields(n, p, kWorkspaceFields);
    if (!m) return;
    WorkspaceSpec ws;
    bool ok = true;
    if (const Field* f = Find(*m, "source")) {
      auto v = String(*f, Join(p, "source"));
      if (!v) {
        ok = false;
      } else if (v->empty()) {
        Error(f->value, Join(p, "source"), "must not be empty");
        ok = false;
      } else {
        fs::path resolved = fs::path(*v);
        if (resolved.is_relative()) resolved = base_dir_ / resolved;
        resolved = resolved.lexically_normal();
        if (resolved.has_filename() == false && resolved != resolved.root_path()) resolved = resolved.parent_path();
        std::error_code ec;
        if (!fs::is_directory(resolved, ec)) {
          Error(f->value, Join(p, "source"),
                Quote(*v) + " is not a directory (looked for " + resolved.string() + ")");
          ok = false;
        } else {
          bool in_git = false;
          for (fs::path d = resolved;; d = d.parent_path()) {
            if (fs::exists(d / ".git", ec)) {
              in_git = true;
              break;
            }
            if (d == d.parent_path()) break;
          }
          if (!in_git) {
            Error(f->value, Join(p, "source"),
                  Quote(*v) + " is not inside a git working tree (" + resolved.string() + ")");
            ok = false;
          }
          ws.source = resolved.string();
        }
      }
    } else {
      Error(n, Join(p, "source"), "required field is missing");
      ok = false;
    }
    if (const Field* f = Find(*m, "path")) {
      auto v = String(*f, Join(p, "path"));
      if (!v) {
        ok = false;
      } else {
        std::string path = *v;
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        if (std::string problem = GuestPathProblem(path); !problem.empty()) {
          Error(f->value, Join(p, "path"), problem + ", got " + Quote(*v));
          ok = false;
        } else if (path == "/") {
          Error(f->value, Join(p, "path"), "must be a directory below /, got " + Quote(*v));
          ok = false;
        } else {
          ws.path = path;
        }
      }
    }
    if (const Field* f = Find(*m, "mode")) {
      static const EnumTable<WorkspaceMode> kTable = {{"tracked", WorkspaceMode::kTracked},
                                                      {"full", WorkspaceMode::kFull}};
      if (auto v = Enum(*f, Join(p, "mode"), kTable)) {
        ws.mode = *v;
      } else {
        ok = false;
      }
    }
    if (const Field* f = Find(*m, "includeUntracked")) {
      if (auto v = Bool(f->value, Join(p, "includeUntracked"))) {
        ws.include_untracked = *v;
      } else {
        ok = false;
      }
    }
    if (ok) spec.workspace = std::move(ws);
  }

  static std::string GuestPathProblem(const std::string& path) {
    if (path.empty() || path.front() != '/') return "must be an absolute path";
    if (path.back() == '/') return "must name a file, not end in '/'";
    for (const auto& part : Split(path, '/')) {
      if (part == "..") return "must not contain '..'";
    }
    return "";
  }

  bool ParseSource(const Field& f, const std::string& path, FileSpec& file) {
    auto v = String(f, path);
    if (!v) return false;
    if (v->empty()) {
      Error(f.value, path, "must not be empty");
      return false;
    }
    fs::path resolved = fs::path(*v);
    if (resolved.is_relative()) resolved = base_dir_ / resolved;
    resolved = resolved.lexically_normal();
    std::error_code ec;
    fs::file_status st = fs::status(resolved, ec);
    if (ec || !fs::exists(st)) {
      Error(f.value, path, Quote(*v) + " does not exist (looked for " + resolved.string() + ")");
      return false;
    }
    if (!fs::is_regular_file(st)) {
      Error(f.value, path, Quote(*v) + " is not a regular file (" + resolved.string() + ")");
      return false;
    }
    Result<std::string> digest = Sha256File(resolved);
    if (!digest.ok()) {
      Error(f.value, path, "cannot read " + Quote(*v) + ": " + digest.error().message());
      return false;
    }
    file.source = resolved.string();
    file.source_sha256 = *digest;
    return true;
  }

  void ParseReadiness(const YamlNode& n, ReadinessSpec& readiness) {
    const std::string path = "spec.readiness";
    auto m = Fields(n, path, kReadinessFields);
    if (!m) return;
    if (const Field* f = Find(*m, "command")) {
      const std::string p = path + ".command";
      if (f->value.IsScalar()) {
        if (auto v = String(*f, p)) {
          if (Trim(*v).empty()) {
            Error(f->value, p, "must not be empty");
          } else {
            readiness.command = {"sh", "-c", *v};
          }
        }
      } else if (f->value.IsSequence()) {
        std::vector<std::string> argv;
        bool ok = true;
        std::vector<YamlNode> items = f->value.items();
        for (size_t i = 0; i < items.size(); ++i) {
          auto v = Text(items[i], Index(p, i));
          if (!v) {
            ok = false;
            continue;
          }
          if (i == 0 && v->empty()) {
            Error(items[i], Index(p, i), "the program name must not be empty");
            ok = false;
          }
          argv.push_back(*v);
        }
        if (ok) readiness.command = std::move(argv);
      } else {
        Error(f->value, p, "expected a list of arguments or a shell command string, got " +
                               Describe(f->value));
      }
    }
    if (const Field* f = Find(*m, "timeout")) {
      const std::string p = path + ".timeout";
      if (auto v = String(*f, p)) {
        Result<std::chrono::milliseconds> d = ParseDuration(*v);
        if (!d.ok()) {
          Error(f->value, p, d.error().message());
        } else if (*d < kMinTimeout || *d > kMaxTimeout) {
          Error(f->value, p, "must be between 1s and 1h, got " + Quote(*v));
        } else {
          readiness.timeout = *d;
        }
      }
    }
  }

  std::string file_;
  fs::path base_dir_;
  Diagnostics* diags_;
  int errors_ = 0;
};

bool IsNetworkDocument(const YamlNode& doc) {
  if (!doc.IsMap()) return false;
  for (const auto& [key, value] : doc.entries()) {
    if (key.IsScalar() && key.Scalar() == "kind") return value.IsScalar() && value.Scalar() == kKindNetwork;
  }
  return false;
}

/// Parses every document; duplicates are not yet checked.
LoadResult ParseAllDocuments(std::string_view text, const std::string& filename) {
  LoadResult result;
  std::error_code ec;
  fs::path base_dir = fs::path(filename).parent_path();
  if (base_dir.empty()) base_dir = ".";
  fs::path abs = fs::absolute(base_dir, ec);
  if (!ec) base_dir = abs;

  YamlDocuments docs = ParseYamlDocuments(text);
  for (const YamlNode& doc : docs.roots) {
    DocParser parser(filename, base_dir, &result.diagnostics);
    if (IsNetworkDocument(doc)) {
      std::optional<NetworkSpecDoc> net = parser.ParseNetworkDocument(doc);
      if (net) result.networks.push_back({std::move(*net), parser.Loc(doc)});
      continue;
    }
    std::optional<SandboxSpec> spec = parser.Parse(doc);
    if (spec) result.specs.push_back({std::move(*spec), parser.Loc(doc), parser.field_locations()});
  }
  if (docs.error) {
    SourceLocation where{filename, 0, 0};
    if (docs.error->line >= 0) where = {filename, docs.error->line + 1, docs.error->column + 1};
    result.diagnostics.AddError(where, "invalid YAML: " + docs.error->message);
  }
  return result;
}

/// Reports sandbox names defined more than once and drops every copy: which
/// one the user meant is unknowable.
void RejectDuplicateNames(LoadResult& result) {
  std::map<std::string, SourceLocation> first;
  std::set<std::string> duplicated;
  for (const SpecDocument& doc : result.specs) {
    auto [it, inserted] = first.emplace(doc.spec.name, doc.location);
    if (!inserted) {
      result.diagnostics.AddError(doc.location, "sandbox " + Quote(doc.spec.name) +
                                                    " is defined twice (also at " +
                                                    FormatLocation(it->second) + ")");
      duplicated.insert(doc.spec.name);
    }
  }
  if (!duplicated.empty()) {
    std::erase_if(result.specs, [&](const SpecDocument& d) { return duplicated.count(d.spec.name) > 0; });
  }
  std::map<std::string, SourceLocation> first_net;
  std::set<std::string> duplicated_nets;
  for (const NetworkDocument& doc : result.networks) {
    auto [it, inserted] = first_net.emplace(doc.spec.name, doc.location);
    if (!inserted) {
      result.diagnostics.AddError(doc.location, "network " + Quote(doc.spec.name) + " is defined twice (also at " +
                                                    FormatLocation(it->second) + ")");
      duplicated_nets.insert(doc.spec.name);
    }
  }
  std::erase_if(result.networks, [&](const NetworkDocument& d) { return duplicated_nets.count(d.spec.name) > 0; });
}

}  // namespace

void NormalizeSpec(SandboxSpec& spec) {
  std::stable_sort(spec.network.ports.begin(), spec.network.ports.end(),
                   [](const PortMapping& a, const PortMapping& b) {
                     return std::tie(a.host, a.protocol, a.address, a.guest) <
                            std::tie(b.host, b.protocol, b.address, b.guest);
                   });
  std::stable_sort(spec.files.begin(), spec.files.end(),
                   [](const FileSpec& a, const FileSpec& b) { return a.path < b.path; });
  std::stable_sort(spec.volumes.begin(), spec.volumes.end(),
                   [](const VolumeSpec& a, const VolumeSpec& b) { return a.name < b.name; });
}

LoadResult ParseSpecText(std::string_view text, const std::string& filename) {
  LoadResult result;
  try {
    result = ParseAllDocuments(text, filename);
    RejectDuplicateNames(result);
  } catch (const std::exception& e) {
    result.specs.clear();
    result.diagnostics.AddError({filename, 0, 0}, std::string("internal error: ") + e.what());
  }
  return result;
}

LoadResult LoadSpecPaths(const std::vector<std::filesystem::path>& paths) {
  LoadResult result;
  std::vector<fs::path> files;
  for (const fs::path& p : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      result.diagnostics.AddError({p.string(), 0, 0}, "no such file or directory");
      continue;
    }
    if (fs::is_directory(st)) {
      Result<std::vector<fs::path>> listed = ListFilesRecursive(p, {".yaml", ".yml"});
      if (!listed.ok()) {
        result.diagnostics.AddError({p.string(), 0, 0}, listed.error().message());
        continue;
      }
      files.insert(files.end(), listed->begin(), listed->end());
    } else {
      files.push_back(p);
    }
  }
  // Files are parsed concurrently (parsing dominates a large no-op plan) and
  // merged in path order, so results and diagnostics are deterministic.
  std::vector<LoadResult> per_file(files.size());
  auto parse_one = [&](size_t i) {
    const fs::path& file = files[i];
    LoadResult& one = per_file[i];
    Result<std::string> text = ReadFile(file);
    if (!text.ok()) {
      one.diagnostics.AddError({file.string(), 0, 0}, text.error().message());
      return;
    }
    try {
      one = ParseAllDocuments(*text, file.string());
    } catch (const std::exception& e) {
      one = LoadResult{};
      one.diagnostics.AddError({file.string(), 0, 0}, std::string("internal error: ") + e.what());
    }
  };
  size_t workers = std::min<size_t>(files.size(), std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  if (workers <= 1) {
    for (size_t i = 0; i < files.size(); ++i) parse_one(i);
  } else {
    std::atomic<size_t> next{0};
    std::vector<std::thread> threads;
    for (size_t t = 0; t < workers; ++t) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < files.size(); i = next++) parse_one(i);
      });
    }
    for (auto& t : threads) t.join();
  }
  for (auto& one : per_file) {
    result.diagnostics.Append(one.diagnostics);
    for (auto& doc : one.specs) result.specs.push_back(std::move(doc));
    for (auto& doc : one.networks) result.networks.push_back(std::move(doc));
  }
  RejectDuplicateNames(result);
  return result;
}

}  // namespace banger
