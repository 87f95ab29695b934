#include "providers/kvm_probe.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/files.h"
#include "base/strings.h"

namespace banger {

namespace fs = std::filesystem;

namespace {

// Where the child got to; each stage names the step that failed.
enum Stage : int32_t {
  kOpen = 1,
  kApiVersion,
  kCapability,
  kCreateVm,
  kTssAddr,
  kIrqchip,
  kMemory,
  kCreateVcpu,
  kVcpuMmap,
  kRegisters,
  kRun,
  kExitIo,
  kExitHlt,
  kDone,
};

struct ProbeReport {
  int32_t stage = 0;        // the stage reached (kDone: every step passed)
  int32_t err = 0;          // errno of the failing call
  int32_t exit_reason = 0;  // KVM_EXIT_* when the vCPU stopped unexpectedly
  int32_t detail = 0;       // capability number, or the byte written
};

// The guest code: real mode at 0x1000, writes '4' (2 + 2 + '0') to port
// 0x3f8 and halts.
constexpr unsigned char kGuestCode[] = {
    0xba, 0xf8, 0x03,  // mov $0x3f8, %dx
    0x00, 0xd8,        // add %bl, %al
    0x04, '0',         // add $'0', %al
    0xee,              // out %al, (%dx)
    0xf4,              // hlt
};
constexpr uint64_t kGuestAddr = 0x1000;

// Capabilities Firecracker refuses to start without (x86_64).
constexpr int kRequiredCaps[] = {KVM_CAP_IRQCHIP,     KVM_CAP_IOEVENTFD,  KVM_CAP_IRQFD,       KVM_CAP_USER_MEMORY,
                                 KVM_CAP_SET_TSS_ADDR, KVM_CAP_PIT2,       KVM_CAP_PIT_STATE2,  KVM_CAP_ADJUST_CLOCK,
                                 KVM_CAP_DEBUGREGS,    KVM_CAP_MP_STATE,   KVM_CAP_VCPU_EVENTS, KVM_CAP_XCRS,
                                 KVM_CAP_XSAVE,        KVM_CAP_EXT_CPUID};

// Runs in the forked child: raw system calls only (no allocation), the
// report written to `out`.
[[noreturn]] void ChildProbe(int out) {
  ProbeReport r;
  auto fail = [&](int32_t stage) {
    r.stage = stage;
    r.err = errno;
    (void)!::write(out, &r, sizeof(r));
    ::_exit(0);
  };
  int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) fail(kOpen);
  int api = ::ioctl(kvm, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) {
    r.detail = api;
    fail(kApiVersion);
  }
  for (int cap : kRequiredCaps) {
    if (::ioctl(kvm, KVM_CHECK_EXTENSION, cap) <= 0) {
      r.detail = cap;
      fail(kCapability);
    }
  }
  int vm = ::ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) fail(kCreateVm);
  if (::ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) fail(kTssAddr);
  if (::ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) fail(kIrqchip);
  void* mem = ::mmap(nullptr, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fail(kMemory);
  std::memcpy(mem, kGuestCode, sizeof(kGuestCode));
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = kGuestAddr;
  region.memory_size = 0x1000;
  region.userspace_addr = reinterpret_cast<uint64_t>(mem);
  if (::ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) fail(kMemory);
  int vcpu = ::ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) fail(kCreateVcpu);
  int run_size = ::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) fail(kVcpuMmap);
  auto* run = static_cast<kvm_run*>(
      ::mmap(nullptr, static_cast<size_t>(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0));
  if (run == MAP_FAILED) fail(kVcpuMmap);
  kvm_sregs sregs{};
  if (::ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) fail(kRegisters);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (::ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) fail(kRegisters);
  kvm_regs regs{};
  regs.rip = kGuestAddr;
  regs.rax = 2;
  regs.rbx = 2;
  regs.rflags = 0x2;
  if (::ioctl(vcpu, KVM_SET_REGS, &regs) < 0) fail(kRegisters);
  bool saw_io = false;
  for (int i = 0; i < 16; ++i) {
    if (::ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      fail(kRun);
    }
    if (run->exit_reason == KVM_EXIT_IO && !saw_io) {
      const char* data = reinterpret_cast<const char*>(run) + run->io.data_offset;
      r.detail = static_cast<unsigned char>(data[0]);
      if (run->io.direction != KVM_EXIT_IO_OUT || run->io.port != 0x3f8 || data[0] != '4') {
        r.exit_reason = static_cast<int32_t>(run->exit_reason);
        errno = 0;
        fail(kExitIo);
      }
      saw_io = true;
      continue;
    }
    if (run->exit_reason == KVM_EXIT_HLT && saw_io) {
      r.stage = kDone;
      (void)!::write(out, &r, sizeof(r));
      ::_exit(0);
    }
    r.exit_reason = static_cast<int32_t>(run->exit_reason);
    errno = 0;
    fail(saw_io ? kExitHlt : kExitIo);
  }
  errno = 0;
  fail(kExitHlt);
  ::_exit(0);  // not reached: fail() exits
}

