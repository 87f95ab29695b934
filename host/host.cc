#include "host/host.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "host/vm_runtime.h"
#include "host/volume_files.h"
#include "network/host_driver.h"
#include "providers/confinement.h"
#include "images/catalog.h"
#include "kernels/catalog.h"
#include "kernels/oci_fetcher.h"
#include "oci/puller.h"
#include "workspace/workspace.h"

namespace banger::host {
namespace {

Result<images::ImageCatalog> LoadImageCatalog(const Config& config) {
  images::ImageCatalog catalog = images::BuiltinImageCatalog();
  if (!config.image_catalog_yaml.empty()) {
    BANGER_ASSIGN_OR_RETURN(auto user, images::ParseImageCatalog(config.image_catalog_yaml, config.path));
    catalog = images::MergeImageCatalogs(catalog, user);
  }
  return catalog;
}

Result<kernels::KernelCatalog> LoadKernelCatalog(const Config& config) {
  BANGER_ASSIGN_OR_RETURN(kernels::KernelCatalog catalog, kernels::BuiltinKernelCatalog());
  if (!config.kernel_catalog_yaml.empty()) {
    BANGER_ASSIGN_OR_RETURN(auto user, kernels::ParseKernelCatalog(config.kernel_catalog_yaml, config.path));
    catalog = kernels::MergeKernelCatalogs(catalog, user);
  }
  if (!config.default_kernel.empty()) catalog.default_name = config.default_kernel;
  return catalog;
}

// The engine's ArtifactStore port over the image and kernel services.
class ServiceArtifacts final : public ArtifactStore {
 public:
  ServiceArtifacts(images::ImageService& images, kernels::KernelService& kernels)
      : images_(images), kernels_(kernels) {}
  bool ImagePresent(const std::string& name) override { return images_.IsPresent(name); }
  bool KernelPresent(const std::string& name) override {
    auto k = kernels_.Find(name);
    return k.ok() && k->has_value();
  }
  Result<ImageRecord> EnsureImage(const std::string& name,
                                  const std::function<void(uint64_t, uint64_t)>& progress) override {
    return images_.Ensure(name, [progress](const oci::PullProgress& p) {
      if (progress) progress(p.done_bytes, p.total_bytes);
    });
  }
  Result<KernelRecord> EnsureKernel(const std::string& name,
                                    const std::function<void(uint64_t, uint64_t)>& progress) override {
    return kernels_.Ensure(name, progress);
  }
  std::string DefaultKernel() const override { return kernels_.catalog().default_name; }

