#include "tests/support/fakes.h"

#include <algorithm>
#include <thread>

namespace banger::testing {

void FakeRuntime::Record(std::string call) {
  std::lock_guard<std::mutex> l(mu_);
  calls_.push_back(std::move(call));
}

std::vector<std::string> FakeRuntime::calls() const {
  std::lock_guard<std::mutex> l(mu_);
  return calls_;
}

std::set<std::string> FakeRuntime::running() const {
  std::lock_guard<std::mutex> l(mu_);
  std::set<std::string> out;
  for (const auto& [n, pid] : running_pid_) out.insert(n);
  return out;
}

void FakeRuntime::FailBoots(const std::string& name, int n, Status error) {
  std::lock_guard<std::mutex> l(mu_);
  boot_failures_[name] = {n, std::move(error)};
}

void FakeRuntime::SetExecExit(const std::string& name, const std::string& program, int code) {
  std::lock_guard<std::mutex> l(mu_);
  exec_exits_[{name, program}] = code;
}

void FakeRuntime::Crash(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  running_pid_.erase(name);
}

void FakeRuntime::FailUpdateHosts(const std::string& name, int n, Status error) {
  std::lock_guard<std::mutex> l(mu_);
  update_hosts_failures_[name] = {n, std::move(error)};
}

std::vector<VolumeAttachment> FakeRuntime::boot_volumes(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = boot_volumes_.find(name);
  return it == boot_volumes_.end() ? std::vector<VolumeAttachment>{} : it->second;
}

std::optional<NetworkAttachment> FakeRuntime::boot_network(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = boot_network_.find(name);
  return it == boot_network_.end() ? std::nullopt : it->second;
}

std::vector<std::vector<HostEntry>> FakeRuntime::hosts_updates(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = hosts_updates_.find(name);
  return it == hosts_updates_.end() ? std::vector<std::vector<HostEntry>>{} : it->second;
}

std::optional<std::vector<HostEntry>> FakeRuntime::guest_hosts(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = guest_hosts_.find(name);
  if (it == guest_hosts_.end()) return std::nullopt;
  return it->second;
}

Status FakeRuntime::UpdateHosts(const SandboxRecord& record, const std::vector<HostEntry>& hosts) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string& name = record.name;
  auto f = update_hosts_failures_.find(name);
  if (f != update_hosts_failures_.end() && f->second.first > 0) {
    --f->second.first;
    return f->second.second;
  }
  if (!running_pid_.count(name)) return Unavailable("fake: " + name + " is not running");
  hosts_updates_[name].push_back(hosts);
  guest_hosts_[name] = hosts;
  return OkStatus();
}

Result<BootResult> FakeRuntime::Boot(const BootRequest& request) {
  const std::string& name = request.record.name;
  Record("boot " + name + (request.fresh_disk ? " fresh" : " keep-disk"));
  if (on_boot) on_boot(name);
  int now = ++in_boot_;
  int prev = max_concurrent_.load();
  while (now > prev && !max_concurrent_.compare_exchange_weak(prev, now)) {
  }
  if (boot_delay.count() > 0) std::this_thread::sleep_for(boot_delay);
  --in_boot_;
  ++boots_;
  std::lock_guard<std::mutex> l(mu_);
  auto f = boot_failures_.find(name);
  if (f != boot_failures_.end() && f->second.first > 0) {
    --f->second.first;
    return f->second.second;
  }
  if (running_pid_.count(name)) return FailedPrecondition("fake: " + name + " is already running");
  int pid = next_pid_++;
  running_pid_[name] = pid;
  disks_.insert(name);
  boot_network_[name] = request.network;
  boot_volumes_[name] = request.volumes;
  guest_hosts_[name] = request.network ? request.network->hosts : std::vector<HostEntry>{};
  BootResult r;
  r.hypervisor = "fake";
  r.agent_answered = agent_answered_at_boot;
  r.process = {pid, 42};
  r.runtime_dir = "/fake/sandboxes/" + request.record.id;
  r.disk_path = r.runtime_dir + "/disk.qcow2";
  r.address = request.network ? request.network->address : "10.0.0." + std::to_string(pid % 250);
  return r;
}

Status FakeRuntime::WaitAgent(const SandboxRecord& record, std::chrono::milliseconds) {
  Record("wait_agent " + record.name);
  std::lock_guard<std::mutex> l(mu_);
  if (!running_pid_.count(record.name)) return Unavailable("fake: VM not running");
  return OkStatus();
}

