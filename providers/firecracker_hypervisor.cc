#include "providers/firecracker_hypervisor.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>

#include "base/failpoint.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/agent_client.h"
#include "providers/firecracker_api.h"
#include "providers/initramfs.h"
#include "providers/qemu_hypervisor.h"  // ReadFileTail
#include "providers/raw_disk.h"
#include "providers/vm_shutdown.h"

namespace banger {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using nlohmann::json;

namespace {

constexpr size_t kMaxUnixPath = 107;

// Names inside Firecracker's working directory (runtime_dir, or the jail's
// root): every API path banger sends is one of these or the kernel's, so a
// snapshot taken in one directory restores in another.
constexpr char kDiskName[] = "disk.raw";
constexpr char kInitrdName[] = "initrd.img";
constexpr char kVsockName[] = "vsock.sock";
constexpr char kVmmLogName[] = "firecracker.log";
constexpr char kMetricsName[] = "metrics.json";
constexpr char kKernelInJail[] = "vmlinux";
constexpr char kTemplateState[] = "template.state";
constexpr char kTemplateMemory[] = "template.mem";
constexpr char kTemplateDisk[] = "template-disk.raw";
constexpr char kJailApiSocket[] = "/firecracker.sock";

std::string Tail(const fs::path& file, size_t max_bytes = 1500) {
  std::string t = ReadFileTail(file, max_bytes + 1);
  if (t.size() > max_bytes) t = "..." + t.substr(t.size() - max_bytes);
  return std::string(Trim(t));
}

std::string VolumeName(size_t i) { return "volume-" + std::to_string(i) + ".raw"; }
std::string VolumeDriveId(size_t i) { return "vol" + std::to_string(i); }

bool SocketAnswers(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Hard link, else copy (another file system).
Status LinkOrCopy(const fs::path& from, const fs::path& to) {
  ::unlink(to.c_str());
  if (::link(from.c_str(), to.c_str()) == 0) return OkStatus();
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return Internal("copy " + from.string() + " to " + to.string() + ": " + ec.message());
  return OkStatus();
}

Status MoveFile(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) == 0) return OkStatus();
  BANGER_RETURN_IF_ERROR(LinkOrCopy(from, to));
  ::unlink(from.c_str());
  return OkStatus();
}

bool SafeName(const std::string& v, size_t max) {
  if (v.empty() || v.size() > max) return false;
  for (char ch : v) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.' || ch == ':')) {
      return false;
    }
  }
  return true;
}

}  // namespace

FirecrackerRuntimeFiles FirecrackerFilesFor(const fs::path& dir) {
  return {dir / kDiskName,      dir / kInitrdName,          dir / "firecracker.sock", dir / kVsockName,
          dir / "console.log",  dir / kVmmLogName,          dir / kMetricsName,       dir / "kernel.ref",
          dir / "jail"};
}

Result<std::string> FirecrackerDiskSerial(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + file.string());
  std::string id = std::to_string(static_cast<uint64_t>(st.st_dev)) +
                   std::to_string(static_cast<uint64_t>(st.st_rdev)) +
                   std::to_string(static_cast<uint64_t>(st.st_ino));
  return id.substr(0, 20);
}

