#include "providers/qemu_hypervisor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "base/failpoint.h"
#include "base/file_lock.h"
#include "base/files.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "providers/agent_client.h"
#include "providers/initramfs.h"
#include "providers/qmp_client.h"
#include "providers/vm_shutdown.h"

namespace banger {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

constexpr std::string_view kAgentStartedMarker = "banger-agent: starting";
constexpr size_t kMaxUnixPath = 107;

// The guest controls these files' contents and sizes: read bounded pieces.
std::string Tail(const fs::path& file, size_t max_bytes = 1500) {
  std::string t = ReadFileTail(file, max_bytes + 1);
  if (t.size() > max_bytes) t = "..." + t.substr(t.size() - max_bytes);
  return t;
}

std::string ReadRange(int fd, off_t offset, size_t max_bytes) {
  std::string out(max_bytes, '\0');
  size_t got = 0;
  while (got < max_bytes) {
    ssize_t n = ::pread(fd, out.data() + got, max_bytes - got, offset + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

bool SafeForQemuOption(const std::string& s) { return s.find(',') == std::string::npos; }

// What a boot resolved, kept next to the VM (runtime_dir/launch.json) so a
// template saved from it can be restored with the same argv: QEMU checks the
// ROM, initrd and command-line sizes of the migration stream against its own.
struct LaunchRecord {
  bool kvm = false;
  bool microvm = true;
  uint64_t tsc_khz = 0;
  std::string cmdline_extra;
  fs::path kernel;
  fs::path base_disk;
};

constexpr char kLaunchRecord[] = "launch.json";
// The names of a QEMU template's files in its directory.
// The VM state as QEMU's migration stream, uncompressed: QEMU reads it
// straight from the file (3x the size of zstd level 1, a third of the load
// time; docs/snapshots.md). Templates of the older compressed format
// ("state.zst") are refused by name.
constexpr char kTemplateState[] = "state.bin";
constexpr char kTemplateDisk[] = "disk.qcow2";
constexpr char kTemplateKernel[] = "kernel";
constexpr char kTemplateInitrd[] = "initrd.img";

std::string LaunchRecordJson(const LaunchRecord& r) {
  nlohmann::json j = {{"kvm", r.kvm},
                      {"microvm", r.microvm},
                      {"tsc_khz", r.tsc_khz},
                      {"cmdline_extra", r.cmdline_extra},
                      {"kernel", r.kernel.string()},
                      {"base_disk", r.base_disk.string()}};
  return j.dump() + "\n";
}

// The record is written by banger (owned by its euid) into a directory the
// confined QEMU owns: only a file banger wrote is believed, never one QEMU
// could have put there or linked.
Result<LaunchRecord> ReadLaunchRecord(const fs::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus(errno, "open " + file.string());
  struct stat st{};
  bool ours = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() && st.st_size < 65536;
  std::string text = ours ? ReadRange(fd, 0, 65536) : "";
  ::close(fd);
  if (!ours) return PermissionDenied(file.string() + " was not written by banger");
  try {
    auto j = nlohmann::json::parse(text);
    LaunchRecord r;
    r.kvm = j.at("kvm").get<bool>();
    r.microvm = j.at("microvm").get<bool>();
    r.tsc_khz = j.at("tsc_khz").get<uint64_t>();
    r.cmdline_extra = j.at("cmdline_extra").get<std::string>();
    r.kernel = j.at("kernel").get<std::string>();
    r.base_disk = j.at("base_disk").get<std::string>();
    if (!r.kernel.is_absolute() || !r.base_disk.is_absolute()) return DataLoss(file.string() + ": relative path");
    return r;
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(file.string() + ": " + e.what());
  }
}

// Copies a regular file without following a link at `from` (the runtime dir
// is the confined QEMU's: it could have replaced a file with a link).
Status CopyRegularFile(const fs::path& from, const fs::path& to, mode_t mode) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) return ErrnoStatus(errno, "open " + from.string());
  struct stat st{};
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return FailedPrecondition(from.string() + " is not a regular file");
  }
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, "create " + to.string());
  }
  Status s;
  std::vector<char> buf(1 << 20);
  while (s.ok()) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = ErrnoStatus(errno, "read " + from.string());
    if (n <= 0) break;
    for (ssize_t off = 0; off < n && s.ok();) {
      ssize_t w = ::write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) s = ErrnoStatus(errno, "write " + to.string());
      else off += w;
    }
  }
  if (s.ok() && ::fchmod(out, mode) != 0) s = ErrnoStatus(errno, "chmod " + to.string());
  ::close(in);
  ::close(out);
  return s;
}

std::string JsonField(const std::string& text, const char* key) {
  try {
    auto j = nlohmann::json::parse(text);
    if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return "";
}

}  // namespace

uint64_t MeasureHostTscKhz() {
#if defined(__x86_64__)
  std::string cpuinfo = ReadFile("/proc/cpuinfo").value_or("");
  if (cpuinfo.find(" constant_tsc") == std::string::npos) return 0;
  auto now_ns = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  };
  // Busy-wait ~20 ms; take the best of three windows to shrug off preemption.
  uint64_t best = 0;
  int64_t best_err = INT64_MAX;
  for (int i = 0; i < 3; ++i) {
    int64_t n0 = now_ns();
    uint64_t t0 = __rdtsc();
    int64_t n0b = now_ns();
    while (now_ns() - n0 < 20000000) {
    }
    int64_t n1 = now_ns();
    uint64_t t1 = __rdtsc();
    int64_t n1b = now_ns();
    int64_t err = (n0b - n0) + (n1b - n1);
    if (err < best_err && n1 > n0) {
      best_err = err;
      best = (t1 - t0) * 1000000ull / static_cast<uint64_t>(n1 - n0);
    }
  }
  return best;
#else
  return 0;
#endif
}

