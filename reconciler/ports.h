// The engine's ports to the outside world: VMs (SandboxRuntime), images and
// kernels (ArtifactStore), and progress output (EventSink). Real adapters are
// built in host/ (host::Host); tests use the fakes in tests/support/.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"
#include "spec/sandbox_spec.h"
#include "state/state_store.h"

namespace banger {

struct BootRequest {
  SandboxRecord record;      // id, name, runtime_dir (may be empty on first boot)
  SandboxSpec spec;
  ImageRecord image;
  KernelRecord kernel;
  bool fresh_disk = true;    // false on restart: keep the sandbox's writable disk
};

struct BootResult {
  std::string hypervisor;    // "qemu", "firecracker", "fake"
  ProcessIdentity process;
  std::string runtime_dir;
  std::string disk_path;
  std::string address;       // guest IP, if networked
};

struct RuntimeObservation {
  bool alive = false;        // VMM process with the recorded identity exists
  bool responsive = false;   // its control socket answers
  std::string detail;        // why not, for users
};

/// Boots and manages sandbox VMs (a hypervisor plus its guest agent channel).
class SandboxRuntime {
 public:
  virtual ~SandboxRuntime() = default;
  virtual std::string_view Kind() const = 0;
  /// FailedPrecondition explaining what is missing when VMs cannot run here.
  virtual Status CheckAvailable() = 0;
  virtual Result<BootResult> Boot(const BootRequest& request) = 0;
  /// Waits for the guest agent's hello.
  virtual Status WaitAgent(const SandboxRecord& record, std::chrono::milliseconds timeout) = 0;
  /// Runs argv in the guest (non-interactive).
  virtual Result<CommandOutput> Exec(const SandboxRecord& record,
                                     const std::vector<std::string>& argv,
                                     std::chrono::milliseconds timeout) = 0;
  virtual RuntimeObservation Inspect(const SandboxRecord& record) = 0;
  /// Graceful shutdown with a deadline, then force. Keeps the disk. OK if stopped.
  virtual Status Stop(const SandboxRecord& record, std::chrono::milliseconds grace) = 0;
  /// Stops and removes every process, socket, disk and directory. OK if gone.
  virtual Status Destroy(const SandboxRecord& record) = 0;
};

struct Progress {
  std::string sandbox;
  std::string what;          // "pull image busybox"
  uint64_t done = 0;
  uint64_t total = 0;        // 0: unknown
};

/// Images and kernels, pulled on demand.
class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;
  virtual bool ImagePresent(const std::string& name) = 0;
  virtual bool KernelPresent(const std::string& name) = 0;
  /// Returns the local artifact, pulling it first if needed. Concurrent calls
  /// for one name pull it once.
  virtual Result<ImageRecord> EnsureImage(const std::string& name,
                                          const std::function<void(uint64_t, uint64_t)>& progress) = 0;
  virtual Result<KernelRecord> EnsureKernel(const std::string& name,
                                            const std::function<void(uint64_t, uint64_t)>& progress) = 0;
  /// The kernel used when a spec names none.
  virtual std::string DefaultKernel() const = 0;
};

/// Receives engine progress for display. Called from worker threads; must be
/// thread-safe.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void StepStarted(const std::string& sandbox, const std::string& step) = 0;
  virtual void StepFinished(const std::string& sandbox, const std::string& step,
                            const Status& status, std::chrono::milliseconds took) = 0;
  virtual void OnProgress(const Progress& progress) = 0;
  virtual void Message(const std::string& sandbox, const std::string& text) = 0;
};

/// An EventSink that drops everything.
class NullEventSink final : public EventSink {
 public:
  void StepStarted(const std::string&, const std::string&) override {}
  void StepFinished(const std::string&, const std::string&, const Status&,
                    std::chrono::milliseconds) override {}
  void OnProgress(const Progress&) override {}
  void Message(const std::string&, const std::string&) override {}
};

}  // namespace banger