const char* StageName(int32_t s) {
  switch (s) {
    case kOpen: return "open /dev/kvm";
    case kApiVersion: return "KVM_GET_API_VERSION";
    case kCapability: return "KVM_CHECK_EXTENSION";
    case kCreateVm: return "KVM_CREATE_VM";
    case kTssAddr: return "KVM_SET_TSS_ADDR";
    case kIrqchip: return "KVM_CREATE_IRQCHIP";
    case kMemory: return "KVM_SET_USER_MEMORY_REGION";
    case kCreateVcpu: return "KVM_CREATE_VCPU";
    case kVcpuMmap: return "mapping the vCPU's kvm_run";
    case kRegisters: return "setting the vCPU's registers";
    case kRun: return "KVM_RUN";
    case kExitIo: return "the probe's port write";
    case kExitHlt: return "the probe's HLT";
  }
  return "the probe";
}

std::string ExitReasonName(int32_t r) {
  switch (r) {
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR (emulation failure)";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_SHUTDOWN: return "KVM_EXIT_SHUTDOWN (triple fault)";
    case KVM_EXIT_MMIO: return "KVM_EXIT_MMIO";
    case KVM_EXIT_IO: return "KVM_EXIT_IO";
    case KVM_EXIT_HLT: return "KVM_EXIT_HLT";
  }
  return "exit reason " + std::to_string(r);
}

std::string BootId() {
  auto text = ReadFile("/proc/sys/kernel/random/boot_id");
  return text ? std::string(Trim(*text)) : "";
}

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