std::vector<FirecrackerRequest> BuildFirecrackerBootRequests(const VmLaunchConfig& c, const FirecrackerOptions& o,
                                                             const std::string& kernel) {
  const bool jail = o.jailer.enabled;
  std::vector<FirecrackerRequest> r;
  auto put = [&](std::string path, const json& body) { r.push_back({"PUT", std::move(path), body.dump()}); };
  put("/logger", {{"log_path", kVmmLogName}, {"level", o.log_level}, {"show_level", true}});
  put("/metrics", {{"metrics_path", kMetricsName}});
  if (c.restore) return r;  // the rest comes from the snapshot (RestoreRequests)
  uint64_t mib = c.memory_bytes ? c.memory_bytes / (1024 * 1024) : 256;
  put("/machine-config", {{"vcpu_count", c.cpus ? c.cpus : 1}, {"mem_size_mib", mib}, {"smt", false}});
  // Firecracker has one serial port (its stdout, console.log) and describes
  // its virtio-mmio devices through ACPI on x86_64 (docs/firecracker.md).
  std::string args = "console=ttyS0 reboot=k panic=1 pci=off";
  if (!c.kernel_cmdline_extra.empty()) args += " " + c.kernel_cmdline_extra;
  put("/boot-source", {{"kernel_image_path", kernel}, {"initrd_path", kInitrdName}, {"boot_args", args}});
  // The root drive is always the first virtio-blk device (/dev/vda);
  // volumes follow in order.
  put("/drives/rootfs", {{"drive_id", "rootfs"},
                         {"path_on_host", kDiskName},
                         {"is_root_device", true},
                         {"is_read_only", false}});
  for (size_t i = 0; i < c.extra_disks.size(); ++i) {
    put("/drives/" + VolumeDriveId(i), {{"drive_id", VolumeDriveId(i)},
                                        {"path_on_host", jail ? VolumeName(i) : c.extra_disks[i].path.string()},
                                        {"is_root_device", false},
                                        {"is_read_only", false}});
  }
  if (!c.tap_device.empty()) {
    json nic = {{"iface_id", "eth0"}, {"host_dev_name", c.tap_device}};
    if (!c.mac_address.empty()) nic["guest_mac"] = c.mac_address;
    put("/network-interfaces/eth0", nic);
  }
  put("/vsock", {{"guest_cid", o.guest_cid}, {"uds_path", kVsockName}});
  put("/actions", {{"action_type", "InstanceStart"}});
  return r;
}

namespace {

// The Firecracker (or jailer) of runtime_dir: its command line names the
// runtime dir's API socket or jail, or its root is inside the jail.
bool IsFirecrackerOf(int pid, const fs::path& runtime_dir) {
  FirecrackerRuntimeFiles f = FirecrackerFilesFor(runtime_dir);
  const std::string proc = "/proc/" + std::to_string(pid);
  if (auto cmdline = ReadFile(proc + "/cmdline")) {
    if (cmdline->find(f.api_socket.string() + '\0') != std::string::npos) return true;
    if (cmdline->find(f.jail_base.string() + '\0') != std::string::npos) return true;  // the jailer
    if (cmdline->find(f.jail_base.string() + '/') != std::string::npos) return true;
  }
  std::error_code ec;
  fs::path root = fs::read_symlink(proc + "/root", ec);
  if (ec) return false;
  const std::string jail = f.jail_base.string() + "/";
  return root.string().compare(0, jail.size(), jail) == 0;
}

}  // namespace

Result<ProcessIdentity> RecoverFirecrackerProcess(const fs::path& runtime_dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    int pid = std::atoi(name.c_str());
    if (pid <= 0 || pid == ::getpid() || !IsFirecrackerOf(pid, runtime_dir)) continue;
    auto start = ProcessStartTime(pid);
    if (!start) continue;
    ProcessIdentity id{pid, *start};
    if (ProcessAlive(id)) return id;
  }
  return NotFound("Firecracker of " + runtime_dir.string() + " is not running");
}

namespace {

class FirecrackerHypervisor final : public Hypervisor {
 public:
  FirecrackerHypervisor(CommandRunner& runner, Clock& clock, FirecrackerOptions opts)
      : runner_(runner), clock_(clock), opts_(std::move(opts)) {}

  std::string_view Kind() const override { return "firecracker"; }
  bool SupportsTemplates() const override { return true; }

