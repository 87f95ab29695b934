#include "cli/doctor_commands.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/disk_space.h"
#include "base/files.h"
#include "base/strings.h"
#include "host/vm_runtime.h"
#include "providers/confinement.h"
#include "providers/kvm_probe.h"
#include "providers/qemu_hypervisor.h"
#include "state/layout.h"

namespace banger::cli {
namespace {

namespace fs = std::filesystem;

enum class Verdict { kOk, kWarn, kFail };

struct Check {
  std::string name;
  Verdict verdict = Verdict::kOk;
  std::string detail;  // what was found (ok) or what is wrong (warn, fail)
  std::string provider;  // "qemu" or "firecracker" for a provider's requirement; "" for the host
  std::string fix;       // what to install or do, when something is missing
};

constexpr uint64_t kMiB = 1ull << 20;
// Below this a pull of a small image already fails; below the warning level
// a debian image and a few sandboxes do not fit.
constexpr uint64_t kFreeFail = 256 * kMiB;
constexpr uint64_t kFreeWarn = 2048 * kMiB;

// The first line a program prints for `args` (its version), or why it could not run.
Result<std::string> VersionOf(CommandRunner& runner, const fs::path& program, std::vector<std::string> args) {
  CommandSpec spec;
  spec.argv = {program.string()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = std::chrono::seconds(20);
  BANGER_ASSIGN_OR_RETURN(CommandOutput out, runner.Run(spec));
  std::string text = out.stdout_data.empty() ? out.stderr_data : out.stdout_data;
  std::string first(Trim(text.substr(0, text.find('\n'))));
  if (out.exit_code != 0) {
    return FailedPrecondition(program.string() + " exited with status " + std::to_string(out.exit_code) +
                              (first.empty() ? "" : ": " + first));
  }
  if (first.empty()) return FailedPrecondition(program.string() + " printed no version");
  return first;
}

// PRAGMA integrity_check on a read-only connection of its own.
Status CheckDatabaseIntegrity(const fs::path& db_path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return DataLoss("cannot open " + db_path.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  std::vector<std::string> problems;
  rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    std::string line = t != nullptr ? reinterpret_cast<const char*>(t) : "";
    if (line != "ok" && problems.size() < 10) problems.push_back(line);
    rc = SQLITE_OK;
  }
  std::string err = rc != SQLITE_DONE ? sqlite3_errmsg(db) : "";
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  if (!err.empty()) return DataLoss("PRAGMA integrity_check on " + db_path.string() + ": " + err);
  if (!problems.empty()) {
    return DataLoss(db_path.string() + " fails PRAGMA integrity_check: " + Join(problems, "; "));
  }
  return OkStatus();
}

// The state directory: exists (or can be created), is a directory of ours,
// private, writable, with room.
// Free space on the file system of `dir` (the state directory, or the parent
// it will be created in).
void CheckFreeSpace(const fs::path& dir, std::vector<Check>& out) {
  auto free = FreeBytes(dir);
  if (!free) {
    out.push_back({"free space", Verdict::kFail, free.error().message()});
  } else {
    std::string amount = HumanBytes(*free) + " free on the state directory's file system";
    out.push_back({"free space", *free < kFreeFail ? Verdict::kFail : *free < kFreeWarn ? Verdict::kWarn : Verdict::kOk,
                   *free < kFreeWarn ? amount + " (pulls and root disks need more; free some or use --state-dir)"
                                     : amount});
  }
}

void CheckStateDir(const fs::path& root, std::vector<Check>& out) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    int err = errno;
    fs::path parent = root.parent_path();
    while (!parent.empty() && ::access(parent.c_str(), F_OK) != 0 && parent != parent.parent_path()) {
      parent = parent.parent_path();
    }
    if (err == ENOENT && ::access(parent.c_str(), W_OK | X_OK) == 0) {
      out.push_back({"state directory " + root.string(), Verdict::kOk,
                     "does not exist yet; will be created (0700) under " + parent.string()});
      CheckFreeSpace(parent, out);
    } else {
      out.push_back({"state directory " + root.string(), Verdict::kFail,
                     err == ENOENT ? "does not exist and " + parent.string() + " is not writable"
                                   : ErrnoStatus(err, "stat").message()});
    }
    return;
  }
  std::vector<std::string> problems;
  if (!S_ISDIR(st.st_mode)) problems.push_back("not a directory");
  if (st.st_uid != ::geteuid()) {
    problems.push_back("owned by uid " + std::to_string(st.st_uid) + ", not by uid " + std::to_string(::geteuid()) +
                       " running banger");
  }
  // 0700; or 0710 when its group is the one banger's confined QEMUs share,
  // which search it to reach their own files (docs/qemu.md, "Confinement").
  const bool qemu_group = st.st_gid == ConfineIds().shared_gid();
  if ((st.st_mode & 07777) != 0700 && !((st.st_mode & 07777) == 0710 && qemu_group)) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    problems.push_back(std::string("mode ") + mode + ", expected 0700 (private)" + (qemu_group ? " or 0710" : ""));
  }
  if (problems.empty()) {
    // Really writable: create and remove a file.
    fs::path probe = root / (".doctor-probe-" + std::to_string(::getpid()));
    int fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
      problems.push_back(ErrnoStatus(errno, "cannot create a file in it").message());
    } else {
      bool wrote = ::write(fd, "x", 1) == 1;
      int werr = errno;
      ::close(fd);
      ::unlink(probe.c_str());
      if (!wrote) problems.push_back(ErrnoStatus(werr, "cannot write a file in it").message());
    }
  }
  out.push_back({"state directory " + root.string(), problems.empty() ? Verdict::kOk : Verdict::kFail,
                 problems.empty() ? "a private directory of uid " + std::to_string(::geteuid()) + ", writable"
                                  : Join(problems, "; ")});
  CheckFreeSpace(root, out);
}