std::string ReadFileTail(const fs::path& file, size_t max_bytes) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  struct stat st {};
  std::string out;
  if (::fstat(fd, &st) == 0) {
    off_t start = st.st_size > static_cast<off_t>(max_bytes) ? st.st_size - static_cast<off_t>(max_bytes) : 0;
    out = ReadRange(fd, start, max_bytes);
  }
  ::close(fd);
  return out;
}

std::string ReadFileHead(const fs::path& file, size_t max_bytes) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out = ReadRange(fd, 0, max_bytes);
  ::close(fd);
  return out;
}

Result<bool> CapConsoleLog(const fs::path& console_log, uint64_t max_bytes) {
  int fd = ::open(console_log.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "open " + console_log.string());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) <= max_bytes) {
    ::close(fd);
    return false;
  }
  uint64_t keep = std::min<uint64_t>(kConsoleLogKeepBytes, max_bytes);
  std::string tail = ReadRange(fd, st.st_size - static_cast<off_t>(keep), keep);
  fs::path previous = console_log;
  previous += ".1";
  Status saved = WriteFileAtomic(previous, tail, 0600);
  // Bytes QEMU appends between the read and the truncation are lost: a few
  // lines of a guest that writes that fast.
  int rc = ::ftruncate(fd, 0);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "truncate " + console_log.string());
  if (!saved.ok()) return saved;
  spdlog::info("{}: rotated at {} bytes (the guest writes a lot to its console)", console_log.string(),
               st.st_size);
  return true;
}

QemuRuntimeFiles RuntimeFilesFor(const fs::path& dir) {
  return {dir / "disk.qcow2", dir / "initrd.img", dir / "console.log", dir / "qemu.log",
          dir / "qmp.sock",   dir / "agent.sock", dir / "qemu.pid"};
}

namespace {

// The QEMU of runtime_dir: its command line names the dir's QMP socket,
// which no other VM's does.
bool IsQemuOf(int pid, const std::string& qmp_socket) {
  auto cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline && cmdline->find(qmp_socket) != std::string::npos;
}

}  // namespace

Result<std::string> Qcow2BackingFile(const fs::path& qcow2) {
  // The header (docs/interop/qcow2.txt in QEMU): magic "QFI\xfb", version,
  // then the backing file name's offset (u64) and length (u32), big-endian.
  std::string head = ReadFileHead(qcow2, 20);
  if (head.size() < 20 || head.compare(0, 4, "QFI\xfb") != 0) {
    return DataLoss(qcow2.string() + " is not a qcow2 image");
  }
  auto be = [&](size_t at, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(head[at + i]);
    return v;
  };
  const uint64_t offset = be(8, 8);
  const uint64_t length = be(16, 4);
  if (offset == 0 || length == 0) return std::string();
  if (length > 1023 || offset > (1u << 20)) {  // QEMU's own bounds on the name
    return DataLoss(qcow2.string() + ": implausible backing file name in the qcow2 header");
  }
  std::string name = ReadFileHead(qcow2, offset + length);
  if (name.size() != offset + length) return DataLoss(qcow2.string() + ": truncated qcow2 header");
  return name.substr(offset);
}

Result<ProcessIdentity> RecoverQemuProcess(const fs::path& runtime_dir) {
  QemuRuntimeFiles f = RuntimeFilesFor(runtime_dir);
  const std::string qmp = f.qmp_socket.string();
  // 1. The pidfile QEMU writes early in its start-up.
  if (auto text = ReadFile(f.pidfile)) {
    int pid = std::atoi(std::string(Trim(*text)).c_str());
    if (pid > 0 && IsQemuOf(pid, qmp)) {
      if (auto start = ProcessStartTime(pid)) return ProcessIdentity{pid, *start};
    }
  }
  // 2. Launched but not yet recorded anywhere (banger was killed between
  //    starting QEMU and QEMU writing its pidfile): find it by its command line.
  //    A QEMU is only launched into an existing runtime dir, and the dir is
  //    only removed after its QEMU is gone: without the dir, none can run.
  std::error_code ec;
  if (!fs::exists(runtime_dir, ec) && !ec) return NotFound("no runtime dir " + runtime_dir.string());
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    int pid = std::atoi(name.c_str());
    if (pid <= 0 || !IsQemuOf(pid, qmp)) continue;
    auto start = ProcessStartTime(pid);
    if (!start) continue;
    ProcessIdentity id{pid, *start};
    if (ProcessAlive(id)) return id;
  }
  return NotFound("QEMU of " + runtime_dir.string() + " is not running");
}

