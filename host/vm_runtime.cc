#include "host/vm_runtime.h"

#include <unistd.h>

#include <sys/stat.h>

#include <cstdlib>
#include <functional>
#include <mutex>
#include <spdlog/spdlog.h>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "host/ssh.h"
#include "host/templates.h"
#include "host/volume_files.h"
#include "images/image_config.h"
#include "kernels/vmlinux.h"
#include "providers/agent_client.h"
#include "providers/firecracker_hypervisor.h"
#include "providers/initramfs.h"
#include "providers/kvm_probe.h"
#include "providers/qemu_hypervisor.h"

namespace banger::host {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

fs::path FindAgentBinary() {
  if (const char* env = std::getenv("BANGER_AGENT"); env && *env) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  fs::path dir = self.parent_path();
  for (const fs::path& candidate : {dir / "../agent/banger-agent", dir / "../libexec/banger/banger-agent",
                                    fs::path("/usr/local/libexec/banger/banger-agent"),
                                    fs::path("/usr/libexec/banger/banger-agent")}) {
    if (fs::exists(candidate, ec)) return fs::weakly_canonical(candidate, ec);
  }
  return {};
}

QemuConfinement ConfinementFor(const Config& config, const StateLayout& layout) {
  QemuConfinement c;
  c.seccomp = true;  // needs no privilege: QEMU sets no_new_privs and loads its filter
  if (::geteuid() != 0) {
    c.cgroups.why_not = "banger is not running as root";
    return c;
  }
  c.per_sandbox_ids = true;
  c.state_root = layout.root;
  c.netns = config.netns;
  c.cgroups = DetectCgroups();
  c.reclaim_dirs = {VolumesDir(layout)};
  return c;
}

Status CheckQemuSeccomp(CommandRunner& runner, const std::string& qemu_binary) {
  // A QEMU with no machine, the sandbox on, driven over QMP on stdin: it
  // loads its filter, answers and quits (exit 0).
  CommandSpec spec;
  spec.argv = {qemu_binary, "-nodefaults", "-no-user-config", "-display", "none", "-M", "none",
               "-sandbox", kQemuSandboxOption, "-qmp", "stdio"};
  spec.stdin_data = "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n";
  spec.timeout = std::chrono::seconds(20);
  auto out = RunChecked(runner, spec);
  if (!out) return out.error();
  return OkStatus();
}

Status CheckPrivilegeDrop(CommandRunner& runner, const QemuConfinement& c) {
  if (!c.per_sandbox_ids) return FailedPrecondition("banger is not running as root");
  // The steps a QEMU's child takes, for real, with the first sandbox uid,
  // ending in `sleep 1`; a failing step is reported by name.
  CommandSpec spec;
  spec.argv = {"sleep", "1"};  // outlives StartDetached reading its start time
  spec.confine.uid = c.ids.IdOfSlot(0);
  spec.confine.gid = c.ids.IdOfSlot(0);
  spec.confine.groups = {c.ids.shared_gid()};
  spec.confine.no_new_privs = true;
  spec.confine.umask = 077;
  auto id = runner.StartDetached(spec);
  if (!id) return id.error();
  // The QEMUs reach their files through the state dir's parents (banger
  // opens the state dir itself to their group at the first boot).
  std::vector<gid_t> groups{c.ids.shared_gid()};
  if (std::string why = AccessProblem(c.state_root.parent_path(), c.ids.IdOfSlot(0), groups, false); !why.empty()) {
    return FailedPrecondition("QEMU's uids cannot reach the state directory " + c.state_root.string() + ": " + why);
  }
  return OkStatus();
}

fs::path SandboxRuntimeDir(const StateLayout& layout, const std::string& id) {
  return layout.sandboxes_dir / id;
}

fs::path AgentSocketOf(const SandboxRecord& record) {
  return RuntimeFilesFor(record.runtime_dir).agent_socket;
}

AgentEndpoint AgentEndpointOf(const SandboxRecord& record) {
  if (record.hypervisor == "firecracker") {
    return {fs::path(record.runtime_dir) / std::string(kFirecrackerVsockSocketName), agent_protocol::kVsockPort};
  }
  return {AgentSocketOf(record), std::nullopt};
}

fs::path ConsoleLogOf(const SandboxRecord& record) {
  if (record.hypervisor == "firecracker") return FirecrackerFilesFor(record.runtime_dir).console_log;
  return RuntimeFilesFor(record.runtime_dir).console_log;
}

namespace {

std::vector<GuestHost> ToGuestHosts(const std::vector<HostEntry>& hosts) {
  std::vector<GuestHost> out;
  out.reserve(hosts.size());
  for (const auto& h : hosts) out.push_back({h.address, h.names});
  return out;
}

class VmRuntime final : public SandboxRuntime {
 public:
  VmRuntime(const Config& config, const StateLayout& layout, CommandRunner& runner, Clock& clock)
      : config_(config), layout_(layout), runner_(runner), clock_(clock) {
    QemuOptions o;
    o.accel = config.accel == "kvm" ? QemuAccel::kKvm : config.accel == "tcg" ? QemuAccel::kTcg : QemuAccel::kAuto;
    o.machine = config.machine == "microvm" ? QemuMachine::kMicrovm
                : config.machine == "q35"   ? QemuMachine::kQ35
                                            : QemuMachine::kAuto;
    o.accel_cache_file = layout.root / "accel-verdict";
    o.confine = ConfinementFor(config, layout);
    if (!config.netns.empty() && o.confine.netns.empty()) {
      // QEMU opens its tap inside the namespace banger's taps live in. `ip
      // netns exec` execs QEMU in place (same pid), and the QMP and agent
      // sockets are files, reachable from the host's namespace. (As root the
      // child enters the namespace itself before dropping its privileges.)
      o.launcher_prefix = {"ip", "netns", "exec", config.netns};
    }
    netns_ = config.netns;
    machine_ = (config.accel.empty() ? "auto" : config.accel) + "/" + (config.machine.empty() ? "auto" : config.machine);
    qemu_binary_ = o.qemu_binary;
    hv_ = MakeQemuHypervisor(runner, clock, o);
    // Firecracker (docs/firecracker.md): made on first use, for specs that
    // resolve to it (ResolveProvider) and records that name it.
    if (!config.netns.empty()) fc_options_.launcher_prefix = {"ip", "netns", "exec", config.netns};
    agent_ = FindAgentBinary();
  }

