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
  networks_[name] = request.network;
  if (request.network) hosts_[name] = request.network->hosts;
  BootResult r;
  r.hypervisor = "fake";
  r.process = {pid, 42};
  r.runtime_dir = "/fake/sandboxes/" + request.record.id;
  r.disk_path = r.runtime_dir + "/disk.qcow2";
  r.address = request.network ? request.network->address
              : request.spec.network.mode == NetworkMode::kNone ? ""
                                                                 : "10.0.2.15";
  return r;
}

Status FakeRuntime::UpdateHosts(const SandboxRecord& record, const std::vector<HostEntry>& hosts) {
  Record("update-hosts " + record.name + " " + std::to_string(hosts.size()));
  std::lock_guard<std::mutex> l(mu_);
  if (!running_pid_.count(record.name)) return Unavailable("fake: " + record.name + " is not running");
  hosts_[record.name] = hosts;
  return OkStatus();
}

std::optional<NetworkAttachment> FakeRuntime::network_of(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = networks_.find(name);
  return it == networks_.end() ? std::nullopt : it->second;
}

std::vector<HostEntry> FakeRuntime::hosts_of(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = hosts_.find(name);
  return it == hosts_.end() ? std::vector<HostEntry>{} : it->second;
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

}  // namespace banger::testing