KvmVerdict ProbeKvmNow(std::chrono::milliseconds deadline) {
  KvmVerdict v;
  std::error_code ec;
  const bool pvm = fs::exists("/sys/module/kvm_pvm", ec);
  if (!fs::exists("/dev/kvm", ec)) {
    v.reason = pvm ? "/dev/kvm does not exist here, and the host's KVM is nested through PVM (module kvm_pvm), "
                     "which runs only guest kernels built for PVM, not the stock kernels Firecracker boots"
                   : "/dev/kvm does not exist (no KVM on this host: enable virtualisation in the firmware and load "
                     "kvm_intel or kvm_amd)";
    return v;
  }
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    v.reason = "/dev/kvm is not readable and writable by uid " + std::to_string(::geteuid()) +
               " (add the user to the kvm group, or run as root)";
    return v;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    v.reason = std::string("cannot run the KVM probe: pipe: ") + std::strerror(errno);
    return v;
  }
  int64_t start = NowMs();
  pid_t pid = ::fork();
  if (pid < 0) {
    v.reason = std::string("cannot run the KVM probe: fork: ") + std::strerror(errno);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return v;
  }
  if (pid == 0) {
    ::close(pipefd[0]);
    ChildProbe(pipefd[1]);
  }
  ::close(pipefd[1]);
  ProbeReport r;
  bool got = false, timed_out = false;
  int64_t end = start + deadline.count();
  while (true) {
    int left = static_cast<int>(std::max<int64_t>(0, end - NowMs()));
    pollfd p{pipefd[0], POLLIN, 0};
    int n = ::poll(&p, 1, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = n == 0;
      break;
    }
    got = ::read(pipefd[0], &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r));
    break;
  }
  ::close(pipefd[0]);
  if (!got) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  int64_t took = NowMs() - start;
  if (!got) {
    v.reason = timed_out ? "a probe VM did not reach HLT within " + std::to_string(deadline.count()) +
                               " ms (the vCPU is stuck, e.g. in KVM's instruction emulator" +
                               (pvm ? "; KVM here is nested through PVM (module kvm_pvm)" : "") + ")"
                         : "the KVM probe process ended without a report (" +
                               (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                                    : "exit " + std::to_string(WEXITSTATUS(status))) +
                               ")";
    return v;
  }
  if (r.stage != kDone) {
    std::string why = std::string(StageName(r.stage)) + " failed";
    if (r.stage == kCapability) {
      why = "KVM lacks capability " + std::to_string(r.detail) + " that Firecracker requires";
    } else if (r.stage == kApiVersion) {
      why = "KVM API version " + std::to_string(r.detail) + " (expected " + std::to_string(KVM_API_VERSION) + ")";
    } else if (r.exit_reason != 0) {
      why += ": the vCPU stopped with " + ExitReasonName(r.exit_reason);
    } else if (r.err != 0) {
      why += std::string(": ") + std::strerror(r.err);
    }
    v.reason = "a probe VM did not run: " + why;
    return v;
  }
  // The probe ran; a PVM host runs it too but not stock guest kernels.
  if (pvm) {
    v.reason = "KVM here is nested through PVM (module kvm_pvm), which runs only guest kernels built for PVM, "
               "not the stock kernels Firecracker boots (a probe VM ran to HLT, but a Linux guest does not)";
    return v;
  }
  v.works = true;
  v.reason = "a probe VM (in-kernel irqchip, 1 vCPU) ran to HLT in " + std::to_string(took) + " ms";
  return v;
}

std::string FormatKvmCache(const std::string& boot_id, const KvmVerdict& v) {
  return "boot_id " + boot_id + "\n" + (v.works ? "works\n" : "fails\n") + v.reason + "\n";
}

bool ParseKvmCache(const std::string& text, const std::string& boot_id, KvmVerdict* out) {
  std::vector<std::string> lines = Split(text, '\n');
  if (lines.size() < 3 || boot_id.empty() || lines[0] != "boot_id " + boot_id) return false;
  if (lines[1] != "works" && lines[1] != "fails") return false;
  if (lines[2].empty()) return false;
  out->works = lines[1] == "works";
  out->reason = lines[2];
  out->cached = true;
  return true;
}

KvmVerdict ProbeKvmCached(const fs::path& cache_file, std::chrono::milliseconds deadline) {
  std::string boot_id = BootId();
  if (!cache_file.empty() && !boot_id.empty()) {
    if (auto text = ReadFile(cache_file)) {
      KvmVerdict v;
      if (ParseKvmCache(*text, boot_id, &v)) return v;
    }
  }
  KvmVerdict v = ProbeKvmNow(deadline);
  // Only a verdict the probe reached is cached: a permission problem is
  // fixed without a reboot.
  bool definite = v.works || v.reason.rfind("a probe VM", 0) == 0 || v.reason.rfind("KVM ", 0) == 0;
  if (!cache_file.empty() && !boot_id.empty() && definite) {
    (void)WriteFileAtomic(cache_file, FormatKvmCache(boot_id, v), 0600);
  }
  return v;
}

}  // namespace banger