  std::string_view Kind() const override { return "qemu"; }

  Status CheckAvailable() override {
    if (!FindProgram(qemu_binary_)) {
      return FailedPrecondition("no hypervisor available: " + qemu_binary_ +
                                " is not installed (run scripts/setup.sh, which installs qemu-system-x86)");
    }
    if (agent_.empty()) {
      return FailedPrecondition(
          "the guest agent binary banger-agent was not found beside banger or in libexec; "
          "set BANGER_AGENT to its path");
    }
    if (!netns_.empty()) {
      if (!FindProgram("ip")) {
        return FailedPrecondition("network.netns is \"" + netns_ +
                                  "\" but the ip command (iproute2) is not installed");
      }
      std::error_code ec;
      if (!fs::exists(fs::path("/run/netns") / netns_, ec)) {
        return FailedPrecondition("network namespace \"" + netns_ + "\" (network.netns or BANGER_NETNS) does not "
                                  "exist; create it with: ip netns add " + netns_);
      }
    }
    return OkStatus();
  }

  Result<BootResult> Boot(const BootRequest& req) override {
    const SandboxSpec& spec = req.spec;
    // The provider the plan named (never QEMU recorded for a spec that asked
    // for Firecracker, nor the reverse).
    BANGER_ASSIGN_OR_RETURN(Hypervisor * hv, HypervisorFor(spec));
    BANGER_ASSIGN_OR_RETURN(VmLaunchConfig c, LaunchConfigFor(req));
    if (hv != hv_.get()) return BootFirecracker(*hv, req, std::move(c));
    // Builds of templates that an interrupted banger left (their lock is
    // free): a build VM and staging dirs nobody will finish. Best effort, logged.
    (void)CleanUpAbandoned();
    // From a template (docs/snapshots.md): only a sandbox's first start (a
    // restart keeps its own disk; one whose first start never got as far as
    // a disk is a first start too) and never one with volumes.
    std::string note;
    std::error_code ec;
    const bool fresh = req.fresh_disk || !fs::exists(RuntimeFilesFor(c.runtime_dir).disk, ec);
    if (fresh && spec.start != StartMode::kBoot) {
      std::string why = NoTemplateBecause(spec);
      if (why.empty()) {
        // auto restores a template that exists (none: a plain boot, below);
        // snapshot saves one first.
        auto restored = BootFromTemplate(req, c, spec.start == StartMode::kSnapshot);
        if (restored.ok() && *restored) return std::move(**restored);
        if (!restored.ok()) why = restored.error().message();
      }
      if (!why.empty()) {
        if (spec.start == StartMode::kSnapshot) {
          return FailedPrecondition("spec.start is snapshot, but the sandbox cannot start from a template: " + why);
        }
        spdlog::warn("sandbox {}: booting instead of restoring a template: {}", spec.name, why);
        note = why;
      }
    }
    BANGER_ASSIGN_OR_RETURN(VmHandle h, hv_->Boot(c));
    BootResult r = ResultOf(h, c);
    r.start_note = note;
    return r;
  }