  Result<VmHandle> Boot(const VmLaunchConfig& c) override {
    auto ctx = [&](const Status& s) { return s.WithContext("booting sandbox " + c.sandbox_id + " with Firecracker"); };
    if (Status s = Validate(c); !s.ok()) return ctx(s);
    const FirecrackerRuntimeFiles f = FirecrackerFilesFor(c.runtime_dir);
    std::error_code ec;
    const bool kept_disk = c.keep_disk && !c.restore && fs::exists(f.disk, ec);
    std::optional<ProcessIdentity> started;
    auto result = BootOnce(c, f, kept_disk, started);
    if (result) return result;
    // Nothing half done: no process, no runtime files (a restart keeps its disk).
    if (started) (void)Kill(*started);
    if (auto stray = RecoverFirecrackerProcess(c.runtime_dir)) (void)Kill(*stray);
    Status cleaned = kept_disk ? RemoveAllBut(c.runtime_dir, f.disk) : RemoveAll(c.runtime_dir);
    if (!cleaned.ok()) spdlog::warn("sandbox {}: {}", c.sandbox_id, cleaned.message());
    if (opts_.jailer.enabled) RemoveJailCgroup(c.sandbox_id);
    return ctx(result.error());
  }

  VmObservation Inspect(const VmHandle& handle) override {
    VmObservation obs;
    obs.process_alive = ProcessAlive(handle.process);
    if (!obs.process_alive) {
      obs.detail = "Firecracker process " + std::to_string(handle.process.pid) + " is not running";
      return obs;
    }
    FirecrackerApi api(ApiSocketOf(handle.runtime_dir), std::min(opts_.api_timeout, milliseconds(2000)));
    auto info = api.Get("/");
    if (!info) {
      obs.detail = info.error().message();
      return obs;
    }
    obs.vmm_responsive = true;
    auto j = json::parse(*info, nullptr, false);
    std::string state = j.is_object() && j.contains("state") && j["state"].is_string() ? j["state"].get<std::string>()
                                                                                        : "unknown";
    if (state != "Running") obs.detail = "VM state is " + state;
    return obs;
  }

  Status Shutdown(const VmHandle& handle, milliseconds grace) override {
    // The agent's power-off over vsock (the muxer's CONNECT handshake first),
    // then Ctrl+Alt+Del (the guest reboots, and Firecracker exits on reboot:
    // reboot=k), then SIGKILL.
    return ShutdownVm(clock_, handle.process,
                      AgentEndpoint{handle.agent_socket, handle.agent_vsock_port.value_or(agent_protocol::kVsockPort)},
                      grace, milliseconds(20), "Firecracker", "sending Ctrl+Alt+Del", [&] {
                        FirecrackerApi api(ApiSocketOf(handle.runtime_dir), std::min(grace, opts_.api_timeout));
                        Status s = api.Put("/actions", json{{"action_type", "SendCtrlAltDel"}}.dump());
                        if (!s.ok()) spdlog::info("{}", s.message());
                      });
  }

  Status Destroy(const VmHandle& handle) override {
    BANGER_RETURN_IF_ERROR(Shutdown(handle, milliseconds(0)));
    BANGER_FAILPOINT("firecracker.destroy.after_kill");
    if (handle.runtime_dir.empty() || !handle.runtime_dir.is_absolute()) {
      return InvalidArgument("refusing to remove runtime dir '" + handle.runtime_dir.string() + "'");
    }
    // A VM launched but never recorded (handle.process empty) is found by its files.
    if (auto stray = RecoverFirecrackerProcess(handle.runtime_dir)) BANGER_RETURN_IF_ERROR(Kill(*stray));
    BANGER_RETURN_IF_ERROR(RemoveAll(handle.runtime_dir));
    if (opts_.jailer.enabled) RemoveJailCgroup(handle.runtime_dir.filename().string());
    return OkStatus();
  }

