// KernelService: the local store of kernels. Imports a kernel from files,
// pulls one named in the catalog (host, OCI or URL source), and publishes it
// atomically under kernels_dir/<id>/ with a row in the StateStore:
//
//   kernels_dir/<id>/bzImage      the compressed kernel (absent for ELF-only sources)
//                    vmlinux      uncompressed ELF (Firecracker; QEMU boots it ~2x faster)
//                    modules/     the kernel's /lib/modules/<release> tree (hard links when possible)
//                    initrd.img   only when the source has one
//                    System.map, config   when the source has them
//                    kernel.json  what was published (name, source, release, PVH note)
//
// Thread safety: all methods may be called concurrently. No lock is held while
// a kernel is fetched or extracted; two publishes of one name race to the
// StateStore insert and exactly one wins (the loser removes its files and gets
// AlreadyExists). Ensure() of one name is deduplicated within the process.
#pragma once

#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/status.h"
#include "kernels/catalog.h"
#include "kernels/kernel_files.h"
#include "state/state_store.h"

namespace banger::kernels {

struct ImportKernelRequest {
  std::string name;
  std::filesystem::path kernel;       // bzImage or ELF vmlinux (required)
  std::filesystem::path modules_dir;  // lib/modules/<release> (optional)
  std::filesystem::path initrd;       // optional
  std::filesystem::path system_map;   // optional
  std::filesystem::path config;       // optional
  std::string source;                 // recorded as KernelRecord::source; default "import:<kernel>"
};

/// Fetches the flattened root tree of an OCI image into `dest` (an existing,
/// empty directory). Production code passes MakeOciTreeFetcher (oci_fetcher.h).
using OciTreeFetcher = std::function<Status(const std::string& reference,
                                            const std::filesystem::path& dest,
                                            const KernelProgressFn& progress)>;

struct KernelServiceOptions {
  std::filesystem::path host_boot_dir = "/boot";
  std::filesystem::path host_modules_root = "/lib/modules";
  OciTreeFetcher oci_fetcher;     // empty: oci sources fail with FailedPrecondition
  const Clock* clock = nullptr;   // null: the system clock
  /// Test hook: runs after a kernel is fully staged, before it is published.
  std::function<void(const std::string& name)> before_publish;
};

class KernelService {
 public:
  KernelService(StateStore& store, CommandRunner& runner, std::filesystem::path kernels_dir,
                KernelCatalog catalog, KernelServiceOptions options = {});
  ~KernelService();
  KernelService(const KernelService&) = delete;
  KernelService& operator=(const KernelService&) = delete;

  /// Publishes a kernel from local files under `request.name`.
  /// AlreadyExists if the name is taken; InvalidArgument for a bad name, a
  /// file that is not a kernel, or modules of another release.
  Result<KernelRecord> Import(const ImportKernelRequest& request,
                              const KernelProgressFn& progress = {});

  /// Fetches the catalog entry `catalog_name` ("default" allowed) and
  /// publishes it under the entry's name. AlreadyExists if present.
  Result<KernelRecord> Pull(const std::string& catalog_name, const KernelProgressFn& progress = {});

  /// The kernel named `name` ("default" or "" for the catalog's default),
  /// pulling it from the catalog first when absent. Concurrent calls for one
  /// name share one pull. Used by the reconciler for auto-pull.
  Result<KernelRecord> Ensure(const std::string& name, const KernelProgressFn& progress = {});

  /// The record for `name` ("default" resolves), or nullopt. Cheap.
  Result<std::optional<KernelRecord>> Find(const std::string& name);
  Result<std::vector<KernelRecord>> List();

  /// Deletes the kernel's record and files. FailedPrecondition naming the
  /// sandboxes whose kernel_ref is this kernel; NotFound if absent.
  Status Remove(const std::string& name);

  /// Removes leftover kernels_dir/*.staging directories of interrupted
  /// publishes (not those of publishes running in this process). Call when no
  /// other banger process is pulling kernels. Returns how many were removed.
  Result<int> RemoveStaleStaging();

  const KernelCatalog& catalog() const { return catalog_; }
  const std::filesystem::path& kernels_dir() const { return kernels_dir_; }

 private:
  struct Staged;
  Result<KernelRecord> Publish(const std::string& name, const std::string& source,
                               const std::function<Result<KernelFiles>(const std::filesystem::path& work)>& fetch,
                               const KernelProgressFn& progress);
  Result<KernelFiles> FetchFromCatalog(const KernelCatalogEntry& entry, const std::filesystem::path& work,
                                       const KernelProgressFn& progress);
  std::string NewId(const std::string& name);
  int64_t NowUnix() const;

  StateStore& store_;
  CommandRunner& runner_;
  std::filesystem::path kernels_dir_;
  KernelCatalog catalog_;
  KernelServiceOptions options_;
  std::unique_ptr<Clock> own_clock_;

  std::mutex mu_;
  std::map<std::string, std::shared_future<Result<KernelRecord>>> inflight_;  // by name
  std::vector<std::string> active_staging_;                                   // dir names
};

}  // namespace banger::kernels