  Result<std::string> DescribeStart(const SandboxSpec& spec, const ImageRecord* image,
                                    const KernelRecord* kernel) override {
    if (spec.start == StartMode::kBoot) return std::string("boot");
    if (auto hv = HypervisorFor(spec); hv.ok() && *hv != hv_.get()) {
      std::string why = "templates are used with QEMU only so far";
      if (spec.start == StartMode::kSnapshot) return FailedPrecondition(why);
      return "boot (" + why + ")";
    }
    if (std::string why = NoTemplateBecause(spec); !why.empty()) {
      if (spec.start == StartMode::kSnapshot) return FailedPrecondition(why);
      return "boot (" + why + ")";
    }
    const bool save = spec.start == StartMode::kSnapshot;
    if (image != nullptr && kernel != nullptr) {
      auto id = IdentityFor(spec, *image, *kernel);
      if (id.ok()) {
        const std::string hash = id->Hash();
        auto t = FindTemplate(layout_, hash);
        if (t.ok() && *t) return "restore from template " + ShortHash(hash);
        if (save) return "boot, save template " + ShortHash(hash) + ", restore from it";
        return "boot (no template " + ShortHash(hash) + " of its boot identity yet; start: snapshot saves one)";
      }
    }
    if (save) return std::string("restore from a template of its boot identity (saved first if there is none)");
    return std::string("restore from a template of its boot identity if one exists, else boot");
  }

  // Removes template builds an interrupted banger left: for each identity
  // whose build lock is free, its build VM (killed) and staging dirs.
  Status CleanUpAbandoned() override {
    return CleanUpAbandonedTemplateBuilds(layout_, [this](const fs::path& runtime_dir) {
      SandboxRecord rec;
      rec.id = runtime_dir.filename().string();
      rec.runtime_dir = runtime_dir.string();
      rec.hypervisor = "qemu";
      return hv_->Destroy(HandleOf(rec));
    });
  }

  // Decide providers from `probe` instead of probing this host (tests).
  void UseProbe(ProviderProbe probe) {
    std::call_once(probe_once_, [&] { probe_ = std::move(probe); });
  }

 private:
  // Why a spec is never started from a template; "" when it can be.
  std::string NoTemplateBecause(const SandboxSpec& spec) const {
    if (!hv_->SupportsTemplates()) return "the " + std::string(hv_->Kind()) + " provider has no templates";
    // A template's disk state is the root disk only; volumes are attached
    // (and grown, seeded) per sandbox at boot, which a restored guest has
    // long passed.
    if (!spec.volumes.empty()) return "sandboxes with volumes are not started from templates";
    return "";
  }

  // The hypervisor that boots `spec`: QEMU, or Firecracker where the host
  // resolves the spec to it (ResolveProvider, probed once per process).
  Result<Hypervisor*> HypervisorFor(const SandboxSpec& spec) {
    if (spec.hypervisor == HypervisorKind::kQemu) return hv_.get();
    std::call_once(probe_once_, [this] { probe_ = ProbeProviders(this, config_, layout_); });
    auto which = ResolveProvider(spec.hypervisor, probe_);
    if (which.ok() && StartsWith(*which, "firecracker")) return Firecracker();
    // Firecracker asked for (by the spec or the host config) but unavailable:
    // never QEMU instead. Otherwise QEMU, which names its own problems.
    if (!which.ok() && (spec.hypervisor == HypervisorKind::kFirecracker ||
                        probe_.host_default == HypervisorKind::kFirecracker)) {
      return which.error();
    }
    return hv_.get();
  }

  // The hypervisor a recorded sandbox runs under.
  Hypervisor& HypervisorOf(const SandboxRecord& rec) {
    return rec.hypervisor == "firecracker" ? *Firecracker() : *hv_;
  }

  Hypervisor* Firecracker() {
    std::call_once(fc_once_, [this] { fc_ = MakeFirecrackerHypervisor(runner_, clock_, fc_options_); });
    return fc_.get();
  }

  // Firecracker boots the uncompressed vmlinux with banger's initramfs; it
  // has no templates wired here yet and no user-mode networking (the
  // provider refuses that before starting anything).
  Result<BootResult> BootFirecracker(Hypervisor& hv, const BootRequest& req, VmLaunchConfig c) {
    if (req.spec.start == StartMode::kSnapshot) {
      return FailedPrecondition("spec.start is snapshot, but templates are used with QEMU only so far");
    }
    if (req.kernel.vmlinux_path.empty()) {
      return FailedPrecondition("kernel " + req.kernel.name +
                                " has no extracted vmlinux, which Firecracker boots; pull or import it again");
    }
    c.kernel_path = req.kernel.vmlinux_path;
    BANGER_ASSIGN_OR_RETURN(VmHandle h, hv.Boot(c));
    BootResult r = ResultOf(h, c);
    r.hypervisor = std::string(hv.Kind());
    return r;
  }

  BootResult ResultOf(const VmHandle& h, const VmLaunchConfig& c) const {
    BootResult r;
    r.hypervisor = "qemu";
    r.process = h.process;
    r.runtime_dir = h.runtime_dir.string();
    r.disk_path = h.disk_path.string();
    if (c.guest.network) r.address = c.guest.network->address;
    return r;
  }