Result<CommandOutput> FakeRuntime::Exec(const SandboxRecord& record,
                                        const std::vector<std::string>& argv,
                                        std::chrono::milliseconds) {
  std::string joined;
  for (const auto& a : argv) joined += (joined.empty() ? "" : " ") + a;
  Record("exec " + record.name + " " + joined);
  std::lock_guard<std::mutex> l(mu_);
  if (!running_pid_.count(record.name)) return Unavailable("fake: VM not running");
  CommandOutput out;
  auto it = exec_exits_.find({record.name, argv.empty() ? "" : argv[0]});
  out.exit_code = it == exec_exits_.end() ? 0 : it->second;
  out.stdout_data = "ran " + joined + "\n";
  return out;
}

RuntimeObservation FakeRuntime::Inspect(const SandboxRecord& record) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = running_pid_.find(record.name);
  RuntimeObservation o;
  o.alive = it != running_pid_.end() && it->second == record.pid;
  o.responsive = o.alive;
  if (!o.alive) o.detail = "no such process";
  return o;
}

Status FakeRuntime::Stop(const SandboxRecord& record, std::chrono::milliseconds) {
  Record("stop " + record.name);
  std::lock_guard<std::mutex> l(mu_);
  running_pid_.erase(record.name);
  return OkStatus();
}

Status FakeRuntime::Destroy(const SandboxRecord& record) {
  Record("destroy " + record.name);
  std::lock_guard<std::mutex> l(mu_);
  running_pid_.erase(record.name);
  disks_.erase(record.name);
  return OkStatus();
}

bool FakeArtifacts::ImagePresent(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  return images_.count(name) > 0;
}

bool FakeArtifacts::KernelPresent(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  return kernels_.count(name) > 0;
}

void FakeArtifacts::AddImage(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  images_.insert(name);
}

void FakeArtifacts::AddKernel(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  kernels_.insert(name);
}

std::vector<std::string> FakeArtifacts::pulls() const {
  std::lock_guard<std::mutex> l(mu_);
  return pulls_;
}

Result<ImageRecord> FakeArtifacts::EnsureImage(const std::string& name,
                                               const std::function<void(uint64_t, uint64_t)>& progress) {
  std::lock_guard<std::mutex> l(mu_);
  if (!images_.count(name)) {
    if (unpullable_.count(name)) return NotFound("image \"" + name + "\" is not in the catalog");
    pulls_.push_back("image " + name);
    if (progress) progress(1, 1);
    images_.insert(name);
  }
  ImageRecord r;
  r.name = name;
  r.id = "img-" + name;
  r.rootfs_path = "/fake/images/" + name + "/rootfs.ext4";
  return r;
}

Result<KernelRecord> FakeArtifacts::EnsureKernel(const std::string& name,
                                                 const std::function<void(uint64_t, uint64_t)>&) {
  std::lock_guard<std::mutex> l(mu_);
  if (!kernels_.count(name)) {
    if (unpullable_.count(name)) return NotFound("kernel \"" + name + "\" is not in the catalog");
    pulls_.push_back("kernel " + name);
    kernels_.insert(name);
  }
  KernelRecord r;
  r.name = name;
  r.kernel_path = "/fake/kernels/" + name + "/bzImage";
  return r;
}

// --- FakeVolumeFiles ---

Result<BuiltVolume> FakeVolumeFiles::Create(const VolumeBuild& build) {
  std::lock_guard<std::mutex> l(mu_);
  calls_.push_back("create " + build.sandbox + "/" + build.name);
  if (fail_creates_ > 0) {
    --fail_creates_;
    return fail_error_;
  }
  std::string path = PathOf(build.sandbox, build.name);
  File& f = files_[path];
  f.size = build.size_bytes;
  f.seeded_from = build.seed_rootfs;
  ++f.generation;
  return BuiltVolume{path, true};
}

Status FakeVolumeFiles::Grow(const std::string& path, uint64_t size_bytes) {
  std::lock_guard<std::mutex> l(mu_);
  calls_.push_back("grow " + path + " " + std::to_string(size_bytes));
  auto it = files_.find(path);
  if (it == files_.end()) return NotFound("fake: no volume file " + path);
  if (size_bytes > it->second.size) it->second.size = size_bytes;
  return OkStatus();
}

Status FakeVolumeFiles::Remove(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  calls_.push_back("remove " + path);
  files_.erase(path);
  return OkStatus();
}

void FakeVolumeFiles::FailCreates(int n, Status error) {
  std::lock_guard<std::mutex> l(mu_);
  fail_creates_ = n;
  fail_error_ = std::move(error);
}

std::optional<FakeVolumeFiles::File> FakeVolumeFiles::file(const std::string& path) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> FakeVolumeFiles::calls() const {
  std::lock_guard<std::mutex> l(mu_);
  return calls_;
}

}  // namespace banger::testing
