// banger-agent: PID 1 of banger's initramfs and the guest side of the host
// channel. See docs/guest-agent.md for the boot sequence.
//
//   banger-agent                      as PID 1: boot the sandbox (normal use)
//   banger-agent --serve-unix PATH [--env K=V]... [--hosts-file FILE] [--hold]
//                                     serve the protocol on a unix socket (host tests;
//                                     --hold: held until IDENTITY, which is only parsed)
//   banger-agent --version
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <linux/random.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/hosts_file.h"
#include "agent/server.h"
#include "providers/agent_protocol.h"

#ifndef BANGER_AGENT_VERSION
#define BANGER_AGENT_VERSION "0.1.0"
#endif

namespace banger::agent {
namespace {

constexpr const char* kModulesOrder = "/lib/banger/modules.order";
constexpr const char* kConfigPath = "/banger/config.json";
constexpr const char* kNewRoot = "/newroot";

void Log(const std::string& msg) {
  std::string line = "banger-agent: " + msg + "\n";
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

int64_t MonoMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SleepMs(int ms) {
  timespec ts{ms / 1000, static_cast<long>(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

[[noreturn]] void PowerOff() {
  ::sync();
  ::reboot(RB_POWER_OFF);
  // Only PID 1 gets here if power-off is unsupported: exiting panics the
  // kernel, and panic=-1 with QEMU's -no-reboot ends the VM.
  ::_exit(1);
}

// With the image's own init as PID 1, power off through it, so services stop
// and file systems unmount cleanly: the image's poweroff command (systemd,
// busybox and sysvinit all ship one), else the signal systemd and busybox init
// both understand as "power off". The host waits for the VM to exit and
// forces it after its deadline.
void PowerOffThroughInit() {
  Log("asking init to power off");
  if (::access("/sbin/poweroff", X_OK) == 0) {
    pid_t pid = ::fork();
    if (pid == 0) {
      char* argv[] = {const_cast<char*>("/sbin/poweroff"), nullptr};
      ::execv("/sbin/poweroff", argv);
      ::_exit(127);
    }
    if (pid > 0) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    }
  }
  ::kill(1, SIGRTMIN + 4);  // systemd: poweroff
  ::kill(1, SIGUSR2);       // busybox init: poweroff
}

[[noreturn]] void Fatal(const std::string& msg) {
  Log("FATAL: " + msg);
  SleepMs(200);
  PowerOff();
}

bool ReadFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->clear();
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out->append(buf, static_cast<size_t>(n));
  ::close(fd);
  return n == 0;
}

bool WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  return ::close(fd) == 0;
}

bool MakeDirs(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return false;
  }
  return true;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// ---- early boot -------------------------------------------------------------

void MountEarly() {
  struct M {
    const char* src;
    const char* dir;
    const char* type;
    unsigned long flags;
    const char* data;
  };
  const M mounts[] = {
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
      {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
  };
  for (const M& m : mounts) {
    ::mkdir(m.dir, 0755);
    if (::mount(m.src, m.dir, m.type, m.flags, m.data) != 0 && errno != EBUSY) {
      Log(Errno(std::string("mount ") + m.dir));
    }
  }
  ::symlink("/proc/self/fd", "/dev/fd");
}

void LoadModules() {
  std::string list;
  if (!ReadFile(kModulesOrder, &list)) {
    Log(std::string("no ") + kModulesOrder + "; assuming a kernel with built-in drivers");
    return;
  }
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find('\n', start);
    if (end == std::string::npos) end = list.size();
    std::string path = Trim(list.substr(start, end - start));
    start = end + 1;
    if (path.empty() || path[0] == '#') continue;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      Log(Errno("open module " + path));
      continue;
    }
    if (::syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
      // Optional alternatives (e.g. a CPU-specific crc32c) may refuse to load.
      Log(Errno("load module " + path));
    }
    ::close(fd);
  }
}

// Grows the ext4 file system mounted at `mountpoint` to fill `device` (the
// host may give a sandbox a bigger disk than the image, or grow a volume).
// ext4 resizes online through an ioctl, so no resize2fs is needed in the
// initramfs.
void GrowExt4(const std::string& device, const std::string& mountpoint) {
  int dev = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (dev < 0) return;
  uint64_t bytes = 0;
  bool have_size = ::ioctl(dev, BLKGETSIZE64, &bytes) == 0;
  ::close(dev);
  struct statfs sf{};
  if (!have_size || ::statfs(mountpoint.c_str(), &sf) != 0 || sf.f_bsize <= 0) return;
  uint64_t blocks = bytes / static_cast<uint64_t>(sf.f_bsize);
  int dir = ::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  constexpr unsigned long kExt4IocResizeFs = _IOW('f', 16, uint64_t);
  // Same size: a no-op. Smaller: EINVAL (never shrinks).
  if (::ioctl(dir, kExt4IocResizeFs, &blocks) != 0 && errno != EINVAL) Log(Errno("grow file system at " + mountpoint));
  ::close(dir);
}

void GrowRootFs(const std::string& device, const std::string& fstype) {
  if (fstype != "ext4") return;
  GrowExt4(device, kNewRoot);
}

bool WaitForPath(const std::string& path, int timeout_ms) {
  int64_t deadline = MonoMs() + timeout_ms;
  while (::access(path.c_str(), F_OK) != 0) {
    if (MonoMs() > deadline) return false;
    SleepMs(20);
  }
  return true;
}

// Finds the device under `sys_class` (e.g. /sys/block) whose sysfs file
// `attribute` holds `value`; returns /dev/<entry> (created as `node_type`
// from sysfs' dev numbers if devtmpfs lacks the node), or "" after the timeout.
std::string FindDevice(const char* sys_class, const char* attribute, const std::string& value, mode_t node_type,
                       int timeout_ms) {
  int64_t deadline = MonoMs() + timeout_ms;
  while (true) {
    if (DIR* d = ::opendir(sys_class)) {
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::string base = std::string(sys_class) + "/" + e->d_name;
        std::string text;
        if (!ReadFile(base + "/" + attribute, &text) || Trim(text) != value) continue;
        std::string dev = std::string("/dev/") + e->d_name;
        ::closedir(d);
        if (::access(dev.c_str(), F_OK) != 0) {
          std::string numbers;
          unsigned maj = 0, min = 0;
          if (ReadFile(base + "/dev", &numbers) && std::sscanf(numbers.c_str(), "%u:%u", &maj, &min) == 2) {
            ::mknod(dev.c_str(), node_type | 0600, makedev(maj, min));
          }
        }
        return dev;
      }
      ::closedir(d);
    }
    if (MonoMs() > deadline) return "";
    SleepMs(20);
  }
}

// Finds the virtio-serial port named `name`: /dev/<vportNpM>, or "".
std::string FindPort(const std::string& name, int timeout_ms) {
  return FindDevice("/sys/class/virtio-ports", "name", name, S_IFCHR, timeout_ms);
}

// The host channel: the virtio-serial port (QEMU) or, in a VM without one, a
// listener on vsock port kVsockPort (Firecracker). Both carry the same
// protocol (providers/agent_protocol.h).
struct Channel {
  int fd = -1;          // the open port, or the vsock listener
  bool listener = false;
};

// Looks for whichever channel exists until `timeout_ms`: the named port
// first (virtio_console binds it early under QEMU), then a vsock device that
// reports a guest CID. Neither: fd -1 (the agent still runs init, without a
// host channel).
Channel FindChannel(const std::string& port_name, int timeout_ms) {
  int64_t deadline = MonoMs() + timeout_ms;
  Channel c;
  while (true) {
    std::string port = FindPort(port_name, 0);
    if (!port.empty()) {
      c.fd = ::open(port.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
      if (c.fd < 0) Log(Errno("open " + port));
      return c;
    }
    if (VsockAvailable()) {
      c.fd = OpenVsockListener(agent_protocol::kVsockPort);
      c.listener = c.fd >= 0;
      if (c.listener) Log("host channel: vsock port " + std::to_string(agent_protocol::kVsockPort));
      return c;
    }
    if (MonoMs() > deadline) break;
    SleepMs(20);
  }
  Log("neither virtio port " + port_name + " nor a vsock device found; no host channel");
  return c;
}

int ServeChannel(const Channel& c, const ServerOptions& opts) {
  return c.listener ? ServeListener(c.fd, opts) : ServeVirtioPort(c.fd, opts);
}

// ---- network ----------------------------------------------------------------

bool SetInterface(int sock, const std::string& ifname, uint32_t addr, uint32_t mask) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (addr != 0) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    if (::ioctl(sock, SIOCSIFADDR, &ifr) != 0) {
      Log(Errno("set address of " + ifname));
      return false;
    }
    sin->sin_addr.s_addr = mask;
    if (::ioctl(sock, SIOCSIFNETMASK, &ifr) != 0) {
      Log(Errno("set netmask of " + ifname));
      return false;
    }
  }
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
    Log(Errno("get flags of " + ifname));
    return false;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) {
    Log(Errno("bring up " + ifname));
    return false;
  }
  return true;
}

