#include "host/templates.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <tuple>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/failpoint.h"
#include "base/file_lock.h"
#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "providers/qemu_hypervisor.h"

namespace banger::host {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kMeta[] = "meta.json";

json IdentityObject(const TemplateIdentity& i) {
  return json{{"provider", i.provider},   {"imageDigest", i.image_digest}, {"imageDisk", i.image_disk},
              {"kernelSha256", i.kernel_sha256}, {"initramfs", i.initramfs}, {"cpus", i.cpus},
              {"memoryBytes", i.memory_bytes}, {"diskBytes", i.disk_bytes}, {"machine", i.machine},
              {"network", i.network}, {"devices", i.devices}, {"vmm", i.vmm}};
}

// `n` lowercase hex digits: a full hash (64) or its short form (12).
bool IsHex(const std::string& s, size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}
bool IsHexHash(const std::string& s) { return IsHex(s, 64); }

uint64_t SizeOf(const fs::path& p) {
  std::error_code ec;
  if (p.empty()) return 0;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// Which published template each sandbox runtime dir is layered on.
std::vector<std::pair<std::string, std::string>> Users(const StateLayout& layout) {
  std::vector<std::pair<std::string, std::string>> out;  // (hash, sandbox id)
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(layout.sandboxes_dir, ec)) {
    std::string h = TemplateOfRuntimeDir(e.path());
    if (!h.empty()) out.push_back({h, e.path().filename().string()});
  }
  return out;
}

constexpr std::string_view kBuildPrefix = "tpl-";          // + hash12: a build VM's runtime dir
constexpr std::string_view kStagingPrefix = ".staging-";   // + hash12 + "-" + pid: a build's staging dir

Result<fs::path> BuildLockPath(const StateLayout& layout, const std::string& hash12) {
  const fs::path locks = layout.run_dir / "locks";
  BANGER_RETURN_IF_ERROR(MakeDirs(locks, 0700));
  return locks / ("template-" + hash12 + ".lock");
}

std::string StagingPrefix(const std::string& hash12) { return std::string(kStagingPrefix) + hash12 + "-"; }

Result<TemplateInfo> Load(const fs::path& dir, const std::vector<std::pair<std::string, std::string>>& users) {
  BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(dir / kMeta));
  TemplateInfo t;
  t.hash = dir.filename().string();
  t.dir = dir;
  try {
    json m = json::parse(text);
    const json& id = m.at("identity");
    t.identity_json = id.dump();
    t.image_digest = id.value("imageDigest", "");
    t.kernel_sha256 = id.value("kernelSha256", "");
    t.cpus = id.value("cpus", 0u);
    t.memory_bytes = id.value("memoryBytes", uint64_t{0});
    t.created_at = m.value("createdAt", int64_t{0});
    t.build_ms = m.value("buildMs", uint64_t{0});
    const json& f = m.at("files");
    auto at = [&](const char* key) -> fs::path {
      std::string name = f.value(key, "");
      if (name.empty()) return {};
      if (name.find('/') != std::string::npos || name == "." || name == "..") {
        throw std::runtime_error(std::string("bad file name for ") + key);
      }
      return dir / name;
    };
    t.files.state_file = at("state");
    t.files.memory_file = at("memory");
    t.files.disk_layer = at("disk");
    t.files.kernel_path = at("kernel");
    t.files.initrd_path = at("initrd");
  } catch (const std::exception& e) {
    return DataLoss((dir / kMeta).string() + ": " + e.what());
  }
  t.state_bytes = SizeOf(t.files.state_file) + SizeOf(t.files.memory_file);
  t.disk_layer_bytes = SizeOf(t.files.disk_layer);
  for (const auto& [h, id] : users) {
    if (h == t.hash) t.used_by.push_back(id);
  }
  return t;
}

std::string RelName(const fs::path& p, const fs::path& staging) {
  if (p.empty()) return "";
  return p.lexically_relative(staging).string();
}

}  // namespace

std::string TemplateBuildId(const std::string& hash) { return std::string(kBuildPrefix) + ShortHash(hash); }

std::string TemplateOfRuntimeDir(const fs::path& runtime_dir) {
  std::error_code ec;
  const fs::path disk = RuntimeFilesFor(runtime_dir).disk;
  if (!fs::exists(disk, ec)) return "";
  auto backing = Qcow2BackingFile(disk);
  if (!backing || backing->empty()) return "";
  // <state>/templates/<hash>/<disk layer>
  const fs::path dir = fs::path(*backing).parent_path();
  const std::string hash = dir.filename().string();
  if (!IsHexHash(hash) || dir.parent_path().filename() != "templates") return "";
  return hash;
}