  // The boot identity of a spec with these artifacts (host/templates.h).
  Result<TemplateIdentity> IdentityFor(const SandboxSpec& spec, const ImageRecord& image,
                                       const KernelRecord& kernel) {
    TemplateIdentity id;
    id.provider = std::string(hv_->Kind());
    id.image_digest = image.digest;
    // Recipe-built catalog images have no digest: their disk's path and
    // creation time stand for their contents (a rebuilt image is another one).
    id.image_disk = image.rootfs_path + " created " + std::to_string(image.created_at);
    fs::path kpath = KernelPathFor(kernel);
    BANGER_ASSIGN_OR_RETURN(id.kernel_sha256, CachedSha256(kpath));
    // Every input of the initramfs (agent build, modules): its cache name.
    BANGER_ASSIGN_OR_RETURN(id.initramfs, InitramfsNameFor(kernel));
    id.cpus = spec.cpus;
    id.memory_bytes = spec.memory_bytes;
    id.disk_bytes = spec.disk_bytes;
    id.machine = machine_;
    id.network = std::string(ToString(spec.network.mode));
    id.devices = "root";
    // Another QEMU build may not load this one's state (microvm has no
    // versioned machine types): an upgraded QEMU gets new templates.
    auto qemu = FindProgram(qemu_binary_);
    if (!qemu) return FailedPrecondition(qemu_binary_ + " is not on PATH");
    BANGER_ASSIGN_OR_RETURN(id.vmm, CachedSha256(*qemu));
    return id;
  }

  // The identity of a file as far as its contents go: device, inode, size,
  // and mtime and ctime to the nanosecond (any write or replacement changes
  // one of them). "" when it does not exist.
  static std::string FileIdentity(const fs::path& file) {
    struct stat st{};
    if (::stat(file.c_str(), &st) != 0) return "";
    return file.string() + " " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + " " +
           std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + " " + std::to_string(st.st_ctim.tv_sec) + "." +
           std::to_string(st.st_ctim.tv_nsec);
  }

  // `compute()`, remembered under `key` in memory and in <state>/run/hashes
  // (a 60 MiB vmlinux is hashed once, not at every plan that looks for its
  // template). A value is one line of [0-9a-z.-] characters.
  Result<std::string> Remembered(const std::string& key, const std::function<Result<std::string>()>& compute) {
    {
      std::lock_guard<std::mutex> l(hash_mu_);
      if (auto it = hashes_.find(key); it != hashes_.end()) return it->second;
    }
    auto valid = [](const std::string& v) {
      return !v.empty() && v.size() <= 128 &&
             v.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz.-") == std::string::npos;
    };
    const fs::path file = layout_.run_dir / "hashes" / Sha256Hex(key);
    std::string v(Trim(ReadFileHead(file, 256)));
    if (!valid(v)) {
      BANGER_ASSIGN_OR_RETURN(v, compute());
      Status s = valid(v) ? MakeDirs(file.parent_path(), 0700) : Internal("not rememberable");
      if (s.ok()) s = WriteFileAtomic(file, v + "\n", 0600);
      if (!s.ok()) spdlog::debug("not remembering {}: {}", key, s.message());
    }
    std::lock_guard<std::mutex> l(hash_mu_);
    hashes_[key] = v;
    return v;
  }

  Result<std::string> CachedSha256(const fs::path& file) {
    std::string id = FileIdentity(file);
    if (id.empty()) return ErrnoStatus(errno, "stat " + file.string());
    return Remembered("sha256 " + id, [&] { return Sha256File(file); });
  }

  // The initramfs's cache name (InitramfsCacheName: the agent build and the
  // modules it loads), remembered per agent and module index files: a
  // published kernel's modules never change in place.
  Result<std::string> InitramfsNameFor(const KernelRecord& kernel) {
    if (kernel.modules_dir.empty()) {
      return FailedPrecondition("kernel " + kernel.name + " has no modules directory; banger needs its "
                                "virtio and ext4 modules for the initramfs");
    }
    BANGER_ASSIGN_OR_RETURN(std::string agent_hash, CachedSha256(agent_));
    const fs::path dir = kernel.modules_dir;
    std::string key = "initramfs-name agent " + agent_hash;
    for (const char* index : {"modules.dep", "modules.softdep", "modules.alias", "modules.builtin"}) {
      key += std::string("\n") + index + " " + FileIdentity(dir / index);
    }
    return Remembered(key, [&] { return InitramfsCacheName(dir, agent_hash); });
  }