  Result<VmTemplateFiles> SaveTemplate(const VmHandle& handle, const fs::path& dir) override {
    auto ctx = [&](const Status& s) { return s.WithContext("saving a Firecracker template to " + dir.string()); };
    if (!ProcessAlive(handle.process)) return ctx(FailedPrecondition("the VM is not running"));
    const FirecrackerRuntimeFiles f = FirecrackerFilesFor(handle.runtime_dir);
    const fs::path cwd = WorkDirOf(handle.runtime_dir);
    FirecrackerApi api(ApiSocketOf(handle.runtime_dir), opts_.api_timeout);
    VmTemplateFiles t;
    t.state_file = dir / "vm.state";
    t.memory_file = dir / "memory";
    t.disk_layer = dir / "disk.raw";
    t.initrd_path = dir / "initrd.img";
    Status s = [&]() -> Status {
      BANGER_RETURN_IF_ERROR(api.Patch("/vm", json{{"state", "Paused"}}.dump()));
      // The paused VM's disk becomes the template's; the snapshot refers to
      // it by a name in Firecracker's working directory, which a restore
      // points at the published template (see Boot).
      BANGER_RETURN_IF_ERROR(CopyRawDisk(handle.disk_path, t.disk_layer).status());
      if (opts_.jailer.enabled) {
        BANGER_RETURN_IF_ERROR(LinkOrCopy(t.disk_layer, cwd / kTemplateDisk));
      } else {
        ::unlink((cwd / kTemplateDisk).c_str());
        if (::symlink(t.disk_layer.c_str(), (cwd / kTemplateDisk).c_str()) != 0) {
          return ErrnoStatus(errno, "symlink " + (cwd / kTemplateDisk).string());
        }
      }
      BANGER_RETURN_IF_ERROR(api.Patch("/drives/rootfs", json{{"drive_id", "rootfs"}, {"path_on_host", kTemplateDisk}}.dump()));
      BANGER_RETURN_IF_ERROR(api.Put("/snapshot/create", json{{"snapshot_path", kTemplateState},
                                                              {"mem_file_path", kTemplateMemory},
                                                              {"snapshot_type", "Full"}}
                                                             .dump()));
      BANGER_RETURN_IF_ERROR(MoveFile(cwd / kTemplateState, t.state_file));
      BANGER_RETURN_IF_ERROR(MoveFile(cwd / kTemplateMemory, t.memory_file));
      BANGER_RETURN_IF_ERROR(LinkOrCopy(f.initrd, t.initrd_path));
      auto kernel = ReadFile(f.kernel_ref);
      if (!kernel) return kernel.error().WithContext("reading which kernel the VM booted");
      t.kernel_path = std::string(Trim(*kernel));
      return OkStatus();
    }();
    // Whatever happened, the VM is stopped (the interface's contract).
    Status killed = Kill(handle.process);
    if (!s.ok()) return ctx(s);
    if (!killed.ok()) return ctx(killed);
    return t;
  }

 private:
  fs::path JailRoot(const fs::path& runtime_dir) const {
    std::string exe = fs::path(opts_.firecracker_binary).filename().string();
    return FirecrackerFilesFor(runtime_dir).jail_base / exe / runtime_dir.filename() / "root";
  }
  fs::path WorkDirOf(const fs::path& runtime_dir) const {
    return opts_.jailer.enabled ? JailRoot(runtime_dir) : runtime_dir;
  }
  // In the runtime dir; under the jailer, symlinks to the sockets in the
  // jail's root (whose host paths may be longer than a socket address).
  fs::path ApiSocketOf(const fs::path& runtime_dir) const { return FirecrackerFilesFor(runtime_dir).api_socket; }