Status CleanUpAbandonedTemplateBuilds(const StateLayout& layout,
                                      const std::function<Status(const fs::path&)>& stop_vm) {
  Status first;
  auto note = [&](const Status& s, const std::string& what) {
    if (s.ok()) return;
    spdlog::warn("cleaning up an interrupted template build: {}: {}", what, s.message());
    if (first.ok()) first = s.WithContext(what);
  };
  // (hash12, path, is a build VM's runtime dir)
  std::vector<std::tuple<std::string, fs::path, bool>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(layout.sandboxes_dir, ec)) {
    std::string n = e.path().filename().string();
    std::string hash12 = n.substr(std::min(n.size(), kBuildPrefix.size()));
    if (StartsWith(n, kBuildPrefix) && IsHex(hash12, 12)) found.emplace_back(hash12, e.path(), true);
  }
  for (const auto& e : fs::directory_iterator(TemplatesDir(layout), ec)) {
    std::string n = e.path().filename().string();
    std::string hash12 = n.substr(std::min(n.size(), kStagingPrefix.size()), 12);
    const std::string prefix = StagingPrefix(hash12);  // then the builder's pid
    if (IsHex(hash12, 12) && n.size() > prefix.size() && StartsWith(n, prefix)) {
      found.emplace_back(hash12, e.path(), false);
    } else if (StartsWith(n, ".removing-")) {
      // A removal interrupted after its rename: nobody uses it any more.
      note(RemoveAll(e.path()), "removing " + e.path().string());
    }
  }
  for (const auto& [hash12, path, is_vm] : found) {
    auto lock_path = BuildLockPath(layout, hash12);
    if (!lock_path) {
      note(lock_path.error(), "template " + hash12);
      continue;
    }
    auto lock = FileLock::TryAcquire(*lock_path, "clean up template build");
    if (!lock) continue;  // being built right now
    if (is_vm) {
      spdlog::warn("template {}: removing the build VM an interrupted banger left in {}", hash12, path.string());
      Status s = stop_vm(path);
      note(s, "stopping the build VM in " + path.string());
      if (!s.ok()) continue;
    }
    note(RemoveAll(path), "removing " + path.string());
  }
  return first;
}

std::string TemplateIdentity::Json() const { return IdentityObject(*this).dump(); }
std::string TemplateIdentity::Hash() const { return Sha256Hex(Json()); }

fs::path TemplatesDir(const StateLayout& layout) { return layout.root / "templates"; }

Result<std::vector<TemplateInfo>> ListTemplates(const StateLayout& layout) {
  std::vector<TemplateInfo> out;
  auto users = Users(layout);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(TemplatesDir(layout), ec)) {
    if (!IsHexHash(e.path().filename().string())) continue;  // staging and build dirs
    auto t = Load(e.path(), users);
    if (!t) {
      spdlog::warn("skipping template {}: {}", e.path().string(), t.error().message());
      continue;
    }
    out.push_back(std::move(*t));
  }
  std::sort(out.begin(), out.end(), [](const TemplateInfo& a, const TemplateInfo& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at : a.hash < b.hash;
  });
  return out;
}

Result<std::optional<TemplateInfo>> FindTemplate(const StateLayout& layout, const std::string& hash) {
  if (!IsHexHash(hash)) return InvalidArgument("not a template hash: '" + hash + "'");
  fs::path dir = TemplatesDir(layout) / hash;
  std::error_code ec;
  if (!fs::exists(dir / kMeta, ec)) return std::optional<TemplateInfo>();
  BANGER_ASSIGN_OR_RETURN(TemplateInfo t, Load(dir, Users(layout)));
  return std::optional<TemplateInfo>(std::move(t));
}

Result<TemplateInfo> ResolveTemplate(const StateLayout& layout, const std::string& prefix) {
  if (prefix.size() < 4 || prefix.size() > 64 || prefix.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return InvalidArgument("template id '" + prefix + "': expected at least 4 hex digits of its hash (banger snapshot ls)");
  }
  BANGER_ASSIGN_OR_RETURN(auto all, ListTemplates(layout));
  std::vector<TemplateInfo> hits;
  for (auto& t : all) {
    if (StartsWith(t.hash, prefix)) hits.push_back(std::move(t));
  }
  if (hits.empty()) return NotFound("no template " + prefix);
  if (hits.size() > 1) return InvalidArgument("template id " + prefix + " is ambiguous; give more digits");
  return std::move(hits.front());
}