  // Restores the sandbox from the template of its boot identity, building
  // and publishing that first when there is none. On failure nothing it
  // started is left (the caller boots cold in the same runtime dir).
  // Without `build`, nullopt when there is no template of this identity.
  Result<std::optional<BootResult>> BootFromTemplate(const BootRequest& req, const VmLaunchConfig& c, bool build) {
    BANGER_ASSIGN_OR_RETURN(TemplateIdentity identity, IdentityFor(req.spec, req.image, req.kernel));
    const std::string hash = identity.Hash();
    std::optional<TemplateInfo> t;
    if (build) {
      BANGER_ASSIGN_OR_RETURN(t, EnsureTemplate(layout_, clock_, identity, [&](const fs::path& staging) {
                                return BuildTemplate(c, hash, staging);
                              }));
    } else {
      BANGER_ASSIGN_OR_RETURN(t, FindTemplate(layout_, hash));
      if (!t) return std::optional<BootResult>();
    }
    VmLaunchConfig rc = c;
    rc.restore = t->files;
    auto started = clock_.SteadyNow();
    auto h = hv_->Boot(rc);
    if (!h) return h.error();
    spdlog::debug("sandbox {}: restore: VM running after {} ms", c.name,
                  std::chrono::duration_cast<milliseconds>(clock_.SteadyNow() - started).count());
    // (The template a sandbox's disk is layered on is read back from the
    // disk itself: TemplateOfRuntimeDir.)
    Status s = GiveIdentity(*h, c);
    if (!s.ok()) {
      Status d = hv_->Destroy(*h);
      if (!d.ok()) spdlog::warn("sandbox {}: removing the failed restore: {}", c.name, d.message());
      return s.WithContext("restoring template " + ShortHash(hash));
    }
    spdlog::info("sandbox {}: restored from template {} in {} ms", c.name, ShortHash(hash),
                 std::chrono::duration_cast<milliseconds>(clock_.SteadyNow() - started).count());
    BootResult r = ResultOf(*h, c);
    r.start = "restored from template " + ShortHash(hash);
    r.agent_answered = true;
    return std::optional<BootResult>(std::move(r));
  }

  // Boots a VM of this identity whose agent holds before taking any
  // identity, waits until it says so, and saves it into `staging`.
  Result<VmTemplateFiles> BuildTemplate(const VmLaunchConfig& c, const std::string& hash, const fs::path& staging) {
    VmLaunchConfig tc = c;
    tc.sandbox_id = TemplateBuildId(hash);
    tc.name = "template";
    // Among the sandboxes' runtime dirs: a confined QEMU's uid is picked as
    // one no other runtime dir there owns, so the template VM never shares one.
    tc.runtime_dir = SandboxRuntimeDir(layout_, tc.sandbox_id);
    // Nothing of any sandbox goes into a template: the agent gets the
    // sandbox's configuration (IDENTITY) after each restore.
    GuestConfig g;
    g.hostname = "template";
    g.root_device = c.guest.root_device;
    g.root_serial = c.guest.root_serial;
    g.root_fstype = c.guest.root_fstype;
    g.agent_port = c.guest.agent_port;
    g.hold_for_identity = true;
    tc.guest = std::move(g);
    tc.user_network.forwards.clear();  // never holds a sandbox's host ports
    tc.keep_disk = false;
    spdlog::info("building template {} (boot, hold, save)", ShortHash(hash));
    BANGER_ASSIGN_OR_RETURN(VmHandle h, hv_->Boot(tc));
    auto destroy = [&] {
      Status d = hv_->Destroy(h);
      if (!d.ok()) spdlog::warn("template {}: removing its build VM: {}", ShortHash(hash), d.message());
    };
    SandboxRecord rec;
    rec.id = tc.sandbox_id;
    rec.name = tc.name;
    rec.runtime_dir = h.runtime_dir.string();
    rec.pid = h.process.pid;
    rec.pid_start_time = h.process.start_time;
    auto deadline = clock_.SteadyNow() + std::chrono::minutes(3);
    auto conn = ConnectAgent(h.agent_socket, deadline);
    Result<agent_protocol::Hello> hello = conn ? (*conn)->WaitHello(deadline) : Result<agent_protocol::Hello>(conn.error());
    if (!hello) {
      destroy();
      return hello.error().WithContext("the template VM's agent did not answer" + ConsoleTail(rec));
    }
    if (!agent_protocol::IsHeld(*hello)) {
      destroy();
      return FailedPrecondition("the template VM's agent did not hold for an identity (mode " + hello->mode +
                                "); it predates templates");
    }
    conn->reset();  // the channel is idle while the state is saved
    auto files = hv_->SaveTemplate(h, staging);
    destroy();
    return files;
  }

  // Sends a restored (held) guest its own identity: hostname, network, MAC,
  // files, keys, environment, entropy and clock (docs/snapshots.md).
  Status GiveIdentity(const VmHandle& h, const VmLaunchConfig& c) {
    auto deadline = clock_.SteadyNow() + std::chrono::seconds(60);
    BANGER_ASSIGN_OR_RETURN(auto conn, ConnectAgent(h.agent_socket, deadline));
    GuestConfig g = c.guest;
    if (g.hostname.empty()) g.hostname = c.name;
    return conn->SendIdentity(g, c.mac_address, milliseconds(60000));
  }

