#include "kernels/kernel_service.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <set>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/disk_space.h"
#include "base/failpoint.h"
#include "base/file_lock.h"
#include "base/files.h"
#include "base/strings.h"
#include "kernels/host_kernel.h"
#include "kernels/vmlinux.h"

namespace banger::kernels {

namespace fs = std::filesystem;

namespace {

bool StartsWithDigit(const std::string& s) { return !s.empty() && s[0] >= '0' && s[0] <= '9'; }

// An id is used as a directory name below kernels_dir; never trust one that
// could point elsewhere.
bool IsSafeId(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos &&
         id.find('\0') == std::string::npos;
}

// Removes `name` from `v` when it goes out of scope.
class ActiveStaging {
 public:
  ActiveStaging(std::mutex& mu, std::vector<std::string>& v, std::string name)
      : mu_(mu), v_(v), name_(std::move(name)) {
    std::lock_guard lock(mu_);
    v_.push_back(name_);
  }
  ~ActiveStaging() {
    std::lock_guard lock(mu_);
    std::erase(v_, name_);
  }
  ActiveStaging(const ActiveStaging&) = delete;
  ActiveStaging& operator=(const ActiveStaging&) = delete;

 private:
  std::mutex& mu_;
  std::vector<std::string>& v_;
  std::string name_;
};

}  // namespace

KernelService::KernelService(StateStore& store, CommandRunner& runner, fs::path kernels_dir,
                             KernelCatalog catalog, KernelServiceOptions options)
    : store_(store),
      runner_(runner),
      kernels_dir_(std::move(kernels_dir)),
      catalog_(std::move(catalog)),
      options_(std::move(options)) {
  if (options_.clock == nullptr) {
    own_clock_ = MakeSystemClock();
    options_.clock = own_clock_.get();
  }
}

KernelService::~KernelService() = default;

int64_t KernelService::NowUnix() const { return options_.clock->NowUnix(); }

std::string KernelService::NewId(const std::string& name) {
  std::random_device rd;
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", static_cast<unsigned>(rd()));
  return name + "-" + buf;
}

Result<KernelRecord> KernelService::Import(const ImportKernelRequest& request,
                                           const KernelProgressFn& progress) {
  if (request.kernel.empty()) return InvalidArgument("import kernel \"" + request.name + "\": no kernel file given");
  std::error_code ec;
  fs::path kernel = fs::absolute(request.kernel, ec);
  if (!fs::is_regular_file(kernel, ec)) {
    return NotFound("import kernel \"" + request.name + "\": " + request.kernel.string() +
                    " is not a file");
  }
  for (const fs::path& p : {request.initrd, request.system_map, request.config}) {
    if (!p.empty() && !fs::is_regular_file(p, ec)) {
      return NotFound("import kernel \"" + request.name + "\": " + p.string() + " is not a file");
    }
  }
  if (!request.modules_dir.empty() && !fs::is_directory(request.modules_dir, ec)) {
    return NotFound("import kernel \"" + request.name + "\": " + request.modules_dir.string() +
                    " is not a directory");
  }
  std::string source = request.source.empty() ? "import:" + kernel.string() : request.source;
  auto published = Publish(
      request.name, source,
      [&](const fs::path&) -> Result<KernelFiles> {
        KernelFiles f;
        f.bzimage = kernel;
        f.modules_dir = request.modules_dir;
        f.initrd = request.initrd;
        f.system_map = request.system_map;
        f.config = request.config;
        return f;
      },
      progress);
  if (!published) return NoSpaceError(published.error(), kernels_dir_, "importing kernel " + request.name);
  return published;
}

Result<KernelRecord> KernelService::Pull(const std::string& catalog_name,
                                         const KernelProgressFn& progress) {
  BANGER_ASSIGN_OR_RETURN(KernelCatalogEntry entry, catalog_.Lookup(catalog_name));
  spdlog::info("pulling kernel {} from {}", entry.name, DescribeSource(entry.source));
  auto r = Publish(
      entry.name, DescribeSource(entry.source),
      [&](const fs::path& work) { return FetchFromCatalog(entry, work, progress); }, progress);
  if (!r.ok()) {
    // The staging directory is gone already (ScopedRemove in Publish).
    return NoSpaceError(r.status(), kernels_dir_, "pulling kernel " + entry.name).WithContext("pull kernel " + entry.name);
  }
  return r;
}

Result<KernelFiles> KernelService::FetchFromCatalog(const KernelCatalogEntry& entry,
                                                    const fs::path& work,
                                                    const KernelProgressFn& progress) {
  if (const auto* host = std::get_if<HostSource>(&entry.source)) {
    BANGER_ASSIGN_OR_RETURN(HostKernel hk, FindHostKernel(options_.host_boot_dir,
                                                          options_.host_modules_root, host->version));
    KernelFiles f;
    f.bzimage = hk.kernel;
    f.modules_dir = hk.modules_dir;
    f.system_map = hk.system_map;
    f.config = hk.config;
    return f;
  }
  if (const auto* oci = std::get_if<OciSource>(&entry.source)) {
    if (!options_.oci_fetcher) {
      return FailedPrecondition("kernel \"" + entry.name + "\" comes from OCI image " +
                                oci->reference + " but no OCI puller is configured");
    }
    fs::path tree = work / "tree";
    BANGER_RETURN_IF_ERROR(MakeDirs(tree, 0700));
    BANGER_RETURN_IF_ERROR(options_.oci_fetcher(oci->reference, tree, progress));
    auto files = LocateKernelFiles(tree);
    if (!files.ok()) return files.status().WithContext("OCI image " + oci->reference);
    return files;
  }
  const auto& url = std::get<UrlSource>(entry.source);
  fs::path download = work / "download";
  BANGER_ASSIGN_OR_RETURN(std::string sha, DownloadFile(url.url, download, progress));
  if (sha != url.sha256) {
    return DataLoss("sha256 mismatch for " + url.url + ": catalog entry " + entry.defined_at +
                    " expects " + url.sha256 + ", downloaded file has " + sha);
  }
  BANGER_ASSIGN_OR_RETURN(bool is_elf, IsElfFile(download));
  if (is_elf || ReadBzImageInfo(download).ok()) {
    KernelFiles f;
    f.bzimage = download;
    return f;
  }
  fs::path tree = work / "tree";
  BANGER_RETURN_IF_ERROR(MakeDirs(tree, 0700));
  Status st = ExtractTarball(download, tree);
  if (!st.ok()) {
    return InvalidArgument(url.url + " is neither a kernel nor a usable kernel tarball: " +
                           st.message());
  }
  BANGER_RETURN_IF_ERROR(RemoveAll(download));
  auto files = LocateKernelFiles(tree);
  if (!files.ok()) return files.status().WithContext(url.url);
  return files;
}

Result<KernelRecord> KernelService::Publish(
    const std::string& name, const std::string& source,
    const std::function<Result<KernelFiles>(const fs::path& work)>& fetch,
    const KernelProgressFn& progress) {
  if (!IsValidKernelName(name)) {
    return InvalidArgument("invalid kernel name \"" + name +
                           "\": use [a-z0-9][a-z0-9._-]* (at most 128 characters), not \"" +
                           kDefaultKernelAlias + "\"");
  }
  auto existing = store_.GetKernel(name);
  if (existing.ok()) {
    return AlreadyExists("kernel \"" + name + "\" already exists (from " + existing->source + ")");
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();

  BANGER_RETURN_IF_ERROR(MakePrivateDir(kernels_dir_));
  // What an interrupted publish (a crash, a kill -9) left behind goes before
  // the next one starts; publishes in progress hold their locks.
  if (auto swept = RemoveStaleStaging(); !swept.ok()) spdlog::warn("kernels: {}", swept.status().ToString());
  const std::string id = NewId(name);
  const std::string staging_name = id + ".staging";
  const fs::path staging = kernels_dir_ / staging_name;
  // Held from before the staging dir exists until the record is inserted (or
  // everything is removed): RemoveStaleStaging leaves a locked id alone.
  BANGER_ASSIGN_OR_RETURN(FileLock publish_lock, FileLock::TryAcquire(kernels_dir_ / (id + ".lock"), "kernel publish"));
  struct UnlinkLock {
    FileLock& l;
    ~UnlinkLock() { l.UnlinkAndRelease(); }
  } unlink_lock{publish_lock};
  if (::mkdir(staging.c_str(), 0700) != 0) return ErrnoStatus(errno, "create " + staging.string());
  ActiveStaging active(mu_, active_staging_, staging_name);
  ScopedRemove staging_guard(staging);
  const fs::path work = staging / ".work";
  BANGER_RETURN_IF_ERROR(MakeDirs(work, 0700));

  BANGER_ASSIGN_OR_RETURN(KernelFiles files, fetch(work));
  BANGER_FAILPOINT("kernel.pull.after_fetch");
  if (!files.bzimage.empty()) {
    BANGER_ASSIGN_OR_RETURN(bool is_elf, IsElfFile(files.bzimage));
    if (is_elf) {
      if (files.vmlinux.empty()) files.vmlinux = files.bzimage;
      files.bzimage.clear();
    }
  }
  if (files.bzimage.empty() && files.vmlinux.empty()) {
    return InvalidArgument("kernel \"" + name + "\": no kernel file found");
  }

  // The kernel itself.
  std::string kernel_version;
  fs::path vmlinux_src = files.vmlinux;
  if (!files.bzimage.empty()) {
    BANGER_ASSIGN_OR_RETURN(BzImageInfo info, ReadBzImageInfo(files.bzimage));
    kernel_version = info.version;
    BANGER_RETURN_IF_ERROR(CopyRegularFile(files.bzimage, staging / "bzImage"));
    if (vmlinux_src.empty()) vmlinux_src = staging / "bzImage";
  }
  if (progress) progress(0, 0);
  BANGER_RETURN_IF_ERROR(ExtractVmlinux(vmlinux_src, staging / "vmlinux"));
  BANGER_ASSIGN_OR_RETURN(bool pvh, HasPvhEntry(staging / "vmlinux"));
  if (kernel_version.empty()) {
    auto v = ElfKernelVersion(staging / "vmlinux");
    if (v.ok()) kernel_version = *v;
  }

  // Modules.
  std::string version = kernel_version;
  if (!files.modules_dir.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(files.modules_dir / "modules.dep", ec)) {
      return InvalidArgument("kernel \"" + name + "\": " + files.modules_dir.string() +
                             " is not a modules directory (no modules.dep; run depmod)");
    }
    std::string modules_version = fs::canonical(files.modules_dir, ec).filename().string();
    if (!StartsWithDigit(modules_version)) modules_version.clear();
    if (!modules_version.empty() && !kernel_version.empty() && modules_version != kernel_version) {
      return InvalidArgument("kernel \"" + name + "\": modules " + files.modules_dir.string() +
                             " are for release " + modules_version + " but the kernel is " +
                             kernel_version);
    }
    if (version.empty()) version = modules_version;
    BANGER_ASSIGN_OR_RETURN(uint64_t copied, LinkOrCopyTree(files.modules_dir, staging / "modules"));
    spdlog::debug("kernel {}: modules from {} ({} files copied, the rest hard-linked)", name,
                  files.modules_dir.string(), copied);
  }
  if (!files.initrd.empty()) BANGER_RETURN_IF_ERROR(CopyRegularFile(files.initrd, staging / "initrd.img"));
  if (!files.system_map.empty()) {
    BANGER_RETURN_IF_ERROR(CopyRegularFile(files.system_map, staging / "System.map"));
  }
  if (!files.config.empty()) BANGER_RETURN_IF_ERROR(CopyRegularFile(files.config, staging / "config"));
  BANGER_RETURN_IF_ERROR(RemoveAll(work));

  const fs::path final_dir = kernels_dir_ / id;
  KernelRecord rec;
  rec.name = name;
  rec.id = id;
  rec.source = source;
  rec.kernel_path = (final_dir / (files.bzimage.empty() ? "vmlinux" : "bzImage")).string();
  rec.vmlinux_path = (final_dir / "vmlinux").string();
  if (!files.initrd.empty()) rec.initrd_path = (final_dir / "initrd.img").string();
  if (!files.modules_dir.empty()) rec.modules_dir = (final_dir / "modules").string();
  rec.version = version;
  rec.created_at = NowUnix();

  nlohmann::json meta = {{"name", rec.name},       {"id", rec.id},
                         {"source", rec.source},   {"version", rec.version},
                         {"pvh", pvh},             {"created_at", rec.created_at},
                         {"has_bzimage", !files.bzimage.empty()},
                         {"has_modules", !files.modules_dir.empty()}};
  BANGER_RETURN_IF_ERROR(WriteFileAtomic(staging / "kernel.json", meta.dump(2) + "\n", 0644));

  if (options_.before_publish) options_.before_publish(name);
  // Cheap re-check so a loser of a race does not even rename.
  if (store_.GetKernel(name).ok()) return AlreadyExists("kernel \"" + name + "\" already exists");
  BANGER_FAILPOINT("kernel.publish.before_rename");
  if (::rename(staging.c_str(), final_dir.c_str()) != 0) {
    return ErrnoStatus(errno, "publish " + staging.string() + " as " + final_dir.string());
  }
  staging_guard.Release();
  ScopedRemove final_guard(final_dir);
  BANGER_FAILPOINT("kernel.publish.after_rename");
  Status st = store_.InsertKernel(rec);
  if (!st.ok()) {
    if (st.code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("kernel \"" + name + "\" already exists (published concurrently)");
    }
    return st.WithContext("record kernel " + name);
  }
  final_guard.Release();
  spdlog::info("kernel {} published: release {}, {}{}", name, version.empty() ? "?" : version,
               final_dir.string(), pvh ? "" : " (vmlinux has no PVH note: QEMU boots the bzImage)");
  return rec;
}

Result<KernelRecord> KernelService::Ensure(const std::string& name, const KernelProgressFn& progress) {
  const std::string resolved = catalog_.ResolveName(name);
  if (resolved.empty()) {
    return NotFound("no default kernel is configured (set `default:` in the kernel catalog)");
  }
  BANGER_ASSIGN_OR_RETURN(auto found, Find(resolved));
  if (found) return *found;

  std::promise<Result<KernelRecord>> promise;
  {
    std::unique_lock lock(mu_);
    auto it = inflight_.find(resolved);
    if (it != inflight_.end()) {
      auto fut = it->second;
      lock.unlock();
      return fut.get();
    }
    inflight_.emplace(resolved, promise.get_future().share());
  }
  auto r = Pull(resolved, progress);
  if (!r.ok() && r.status().code() == StatusCode::kAlreadyExists) {
    auto g = store_.GetKernel(resolved);  // another process published it first
    if (g.ok()) r = *g;
  }
  promise.set_value(r);
  std::lock_guard lock(mu_);
  inflight_.erase(resolved);
  return r;
}

Result<std::optional<KernelRecord>> KernelService::Find(const std::string& name) {
  const std::string resolved = catalog_.ResolveName(name);
  if (resolved.empty()) return std::optional<KernelRecord>();
  auto r = store_.GetKernel(resolved);
  if (r.ok()) return std::optional<KernelRecord>(*std::move(r));
  if (r.status().code() == StatusCode::kNotFound) return std::optional<KernelRecord>();
  return r.status();
}

Result<std::vector<KernelRecord>> KernelService::List() { return store_.ListKernels(); }

Status KernelService::Remove(const std::string& name) {
  if (!IsValidKernelName(name)) {
    return InvalidArgument("invalid kernel name \"" + name + "\" (name the kernel itself, not an alias)");
  }
  BANGER_ASSIGN_OR_RETURN(KernelRecord rec, store_.GetKernel(name));
  BANGER_ASSIGN_OR_RETURN(std::vector<SandboxRecord> sandboxes, store_.ListSandboxes());
  std::vector<std::string> users;
  for (const SandboxRecord& s : sandboxes) {
    if (s.kernel_ref == rec.name || s.kernel_ref == rec.id) users.push_back(s.name);
  }
  if (!users.empty()) {
    return FailedPrecondition("kernel \"" + name + "\" is used by sandbox" +
                              (users.size() > 1 ? "es " : " ") + Join(users, ", ") +
                              "; delete them or change their kernel first");
  }
  BANGER_RETURN_IF_ERROR(store_.DeleteKernel(name));
  if (IsSafeId(rec.id)) BANGER_RETURN_IF_ERROR(RemoveAll(kernels_dir_ / rec.id));
  spdlog::info("kernel {} removed", name);
  return OkStatus();
}

Result<int> KernelService::RemoveStaleStaging() {
  std::error_code ec;
  if (!fs::exists(kernels_dir_, ec)) return 0;
  auto recorded = [this]() -> Result<std::set<std::string>> {
    BANGER_ASSIGN_OR_RETURN(std::vector<KernelRecord> rows, store_.ListKernels());
    std::set<std::string> ids;
    for (const auto& r : rows) ids.insert(r.id);
    return ids;
  };
  BANGER_ASSIGN_OR_RETURN(std::set<std::string> ids, recorded());
  // Ids with something an interrupted publish may have left: ID.staging,
  // ID.lock, or a directory ID that no record names.
  std::set<std::string> candidates;
  {
    std::lock_guard lock(mu_);
    for (fs::directory_iterator it(kernels_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      std::string n = it->path().filename().string();
      std::string id;
      if (EndsWith(n, ".staging")) {
        id = n.substr(0, n.size() - 8);
        if (std::find(active_staging_.begin(), active_staging_.end(), n) != active_staging_.end()) continue;
      } else if (EndsWith(n, ".lock")) {
        id = n.substr(0, n.size() - 5);
      } else if (it->is_directory(ec) && !ids.count(n)) {
        id = n;
      }
      if (IsSafeId(id)) candidates.insert(id);
    }
  }
  if (ec) return ErrnoStatus(ec.value(), "read directory " + kernels_dir_.string());
  int removed = 0;
  for (const std::string& id : candidates) {
    auto lock = FileLock::TryAcquire(kernels_dir_ / (id + ".lock"), "kernel cleanup");
    if (!lock) continue;  // a publish of this id is running
    // The publisher holds its lock until the record is inserted: re-read the
    // records now that nobody holds it.
    BANGER_ASSIGN_OR_RETURN(std::set<std::string> now, recorded());
    for (const fs::path& p : {kernels_dir_ / (id + ".staging"), kernels_dir_ / id}) {
      if (p == kernels_dir_ / id && now.count(id)) continue;
      if (!fs::exists(fs::symlink_status(p, ec))) continue;
      BANGER_RETURN_IF_ERROR(RemoveAll(p));
      spdlog::info("kernels: removed {} (left by an interrupted publish)", p.string());
      ++removed;
    }
    lock->UnlinkAndRelease();
  }
  return removed;
}

}  // namespace banger::kernels