Result<TemplateInfo> EnsureTemplate(const StateLayout& layout, Clock& clock, const TemplateIdentity& identity,
                                    const TemplateBuilder& build) {
  const std::string hash = identity.Hash();
  const fs::path root = TemplatesDir(layout);
  const fs::path dir = root / hash;
  BANGER_ASSIGN_OR_RETURN(auto found, FindTemplate(layout, hash));
  if (found) return std::move(*found);
  BANGER_RETURN_IF_ERROR(MakeDirs(root, 0700));
  BANGER_ASSIGN_OR_RETURN(fs::path lock_path, BuildLockPath(layout, ShortHash(hash)));
  // One builder per identity; the others wait (a build is a cold boot plus a
  // save: well under the bound even on a slow TCG host).
  auto lock = FileLock::Acquire(lock_path, "build template", clock, clock.SteadyNow() + std::chrono::minutes(10));
  if (!lock) return lock.error().WithContext("waiting for template " + ShortHash(hash));
  BANGER_ASSIGN_OR_RETURN(found, FindTemplate(layout, hash));
  if (found) return std::move(*found);  // built by the process we waited for
  // Staging dirs of this identity left by an interrupted build (we hold its lock).
  std::error_code ec;
  const std::string stale_prefix = StagingPrefix(ShortHash(hash));
  for (const auto& e : fs::directory_iterator(root, ec)) {
    if (StartsWith(e.path().filename().string(), stale_prefix)) BANGER_RETURN_IF_ERROR(RemoveAll(e.path()));
  }
  const fs::path staging = root / (stale_prefix + std::to_string(::getpid()));
  BANGER_RETURN_IF_ERROR(MakeDirs(staging, 0700));
  auto fail = [&](const Status& s) {
    (void)RemoveAll(staging);
    return s.WithContext("building template " + ShortHash(hash));
  };
  const auto started = clock.SteadyNow();
  auto files = build(staging);
  if (!files) return fail(files.error());
  const auto build_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock.SteadyNow() - started).count();
  json meta = {{"identity", IdentityObject(identity)},
               {"createdAt", clock.NowUnix()},
               {"buildMs", build_ms},
               {"files",
                {{"state", RelName(files->state_file, staging)},
                 {"memory", RelName(files->memory_file, staging)},
                 {"disk", RelName(files->disk_layer, staging)},
                 {"kernel", RelName(files->kernel_path, staging)},
                 {"initrd", RelName(files->initrd_path, staging)}}}};
  if (Status s = WriteFileAtomic(staging / kMeta, meta.dump(2) + "\n", 0600); !s.ok()) return fail(s);
  if (Status s = failpoint::Hit("template.publish.before_rename"); !s.ok()) return fail(s);
  if (::rename(staging.c_str(), dir.c_str()) != 0) return fail(ErrnoStatus(errno, "publish " + dir.string()));
  spdlog::info("template {} published ({} ms to build)", ShortHash(hash), build_ms);
  BANGER_ASSIGN_OR_RETURN(found, FindTemplate(layout, hash));
  if (!found) return Internal("template " + hash + " vanished after publishing");
  return std::move(*found);
}

Status RemoveTemplate(const StateLayout& layout, const TemplateInfo& t) {
  // Re-read who uses it now, not when it was listed.
  BANGER_ASSIGN_OR_RETURN(auto now, FindTemplate(layout, t.hash));
  if (!now) return OkStatus();
  if (!now->used_by.empty()) {
    return FailedPrecondition("template " + ShortHash(t.hash) + " is the disk layer of sandbox(es) " +
                              Join(now->used_by, ", ") + "; delete them first");
  }
  // Renamed away first, so nobody starts from a half-removed template.
  fs::path gone = TemplatesDir(layout) / (".removing-" + t.hash);
  if (::rename(t.dir.c_str(), gone.c_str()) != 0) return ErrnoStatus(errno, "remove " + t.dir.string());
  return RemoveAll(gone);
}

}  // namespace banger::host