  // The launch configuration of a sandbox (everything but the template).
  Result<VmLaunchConfig> LaunchConfigFor(const BootRequest& req) {
    const SandboxSpec& spec = req.spec;
    BANGER_ASSIGN_OR_RETURN(fs::path initramfs, EnsureInitramfs(req.kernel));
    VmLaunchConfig c;
    c.sandbox_id = req.record.id;
    c.name = req.record.name;
    c.cpus = spec.cpus;
    c.memory_bytes = spec.memory_bytes;
    c.runtime_dir = SandboxRuntimeDir(layout_, req.record.id);
    c.kernel_path = KernelPathFor(req.kernel);
    c.initrd_path = initramfs;
    c.base_disk = req.image.rootfs_path;
    c.disk_bytes = spec.disk_bytes;
    c.keep_disk = !req.fresh_disk;
    GuestConfig& g = c.guest;
    g.hostname = spec.name;
    g.env = spec.env;
    g.authorized_keys = spec.ssh_authorized_keys;
    // banger's own key, next to the spec's (not part of the spec, so a new
    // key never makes the plan restart anything). Without ssh-keygen the
    // sandbox still boots; only `banger ssh` cannot log in.
    if (auto key = EnsureSshKey(layout_, runner_); key.ok()) {
      g.authorized_keys.push_back(*key);
    } else {
      spdlog::warn("sandbox {}: banger's SSH key is not injected: {}", spec.name, key.error().message());
    }
    if (req.fresh_disk) {
      // A new disk may carry other host keys (another image): forget the old ones.
      if (Status s = ForgetSshHost(layout_, req.record.name); !s.ok()) {
        spdlog::warn("sandbox {}: {}", spec.name, s.message());
      }
    }
    for (const auto& f : spec.files) {
      GuestFile gf;
      gf.path = f.path;
      gf.mode = f.mode;
      if (f.content) {
        gf.content = *f.content;
      } else if (f.source) {
        auto data = ReadFile(*f.source);
        if (!data) return data.error().WithContext("files: " + f.path);
        gf.content = *data;
      }
      g.files.push_back(std::move(gf));
    }
    if (!req.volumes.empty()) g.root_serial = kRootDiskSerial;
    for (const auto& v : req.volumes) {
      c.extra_disks.push_back({v.path, v.serial});
      g.volumes.push_back({v.serial, v.mount_path});
    }
    images::ImageRunConfig run = images::ParseImageRunConfig(req.image.config_json);
    g.entrypoint = std::move(run.entrypoint);
    g.entrypoint_env = std::move(run.env);
    g.workdir = std::move(run.workdir);
    if (req.network) {
      // Bridged: a NIC on the tap the engine created, the leased address, and
      // the network's other sandboxes in /etc/hosts. Published ports are the
      // network driver's DNAT rules, not QEMU forwards.
      const NetworkAttachment& n = *req.network;
      if (n.tap.empty()) return InvalidArgument("bridged network " + n.network + ": no tap device given");
      c.tap_device = n.tap;
      c.mac_address = n.mac;
      GuestNetwork gn;
      gn.address = n.address;
      gn.prefix = n.prefix;
      gn.gateway = n.gateway;
      gn.dns = n.dns;
      g.network = std::move(gn);
      g.hosts = ToGuestHosts(n.hosts);
    } else if (spec.network.mode != NetworkMode::kNone) {
      g.network = UserNetworkGuestAddress();
      c.user_network.enabled = true;
      c.user_network.restrict = spec.network.mode == NetworkMode::kIsolated;
      for (const auto& p : spec.network.ports) {
        c.user_network.forwards.push_back(
            {std::string(ToString(p.protocol)), "127.0.0.1", p.host, p.guest});
      }
    }
    return c;
  }

 public:

  Status WaitAgent(const SandboxRecord& rec, milliseconds timeout) override {
    auto deadline = clock_.SteadyNow() + timeout;
    Status last = Unavailable("guest agent did not answer");
    while (clock_.SteadyNow() < deadline) {
      auto step = std::min(deadline, clock_.SteadyNow() + std::chrono::seconds(5));
      auto conn = ConnectAgent(AgentEndpointOf(rec), step);
      if (conn) {
        auto hello = (*conn)->WaitHello(step);
        if (hello) return OkStatus();
        last = hello.error();
      } else {
        last = conn.error();
      }
      RuntimeObservation obs = Inspect(rec);
      if (!obs.alive) {
        return Unavailable("VM exited before the guest agent said hello: " + obs.detail + ConsoleTail(rec));
      }
      clock_.SleepFor(milliseconds(200));
    }
    return DeadlineExceeded("guest agent did not say hello within " + FormatDuration(timeout) + ": " +
                            last.message() + ConsoleTail(rec));
  }

