// Host: the real implementations of every port, opened once for a command
// or a long-running watcher. This is the only place that builds them (the
// SQLite store, the image and kernel services, the QEMU runtime) and hands
// them to the engine; cli/ and the watcher share it.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/status.h"
#include "host/config.h"
#include "host/vm_runtime.h"
#include "images/image_service.h"
#include "kernels/kernel_service.h"
#include "reconciler/engine.h"
#include "reconciler/ports.h"
#include "state/layout.h"
#include "state/state_store.h"

namespace banger::host {

struct HostOptions {
  std::string state_dir;    // empty: ResolveStateLayout's default
  std::string config_path;  // empty: LoadConfig's default
};

/// Everything a command or the watcher needs, opened once: config, layout
/// (created 0700), SQLite store, clock, command runner, image and kernel
/// services, the ArtifactStore adapter over them, and the SandboxRuntime.
/// Not copyable; every reference it hands out lives as long as the Host.
class Host {
 public:
  /// Loads the config, resolves and creates the state layout, opens the state
  /// database and builds the services. Errors name the file or directory.
  static Result<std::unique_ptr<Host>> Open(const HostOptions& options);

  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  const Config& config() const { return config_; }
  const StateLayout& layout() const { return layout_; }
  StateStore& store() { return *store_; }
  Clock& clock() { return *clock_; }
  CommandRunner& runner() { return *runner_; }
  images::ImageService& images() { return *images_; }
  kernels::KernelService& kernels() { return *kernels_; }
  ArtifactStore& artifacts() { return *artifacts_; }
  /// Null when no hypervisor can run on this host.
  SandboxRuntime* runtime() { return runtime_.get(); }
  /// Bridged networking on this host (or in the namespace config().netns
  /// names); its CheckAvailable says what is missing.
  NetworkDriver& network() { return *network_; }

  /// An engine over this host's ports; `parallel` 0 takes the config's.
  /// Sandboxes are locked in LocksDir() while the engine works on them.
  Engine MakeEngine(EventSink& sink, int parallel = 0);
  /// Engine options as MakeEngine uses them (for callers that add to them).
  EngineOptions DefaultEngineOptions(int parallel = 0) const;

  /// <state>/workspaces: what was shipped into each sandbox (docs/workspaces.md).
  std::filesystem::path WorkspacesDir() const { return layout().root / "workspaces"; }

  /// <state>/run/locks: one lock file per sandbox being worked on.
  std::filesystem::path LocksDir() const { return layout().run_dir / "locks"; }
  /// <state>/run/watch.lock: held by the one `banger watch` of this state dir.
  std::filesystem::path WatchLockPath() const { return layout().run_dir / "watch.lock"; }

  /// The record of `name`; NotFound reads `sandbox "NAME" not found`.
  Result<SandboxRecord> FindSandbox(const std::string& name);

  /// OK when the state directory is a directory owned by the current user
  /// with mode 0700 (0710 for the group of banger's confined QEMUs), the
  /// database files are 0600, nothing in the top three levels below it is
  /// writable by other users, and the database answers a query.
  Status CheckStateDirectory();

  /// spec.hypervisor -> the provider that boots it on this host, or what the
  /// host lacks (ResolveProvider over one ProbeProviders, made at first use);
  /// for PlanOptions::provider_for. Safe from several threads.
  std::function<Result<std::string>(HypervisorKind)> ProviderFor() const;
  /// spec -> how its VM would start here (SandboxRuntime::DescribeStart with
  /// the local image and kernel, when present); for PlanOptions::start_for.
  std::function<Result<std::string>(const SandboxSpec&)> StartFor() const;

 private:
  Host() = default;

  mutable std::once_flag provider_once_;
  mutable ProviderProbe provider_probe_;

  Config config_;
  StateLayout layout_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<CommandRunner> runner_;
  std::unique_ptr<images::ImageService> images_;
  std::unique_ptr<kernels::KernelService> kernels_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<SandboxRuntime> runtime_;
  std::unique_ptr<NetworkDriver> network_;
  std::unique_ptr<VolumeFiles> volumes_;   // spec.volumes (host/volume_files.h)
  std::unique_ptr<WorkspaceShipper> workspaces_;
};

}  // namespace banger::host