std::vector<std::string> BuildQemuArgv(const VmLaunchConfig& c, const QemuOptions& o,
                                       const QemuLaunchPlan& plan) {
  QemuRuntimeFiles f = RuntimeFilesFor(c.runtime_dir);
  auto device = [&](const std::string& kind) { return kind + (plan.microvm ? "-device" : "-pci"); };
  uint64_t mib = c.memory_bytes ? c.memory_bytes / (1024 * 1024) : 256;
  std::string append = "console=ttyS0 panic=-1";  // never `quiet` (HOST-NOTES: microvm TCG hangs)
  if (plan.microvm && !plan.kvm && plan.tsc_khz) append += " tsc_early_khz=" + std::to_string(plan.tsc_khz);
  if (!c.kernel_cmdline_extra.empty()) append += " " + c.kernel_cmdline_extra;
  std::vector<std::string> a = o.launcher_prefix;
  a.insert(a.end(), {
      o.qemu_binary,
      "-name", "banger-" + c.sandbox_id,
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
  });
  if (o.confine.seccomp) a.insert(a.end(), {"-sandbox", kQemuSandboxOption});
  // Under a memory limit, TCG's translation cache (up to 1 GiB by default)
  // is bounded so that QEMU's overhead is.
  const bool bound_tb = !plan.kvm && o.confine.cgroups.mode != CgroupMode::kNone;
  a.insert(a.end(), {
      "-pidfile", f.pidfile.string(),
      "-M", plan.microvm ? "microvm" : "q35",
      "-accel", plan.kvm ? "kvm" : bound_tb ? "tcg,tb-size=" + std::to_string(kQemuTcgTbSizeMiB) : "tcg",
  });
  if (plan.kvm) a.insert(a.end(), {"-cpu", "host"});
  a.insert(a.end(), {
      "-smp", std::to_string(c.cpus ? c.cpus : 1),
      "-m", std::to_string(mib),
      "-kernel", c.kernel_path.string(),
      "-initrd", f.initrd.string(),
      "-append", append,
      // append=on (O_APPEND): CapConsoleLog can truncate the file under QEMU.
      "-chardev", "file,id=console,path=" + f.console_log.string() + ",append=on",
      "-serial", "chardev:console",
      "-qmp", "unix:" + f.qmp_socket.string() + ",server=on,wait=off",
      "-device", device("virtio-serial"),
      "-chardev", "socket,id=agent,path=" + f.agent_socket.string() + ",server=on,wait=off",
      "-device", "virtserialport,chardev=agent,name=" + c.guest.agent_port,
      "-drive", "file=" + f.disk.string() + ",format=qcow2,if=none,id=root,discard=unmap",
      "-device", device("virtio-blk") + ",drive=root" +
                     (c.extra_disks.empty() ? "" : ",serial=" + std::string(kRootDiskSerial)),
  });
  // Persistent volumes: raw ext4 files, found by the guest through their
  // serial (paths and serials are checked by Validate).
  for (size_t i = 0; i < c.extra_disks.size(); ++i) {
    const std::string id = "vol" + std::to_string(i);
    a.insert(a.end(), {"-drive", "file=" + c.extra_disks[i].path.string() + ",format=raw,if=none,id=" + id +
                                     ",discard=unmap",
                       "-device", device("virtio-blk") + ",drive=" + id + ",serial=" + c.extra_disks[i].serial});
  }
  if (c.user_network.enabled) {
    std::string netdev = "user,id=net0,net=" + std::string(kUserNetworkSubnet) +
                         ",host=" + std::string(kUserNetworkGateway) + ",dns=" + std::string(kUserNetworkDns) +
                         ",restrict=" + std::string(c.user_network.restrict ? "on" : "off");
    for (const auto& fw : c.user_network.forwards) {
      netdev += ",hostfwd=" + fw.protocol + ":" + fw.host_address + ":" + std::to_string(fw.host_port) +
                "-:" + std::to_string(fw.guest_port);
    }
    a.insert(a.end(), {"-netdev", netdev, "-device",
                       device("virtio-net") + ",netdev=net0" +
                           (c.mac_address.empty() ? "" : ",mac=" + c.mac_address)});
  } else if (!c.tap_device.empty()) {
    a.insert(a.end(), {"-netdev", "tap,id=net0,ifname=" + c.tap_device + ",script=no,downscript=no",
                       "-device", device("virtio-net") + ",netdev=net0" +
                                      (c.mac_address.empty() ? "" : ",mac=" + c.mac_address)});
  }
  return a;
}

namespace {

class QemuHypervisor final : public Hypervisor {
 public:
  QemuHypervisor(CommandRunner& runner, Clock& clock, QemuOptions options)
      : runner_(runner), clock_(clock), opts_(std::move(options)) {}

  std::string_view Kind() const override { return "qemu"; }

  Result<VmHandle> Boot(const VmLaunchConfig& config) override {
    if (config.restore) return Restore(config);
    auto ctx = [&](const Status& s) { return s.WithContext("booting sandbox " + config.sandbox_id); };
    if (Status s = Validate(config); !s.ok()) return ctx(s);
    VmLaunchConfig c = config;
    if (c.guest.hostname.empty()) c.guest.hostname = c.name;
    QemuRuntimeFiles f = RuntimeFilesFor(c.runtime_dir);

    auto kvm = ResolveAccel(c.kernel_path);
    if (!kvm) return ctx(kvm.error());
    QemuLaunchPlan plan{*kvm, opts_.machine != QemuMachine::kQ35, 0};
    if (plan.microvm && !plan.kvm) {
      if (!tsc_khz_) tsc_khz_ = opts_.guest_tsc_khz ? opts_.guest_tsc_khz : MeasureHostTscKhz();
      plan.tsc_khz = tsc_khz_;
    }
    // A QEMU still running for this directory was started by a banger that
    // was interrupted before recording it (callers hold the sandbox's lock,
    // so nobody else owns it): stop it before preparing a new boot.
    if (auto orphan = RecoverQemuProcess(c.runtime_dir); orphan.ok()) {
      spdlog::warn("sandbox {}: stopping QEMU pid {} left by an interrupted boot", c.sandbox_id, orphan->pid);
      if (Status k = Kill(VmHandle{*orphan, c.runtime_dir, f.disk, f.agent_socket}); !k.ok()) return ctx(k);
    }
    Status last;
    int attempts = std::max(1, opts_.boot_attempts);
    for (int attempt = 1; attempt <= attempts; ++attempt) {
      if (Status s = Prepare(c, f); !s.ok()) return ctx(s);
      if (Status s = failpoint::Hit("runtime.boot.after_overlay"); !s.ok()) return ctx(s);
      std::vector<std::string> argv = BuildQemuArgv(c, opts_, plan);
      spdlog::info("sandbox {}: starting QEMU ({}, {}, attempt {}/{})", c.sandbox_id,
                   plan.microvm ? "microvm" : "q35", plan.kvm ? "kvm" : "tcg", attempt, attempts);
      CommandSpec spec{.argv = argv, .log_file = f.qemu_log};
      if (Status s = Confine(c, f, plan, spec.confine); !s.ok()) return ctx(s);
      // Written after Confine (which hands the dir's files to QEMU's uid):
      // the record stays banger's, so SaveTemplate can trust it.
      LaunchRecord record{plan.kvm, plan.microvm, plan.tsc_khz, c.kernel_cmdline_extra, c.kernel_path, c.base_disk};
      if (Status s = WriteFileAtomic(c.runtime_dir / kLaunchRecord, LaunchRecordJson(record), 0600); !s.ok()) {
        return ctx(s);
      }
      auto id = runner_.StartDetached(spec);
      if (!id) return ctx(id.error());
      VmHandle handle{*id, c.runtime_dir, f.disk, f.agent_socket};
      // An injected error takes the path of a failed early boot (QEMU killed).
      last = failpoint::Hit("runtime.boot.after_spawn");
      if (last.ok()) last = WaitEarlyBoot(handle, f);
      if (last.ok()) return handle;
      spdlog::warn("sandbox {}: {}", c.sandbox_id, last.message());
      (void)Kill(handle);
      if (last.code() != StatusCode::kDeadlineExceeded) break;  // QEMU refused to run: retrying won't help
      // A silent early-boot hang (a lost timer tick on microvm under TCG): retry, on q35 if allowed.
      if (opts_.machine == QemuMachine::kAuto) plan.microvm = false;
    }
    return ctx(last);
  }