// Loopback: the same in every sandbox, so a held boot brings it up before
// it holds and a restore does not pay for it.
void BringUpLoopback() {
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    Log(Errno("socket"));
    return;
  }
  SetInterface(sock, "lo", 0, 0);
  ::close(sock);
}

// The sandbox's NIC: address, netmask, default route.
void ConfigureNetwork(const AgentConfig& c) {
  if (!c.network) return;
  const AgentNetwork& n = *c.network;
  if (!WaitForPath("/sys/class/net/" + n.interface, 10000)) {
    Log("network interface " + n.interface + " did not appear");
    return;
  }
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    Log(Errno("socket"));
    return;
  }
  uint32_t addr = *ParseIpv4(n.address);
  uint32_t mask = n.prefix == 0 ? 0 : htonl(~uint32_t{0} << (32 - n.prefix));
  if (SetInterface(sock, n.interface, addr, mask) && !n.gateway.empty()) {
    rtentry rt{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
    auto* gw = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
    auto* msk = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
    dst->sin_family = gw->sin_family = msk->sin_family = AF_INET;
    gw->sin_addr.s_addr = *ParseIpv4(n.gateway);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    std::string dev = n.interface;
    rt.rt_dev = dev.data();
    if (::ioctl(sock, SIOCADDRT, &rt) != 0 && errno != EEXIST) Log(Errno("add default route"));
  }
  ::close(sock);
}