  Result<CommandOutput> Exec(const SandboxRecord& rec, const std::vector<std::string>& argv,
                             milliseconds timeout) override {
    BANGER_ASSIGN_OR_RETURN(auto conn, ConnectAgent(AgentEndpointOf(rec), clock_.SteadyNow() + std::chrono::seconds(10)));
    ExecCommand cmd;
    cmd.argv = argv;
    BANGER_ASSIGN_OR_RETURN(ExecResult r, conn->Exec(cmd, "", timeout));
    if (r.output_dropped > 0) {
      // The guest said more than the host keeps: say so where the output goes.
      std::string note = "[banger: dropped " + std::to_string(r.output_dropped) + " bytes of output beyond the " +
                         std::to_string(cmd.max_output >> 20) + " MiB limit]";
      spdlog::warn("sandbox {}: exec {}: {}", rec.name, argv.empty() ? "" : argv[0], note);
      r.stderr_data += (r.stderr_data.empty() || r.stderr_data.back() == '\n' ? "" : "\n") + note + "\n";
    }
    return CommandOutput{r.exit_code, std::move(r.stdout_data), std::move(r.stderr_data)};
  }

  Status UpdateHosts(const SandboxRecord& rec, const std::vector<HostEntry>& hosts) override {
    std::vector<GuestHost> entries = ToGuestHosts(hosts);
    if (std::string why = agent_protocol::ValidateHostsEntries(entries); !why.empty()) {
      return InvalidArgument("hosts of sandbox " + rec.name + ": " + why);
    }
    // A stopped VM has no socket to wait for: say so at once (no QMP query:
    // the process is enough).
    if (VmHandle h = HandleOf(rec); !ProcessAlive(h.process)) {
      return Unavailable("sandbox " + rec.name + " is not running");
    }
    auto deadline = clock_.SteadyNow() + std::chrono::seconds(10);
    auto conn = ConnectAgent(AgentEndpointOf(rec), deadline);
    if (!conn) return conn.error().WithContext("updating /etc/hosts of sandbox " + rec.name);
    Status s = (*conn)->SetHosts(entries, deadline);
    if (!s.ok()) return s.WithContext("updating /etc/hosts of sandbox " + rec.name);
    return OkStatus();
  }

  RuntimeObservation Inspect(const SandboxRecord& rec) override {
    RuntimeObservation o;
    VmHandle h = HandleOf(rec);
    VmObservation v = HypervisorOf(rec).Inspect(h);
    o.alive = v.process_alive;
    o.responsive = v.vmm_responsive;
    o.detail = v.detail;
    return o;
  }

  Status Stop(const SandboxRecord& rec, milliseconds grace) override {
    return HypervisorOf(rec).Shutdown(HandleOf(rec), grace);
  }

  Status Destroy(const SandboxRecord& rec) override {
    (void)CleanUpAbandoned();  // best effort, logged
    VmHandle h = HandleOf(rec);
    if (h.runtime_dir.empty()) h.runtime_dir = SandboxRuntimeDir(layout_, rec.id);
    BANGER_RETURN_IF_ERROR(HypervisorOf(rec).Destroy(h));
    // Its host key goes with it, so a new sandbox of this name is not refused.
    if (Status s = ForgetSshHost(layout_, rec.name); !s.ok()) spdlog::warn("sandbox {}: {}", rec.name, s.message());
    return OkStatus();
  }

 private:
  fs::path KernelPathFor(const KernelRecord& kernel) {
    if (!kernel.vmlinux_path.empty()) {
      // The uncompressed kernel boots about twice as fast under TCG, but only
      // through its PVH entry point.
      auto pvh = kernels::HasPvhEntry(kernel.vmlinux_path);
      if (pvh.ok() && *pvh) return kernel.vmlinux_path;
    }
    return kernel.kernel_path;
  }

  // The recorded identity, or the one recovered from the runtime dir's pidfile
  // when banger was interrupted before recording it.
  VmHandle HandleOf(const SandboxRecord& rec) {
    VmHandle h;
    h.runtime_dir = rec.runtime_dir.empty() ? SandboxRuntimeDir(layout_, rec.id) : fs::path(rec.runtime_dir);
    if (rec.hypervisor == "firecracker") {
      FirecrackerRuntimeFiles f = FirecrackerFilesFor(h.runtime_dir);
      h.disk_path = f.disk;
      h.agent_socket = f.vsock_socket;
      h.agent_vsock_port = agent_protocol::kVsockPort;
      h.process = {rec.pid, rec.pid_start_time};
      if (rec.pid == 0 || !ProcessAlive(h.process)) {
        if (auto recovered = RecoverFirecrackerProcess(h.runtime_dir)) h.process = *recovered;
      }
      return h;
    }
    QemuRuntimeFiles f = RuntimeFilesFor(h.runtime_dir);
    h.disk_path = f.disk;
    h.agent_socket = f.agent_socket;
    h.process = {rec.pid, rec.pid_start_time};
    if (rec.pid == 0 || !ProcessAlive(h.process)) {
      auto recovered = RecoverQemuProcess(h.runtime_dir);
      if (recovered) h.process = *recovered;
    }
    return h;
  }

  std::string ConsoleTail(const SandboxRecord& rec) {
    std::string tail = ReadFileTail(ConsoleLogOf(rec), 600);  // the guest controls its size
    if (tail.empty()) return "";
    return "\nconsole ends:\n" + tail;
  }