  VmObservation Inspect(const VmHandle& handle) override {
    // Every inspection (each watch pass, reconcile) caps the console log a
    // guest may be flooding.
    if (!handle.runtime_dir.empty()) {
      auto capped = CapConsoleLog(RuntimeFilesFor(handle.runtime_dir).console_log);
      if (!capped.ok()) spdlog::warn("{}", capped.error().message());
    }
    VmObservation obs;
    obs.process_alive = ProcessAlive(handle.process);
    if (!obs.process_alive) {
      obs.detail = "QEMU process " + std::to_string(handle.process.pid) + " is not running";
      return obs;
    }
    auto status = QmpQueryStatus(RuntimeFilesFor(handle.runtime_dir).qmp_socket, opts_.qmp_timeout);
    if (!status) {
      obs.detail = status.error().message();
      return obs;
    }
    obs.vmm_responsive = true;
    if (*status != "running") obs.detail = "VM status is " + *status;
    return obs;
  }

  Status Shutdown(const VmHandle& handle, milliseconds grace) override {
    // The agent's power-off, then the ACPI power button through QMP (needs an
    // init that handles it), then SIGKILL.
    return ShutdownVm(clock_, handle.process, AgentEndpoint{handle.agent_socket, std::nullopt}, grace,
                      milliseconds(50), "QEMU", "trying ACPI power button", [&] {
                        auto r = QmpExecute(RuntimeFilesFor(handle.runtime_dir).qmp_socket, "system_powerdown",
                                            opts_.qmp_timeout);
                        if (!r) spdlog::info("QMP system_powerdown failed: {}", r.error().message());
                      });
  }

  // Templates need nothing beyond QEMU itself: the state file is handed to
  // QEMU over QMP (fd: migration).
  bool SupportsTemplates() const override { return true; }