// ---- inside the new root ----------------------------------------------------

// The block device whose virtio-blk serial is `serial` ("/dev/vdX"), or "".
std::string FindDiskBySerial(const std::string& serial, int timeout_ms) {
  return FindDevice("/sys/block", "serial", serial, S_IFBLK, timeout_ms);
}

// Mounts every persistent volume at its mountPath inside the new root (we are
// chrooted there, so a symlink in the path cannot lead outside it) and grows
// its file system to its disk. A volume that cannot be mounted stops the
// boot: the sandbox must not run with its data missing.
void MountVolumes(const AgentConfig& c) {
  for (const auto& v : c.volumes) {
    std::string dev = FindDiskBySerial(v.serial, 15000);
    if (dev.empty()) Fatal("volume disk with serial " + v.serial + " (for " + v.mount_path + ") did not appear");
    if (!MakeDirs(v.mount_path, 0755)) Fatal(Errno("create volume mount point " + v.mount_path));
    if (::mount(dev.c_str(), v.mount_path.c_str(), "ext4", 0, nullptr) != 0) {
      Fatal(Errno("mount volume " + dev + " at " + v.mount_path));
    }
    GrowExt4(dev, v.mount_path);
    Log("mounted volume " + v.serial + " (" + dev + ") at " + v.mount_path);
  }
}