  Status Validate(const VmLaunchConfig& c) {
    // The jailer's --id: at most 64 of [A-Za-z0-9-].
    bool id_ok = !c.sandbox_id.empty() && c.sandbox_id.size() <= 64;
    for (char ch : c.sandbox_id) id_ok = id_ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-');
    if (!id_ok) return InvalidArgument("invalid sandbox id '" + c.sandbox_id + "' (Firecracker: 1-64 of [A-Za-z0-9-])");
    if (c.user_network.enabled) {
      return FailedPrecondition(
          "Firecracker has no user-mode networking (network.mode: user); use network.mode: bridged or none, or "
          "hypervisor: qemu");
    }
    if (!c.runtime_dir.is_absolute() || c.runtime_dir.filename() != c.sandbox_id) {
      // Destroy finds the jail and cgroup by the runtime dir's name.
      return InvalidArgument("runtime dir must be absolute and end in the sandbox id: '" + c.runtime_dir.string() + "'");
    }
    std::vector<std::pair<std::string, fs::path>> files = {{"kernel", c.kernel_path}};
    if (c.restore) {
      files.insert(files.end(), {{"template state", c.restore->state_file},
                                 {"template memory", c.restore->memory_file},
                                 {"template disk", c.restore->disk_layer}});
    } else {
      files.insert(files.end(), {{"initrd", c.initrd_path}, {"base disk", c.base_disk}});
    }
    for (const auto& [what, p] : files) {
      if (p.empty() || !p.is_absolute()) return InvalidArgument(what + " path must be absolute: '" + p.string() + "'");
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) return NotFound("missing " + what + " file " + p.string());
    }
    // Firecracker on x86_64 loads an uncompressed ELF vmlinux (the one kernel
    // import extracts), not a bzImage.
    if (ReadFileHead(c.kernel_path, 4) != "\x7f" "ELF") {
      return InvalidArgument("Firecracker boots an uncompressed vmlinux (ELF); " + c.kernel_path.string() +
                             " is not one (a bzImage? use the kernel's extracted vmlinux)");
    }
    if (ApiSocketOf(c.runtime_dir).string().size() > kMaxUnixPath) {
      return InvalidArgument("runtime dir too long for unix sockets: " + c.runtime_dir.string());
    }
    if (!c.tap_device.empty() && !SafeName(c.tap_device, 15)) {
      return InvalidArgument("tap device '" + c.tap_device + "' is not a valid interface name");
    }
    if (!c.mac_address.empty() && !SafeName(c.mac_address, 17)) {
      return InvalidArgument("mac address '" + c.mac_address + "' has invalid characters");
    }
    for (const auto& d : c.extra_disks) {
      std::error_code ec;
      if (d.path.empty() || !d.path.is_absolute()) return InvalidArgument("volume path must be absolute: '" + d.path.string() + "'");
      if (!fs::is_regular_file(d.path, ec)) return NotFound("missing volume file " + d.path.string());
    }
    if (std::string why = agent_protocol::ValidateHostsEntries(c.guest.hosts); !why.empty()) {
      return InvalidArgument("guest /etc/hosts: " + why);
    }
    return OkStatus();
  }