  Result<VmTemplateFiles> SaveTemplate(const VmHandle& handle, const fs::path& dir) override {
    auto ctx = [&](const Status& s) { return s.WithContext("saving a template of " + handle.runtime_dir.string()); };
    const QemuRuntimeFiles f = RuntimeFilesFor(handle.runtime_dir);
    if (!ProcessAlive(handle.process)) return ctx(FailedPrecondition("QEMU is not running"));
    auto record = ReadLaunchRecord(handle.runtime_dir / kLaunchRecord);
    if (!record) return ctx(record.error());
    VmTemplateFiles t{dir / kTemplateState, {}, dir / kTemplateDisk, dir / kTemplateKernel, dir / kTemplateInitrd};
    const auto deadline = clock_.SteadyNow() + opts_.template_timeout;
    auto session = QmpSession::Connect(f.qmp_socket, clock_.SteadyNow() + opts_.qmp_timeout);
    if (!session) return ctx(session.error());
    QmpSession& qmp = **session;
    // banger creates the state file and hands QEMU the open file (SCM_RIGHTS);
    // QEMU writes its migration stream into it. Not an exec: URI: QEMU runs
    // those through /bin/sh, which its seccomp sandbox (spawn=deny) forbids,
    // and the confined QEMU never needs access to the file's path.
    int state_fd = ::open(t.state_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (state_fd < 0) return ctx(ErrnoStatus(errno, "create " + t.state_file.string()));
    UniqueFd state(state_fd);
    if (auto r = qmp.Execute("stop", "", opts_.qmp_timeout); !r) return ctx(r.error());
    if (auto r = qmp.Execute("getfd", R"({"fdname":"banger-save"})", opts_.qmp_timeout, state_fd); !r) {
      return ctx(r.error());
    }
    Status migrated = [&]() -> Status {
      BANGER_RETURN_IF_ERROR(
          qmp.Execute("migrate", R"({"uri":"fd:banger-save"})", opts_.qmp_timeout).status());
      while (true) {
        if (!ProcessAlive(handle.process)) return Internal("QEMU exited while saving: " + Tail(f.qemu_log));
        BANGER_ASSIGN_OR_RETURN(std::string info, qmp.Execute("query-migrate", "", opts_.qmp_timeout));
        std::string st = JsonField(info, "status");
        if (st == "completed") return OkStatus();
        if (st == "failed" || st == "cancelled") {
          return Internal("migration " + st + ": " + JsonField(info, "error-desc") + "; QEMU log: " + Tail(f.qemu_log, 600));
        }
        if (clock_.SteadyNow() >= deadline) {
          (void)qmp.Execute("migrate_cancel", "", opts_.qmp_timeout);
          return DeadlineExceeded("saving the VM state took longer than " + FormatDuration(opts_.template_timeout));
        }
        clock_.SleepFor(milliseconds(10));
      }
    }();
    if (migrated.ok()) migrated = failpoint::Hit("template.save.after_migrate");
    // The state is complete (or abandoned): the template VM is done either way.
    (void)qmp.Execute("quit", "", opts_.qmp_timeout);
    if (!WaitGone(handle.process, clock_.SteadyNow() + milliseconds(5000))) (void)Kill(handle);
    if (!migrated.ok()) return ctx(migrated);
    struct stat saved{};
    if (::fsync(state_fd) != 0 || ::fstat(state_fd, &saved) != 0) {
      return ctx(ErrnoStatus(errno, "sync " + t.state_file.string()));
    }
    spdlog::info("{}: VM state saved ({} MiB)", dir.string(), saved.st_size >> 20);
    // The paused VM's overlay becomes the template's immutable disk layer.
    // It must be a regular file whose backing is the image's disk (the
    // runtime dir is QEMU's: never trust a link or another backing there).
    struct stat st{};
    if (::lstat(f.disk.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return ctx(FailedPrecondition(f.disk.string() + " is not a regular file"));
    }
    if (::rename(f.disk.c_str(), t.disk_layer.c_str()) != 0) {
      if (errno != EXDEV) return ctx(ErrnoStatus(errno, "move " + f.disk.string()));
      BANGER_RETURN_IF_ERROR(ctx(CopyRegularFile(f.disk, t.disk_layer, 0400)));
    }
    if (::lchown(t.disk_layer.c_str(), ::geteuid(), ::getegid()) != 0 || ::chmod(t.disk_layer.c_str(), 0400) != 0) {
      return ctx(ErrnoStatus(errno, "take " + t.disk_layer.string()));
    }
    auto info = RunChecked(runner_, {.argv = {opts_.qemu_img_binary, "info", "--output=json", "-f", "qcow2",
                                              t.disk_layer.string()},
                                     .timeout = milliseconds(60000)});
    if (!info) return ctx(info.error());
    if (std::string backing = JsonField(info->stdout_data, "backing-filename"); backing != record->base_disk.string()) {
      return ctx(FailedPrecondition("the saved disk's backing file is '" + backing + "', expected " +
                                    record->base_disk.string()));
    }
    // Kernels are immutable artifacts: a hard link costs nothing (tens of MiB
    // for a vmlinux); a copy where they are on another filesystem.
    if (::link(record->kernel.c_str(), t.kernel_path.c_str()) != 0) {
      BANGER_RETURN_IF_ERROR(ctx(CopyRegularFile(record->kernel, t.kernel_path, 0400)));
    }
    BANGER_RETURN_IF_ERROR(ctx(CopyRegularFile(f.initrd, t.initrd_path, 0400)));
    BANGER_RETURN_IF_ERROR(ctx(WriteFileAtomic(dir / kLaunchRecord, LaunchRecordJson(*record), 0400)));
    return t;
  }

  Status Destroy(const VmHandle& handle) override {
    BANGER_RETURN_IF_ERROR(Shutdown(handle, milliseconds(0)));
    BANGER_FAILPOINT("runtime.destroy.after_kill");
    if (handle.runtime_dir.empty() || !handle.runtime_dir.is_absolute()) {
      return InvalidArgument("refusing to remove runtime dir '" + handle.runtime_dir.string() + "'");
    }
    struct stat st{};
    const bool owned = ::lstat(handle.runtime_dir.c_str(), &st) == 0 && opts_.confine.ids.Owns(st.st_uid);
    BANGER_RETURN_IF_ERROR(RemoveAll(handle.runtime_dir));
    if (owned && opts_.confine.per_sandbox_ids) {
      for (const auto& dir : opts_.confine.reclaim_dirs) BANGER_RETURN_IF_ERROR(ReclaimFiles(dir, st.st_uid));
    }
    // The runtime dir is <sandboxes>/<sandbox id>; so is the cgroup's name.
    return RemoveSandboxCgroup(opts_.confine.cgroups, handle.runtime_dir.filename().string());
  }

 private:
  // Boot from a template: a new overlay on its disk layer, its initrd and
  // kernel, the argv it was saved with plus -incoming defer; then the state
  // is streamed in (QMP migrate-incoming on fd:) and the VM resumed. The
  // caller gives the guest its identity (AgentConnection::SendIdentity).
  Result<VmHandle> Restore(const VmLaunchConfig& config) {
    auto ctx = [&](const Status& s) { return s.WithContext("restoring sandbox " + config.sandbox_id + " from a template"); };
    const VmTemplateFiles& t = *config.restore;
    VmLaunchConfig c = config;
    c.kernel_path = t.kernel_path;
    c.initrd_path = t.initrd_path;
    if (Status s = Validate(c); !s.ok()) return ctx(s);
    if (!c.extra_disks.empty()) return ctx(FailedPrecondition("a sandbox with volumes is never restored from a template"));
    if (t.state_file.filename() != kTemplateState) {
      return ctx(FailedPrecondition("the template's state file " + t.state_file.string() +
                                    " is of an older format; remove the template (banger snapshot rm)"));
    }
    for (const auto& p : {t.state_file, t.disk_layer}) {
      std::error_code ec;
      if (p.empty() || !p.is_absolute() || !SafeForQemuOption(p.string()) || !fs::is_regular_file(p, ec)) {
        return ctx(NotFound("template file missing or unusable: '" + p.string() + "'"));
      }
    }
    auto record = ReadLaunchRecord(t.state_file.parent_path() / kLaunchRecord);
    if (!record) return ctx(record.error());
    auto kvm = ResolveAccel(c.kernel_path);
    if (!kvm) return ctx(kvm.error());
    if (*kvm != record->kvm) {
      return ctx(FailedPrecondition(std::string("the template was saved under ") + (record->kvm ? "KVM" : "TCG") +
                                    ", this host runs " + (*kvm ? "KVM" : "TCG")));
    }
    QemuLaunchPlan plan{record->kvm, record->microvm, record->tsc_khz};
    c.kernel_cmdline_extra = record->cmdline_extra;
    QemuRuntimeFiles f = RuntimeFilesFor(c.runtime_dir);
    if (auto orphan = RecoverQemuProcess(c.runtime_dir); orphan.ok()) {
      spdlog::warn("sandbox {}: stopping QEMU pid {} left by an interrupted boot", c.sandbox_id, orphan->pid);
      if (Status k = Kill(VmHandle{*orphan, c.runtime_dir, f.disk, f.agent_socket}); !k.ok()) return ctx(k);
    }
    const auto t0 = clock_.SteadyNow();
    auto ms = [&] { return std::chrono::duration_cast<milliseconds>(clock_.SteadyNow() - t0).count(); };
    BANGER_RETURN_IF_ERROR(ctx(RemoveAll(c.runtime_dir)));
    BANGER_RETURN_IF_ERROR(ctx(MakeDirs(c.runtime_dir, 0700)));
    auto out = RunChecked(runner_, {.argv = {opts_.qemu_img_binary, "create", "-q", "-f", "qcow2", "-b",
                                             t.disk_layer.string(), "-F", "qcow2", f.disk.string()},
                                    .timeout = milliseconds(60000)});
    if (!out) return ctx(out.error().WithContext("creating the overlay on the template's disk"));
    // Byte-identical initrd: QEMU compares ROM sizes with the saved state.
    BANGER_RETURN_IF_ERROR(ctx(CopyRegularFile(t.initrd_path, f.initrd, 0600)));
    if (Status s = failpoint::Hit("template.restore.after_overlay"); !s.ok()) return ctx(s);
    std::vector<std::string> argv = BuildQemuArgv(c, opts_, plan);
    argv.insert(argv.end(), {"-incoming", "defer"});
    spdlog::info("sandbox {}: restoring QEMU from template {}", c.sandbox_id, t.state_file.parent_path().string());
    CommandSpec spec{.argv = argv, .log_file = f.qemu_log};
    if (Status s = Confine(c, f, plan, spec.confine); !s.ok()) return ctx(s);
    LaunchRecord mine = *record;
    if (Status s = WriteFileAtomic(c.runtime_dir / kLaunchRecord, LaunchRecordJson(mine), 0600); !s.ok()) return ctx(s);
    spdlog::debug("sandbox {}: restore: overlay and initrd ready after {} ms", c.sandbox_id, ms());
    auto id = runner_.StartDetached(spec);
    if (!id) return ctx(id.error());
    VmHandle handle{*id, c.runtime_dir, f.disk, f.agent_socket};
    Status loaded = LoadState(handle, f, t.state_file);
    if (!loaded.ok()) {
      (void)Kill(handle);
      return ctx(loaded);
    }
    spdlog::debug("sandbox {}: restore: state loaded and running after {} ms", c.sandbox_id, ms());
    return handle;
  }

  Status LoadState(const VmHandle& handle, const QemuRuntimeFiles& f, const fs::path& state_file) {
    const auto deadline = clock_.SteadyNow() + opts_.template_timeout;
    auto died = [&] { return Internal("QEMU exited while loading the template's state: " + Tail(f.qemu_log)); };
    // QMP comes up within ~0.1 s of the launch.
    while (true) {
      std::error_code ec;
      if (fs::exists(f.qmp_socket, ec)) break;
      if (!ProcessAlive(handle.process)) return died();
      if (clock_.SteadyNow() >= deadline) return DeadlineExceeded("QEMU's QMP socket did not appear");
      clock_.SleepFor(milliseconds(5));
    }
    BANGER_ASSIGN_OR_RETURN(auto session, QmpSession::Connect(f.qmp_socket, clock_.SteadyNow() + opts_.qmp_timeout));
    spdlog::debug("restore: QMP up");
    {
      // QEMU reads the state from the open file (banger's, mode 0600: the
      // confined QEMU could not open it by name).
      UniqueFd state(::open(state_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (!state.valid()) return ErrnoStatus(errno, "open " + state_file.string());
      BANGER_RETURN_IF_ERROR(
          session->Execute("getfd", R"({"fdname":"banger-incoming"})", opts_.qmp_timeout, state.get()).status());
    }
    BANGER_RETURN_IF_ERROR(
        session->Execute("migrate-incoming", R"({"uri":"fd:banger-incoming"})", opts_.qmp_timeout).status());
    Status loaded = [&]() -> Status {
      while (true) {
        if (!ProcessAlive(handle.process)) return died();
        auto r = session->Execute("query-status", "", opts_.qmp_timeout);
        if (!r) {
          if (!ProcessAlive(handle.process)) return died();
          return r.error();
        }
        std::string st = JsonField(*r, "status");
        if (st != "inmigrate") {
          if (st != "paused" && st != "running") return Internal("after loading the state the VM is " + st);
          return OkStatus();
        }
        if (clock_.SteadyNow() >= deadline) {
          return DeadlineExceeded("loading the template's state took longer than " +
                                  FormatDuration(opts_.template_timeout));
        }
        clock_.SleepFor(milliseconds(5));
      }
    }();
    if (!loaded.ok()) (void)Kill(handle);
    spdlog::debug("restore: state loaded");
    BANGER_RETURN_IF_ERROR(loaded);
    BANGER_FAILPOINT("template.restore.before_cont");
    return session->Execute("cont", "", opts_.qmp_timeout).status();
  }

  // Everything the confined QEMU needs, made accessible to exactly its
  // identity, and the steps its child takes before exec (docs/qemu.md,
  // "Confinement"). Called after Prepare, before each start.
  Status Confine(const VmLaunchConfig& c, const QemuRuntimeFiles& f, const QemuLaunchPlan& plan,
                 ChildConfinement& child) {
    const QemuConfinement& cf = opts_.confine;
    child.umask = 077;  // QEMU's sockets, logs and pidfile are private
    if (!cf.netns.empty()) child.netns = fs::path("/run/netns") / cf.netns;
    if (cf.per_sandbox_ids) {
      uint32_t id = 0;
      {
        // The id is recorded by owning the runtime dir: pick and own it under
        // one lock, so parallel boots never take the same one.
        // The lock lives with banger's other locks (<state>/run/locks), not
        // among the sandboxes' directories.
        fs::path locks = cf.state_root.empty() ? c.runtime_dir.parent_path() : cf.state_root / "run" / "locks";
        BANGER_RETURN_IF_ERROR(MakeDirs(locks, 0700));
        auto lock = FileLock::Acquire(locks / "qemu-ids.lock", "boot " + c.sandbox_id, clock_,
                                      clock_.SteadyNow() + std::chrono::seconds(60));
        if (!lock) return lock.error().WithContext("allocating a uid for the sandbox's QEMU");
        BANGER_ASSIGN_OR_RETURN(id, PickSandboxId(cf.ids, c.runtime_dir));
        BANGER_RETURN_IF_ERROR(OwnRuntimeDir(c.runtime_dir, id, id));
      }
      const gid_t shared = cf.ids.shared_gid();
      std::vector<gid_t> groups{shared};
      if (plan.kvm) {
        struct stat st{};
        if (::stat("/dev/kvm", &st) == 0) groups.push_back(st.st_gid);
      }
      BANGER_RETURN_IF_ERROR(GrantGroupAccess(c.runtime_dir.parent_path(), cf.state_root, shared, false));
      BANGER_RETURN_IF_ERROR(GrantGroupAccess(c.kernel_path, cf.state_root, shared, true));
      BANGER_RETURN_IF_ERROR(GrantGroupAccess(c.base_disk, cf.state_root, shared, true));
      std::vector<std::pair<fs::path, bool>> needs = {{c.kernel_path, false}, {c.base_disk, false},
                                                      {f.initrd, false},     {f.disk, true}};
      // A sandbox restored from a template: the template's disk layer is the
      // backing file of its overlay, at the restore and at every cold
      // restart that keeps that disk.
      fs::path layer = c.restore ? c.restore->disk_layer : fs::path();
      std::error_code ec;
      if (!c.restore && c.keep_disk && fs::exists(f.disk, ec)) {
        // (An unreadable header is QEMU's to report when it opens the disk.)
        auto backing = Qcow2BackingFile(f.disk);
        if (backing.ok() && !backing->empty() && fs::path(*backing) != c.base_disk) layer = *backing;
      }
      if (!layer.empty()) {
        BANGER_RETURN_IF_ERROR(GrantGroupAccess(layer, cf.state_root, shared, true));
        needs.push_back({layer, false});
      }
      for (const auto& d : c.extra_disks) {
        BANGER_RETURN_IF_ERROR(OwnFile(d.path, id, id));
        BANGER_RETURN_IF_ERROR(GrantGroupAccess(d.path.parent_path(), cf.state_root, shared, false));
        needs.push_back({d.path, true});
      }
      for (const auto& [path, rw] : needs) {
        if (std::string why = AccessProblem(path, id, groups, rw); !why.empty()) {
          return FailedPrecondition("QEMU runs as uid " + std::to_string(id) + " and cannot use " + path.string() +
                                    ": " + why + "; keep the state directory on a path every user may search");
        }
      }
      if (!c.tap_device.empty()) {
        BANGER_RETURN_IF_ERROR(SetTapOwner(cf.netns, c.tap_device, id, id));
      }
      child.uid = id;
      child.gid = id;
      child.groups.assign(groups.begin(), groups.end());
      child.no_new_privs = true;
    }
    if (cf.cgroups.mode != CgroupMode::kNone) {
      CgroupLimits limits{QemuMemoryLimit(c.memory_bytes), cf.pids_max};
      if (Status s = CreateSandboxCgroup(cf.cgroups, c.sandbox_id, limits); !s.ok()) {
        spdlog::warn("sandbox {}: QEMU runs without a memory limit: {}", c.sandbox_id, s.message());
      } else {
        child.cgroups = SandboxCgroupDirs(cf.cgroups, c.sandbox_id);
      }
    }
    return OkStatus();
  }

  Status Validate(const VmLaunchConfig& c) {
    if (c.sandbox_id.empty() || c.sandbox_id.find_first_of("/, \t\n") != std::string::npos) {
      return InvalidArgument("invalid sandbox id '" + c.sandbox_id + "'");
    }
    for (const auto& [what, p] : {std::pair{"runtime_dir", c.runtime_dir}, {"kernel", c.kernel_path},
                                  {"initrd", c.initrd_path}, {"base disk", c.base_disk}}) {
      if (p.empty() || !p.is_absolute()) return InvalidArgument(std::string(what) + " path must be absolute: '" + p.string() + "'");
      if (!SafeForQemuOption(p.string())) return InvalidArgument(std::string(what) + " path contains ',': " + p.string());
    }
    for (const auto& p : {c.kernel_path, c.initrd_path, c.base_disk}) {
      std::error_code ec;
      if (!fs::exists(p, ec)) return NotFound("missing file " + p.string());
    }
    if ((c.runtime_dir / "agent.sock").string().size() > kMaxUnixPath) {
      return InvalidArgument("runtime dir too long for unix sockets: " + c.runtime_dir.string());
    }
    for (const auto& [what, v] : {std::pair{"tap device", c.tap_device}, {"mac address", c.mac_address},
                                  {"agent port", c.guest.agent_port}}) {
      for (char ch : v) {
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.' || ch == ':')) {
          return InvalidArgument(std::string(what) + " '" + v + "' has invalid characters");
        }
      }
    }
    for (const auto& d : c.extra_disks) {
      if (d.path.empty() || !d.path.is_absolute() || !SafeForQemuOption(d.path.string())) {
        return InvalidArgument("volume path must be absolute and free of ',': '" + d.path.string() + "'");
      }
      std::error_code ec;
      if (!fs::is_regular_file(d.path, ec)) return NotFound("missing volume file " + d.path.string());
      bool serial_ok = !d.serial.empty() && d.serial.size() <= 20;
      for (char ch : d.serial) serial_ok = serial_ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-');
      if (!serial_ok) return InvalidArgument("volume serial '" + d.serial + "' must be 1-20 of [A-Za-z0-9-]");
    }
    // The agent refuses a config.json with a malformed hosts entry (a fatal
    // boot error): refuse it here, before anything is started.
    if (std::string why = agent_protocol::ValidateHostsEntries(c.guest.hosts); !why.empty()) {
      return InvalidArgument("guest /etc/hosts: " + why);
    }
    return OkStatus();
  }

  Status Prepare(const VmLaunchConfig& c, const QemuRuntimeFiles& f) {
    std::error_code ec;
    if (c.keep_disk && std::filesystem::exists(f.disk, ec)) {
      // Restart: the sandbox keeps its disk; sockets, logs and initrd start fresh.
      for (const auto& entry : std::filesystem::directory_iterator(c.runtime_dir, ec)) {
        if (entry.path() != f.disk) BANGER_RETURN_IF_ERROR(RemoveAll(entry.path()));
      }
      BANGER_RETURN_IF_ERROR(MakeDirs(c.runtime_dir, 0700));
      return WriteSandboxInitrd(c.initrd_path, c.guest, f.initrd);
    }
    // Leftovers of an interrupted boot (sockets, a half-written overlay) go first.
    BANGER_RETURN_IF_ERROR(RemoveAll(c.runtime_dir));
    BANGER_RETURN_IF_ERROR(MakeDirs(c.runtime_dir, 0700));
    std::vector<std::string> argv = {opts_.qemu_img_binary, "create", "-q", "-f", "qcow2",
                                     "-b", c.base_disk.string(), "-F", "raw", f.disk.string()};
    if (c.disk_bytes) argv.push_back(std::to_string(c.disk_bytes));
    auto out = RunChecked(runner_, {.argv = argv, .timeout = milliseconds(60000)});
    if (!out) return out.error().WithContext("creating overlay disk");
    return WriteSandboxInitrd(c.initrd_path, c.guest, f.initrd);
  }

  Status WaitEarlyBoot(const VmHandle& h, const QemuRuntimeFiles& f) {
    if (opts_.early_boot_timeout.count() <= 0) return OkStatus();
    auto deadline = clock_.SteadyNow() + opts_.early_boot_timeout;
    while (true) {
      if (!ProcessAlive(h.process)) {
        std::string detail = Tail(f.qemu_log);
        std::string console = Tail(f.console_log, 800);
        return Internal("QEMU exited during boot" + (detail.empty() ? "" : ": " + detail) +
                        (console.empty() ? "" : "\nconsole:\n" + console));
      }
      // The marker comes right after the kernel's boot messages: a bounded
      // read of the head is enough, however much the guest writes later.
      if (ReadFileHead(f.console_log, 4u << 20).find(kAgentStartedMarker) != std::string::npos) {
        return OkStatus();
      }
      if (clock_.SteadyNow() >= deadline) {
        return DeadlineExceeded("kernel did not start the agent within " +
                                FormatDuration(opts_.early_boot_timeout) + "; console ends:\n" +
                                Tail(f.console_log, 400));
      }
      clock_.SleepFor(milliseconds(20));
    }
  }

  bool WaitGone(const ProcessIdentity& id, std::chrono::steady_clock::time_point deadline) {
    return WaitProcessGone(clock_, id, deadline, milliseconds(50));
  }

  Status Kill(const VmHandle& h) { return KillProcessAndWait(clock_, h.process, "QEMU"); }

  // Returns true when KVM should be used.
  Result<bool> ResolveAccel(const fs::path& kernel) {
    if (opts_.accel == QemuAccel::kKvm) return true;
    if (opts_.accel == QemuAccel::kTcg) return false;
    if (cached_kvm_) return *cached_kvm_;
    if (!opts_.accel_cache_file.empty()) {
      if (auto text = ReadFile(opts_.accel_cache_file)) {
        std::string v(Trim(*text).substr(0, 3));
        if (v == "kvm" || v == "tcg") {
          cached_kvm_ = v == "kvm";
          return *cached_kvm_;
        }
      }
    }
    bool kvm = ProbeKvm(kernel);
    cached_kvm_ = kvm;
    if (!opts_.accel_cache_file.empty()) {
      Status s = WriteFileAtomic(opts_.accel_cache_file, kvm ? "kvm\n" : "tcg\n", 0600);
      if (!s.ok()) spdlog::warn("cannot cache accelerator verdict: {}", s.message());
    }
    return kvm;
  }

  // "/dev/kvm opens" is not "KVM works" (HOST-NOTES: nested PVM cannot run
  // stock kernels): boot the kernel without a root and expect it to get as
  // far as looking for one, within a deadline.
  bool ProbeKvm(const fs::path& kernel) {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      spdlog::info("KVM unavailable (/dev/kvm: {}); using TCG", std::strerror(errno));
      return false;
    }
    ::close(fd);
    CommandSpec spec;
    spec.argv = {opts_.qemu_binary, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                 "-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256",
                 "-kernel", kernel.string(), "-append", "console=ttyS0 panic=-1", "-serial", "stdio"};
    spec.timeout = opts_.kvm_probe_timeout;
    auto out = runner_.Run(spec);
    bool ok = out && (out->stdout_data.find("Run /init") != std::string::npos ||
                      out->stdout_data.find("VFS: Unable to mount root") != std::string::npos ||
                      out->stdout_data.find("Kernel panic") != std::string::npos);
    spdlog::info("KVM probe: {}", ok ? "works; using KVM"
                                     : "guest did not boot (" +
                                           (out ? "exit " + std::to_string(out->exit_code)
                                                : out.error().message()) +
                                           "); using TCG");
    return ok;
  }

  CommandRunner& runner_;
  Clock& clock_;
  QemuOptions opts_;
  std::optional<bool> cached_kvm_;
  uint64_t tsc_khz_ = 0;
};

}  // namespace

std::unique_ptr<Hypervisor> MakeQemuHypervisor(CommandRunner& runner, Clock& clock, QemuOptions options) {
  return std::make_unique<QemuHypervisor>(runner, clock, std::move(options));
}

}  // namespace banger