void WriteGuestFiles(const AgentConfig& c) {
  if (!c.hostname.empty()) {
    if (::sethostname(c.hostname.data(), c.hostname.size()) != 0) Log(Errno("sethostname"));
    ::mkdir("/etc", 0755);
    if (!WriteFile("/etc/hostname", c.hostname + "\n", 0644)) Log(Errno("write /etc/hostname"));
  }
  // /etc/hosts: the image's lines, a 127.0.1.1 line for the hostname unless
  // the image maps it already, and banger's block of peers (replacing the one
  // a previous boot of this disk wrote).
  std::string hosts;
  if (std::string err = ReadHostsFile("/etc/hosts", &hosts); !err.empty()) {
    Log(err);
  } else {
    std::string updated = RewriteHostsBlock(EnsureHostnameLine(hosts, c.hostname), c.hosts);
    if (updated != hosts) {
      ::mkdir("/etc", 0755);
      if (std::string werr = WriteHostsFile("/etc/hosts", updated); !werr.empty()) Log(werr);
    }
  }
  if (c.network && !c.network->dns.empty()) {
    std::string resolv;
    for (const auto& ns : c.network->dns) resolv += "nameserver " + ns + "\n";
    // A dangling symlink (systemd-resolved) would make O_NOFOLLOW fail: replace it.
    struct stat st{};
    if (::lstat("/etc/resolv.conf", &st) == 0 && S_ISLNK(st.st_mode)) ::unlink("/etc/resolv.conf");
    if (!WriteFile("/etc/resolv.conf", resolv, 0644)) Log(Errno("write /etc/resolv.conf"));
  }
  for (const auto& f : c.files) {
    std::string dir = f.path.substr(0, f.path.rfind('/'));
    if (!dir.empty() && !MakeDirs(dir, 0755)) Log(Errno("mkdir " + dir));
    if (!WriteFile(f.path, f.content, f.mode)) Log(Errno("write " + f.path));
  }
  if (!c.authorized_keys.empty()) {
    if (!MakeDirs("/root/.ssh", 0700)) Log(Errno("mkdir /root/.ssh"));
    ::chmod("/root/.ssh", 0700);
    std::string keys;
    for (const auto& k : c.authorized_keys) keys += k + "\n";
    if (!WriteFile("/root/.ssh/authorized_keys", keys, 0600)) Log(Errno("write authorized_keys"));
  }
}

bool CopySelf(const std::string& dst) {
  std::string self;
  if (!ReadFile("/proc/self/exe", &self)) return false;
  return WriteFile(dst, self, 0755);
}

void SwitchRoot() {
  for (const char* d : {"dev", "proc", "sys", "run"}) {
    std::string target = std::string(kNewRoot) + "/" + d;
    ::mkdir(target.c_str(), 0755);
    if (::mount((std::string("/") + d).c_str(), target.c_str(), nullptr, MS_MOVE, nullptr) != 0) {
      Log(Errno(std::string("move /") + d));
    }
  }
  if (::chdir(kNewRoot) != 0) Fatal(Errno("chdir /newroot"));
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) Fatal(Errno("move /newroot to /"));
  if (::chroot(".") != 0) Fatal(Errno("chroot"));
  if (::chdir("/") != 0) Fatal(Errno("chdir /"));
}

// Unblocks every signal and restores SIGPIPE's default: what a process the
// agent execs (the entrypoint, the image's init) must start with.
void ResetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
}

pid_t StartEntrypoint(const AgentConfig& c) {
  if (c.entrypoint.empty()) return 0;
  std::vector<std::string> env = MergeEnv(MergeEnv(DefaultEnv(), c.env), c.entrypoint_env);
  std::vector<std::string> argv = c.entrypoint;
  std::string cwd = c.workdir.empty() ? "/" : c.workdir;
  pid_t pid = ::fork();
  if (pid < 0) {
    Log(Errno("fork entrypoint"));
    return 0;
  }
  if (pid == 0) {
    // After a held boot the server (SIGCHLD blocked, SIGPIPE ignored) forks
    // the entrypoint: give it the default signal state.
    ResetSignals();
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    int con = ::open("/dev/console", O_WRONLY | O_NOCTTY);
    if (con >= 0) {
      ::dup2(con, 1);
      ::dup2(con, 2);
    }
    if (::chdir(cwd.c_str()) != 0) Log(Errno("entrypoint chdir " + cwd));
    std::vector<char*> cargv, cenv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    environ = cenv.data();
    ::execvp(cargv[0], cargv.data());
    Log(Errno("exec entrypoint " + argv[0]));
    ::_exit(127);
  }
  Log("started entrypoint " + argv[0] + " as pid " + std::to_string(pid));
  return pid;
}

// Mounts the root disk at /newroot and grows its file system: the last
// identity-free step of the boot.
void MountRoot(AgentConfig& config) {
  if (!config.root_serial.empty()) {
    // Volumes are attached too: the kernel may name any disk vda.
    std::string dev = FindDiskBySerial(config.root_serial, 30000);
    if (dev.empty()) Fatal("root disk with serial " + config.root_serial + " did not appear");
    config.root_device = dev;
  }
  if (!WaitForPath(config.root_device, 30000)) Fatal("root device " + config.root_device + " did not appear");
  ::mkdir(kNewRoot, 0755);
  if (::mount(config.root_device.c_str(), kNewRoot, config.root_fstype.c_str(), 0, nullptr) != 0) {
    Fatal(Errno("mount " + config.root_device + " (" + config.root_fstype + ")"));
  }
  GrowRootFs(config.root_device, config.root_fstype);
}