// cgroup v2 with the controllers the jailer limits (cpu, memory), or why not.
Status CgroupV2ForJailer() {
  auto controllers = ReadFile("/sys/fs/cgroup/cgroup.controllers");
  if (!controllers) {
    return FailedPrecondition("/sys/fs/cgroup is not a cgroup v2 (unified) hierarchy");
  }
  std::vector<std::string> missing;
  std::vector<std::string> have = Split(std::string(Trim(*controllers)), ' ');
  for (const char* want : {"cpu", "memory"}) {
    if (std::find(have.begin(), have.end(), want) == have.end()) missing.push_back(want);
  }
  if (!missing.empty()) {
    return FailedPrecondition("cgroup v2 lacks the " + Join(missing, " and ") + " controller" +
                              (missing.size() == 1 ? "" : "s"));
  }
  return OkStatus();
}

// What Firecracker needs on this host, each with what to do about it
// (docs/firecracker.md, "Host set-up"). Missing pieces are warnings (QEMU
// still runs sandboxes) unless the host config makes Firecracker the default.
void CheckFirecracker(CommandRunner& runner, const host::Config& config, const StateLayout& layout,
                      const KernelRecord* kernel, std::vector<Check>& out) {
  const Verdict missing = config.hypervisor == "firecracker" ? Verdict::kFail : Verdict::kWarn;
  auto add = [&](std::string name, Verdict v, std::string detail, std::string fix = "") {
    out.push_back({std::move(name), v, std::move(detail), "firecracker", std::move(fix)});
  };
  const std::string release_fix =
      "download firecracker-<version>-x86_64.tgz from the Firecracker releases on GitHub (v1.4 or later) and "
      "install its release-<version>-x86_64/";
  for (const char* name : {"firecracker", "jailer"}) {
    const bool jailer = std::string(name) == "jailer";
    auto found = FindProgram(name);
    if (!found) {
      add(name, jailer ? Verdict::kWarn : missing,
          jailer ? "not on PATH (needed only to confine Firecracker: chroot, uid/gid, cgroup, network namespace)"
                 : "not on PATH",
          release_fix + name + "-<version>-x86_64 as /usr/local/bin/" + name + " (mode 0755)");
      continue;
    }
    auto v = VersionOf(runner, *found, {"--version"});
    if (v) {
      add(std::string(name) + " (" + found->string() + ")", Verdict::kOk, *v);
    } else {
      add(std::string(name) + " (" + found->string() + ")", missing, v.error().message(),
          "reinstall it from the Firecracker release for x86_64");
    }
  }
  // KVM, for real: a probe VM must run (Firecracker has no software fallback).
  std::error_code ec;
  KvmVerdict kvm = ProbeKvmCached(layout.root / "kvm-verdict");
  std::string kvm_fix;
  if (!kvm.works) {
    if (fs::exists("/sys/module/kvm_pvm", ec)) {
      kvm_fix = "run Firecracker sandboxes on a host whose KVM runs stock guest kernels (bare metal, or a VM with "
                "nested VMX/SVM, not PVM); on this host use hypervisor: qemu (TCG)";
    } else if (!fs::exists("/dev/kvm", ec)) {
      kvm_fix = "enable virtualisation (VT-x/AMD-V) in the firmware, or nested virtualisation for a VM host, then "
                "modprobe kvm_intel (or kvm_amd)";
    } else if (::access("/dev/kvm", R_OK | W_OK) != 0) {
      kvm_fix = "add the user to the kvm group (sudo usermod -aG kvm $USER, then log in again), or run as root";
    } else {
      kvm_fix = "run Firecracker sandboxes on a host whose KVM runs stock guest kernels (bare metal, or a VM with "
                "nested VMX/SVM, not PVM); on this host use hypervisor: qemu (TCG)";
    }
  }
  add("KVM for Firecracker (/dev/kvm and a probe VM)", kvm.works ? Verdict::kOk : missing,
      (kvm.works ? "works: " : "does not work: ") + kvm.reason + (kvm.cached ? " (cached for this boot)" : ""),
      kvm_fix);
  Status cg = CgroupV2ForJailer();
  add("cgroup v2 for the jailer", cg.ok() ? Verdict::kOk : Verdict::kWarn,
      cg.ok() ? "/sys/fs/cgroup is cgroup v2 with the cpu and memory controllers" : cg.message(),
      cg.ok() ? "" : "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) and enable the cpu and memory "
                     "controllers; without it the jailer cannot limit Firecracker");
  if (kernel != nullptr) {
    bool has = !kernel->vmlinux_path.empty() && fs::exists(kernel->vmlinux_path, ec);
    add("uncompressed kernel (vmlinux) of " + kernel->name, has ? Verdict::kOk : missing,
        has ? kernel->vmlinux_path : "the kernel has no extracted vmlinux (Firecracker boots only an ELF vmlinux)",
        has ? "" : "run `banger kernel rm " + kernel->name + "` and `banger kernel pull " + kernel->name +
                       "` (kernel import extracts the vmlinux)");
  }
  add("Firecracker provider in this banger", host::kFirecrackerProviderBuiltIn ? Verdict::kOk : missing,
      host::kFirecrackerProviderBuiltIn ? "built in" : "this banger build has no Firecracker provider",
      host::kFirecrackerProviderBuiltIn ? "" : "install a banger release that includes the Firecracker provider");
}

