// Test doubles for the engine's ports: a scripted, recording FakeRuntime and
// an in-memory FakeArtifacts. Used by reconciler and CLI tests only.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "reconciler/ports.h"
#include "reconciler/spec_source.h"
#include "tests/support/test_util.h"

namespace banger::testing {

class FakeRuntime : public SandboxRuntime {
 public:
  std::string_view Kind() const override { return "fake"; }
  Status CheckAvailable() override { return available_; }
  Result<BootResult> Boot(const BootRequest& request) override;
  Status WaitAgent(const SandboxRecord& record, std::chrono::milliseconds timeout) override;
  Result<CommandOutput> Exec(const SandboxRecord& record, const std::vector<std::string>& argv,
                             std::chrono::milliseconds timeout) override;
  RuntimeObservation Inspect(const SandboxRecord& record) override;
  Status Stop(const SandboxRecord& record, std::chrono::milliseconds grace) override;
  Status Destroy(const SandboxRecord& record) override;
  /// Records `hosts` for the sandbox; Unavailable when it is not running.
  Status UpdateHosts(const SandboxRecord& record, const std::vector<HostEntry>& hosts) override;

  // --- scripting ---
  void SetAvailable(Status s) { available_ = std::move(s); }
  /// The next `n` boots of `name` fail with `error`.
  void FailBoots(const std::string& name, int n, Status error);
  /// Exec of argv[0]==`program` in `name` exits with `code`.
  void SetExecExit(const std::string& name, const std::string& program, int code);
  /// Simulates the VM process dying.
  void Crash(const std::string& name);
  /// The next `n` UpdateHosts of `name` fail with `error` (nothing recorded).
  void FailUpdateHosts(const std::string& name, int n, Status error);

  // --- recording ---
  std::vector<std::string> calls() const;   // "boot web", "stop web", "destroy web", "exec web ls"
  int boots() const { return boots_.load(); }
  int max_concurrent_boots() const { return max_concurrent_.load(); }
  std::set<std::string> running() const;
  /// BootRequest::network of the last boot of `name` (nullopt: user-mode or
  /// no network, or never booted).
  std::optional<NetworkAttachment> boot_network(const std::string& name) const;
  /// BootRequest::volumes of the last boot of `name`.
  std::vector<VolumeAttachment> boot_volumes(const std::string& name) const;
  /// Every successful UpdateHosts of `name`, oldest first.
  std::vector<std::vector<HostEntry>> hosts_updates(const std::string& name) const;
  /// What the guest's /etc/hosts block holds now: the last UpdateHosts since
  /// the last boot, else the boot's network->hosts (nullopt: never booted).
  std::optional<std::vector<HostEntry>> guest_hosts(const std::string& name) const;
  /// If set, Boot sleeps this long (real time) to let tests observe overlap.
  std::chrono::milliseconds boot_delay{0};
  /// If set, Boot says the guest agent has answered already (as a restore
  /// from a template does: BootResult::agent_answered).
  bool agent_answered_at_boot = false;
  /// If set, called at the start of every Boot (outside the fake's lock), so
  /// a test can hold a boot in progress (e.g. on a std::latch).
  std::function<void(const std::string& name)> on_boot;

 private:
  void Record(std::string call);
  mutable std::mutex mu_;
  Status available_;
  std::vector<std::string> calls_;
  std::map<std::string, std::pair<int, Status>> boot_failures_;
  std::map<std::pair<std::string, std::string>, int> exec_exits_;
  std::map<std::string, int> running_pid_;   // name -> fake pid
  std::set<std::string> disks_;              // names with a disk
  std::map<std::string, std::optional<NetworkAttachment>> boot_network_;  // by name, last boot
  std::map<std::string, std::vector<std::vector<HostEntry>>> hosts_updates_;
  std::map<std::string, std::vector<VolumeAttachment>> boot_volumes_;
  std::map<std::string, std::vector<HostEntry>> guest_hosts_;
  std::map<std::string, std::pair<int, Status>> update_hosts_failures_;
  int next_pid_ = 1000;
  std::atomic<int> boots_{0};
  std::atomic<int> in_boot_{0};
  std::atomic<int> max_concurrent_{0};
};

class FakeArtifacts : public ArtifactStore {
 public:
  bool ImagePresent(const std::string& name) override;
  bool KernelPresent(const std::string& name) override;
  Result<ImageRecord> EnsureImage(const std::string& name,
                                  const std::function<void(uint64_t, uint64_t)>& progress) override;
  Result<KernelRecord> EnsureKernel(const std::string& name,
                                    const std::function<void(uint64_t, uint64_t)>& progress) override;
  std::string DefaultKernel() const override { return "default-kernel"; }