// ---- identity (held boot) ---------------------------------------------------

std::string SetClock(uint64_t time_ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(time_ns / 1000000000ull);
  ts.tv_nsec = static_cast<long>(time_ns % 1000000000ull);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) return Errno("step the clock");
  return "";
}

// Mixes the host's bytes into the kernel's pool, credited as entropy, then
// forces a reseed of the CRNG so every later read (getrandom, /dev/urandom)
// differs from the template's and from every other restore of it.
std::string AddEntropy(const std::string& bytes) {
  int fd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (fd < 0) return Errno("open /dev/urandom");
  size_t words = (bytes.size() + 3) / 4;
  std::vector<char> buf(sizeof(rand_pool_info) + words * 4, 0);
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info->buf, bytes.data(), bytes.size());
  std::string err;
  if (::ioctl(fd, RNDADDENTROPY, info) != 0) {
    err = Errno("add entropy (RNDADDENTROPY)");
  } else if (::ioctl(fd, RNDRESEEDCRNG) != 0) {
    // Kernels before 4.17 lack the reseed ioctl (EINVAL/ENOTTY), and a CRNG
    // not yet initialised (ENODATA) has no key to share with the template:
    // the credited input seeds it. Anything else is an error.
    if (errno != EINVAL && errno != ENOTTY && errno != ENODATA) err = Errno("reseed the CRNG (RNDRESEEDCRNG)");
  }
  std::memset(buf.data(), 0, buf.size());
  ::close(fd);
  return err;
}

// Sets the NIC's MAC address. The interface is still down (a held boot never
// brought it up), as SIOCSIFHWADDR requires.
std::string SetMac(const std::string& ifname, const std::string& mac) {
  ifreq ifr{};
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return "bad interface name '" + ifname + "'";
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  unsigned b[6];
  if (std::sscanf(mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) {
    return "bad MAC address '" + mac + "'";
  }
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  for (int i = 0; i < 6; ++i) ifr.ifr_hwaddr.sa_data[i] = static_cast<char>(b[i]);
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Errno("socket");
  std::string err;
  if (::ioctl(sock, SIOCSIFHWADDR, &ifr) != 0) err = Errno("set MAC address of " + ifname);
  ::close(sock);
  return err;
}

// A fresh /etc/machine-id (32 lowercase hex digits) when the image carries
// one: a baked-in id would be shared by every sandbox of the image. An empty
// or "uninitialized" file is left for the image's init (systemd) to fill at
// its first boot; a symlink is left alone. /var/lib/dbus/machine-id follows
// when it is a copy rather than a link.
void RegenerateMachineId() {
  std::string old;
  struct stat st{};
  if (::lstat("/etc/machine-id", &st) != 0 || !S_ISREG(st.st_mode) || !ReadFile("/etc/machine-id", &old)) return;
  old = Trim(old);
  if (old.size() != 32 || old.find_first_not_of("0123456789abcdef") != std::string::npos) return;
  unsigned char raw[16];
  if (::getrandom(raw, sizeof(raw), 0) != static_cast<ssize_t>(sizeof(raw))) {
    Log(Errno("getrandom for machine-id"));
    return;
  }
  raw[6] = static_cast<unsigned char>((raw[6] & 0x0f) | 0x40);  // a v4 UUID, as systemd makes
  raw[8] = static_cast<unsigned char>((raw[8] & 0x3f) | 0x80);
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char c : raw) {
    id += kHex[c >> 4];
    id += kHex[c & 0x0f];
  }
  if (!WriteFile("/etc/machine-id", id + "\n", st.st_mode & 07777)) {
    Log(Errno("write /etc/machine-id"));
    return;
  }
  std::string dbus;
  if (::lstat("/var/lib/dbus/machine-id", &st) == 0 && S_ISREG(st.st_mode) &&
      ReadFile("/var/lib/dbus/machine-id", &dbus) && Trim(dbus) == old) {
    if (!WriteFile("/var/lib/dbus/machine-id", id + "\n", st.st_mode & 07777)) Log(Errno("write dbus machine-id"));
  }
  Log("new machine-id");
}