std::string Symbol(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "✓";
    case Verdict::kWarn: return "!";
    case Verdict::kFail: return "✗";
  }
  return "?";
}

std::string VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kWarn: return "warning";
    case Verdict::kFail: return "fail";
  }
  return "?";
}

}  // namespace

void AddDoctorCommands(CLI::App& app, const Globals& g, int& exit_code) {
  auto* doctor = app.add_subcommand("doctor", "Check that this host can run sandboxes");
  doctor->footer("Examples:\n  banger doctor\n  banger doctor -o json");
  auto* output = new std::string("text");
  doctor->add_option("-o,--output", *output, "text|json")->check(CLI::IsMember({"text", "json"}));
  doctor->callback([&g, &exit_code, output] {
    std::vector<Check> checks;
    auto add = [&](std::string name, const Status& s, std::string ok_detail = "") {
      checks.push_back({std::move(name), s.ok() ? Verdict::kOk : Verdict::kFail, s.ok() ? ok_detail : s.message()});
    };
    auto runner = MakePosixCommandRunner();

    // 1. The state directory, before opening it (which would create it).
    auto layout = ResolveStateLayout(g.state_dir);
    if (!layout) {
      add("state directory", layout.error());
    } else {
      CheckStateDir(layout->root, checks);
    }

    // 2. The host: config, database (opens, migrates, integrity), services.
    auto opened = host::Host::Open(Context::Options(g));
    if (!opened) {
      add("state database and configuration", opened.error());
    } else {
      host::Host& h = **opened;
      auto version = h.store().SchemaVersion();
      Status integrity = CheckDatabaseIntegrity(h.layout().db_path);
      if (!version) {
        add("state database " + h.layout().db_path.string(), version.error());
      } else {
        add("state database " + h.layout().db_path.string(), integrity,
            "schema version " + std::to_string(*version) + ", PRAGMA integrity_check ok");
      }
      struct stat st;
      if (::stat(h.layout().db_path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
        checks.push_back({"state database permissions", Verdict::kFail,
                          std::string("open to others (mode ") + mode + "), expected 0600"});
      }

      // Below the root: the database is the owner's alone and nothing is
      // writable by other users.
      add("state directory contents", h.CheckStateDirectory(), "nothing open to other users");

      // 3. The hypervisor: QEMU really runs, the agent is there.
      SandboxRuntime* rt = h.runtime();
      Status available = rt ? rt->CheckAvailable() : FailedPrecondition("no hypervisor runtime");
      auto qemu = FindProgram("qemu-system-x86_64");
      if (!qemu) {
        add("qemu-system-x86_64", FailedPrecondition("not installed (scripts/setup.sh installs qemu-system-x86)"));
      } else {
        auto v = VersionOf(*runner, *qemu, {"-version"});
        if (v) add("qemu-system-x86_64 (" + qemu->string() + ")", OkStatus(), *v);
        else add("qemu-system-x86_64 (" + qemu->string() + ")", v.error());
      }
      fs::path agent = host::FindAgentBinary();
      add("guest agent", agent.empty() ? FailedPrecondition("banger-agent not found beside banger or in libexec; "
                                                              "set BANGER_AGENT to its path")
                                       : OkStatus(),
          agent.string());
      add("sandbox runtime", available, "QEMU, the guest agent and the configured network namespace are usable");
      for (HypervisorKind k : {HypervisorKind::kAuto, HypervisorKind::kQemu, HypervisorKind::kFirecracker}) {
        auto p = h.ProviderFor()(k);
        checks.push_back({"hypervisor: " + std::string(ToString(k)), p ? Verdict::kOk : Verdict::kWarn,
                          p ? *p : p.error().message()});
      }
      std::error_code ec;
      bool kvm = ::access("/dev/kvm", R_OK | W_OK) == 0;
      checks.push_back({"/dev/kvm", kvm ? Verdict::kOk : Verdict::kWarn,
                        kvm ? "usable: sandboxes run with KVM acceleration"
                        : fs::exists("/dev/kvm", ec) ? "present but not readable and writable by this user: add it "
                                                        "to the kvm group (sudo usermod -aG kvm $USER, then log in "
                                                        "again); until then sandboxes run under software emulation "
                                                        "(slower)"
                                                      : "absent: sandboxes run under software emulation (slower)"});
      auto verdict = ReadFile(h.layout().root / "accel-verdict");
      checks.push_back({"acceleration", Verdict::kOk,
                        (verdict ? std::string(Trim(*verdict)) : "not probed yet (decided at first boot)") +
                            " (config accel: " + h.config().accel + ", machine: " + h.config().machine + ")"});

      // How each QEMU is confined (docs/qemu.md, "Confinement").
      QemuConfinement conf = host::ConfinementFor(h.config(), h.layout());
      if (conf.per_sandbox_ids) {
        add("QEMU runs as a per-sandbox uid (" + std::to_string(conf.ids.IdOfSlot(0)) + "-" +
                std::to_string(conf.ids.IdOfSlot(conf.ids.count - 1)) + ", shared group " +
                std::to_string(conf.ids.shared_gid()) + ")",
            host::CheckPrivilegeDrop(h.runner(), conf));
      } else {
        checks.push_back({"QEMU identity", Verdict::kWarn,
                          "QEMU runs as uid " + std::to_string(::geteuid()) +
                              ", as banger does (per-sandbox uids need root)"});
      }
      add(std::string("QEMU seccomp sandbox (-sandbox ") + kQemuSandboxOption + ")",
          host::CheckQemuSeccomp(h.runner()));
      checks.push_back({"memory limit per QEMU", conf.cgroups.mode != CgroupMode::kNone ? Verdict::kOk : Verdict::kWarn,
                        conf.cgroups.mode != CgroupMode::kNone
                            ? conf.cgroups.Describe()
                            : conf.cgroups.Describe() + ": QEMU runs without a memory limit"});

      // The checks above that only QEMU needs.
      for (Check& c : checks) {
        if (c.provider.empty() && (StartsWith(c.name, "qemu-system-x86_64") || c.name.find("QEMU") != std::string::npos ||
                                   c.name == "/dev/kvm" || c.name == "acceleration")) {
          c.provider = "qemu";
          if (c.verdict != Verdict::kOk && StartsWith(c.name, "qemu-system-x86_64")) {
            c.fix = "apt-get install qemu-system-x86 (scripts/setup.sh does)";
          }
        }
      }

      // 3b. Firecracker (docs/firecracker.md).
      {
        std::string kname = h.artifacts().DefaultKernel();
        auto k = h.store().GetKernel(kname);
        CheckFirecracker(*runner, h.config(), h.layout(), k ? &*k : nullptr, checks);
      }

      // 4. The default kernel: recorded and its files on disk.
      std::string kernel = h.artifacts().DefaultKernel();
      auto krec = h.store().GetKernel(kernel);
      if (!krec) {
        add("default kernel " + kernel,
            FailedPrecondition("not installed yet; apply pulls it, or run `banger kernel pull " + kernel + "`"));
      } else {
        std::vector<std::string> missing;
        for (const std::string& f : {krec->kernel_path, krec->initrd_path}) {
          if (!f.empty() && !fs::exists(f, ec)) missing.push_back(f);
        }
        add("default kernel " + kernel,
            missing.empty() ? OkStatus()
                            : DataLoss("recorded but missing on disk: " + Join(missing, ", ") +
                                       "; run `banger kernel rm " + kernel + "` and pull it again"),
            krec->version.empty() ? krec->kernel_path : krec->version + " (" + krec->kernel_path + ")");
      }

      // 5. Bridged networking.
      NetworkDriver& net = h.network();
      Status ns = net.CheckAvailable();
      checks.push_back({"bridged networking" + (net.Namespace().empty() ? std::string() : " in network namespace " + net.Namespace()),
                        ns.ok() ? Verdict::kOk : Verdict::kWarn,
                        ns.ok() ? "ip, nft and /dev/net/tun usable"
                                : ns.message() + " (sandboxes with network.mode: user or none still work)"});
    }

    // 6. What an ordinary user has and lacks (docs/testing.md, "Running as an
    // ordinary user").
    if (::geteuid() != 0) {
      checks.push_back({"running as uid " + std::to_string(::geteuid()), Verdict::kOk,
                        "images (OCI, bundles, busybox) keep their exact owners and modes; network.mode user, "
                        "isolated and none work; bridged needs root or CAP_NET_ADMIN; the debootstrap recipe "
                        "(debian-bookworm) needs root"});
      std::string cgroup;
      if (auto self = ReadFile("/proc/self/cgroup")) {
        for (const std::string& line : Split(*self, '\n')) {
          if (StartsWith(line, "0::")) cgroup = line.substr(3);
        }
      }
      fs::path dir = fs::path("/sys/fs/cgroup") / fs::path(cgroup).relative_path();
      bool delegated = !cgroup.empty() && ::access(dir.c_str(), W_OK) == 0 &&
                       ::access((dir / "cgroup.procs").c_str(), W_OK) == 0;
      checks.push_back({"cgroup delegation", delegated ? Verdict::kOk : Verdict::kWarn,
                        delegated ? dir.string() + " is writable"
                                  : (cgroup.empty() ? std::string("no cgroup v2") : dir.string() + " is not writable by this user") +
                                        ": run banger in a delegated scope, e.g. systemd-run --user --scope banger ..."});
    }

    // 7. The programs banger runs, each run for its version.
    struct Tool {
      const char* name;
      std::vector<std::string> version_args;
      const char* package;
    };
    const Tool tools[] = {
        {"qemu-img", {"--version"}, "qemu-utils"},
        {"mkfs.ext4", {"-V"}, "e2fsprogs"},
        {"debugfs", {"-V"}, "e2fsprogs"},
        {"debootstrap", {"--version"}, "debootstrap"},
    };
    for (const Tool& t : tools) {
      auto found = FindProgram(t.name);
      if (!found) {
        add(t.name, FailedPrecondition(std::string("not installed (scripts/setup.sh installs ") + t.package + ")"));
        continue;
      }
      auto v = VersionOf(*runner, *found, t.version_args);
      if (v) add(std::string(t.name) + " (" + found->string() + ")", OkStatus(), *v);
      else add(std::string(t.name) + " (" + found->string() + ")", v.error());
    }

    int failures = 0;
    for (const auto& c : checks) failures += c.verdict == Verdict::kFail ? 1 : 0;
    if (*output == "json") {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& c : checks) {
        nlohmann::json jc = {{"check", c.name}, {"result", VerdictName(c.verdict)}, {"detail", c.detail}};
        if (!c.provider.empty()) jc["provider"] = c.provider;
        if (!c.fix.empty()) jc["fix"] = c.fix;
        j.push_back(std::move(jc));
      }
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      for (const auto& c : checks) {
        std::string name = c.provider.empty() ? c.name : "[" + c.provider + "] " + c.name;
        std::printf("%s %s%s\n", Symbol(c.verdict).c_str(), name.c_str(),
                    c.detail.empty() ? "" : (": " + c.detail).c_str());
        if (!c.fix.empty() && c.verdict != Verdict::kOk) std::printf("    fix: %s\n", c.fix.c_str());
      }
    }
    exit_code = failures == 0 ? kExitOk : kExitError;
  });
}

}  // namespace banger::cli