  Status RemoveAllBut(const fs::path& dir, const fs::path& keep) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path() != keep) BANGER_RETURN_IF_ERROR(RemoveAll(entry.path()));
    }
    return OkStatus();
  }

  void RemoveJailCgroup(const std::string& id) {
    // The jailer's cgroup v2: <root>/<exec file name>/<id>.
    fs::path dir = fs::path("/sys/fs/cgroup") / fs::path(opts_.firecracker_binary).filename() / id;
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cannot remove cgroup {}: {}", dir.string(), std::strerror(errno));
    }
  }

  Result<VmHandle> BootOnce(const VmLaunchConfig& c, const FirecrackerRuntimeFiles& f, bool kept_disk,
                            std::optional<ProcessIdentity>& started) {
    // 1. Leftovers of an interrupted boot: a Firecracker still running, its
    //    sockets, a half-written disk.
    if (auto stray = RecoverFirecrackerProcess(c.runtime_dir)) {
      spdlog::info("sandbox {}: stopping Firecracker pid {} left by an interrupted boot", c.sandbox_id, stray->pid);
      BANGER_RETURN_IF_ERROR(Kill(*stray));
    }
    if (kept_disk) {
      BANGER_RETURN_IF_ERROR(RemoveAllBut(c.runtime_dir, f.disk));
    } else {
      BANGER_RETURN_IF_ERROR(RemoveAll(c.runtime_dir));
    }
    BANGER_RETURN_IF_ERROR(MakeDirs(c.runtime_dir, 0700));
    if (::chmod(c.runtime_dir.c_str(), 0700) != 0) return ErrnoStatus(errno, "chmod " + c.runtime_dir.string());

    // 2. The raw root disk: a reflink or sparse copy of the base (or of the
    //    template's disk), unless a restart keeps it.
    if (!kept_disk) {
      const fs::path& src = c.restore ? c.restore->disk_layer : c.base_disk;
      BANGER_ASSIGN_OR_RETURN(RawCopyResult copied, CopyRawDisk(src, f.disk, c.disk_bytes));
      spdlog::debug("sandbox {}: root disk by {} ({} bytes written)", c.sandbox_id, RawCopyMethodName(copied.method),
                    copied.bytes_written);
    }
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(f.kernel_ref, c.kernel_path.string() + "\n", 0600));

    // 3. Firecracker's working directory: the runtime dir, or the jail's root
    //    with every file it needs hard-linked (or copied) in.
    const fs::path cwd = WorkDirOf(c.runtime_dir);
    std::string kernel_for_vmm = c.kernel_path.string();
    std::vector<fs::path> volume_paths;  // as Firecracker opens them
    for (const auto& d : c.extra_disks) volume_paths.push_back(d.path);
    if (opts_.jailer.enabled) {
      BANGER_RETURN_IF_ERROR(MakeDirs(cwd, 0700));
      BANGER_RETURN_IF_ERROR(LinkOrCopy(f.disk, cwd / kDiskName));
      BANGER_RETURN_IF_ERROR(LinkOrCopy(c.kernel_path, cwd / kKernelInJail));
      kernel_for_vmm = kKernelInJail;
      for (size_t i = 0; i < c.extra_disks.size(); ++i) {
        // A volume must stay one file: a copy would lose the guest's writes.
        fs::path in_jail = cwd / VolumeName(i);
        ::unlink(in_jail.c_str());
        if (::link(c.extra_disks[i].path.c_str(), in_jail.c_str()) != 0) {
          return ErrnoStatus(errno, "linking volume " + c.extra_disks[i].path.string() + " into the jail (keep " +
                                        "volumes on the state directory's file system)");
        }
        volume_paths[i] = in_jail;
      }
    }

    // 4. The per-sandbox initrd. Firecracker has no virtio-blk serial setting:
    //    a drive's serial is derived from its file (FirecrackerDiskSerial), so
    //    the guest finds the root disk and each volume by that.
    GuestConfig guest = c.guest;
    guest.root_device = "/dev/vda";  // Firecracker attaches the root drive first
    if (!c.extra_disks.empty() || !guest.root_serial.empty()) {
      std::set<std::string> seen;
      BANGER_ASSIGN_OR_RETURN(guest.root_serial, FirecrackerDiskSerial(opts_.jailer.enabled ? cwd / kDiskName : f.disk));
      seen.insert(guest.root_serial);
      for (size_t i = 0; i < c.extra_disks.size(); ++i) {
        BANGER_ASSIGN_OR_RETURN(std::string serial, FirecrackerDiskSerial(volume_paths[i]));
        if (!seen.insert(serial).second) {
          return FailedPrecondition("two of the sandbox's disks would have the same Firecracker serial " + serial);
        }
        for (auto& v : guest.volumes) {
          if (v.serial == c.extra_disks[i].serial) v.serial = serial;
        }
      }
    }
    if (!c.restore) {
      BANGER_RETURN_IF_ERROR(WriteSandboxInitrd(c.initrd_path, guest, f.initrd));
      if (opts_.jailer.enabled) BANGER_RETURN_IF_ERROR(LinkOrCopy(f.initrd, cwd / kInitrdName));
    } else {
      // The guest's identity comes later (AgentConnection::SendIdentity); the
      // template's files are seen under fixed names (see SaveTemplate).
      auto place = [&](const fs::path& from, const char* name) -> Status {
        if (opts_.jailer.enabled) return LinkOrCopy(from, cwd / name);
        ::unlink((cwd / name).c_str());
        if (::symlink(from.c_str(), (cwd / name).c_str()) != 0) return ErrnoStatus(errno, "symlink " + (cwd / name).string());
        return OkStatus();
      };
      BANGER_RETURN_IF_ERROR(place(c.restore->state_file, kTemplateState));
      BANGER_RETURN_IF_ERROR(place(c.restore->memory_file, kTemplateMemory));
      BANGER_RETURN_IF_ERROR(place(c.restore->disk_layer, kTemplateDisk));
      if (!c.restore->initrd_path.empty()) BANGER_RETURN_IF_ERROR(LinkOrCopy(c.restore->initrd_path, f.initrd));
    }
    for (const char* name : {kVmmLogName, kMetricsName}) {
      // Firecracker appends to these; they must exist.
      BANGER_RETURN_IF_ERROR(WriteFileAtomic(cwd / name, "", 0600));
    }
    if (opts_.jailer.enabled) {
      BANGER_RETURN_IF_ERROR(OwnJail(cwd));
      for (const auto& [link, target] : {std::pair{f.api_socket, cwd / fs::path(kJailApiSocket).filename()},
                                         {f.vsock_socket, cwd / kVsockName}}) {
        ::unlink(link.c_str());
        if (::symlink(target.c_str(), link.c_str()) != 0) return ErrnoStatus(errno, "symlink " + link.string());
      }
    }
    BANGER_FAILPOINT("firecracker.boot.after_disk");

    // 5. Start Firecracker, detached, and wait for its API socket.
    CommandSpec spec;
    spec.argv = Argv(c);
    spec.cwd = cwd;
    spec.log_file = f.console_log;  // its stdout is the guest's serial console
    // (No umask setting: the runtime dir is 0700, and a confined start
    // ignores spec.cwd.)
    auto pid = runner_.StartDetached(spec);
    if (!pid) return pid.error().WithContext("starting " + spec.argv[0]);
    started = *pid;
    BANGER_FAILPOINT("firecracker.boot.after_spawn");
    const fs::path api_socket = ApiSocketOf(c.runtime_dir);
    BANGER_RETURN_IF_ERROR(WaitForSocket(*pid, api_socket, f.console_log));

    // 6. Configure it and start the guest.
    FirecrackerApi api(api_socket, opts_.api_timeout);
    std::vector<FirecrackerRequest> requests = BuildFirecrackerBootRequests(c, opts_, kernel_for_vmm);
    for (const auto& r : requests) {
      if (r.path == "/actions") {
        BANGER_FAILPOINT("firecracker.boot.before_start");
      }
      BANGER_RETURN_IF_ERROR(r.method == "PUT" ? api.Put(r.path, r.body) : api.Patch(r.path, r.body));
    }
    if (c.restore) BANGER_RETURN_IF_ERROR(Restore(c, api));
    BANGER_FAILPOINT("firecracker.boot.after_start");
    if (!ProcessAlive(*pid)) {
      return Internal("Firecracker exited right after starting the guest: " + Tail(f.console_log));
    }
    VmHandle h;
    h.process = *pid;
    h.runtime_dir = c.runtime_dir;
    h.disk_path = f.disk;
    h.agent_socket = f.vsock_socket;
    h.agent_vsock_port = agent_protocol::kVsockPort;
    return h;
  }

  // Loads the template's snapshot with this sandbox's tap and vsock socket,
  // points the root drive at the sandbox's own copy, and resumes.
  Status Restore(const VmLaunchConfig& c, FirecrackerApi& api) {
    json load = {{"snapshot_path", kTemplateState},
                 {"mem_backend", {{"backend_type", "File"}, {"backend_path", kTemplateMemory}}},
                 {"resume_vm", false},
                 {"vsock_override", {{"uds_path", kVsockName}}}};
    if (!c.tap_device.empty()) {
      load["network_overrides"] = json::array({{{"iface_id", "eth0"}, {"host_dev_name", c.tap_device}}});
    }
    BANGER_RETURN_IF_ERROR(api.Put("/snapshot/load", load.dump()));
    BANGER_RETURN_IF_ERROR(api.Patch("/drives/rootfs", json{{"drive_id", "rootfs"}, {"path_on_host", kDiskName}}.dump()));
    for (size_t i = 0; i < c.extra_disks.size(); ++i) {
      std::string path = opts_.jailer.enabled ? VolumeName(i) : c.extra_disks[i].path.string();
      BANGER_RETURN_IF_ERROR(
          api.Patch("/drives/" + VolumeDriveId(i), json{{"drive_id", VolumeDriveId(i)}, {"path_on_host", path}}.dump()));
    }
    BANGER_FAILPOINT("firecracker.boot.before_start");
    return api.Patch("/vm", json{{"state", "Resumed"}}.dump());
  }

  std::vector<std::string> Argv(const VmLaunchConfig& c) {
    if (!opts_.jailer.enabled) {
      std::vector<std::string> a = opts_.launcher_prefix;
      a.insert(a.end(), {opts_.firecracker_binary, "--api-sock", FirecrackerFilesFor(c.runtime_dir).api_socket.string(),
                         "--id", c.sandbox_id});
      return a;
    }
    const FirecrackerJailer& j = opts_.jailer;
    std::string exec_file = opts_.firecracker_binary;
    if (auto found = FindProgram(exec_file)) exec_file = found->string();
    std::vector<std::string> a = {j.jailer_binary, "--id", c.sandbox_id, "--exec-file", exec_file,
                                  "--uid", std::to_string(j.uid), "--gid", std::to_string(j.gid),
                                  "--chroot-base-dir", FirecrackerFilesFor(c.runtime_dir).jail_base.string(),
                                  "--cgroup-version", "2"};
    if (j.memory_limit && c.memory_bytes) {
      a.insert(a.end(), {"--cgroup", "memory.max=" + std::to_string(c.memory_bytes + j.memory_overhead_bytes)});
    }
    if (j.pids_max) a.insert(a.end(), {"--cgroup", "pids.max=" + std::to_string(j.pids_max)});
    if (!j.netns.empty()) a.insert(a.end(), {"--netns", (fs::path("/run/netns") / j.netns).string()});
    a.insert(a.end(), {"--", "--api-sock", kJailApiSocket});
    return a;
  }

  // The jail's files belong to the jailed uid/gid.
  Status OwnJail(const fs::path& root) {
    const FirecrackerJailer& j = opts_.jailer;
    if (::geteuid() != 0) return OkStatus();  // only root can run the jailer; tests with a fake one may not be
    std::error_code ec;
    if (::chown(root.c_str(), j.uid, j.gid) != 0) return ErrnoStatus(errno, "chown " + root.string());
    for (const auto& e : fs::directory_iterator(root, ec)) {
      if (::lchown(e.path().c_str(), j.uid, j.gid) != 0) return ErrnoStatus(errno, "chown " + e.path().string());
    }
    return OkStatus();
  }

  Status WaitForSocket(const ProcessIdentity& pid, const fs::path& socket, const fs::path& console) {
    auto deadline = clock_.SteadyNow() + opts_.socket_timeout;
    const std::string what = opts_.jailer.enabled ? "the jailer (or Firecracker in it)" : "Firecracker";
    while (true) {
      if (!ProcessAlive(pid)) {
        std::string tail = Tail(console);
        return Internal(what + " exited before its API socket " + socket.string() + " appeared" +
                        (tail.empty() ? " (no output)" : ": " + tail));
      }
      if (SocketAnswers(socket)) return OkStatus();
      if (clock_.SteadyNow() >= deadline) {
        std::string tail = Tail(console, 600);
        return DeadlineExceeded(what + " did not open its API socket " + socket.string() + " within " +
                                FormatDuration(opts_.socket_timeout) + (tail.empty() ? "" : "; output: " + tail));
      }
      clock_.SleepFor(milliseconds(10));
    }
  }

  Status Kill(const ProcessIdentity& p) { return KillProcessAndWait(clock_, p, "Firecracker"); }

  CommandRunner& runner_;
  Clock& clock_;
  FirecrackerOptions opts_;
};

}  // namespace

std::unique_ptr<Hypervisor> MakeFirecrackerHypervisor(CommandRunner& runner, Clock& clock, FirecrackerOptions options) {
  return std::make_unique<FirecrackerHypervisor>(runner, clock, std::move(options));
}

}  // namespace banger