 private:
  images::ImageService& images_;
  kernels::KernelService& kernels_;
};

std::string OctalMode(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", mode & 07777);
  return buf;
}

}  // namespace

Host::~Host() = default;

Result<std::unique_ptr<Host>> Host::Open(const HostOptions& options) {
  std::unique_ptr<Host> h(new Host());
  BANGER_ASSIGN_OR_RETURN(h->config_, LoadConfig(options.config_path));
  BANGER_ASSIGN_OR_RETURN(h->layout_, ResolveStateLayout(options.state_dir));
  BANGER_RETURN_IF_ERROR(EnsureLayout(h->layout_));
  BANGER_ASSIGN_OR_RETURN(h->store_, StateStore::Open(h->layout_.root));
  h->clock_ = MakeSystemClock();
  h->runner_ = MakePosixCommandRunner();

  images::ImageServiceOptions io;
  io.images_dir = h->layout_.images_dir;
  io.blobs_dir = h->layout_.blobs_dir;
  BANGER_ASSIGN_OR_RETURN(io.catalog, LoadImageCatalog(h->config_));
  if (const char* home = std::getenv("HOME"); home && *home) {
    io.docker_config = std::filesystem::path(home) / ".docker/config.json";
  }
  h->images_ = std::make_unique<images::ImageService>(*h->store_, *h->runner_, *h->clock_, std::move(io));

  BANGER_ASSIGN_OR_RETURN(auto kcat, LoadKernelCatalog(h->config_));
  kernels::KernelServiceOptions ko;
  oci::PullOptions po;
  po.blob_dir = h->layout_.blobs_dir;
  ko.oci_fetcher = kernels::MakeOciTreeFetcher(po);
  h->kernels_ = std::make_unique<kernels::KernelService>(*h->store_, *h->runner_, h->layout_.kernels_dir,
                                                         std::move(kcat), std::move(ko));

  h->artifacts_ = std::make_unique<ServiceArtifacts>(*h->images_, *h->kernels_);
  h->runtime_ = MakeVmRuntime(h->config_, h->layout_, *h->runner_, *h->clock_);
  h->network_ = network::MakeHostNetworkDriver(*h->runner_, h->config_.netns);
  h->volumes_ = MakeVolumeFiles(*h->runner_, VolumesDir(h->layout_));
  h->workspaces_ = std::make_unique<workspace::AgentWorkspaceShipper>(
      h->WorkspacesDir(), [](const SandboxRecord& rec) { return AgentEndpointOf(rec); });
  return h;
}

EngineOptions Host::DefaultEngineOptions(int parallel) const {
  EngineOptions o;
  o.parallel = parallel > 0 ? parallel : config_.parallel;
  o.locks_dir = LocksDir();
  o.network_driver = network_.get();
  o.volumes = volumes_.get();
  o.workspace_shipper = workspaces_.get();
  o.provider_for = ProviderFor();
  o.start_for = StartFor();
  return o;
}

std::function<Result<std::string>(HypervisorKind)> Host::ProviderFor() const {
  return [this](HypervisorKind kind) {
    std::call_once(provider_once_, [this] { provider_probe_ = ProbeProviders(runtime_.get(), config_, layout_); });
    return ResolveProvider(kind, provider_probe_);
  };
}

std::function<Result<std::string>(const SandboxSpec&)> Host::StartFor() const {
  return [this](const SandboxSpec& spec) -> Result<std::string> {
    if (runtime_ == nullptr) return std::string("boot");
    std::optional<ImageRecord> image;
    std::optional<KernelRecord> kernel;
    if (auto i = images_->Find(spec.image); i.ok()) image = std::move(*i);
    if (auto k = kernels_->Find(spec.kernel.empty() ? kernels_->catalog().default_name : spec.kernel); k.ok()) {
      kernel = std::move(*k);
    }
    return runtime_->DescribeStart(spec, image ? &*image : nullptr, kernel ? &*kernel : nullptr);
  };
}

Engine Host::MakeEngine(EventSink& sink, int parallel) {
  return Engine(*store_, runtime_.get(), *artifacts_, *clock_, sink, DefaultEngineOptions(parallel));
}

Result<SandboxRecord> Host::FindSandbox(const std::string& name) {
  auto r = store_->GetSandbox(name);
  if (!r && r.error().code() == StatusCode::kNotFound) {
    return NotFound("sandbox \"" + name + "\" not found");
  }
  return r;
}

Status Host::CheckStateDirectory() {
  const std::string dir = layout_.root.string();
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, dir);
  if (!S_ISDIR(st.st_mode)) return FailedPrecondition(dir + " is not a directory");
  if (st.st_uid != ::geteuid()) {
    return FailedPrecondition(dir + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                              std::to_string(::geteuid()) + " running banger");
  }
  // 0700; or 0710 when its group is the one of banger's confined QEMUs,
  // which search it to reach their own files (docs/qemu.md).
  const unsigned mode = st.st_mode & 07777;
  const bool qemu_group = st.st_gid == ConfineIds().shared_gid();
  if (mode != 0700 && !(mode == 0710 && qemu_group)) {
    return FailedPrecondition(dir + " has mode " + OctalMode(st.st_mode) + ", expected 0700" +
                              (qemu_group ? " or 0710" : ""));
  }
  // The database is the owner's alone; nothing below the root is writable
  // by others.
  for (const char* db : {"state.db", "state.db-wal", "state.db-shm"}) {
    const std::string p = (layout_.root / db).string();
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & 07777) != 0600) {
      return FailedPrecondition(p + " has mode " + OctalMode(st.st_mode) + ", expected 0600");
    }
  }
  std::vector<std::string> open_to_others;
  size_t seen = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           layout_.root, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator() && seen < 20000; it.increment(ec), ++seen) {
    if (it.depth() >= 2) it.disable_recursion_pending();  // root/a/b/c at most
    if (::lstat(it->path().c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
    // The root's mode keeps other users out; the confined QEMUs' group may
    // search some directories and read the shared artifacts, and see the
    // rest of the tree as "others": nothing may be writable by others.
    const bool bad = (st.st_mode & 0002) != 0;
    if (bad && open_to_others.size() < 3) {
      open_to_others.push_back(it->path().string() + " (" + OctalMode(st.st_mode) + ")");
    }
  }
  if (!open_to_others.empty()) {
    std::string list;
    for (const auto& p : open_to_others) list += (list.empty() ? "" : ", ") + p;
    return FailedPrecondition("writable by other users: " + list);
  }
  auto rows = store_->ListSandboxes();
  if (!rows) return rows.error().WithContext("reading " + layout_.db_path.string());
  return OkStatus();
}

}  // namespace banger::host