  // One initramfs per set of inputs (kernel modules, agent build), cached
  // beside the kernel (providers/initramfs.h EnsureCachedInitramfs).
  Result<fs::path> EnsureInitramfs(const KernelRecord& kernel) {
    BANGER_ASSIGN_OR_RETURN(std::string name, InitramfsNameFor(kernel));
    const fs::path cached = fs::path(kernel.kernel_path).parent_path() / name;
    std::error_code ec;
    if (fs::exists(cached, ec)) return cached;
    auto out = EnsureCachedInitramfs(kernel.modules_dir, agent_, fs::path(kernel.kernel_path).parent_path());
    if (!out) return out.error().WithContext("building the initramfs for kernel " + kernel.name);
    return out;
  }

  Config config_;
  StateLayout layout_;
  CommandRunner& runner_;
  Clock& clock_;
  std::unique_ptr<Hypervisor> hv_;  // QEMU
  FirecrackerOptions fc_options_;
  std::once_flag fc_once_;
  std::unique_ptr<Hypervisor> fc_;
  std::once_flag probe_once_;
  ProviderProbe probe_;
  std::string qemu_binary_;
  std::string netns_;
  std::string machine_;
  fs::path agent_;
  std::mutex hash_mu_;
  std::map<std::string, std::string> hashes_;  // file identity -> sha256 (kernels, the agent)
};

}  // namespace

std::unique_ptr<SandboxRuntime> MakeVmRuntime(const Config& config, const StateLayout& layout,
                                              CommandRunner& runner, Clock& clock) {
  return std::make_unique<VmRuntime>(config, layout, runner, clock);
}

std::unique_ptr<SandboxRuntime> MakeVmRuntimeWithProbe(const Config& config, const StateLayout& layout,
                                                       CommandRunner& runner, Clock& clock, ProviderProbe probe) {
  auto rt = std::make_unique<VmRuntime>(config, layout, runner, clock);
  rt->UseProbe(std::move(probe));
  return rt;
}

// The Firecracker provider (providers/firecracker_hypervisor.h) is wired into
// VmRuntime: a spec resolved to it boots under it.
const bool kFirecrackerProviderBuiltIn = true;

ProviderProbe ProbeProviders(SandboxRuntime* runtime, const Config& config, const StateLayout& layout) {
  ProviderProbe p;
  p.qemu = runtime != nullptr ? runtime->CheckAvailable()
                              : FailedPrecondition("no hypervisor runtime could be set up on this host");
  p.firecracker_provider = kFirecrackerProviderBuiltIn;
  p.firecracker_binary = FindProgram("firecracker").has_value();
  KvmVerdict kvm = ProbeKvmCached(layout.root / "kvm-verdict");
  (kvm.works ? p.kvm_ok : p.kvm_problem) = kvm.reason;
  if (config.hypervisor == "qemu") p.host_default = HypervisorKind::kQemu;
  if (config.hypervisor == "firecracker") p.host_default = HypervisorKind::kFirecracker;
  return p;
}

Result<std::string> ResolveProvider(HypervisorKind kind, const ProviderProbe& p) {
  // spec.hypervisor auto defers to the host config's default, and says so.
  std::string via;
  if (kind == HypervisorKind::kAuto && p.host_default != HypervisorKind::kAuto) {
    kind = p.host_default;
    via = std::string(" (host config hypervisor: ") + (kind == HypervisorKind::kQemu ? "qemu" : "firecracker") + ")";
  }
  // Firecracker: what it would take, all of it at once.
  std::vector<std::string> fc_missing;
  if (!p.firecracker_provider) fc_missing.push_back("the Firecracker provider (this banger has none yet)");
  if (!p.firecracker_binary) fc_missing.push_back("the firecracker binary (not on PATH)");
  if (!p.kvm_problem.empty()) fc_missing.push_back("a working KVM (" + p.kvm_problem + ")");
  switch (kind) {
    case HypervisorKind::kFirecracker:
      if (!fc_missing.empty()) {
        return FailedPrecondition("firecracker" + via + " is not available on this host: missing " +
                                  Join(fc_missing, ", ") + "; use hypervisor: qemu or auto" +
                                  (via.empty() ? "" : ", or change hypervisor in the host config"));
      }
      return "firecracker" + via;
    case HypervisorKind::kQemu:
      if (!p.qemu.ok()) return FailedPrecondition("qemu" + via + " is not available on this host: " + p.qemu.message());
      return "qemu" + via;
    case HypervisorKind::kAuto:
      if (fc_missing.empty()) return std::string("firecracker (auto: firecracker on PATH and KVM works)");
      if (!p.qemu.ok()) {
        return FailedPrecondition("auto found no provider on this host: " + p.qemu.message() +
                                  "; and firecracker is missing " + Join(fc_missing, ", "));
      }
      if (!p.firecracker_provider) return std::string("qemu (auto: firecracker provider not available)");
      return "qemu (auto: firecracker lacks " + Join(fc_missing, ", ") + ")";
  }
  return std::string("qemu");
}

}  // namespace banger::host