// ---- the sandbox ------------------------------------------------------------

ServerOptions BaseServerOptions(const AgentConfig& config) {
  ServerOptions opts;
  opts.agent_version = BANGER_AGENT_VERSION;
  opts.base_env = MergeEnv(DefaultEnv(), config.env);
  opts.hosts_path = "/etc/hosts";
  opts.power_off = [] { PowerOff(); };
  return opts;
}

// Into the new root (the root disk is mounted at /newroot), keeping a copy of
// the agent in /run/banger. Identity-free: a held boot does it before it
// holds, so a restore does not repeat it.
void EnterNewRoot() {
  ::mkdir("/run/banger", 0700);
  if (!CopySelf("/run/banger/agent")) Log(Errno("copy agent to /run/banger/agent"));
  SwitchRoot();
}

// Everything after the root disk and the network: into the new root (unless
// already there), volumes, files, and which init runs. Returns true to exec
// the image's /sbin/init.
bool EnterSandbox(const AgentConfig& config, bool new_identity, bool in_new_root) {
  if (!in_new_root) EnterNewRoot();
  MountVolumes(config);
  if (new_identity) RegenerateMachineId();  // before the files: a spec's own machine-id wins
  WriteGuestFiles(config);

  bool has_init = ::access("/sbin/init", X_OK) == 0;
  bool use_image_init = config.init == "image" || (config.init == "auto" && has_init);
  if (config.init == "image" && !has_init) Fatal("init: image requested but /sbin/init is missing");
  return use_image_init;
}

[[noreturn]] void ExecImageInit() {
  ResetSignals();
  char* init_argv[] = {const_cast<char*>("/sbin/init"), nullptr};
  ::execv("/sbin/init", init_argv);
  Fatal(Errno("exec /sbin/init"));
}

// IDENTITY in a held VM: checks everything first (a refusal leaves the agent
// held, nothing changed), steps the clock, seeds the RNG, sets the MAC, then
// boots on exactly as a normal boot does with the sandbox's config. With the
// image's init the server forks: the child returns (and answers), PID 1
// becomes /sbin/init.
std::string ApplyIdentity(const AgentConfig& held, const agent_protocol::Identity& id, ServerOptions* next) {
  std::string err;
  auto parsed = ParseAgentConfig(id.config_json, &err);
  if (!parsed) return err;
  AgentConfig config = std::move(*parsed);
  // The root disk is mounted and the channel open: those stay the held boot's.
  config.root_device = held.root_device;
  config.root_serial = held.root_serial;
  config.root_fstype = held.root_fstype;
  config.agent_port = held.agent_port;
  config.hold = false;
  if (config.init == "image" && ::access("/sbin/init", X_OK) != 0) {  // (held in the new root)
    return "init: image requested but /sbin/init is missing";
  }
  std::string ifname = config.network ? config.network->interface : "eth0";
  bool set_mac = !id.mac.empty();
  if (set_mac && !WaitForPath("/sys/class/net/" + ifname, config.network ? 10000 : 0)) {
    if (config.network) return "network interface " + ifname + " did not appear";
    Log("no " + ifname + ": MAC " + id.mac + " not set");
    set_mac = false;
  }

  if (err = SetClock(id.time_ns); !err.empty()) return err;
  if (err = AddEntropy(id.entropy); !err.empty()) return err;
  if (set_mac) {
    if (err = SetMac(ifname, id.mac); !err.empty()) return err;
  }
  Log("identity: clock stepped, " + std::to_string(id.entropy.size()) + " bytes of entropy" +
      (set_mac ? ", MAC " + id.mac + " on " + ifname : std::string()));

  // From here on as a normal boot (failures log or power off, as there).
  ConfigureNetwork(config);
  bool use_image_init = EnterSandbox(config, /*new_identity=*/true, /*in_new_root=*/true);
  *next = BaseServerOptions(config);
  if (use_image_init) {
    next->power_off = [] { PowerOffThroughInit(); };
    next->mode = "server";
    pid_t pid = ::fork();
    if (pid < 0) Fatal(Errno("fork agent server"));
    if (pid == 0) {
      ::setsid();
      return "";  // the child goes on serving the connection
    }
    Log("handing PID 1 to /sbin/init; agent server is pid " + std::to_string(pid));
    ExecImageInit();
  }
  next->mode = "init";
  next->entrypoint_pid = StartEntrypoint(config);
  return "";
}