  void AddImage(const std::string& name);
  void AddKernel(const std::string& name);
  /// Names that fail to pull (not in any catalog).
  void SetUnpullable(const std::string& name) { unpullable_.insert(name); }
  std::vector<std::string> pulls() const;

 private:
  mutable std::mutex mu_;
  std::set<std::string> images_, kernels_, unpullable_;
  std::vector<std::string> pulls_;
};

/// In-memory volume files: a map of path -> (size, seeded-from rootfs),
/// with scripted failures, for the engine's volume paths.
class FakeVolumeFiles : public VolumeFiles {
 public:
  struct File {
    uint64_t size = 0;
    std::string seeded_from;   // seed_rootfs of the build ("" for empty)
    int generation = 0;        // bumped on every Create of this path
  };
  std::string PathOf(const std::string& sandbox, const std::string& name) const override {
    return "/fake/volumes/" + sandbox + "/" + name + ".ext4";
  }
  Result<BuiltVolume> Create(const VolumeBuild& build) override;
  Status Grow(const std::string& path, uint64_t size_bytes) override;
  Status Remove(const std::string& path) override;

  /// The next `n` creations fail with `error` (nothing is left behind).
  void FailCreates(int n, Status error);
  std::optional<File> file(const std::string& path) const;
  std::vector<std::string> calls() const;  // "create web/data", "grow PATH SIZE", "remove PATH"

 private:
  mutable std::mutex mu_;
  std::map<std::string, File> files_;
  std::vector<std::string> calls_;
  int fail_creates_ = 0;
  Status fail_error_;
};

/// A spec source whose revisions and errors the test sets (watcher tests).
class FakeSpecSource final : public SpecSource {
 public:
  std::string Key() const override { return "fake:specs"; }
  std::string Url() const override { return "fake://specs"; }
  std::string Ref() const override { return "main"; }
  Result<SourceSnapshot> Fetch() override {
    std::lock_guard<std::mutex> l(mu_);
    ++fetches_;
    if (!error_.ok()) return error_;
    return snap_;
  }
  void Set(const std::string& revision, const std::vector<SandboxSpec>& specs) {
    std::lock_guard<std::mutex> l(mu_);
    error_ = OkStatus();
    snap_ = SourceSnapshot{};
    snap_.revision = revision;
    snap_.summary = "commit " + revision;
    for (const auto& s : specs) snap_.specs.specs.push_back(MakeDoc(s, "specs/" + s.name + ".yaml"));
  }
  void AddNetwork(const std::string& name, const std::string& subnet) {
    std::lock_guard<std::mutex> l(mu_);
    NetworkDocument d;
    d.spec.name = name;
    d.spec.subnet = subnet;
    d.location = {"specs/net.yaml", 1, 1};
    snap_.specs.networks.push_back(d);
  }
  void SetInvalid(const std::string& revision) {
    std::lock_guard<std::mutex> l(mu_);
    error_ = OkStatus();
    snap_ = SourceSnapshot{};
    snap_.revision = revision;
    snap_.specs.diagnostics.AddError({"specs/web.yaml", 7, 9}, "spec.cpus: must be between 1 and 64");
  }
  void Fail(Status s) {
    std::lock_guard<std::mutex> l(mu_);
    error_ = std::move(s);
  }

 private:
  std::mutex mu_;
  SourceSnapshot snap_;
  Status error_;
  int fetches_ = 0;
};

}  // namespace banger::testing