int RunAsInit() {
  MountEarly();
  // Our stdio is /dev/console from the initramfs; keep it even before devtmpfs.
  Log("starting (" BANGER_AGENT_VERSION ")");
  LoadModules();

  std::string json;
  if (!ReadFile(kConfigPath, &json)) Fatal(Errno(std::string("read ") + kConfigPath));
  std::string err;
  auto config = ParseAgentConfig(json, &err);
  if (!config) Fatal(err);
  ::unlink(kConfigPath);  // it may hold keys; the new root never sees it anyway

  MountRoot(*config);

  if (config->hold) {
    // A template: nothing of a sandbox's identity is set until IDENTITY.
    Channel channel = FindChannel(config->agent_port, 10000);
    if (channel.fd < 0) Fatal("hold: no host channel to receive the identity on");
    EnterNewRoot();  // identity-free steps: a restore does not pay for them
    BringUpLoopback();
    ServerOptions opts = BaseServerOptions(*config);
    opts.mode = "init";
    opts.held = true;
    const AgentConfig held = *config;
    opts.apply_identity = [held](const agent_protocol::Identity& id, ServerOptions* next) {
      return ApplyIdentity(held, id, next);
    };
    Log("held: waiting for identity");
    ServeChannel(channel, opts);
    PowerOff();
  }

  BringUpLoopback();
  ConfigureNetwork(*config);
  Channel channel = FindChannel(config->agent_port, 10000);
  bool use_image_init = EnterSandbox(*config, /*new_identity=*/false, /*in_new_root=*/false);

  ServerOptions opts = BaseServerOptions(*config);
  if (use_image_init) {
    opts.power_off = [] { PowerOffThroughInit(); };
    pid_t pid = ::fork();
    if (pid < 0) Fatal(Errno("fork agent server"));
    if (pid == 0) {
      ::setsid();
      opts.mode = "server";
      ::_exit(ServeChannel(channel, opts));
    }
    if (channel.fd >= 0) ::close(channel.fd);
    Log("handing PID 1 to /sbin/init; agent server is pid " + std::to_string(pid));
    ExecImageInit();
  }
  opts.mode = "init";
  opts.entrypoint_pid = StartEntrypoint(*config);
  // Serves the channel (or, without one, just reaps orphans) until power-off.
  ServeChannel(channel, opts);
  PowerOff();
}

}  // namespace
}  // namespace banger::agent

int main(int argc, char** argv) {
  using namespace banger::agent;
  if (argc >= 2 && std::string(argv[1]) == "--version") {
    std::printf("banger-agent %s\n", BANGER_AGENT_VERSION);
    return 0;
  }
  if (argc >= 3 && std::string(argv[1]) == "--serve-unix") {
    ServerOptions opts;
    opts.agent_version = BANGER_AGENT_VERSION;
    opts.mode = "test";
    opts.base_env = DefaultEnv();
    for (int i = 3; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--hold") {
        opts.held = true;
      } else if (i + 1 < argc && arg == "--env") {
        opts.base_env = MergeEnv(opts.base_env, {argv[++i]});
      } else if (i + 1 < argc && arg == "--hosts-file") {
        opts.hosts_path = argv[++i];
      }
    }
    if (opts.held) {
      // Test mode: IDENTITY is decoded and its config parsed (a bad one is
      // refused and the agent stays held), but nothing of the host is touched
      // (no clock, RNG or MAC); the config's env joins every exec's.
      opts.apply_identity = [](const banger::agent_protocol::Identity& id, ServerOptions* next) {
        std::string err;
        auto config = ParseAgentConfig(id.config_json, &err);
        if (!config) return err;
        next->base_env = MergeEnv(next->base_env, config->env);
        return std::string();
      };
    }
    return ServeUnixSocket(argv[2], opts);
  }
  if (::getpid() == 1) return RunAsInit();
  std::fprintf(stderr,
               "usage: banger-agent (as PID 1) | --serve-unix PATH [--env K=V]... [--hosts-file FILE] [--hold] | "
               "--version\n");
  return 2;
}
