// Real boots: the host's Debian kernel under QEMU (TCG here; KVM where it
// works), banger's initramfs built from the host's modules, the real guest
// agent, and a busybox root disk built by the test.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <regex>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/failpoint.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/agent_client.h"
#include "providers/initramfs.h"
#include "providers/qemu_hypervisor.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr auto kHelloDeadline = seconds(60);

fs::path FindHostKernel(std::string* version) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/boot", ec)) {
    std::string name = e.path().filename().string();
    if (!StartsWith(name, "vmlinuz-6.1.")) continue;
    std::string ver = name.substr(std::string("vmlinuz-").size());
    if (fs::exists(fs::path("/lib/modules") / ver / "modules.dep")) {
      *version = ver;
      return e.path();
    }
  }
  return {};
}

// The uncompressed kernel inside a Debian bzImage (xz payload), as the
// kernels/ module extracts it for direct (PVH) boot. Empty if not found.
std::string ExtractVmlinux(const std::string& bzimage) {
  static const std::string kXzMagic("\xfd" "7zXZ\0", 6);
  size_t at = bzimage.find(kXzMagic);
  if (at == std::string::npos) return "";
  archive* a = archive_read_new();
  archive_read_support_filter_xz(a);
  archive_read_support_format_raw(a);
  std::string out;
  archive_entry* e = nullptr;
  if (archive_read_open_memory(a, bzimage.data() + at, bzimage.size() - at) == ARCHIVE_OK &&
      archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char buf[1 << 16];
    la_ssize_t n;
    // Trailing bytes after the xz stream end the read with an error; the
    // payload before it is complete when it is a valid ELF.
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  }
  archive_read_free(a);
  return out.compare(0, 4, "\x7f" "ELF") == 0 ? out : "";
}

// Shared, expensive inputs built once per test binary run.
class BootEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    runner = MakePosixCommandRunner();
    clock = MakeSystemClock();
    kernel = FindHostKernel(&kernel_version);
    if (kernel.empty()) {
      skip_reason = "no Debian 6.1 kernel in /boot with modules in /lib/modules";
      return;
    }
    for (const char* tool : {"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img", "/usr/sbin/mkfs.ext4",
                             "/bin/busybox"}) {
      if (!fs::exists(tool)) {
        skip_reason = std::string(tool) + " is not installed";
        return;
      }
    }
    auto d = MakeTempDir("banger-qemu-itest");
    ASSERT_TRUE(d.ok());
    dir = *d;
    initramfs = dir / "initramfs.img";
    Status s = BuildInitramfs(fs::path("/lib/modules") / kernel_version, BANGER_AGENT_PATH, initramfs);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(MakeRootDisk("with-init", true).ok());
    ASSERT_TRUE(MakeRootDisk("no-init", false).ok());
    auto bz = ReadFile(kernel);
    ASSERT_TRUE(bz.ok());
    std::string elf = ExtractVmlinux(*bz);
    if (!elf.empty()) {
      vmlinux = dir / "vmlinux";
      ASSERT_TRUE(WriteFileAtomic(vmlinux, elf).ok());
    }
  }
  void TearDown() override {
    if (!dir.empty()) (void)RemoveAll(dir);
  }

  Status MakeRootDisk(const std::string& name, bool with_init) {
    fs::path root = dir / (name + "-root");
    for (const char* d : {"bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "var"}) {
      BANGER_RETURN_IF_ERROR(MakeDirs(root / d));
    }
    std::error_code ec;
    fs::copy_file("/bin/busybox", root / "bin/busybox", ec);
    if (ec) return Internal("copy busybox: " + ec.message());
    BANGER_ASSIGN_OR_RETURN(CommandOutput list, RunChecked(*runner, {.argv = {"/bin/busybox", "--list"}}));
    for (const std::string& applet : Split(list.stdout_data, '\n')) {
      if (applet.empty() || applet == "busybox") continue;
      fs::create_symlink("busybox", root / "bin" / applet, ec);
    }
    if (with_init) {
      fs::create_symlink("/bin/busybox", root / "sbin/init", ec);
      BANGER_RETURN_IF_ERROR(WriteFileAtomic(root / "etc/inittab",
                                             "::sysinit:/bin/echo busybox-init-started\n"
                                             "::respawn:/bin/sleep 100000\n"));
    }
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"));
    fs::path img = dir / (name + ".ext4");
    return RunChecked(*runner, {.argv = {"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "64M"}})
        .status();
  }

  std::string skip_reason;
  std::unique_ptr<CommandRunner> runner;
  std::unique_ptr<Clock> clock;
  fs::path dir, kernel, initramfs, vmlinux;
  std::string kernel_version;
};

BootEnv* const g_env = static_cast<BootEnv*>(::testing::AddGlobalTestEnvironment(new BootEnv));

// Boots one sandbox and destroys it (killing QEMU by identity) when it goes
// out of scope, also when an assertion fails.
class Vm {
 public:
  Vm(const std::string& disk, GuestConfig guest, std::function<void(VmLaunchConfig&, QemuOptions&)> tweak = {}) {
    auto d = MakeTempDir("vm", g_env->dir);
    EXPECT_TRUE(d.ok());
    QemuOptions opts;
    opts.accel_cache_file = g_env->dir / "accel-verdict";
    opts.early_boot_timeout = milliseconds(60000);
    config_.sandbox_id = "itest";
    config_.name = "vm-one";
    config_.cpus = 1;
    config_.memory_bytes = 256ull << 20;
    config_.runtime_dir = *d / "run";
    config_.kernel_path = g_env->kernel;
    config_.initrd_path = g_env->initramfs;
    config_.base_disk = g_env->dir / (disk + ".ext4");
    config_.guest = std::move(guest);
    if (tweak) tweak(config_, opts);
    hv_ = MakeQemuHypervisor(*g_env->runner, *g_env->clock, opts);
  }
  ~Vm() {
    if (handle_) {
      Status s = hv_->Destroy(*handle_);
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_FALSE(ProcessAlive(handle_->process)) << "QEMU left running";
    }
    (void)RemoveAll(config_.runtime_dir.parent_path());
  }

  // Boot + wait for HELLO, with one retry (HOST-NOTES: supervise every boot).
  ::testing::AssertionResult Start() {
    std::string failures;
    for (int attempt = 1; attempt <= 2; ++attempt) {
      auto launched = steady_clock::now();
      auto h = hv_->Boot(config_);  // returns once the kernel started the agent
      if (!h) {
        failures += "boot: " + h.error().ToString() + "\n";
        continue;
      }
      handle_ = *h;
      auto booted = steady_clock::now();
      auto conn = ConnectAgent(handle_->agent_socket, booted + kHelloDeadline);
      if (conn) {
        auto hello = (*conn)->WaitHello(booted + kHelloDeadline);
        if (hello) {
          hello_ = *hello;
          time_to_hello_ = std::chrono::duration_cast<milliseconds>(steady_clock::now() - launched);
          conn_ = std::move(*conn);
          std::printf("[ measure  ] Boot() -> HELLO: %lld ms total, %lld ms in Boot() "
                      "(attempt %d, guest clock at HELLO %llu ms)\n",
                      static_cast<long long>(time_to_hello_.count()),
                      static_cast<long long>(std::chrono::duration_cast<milliseconds>(booted - launched).count()),
                      attempt, static_cast<unsigned long long>(hello_.boot_ms));
          ::testing::Test::RecordProperty("launch_to_hello_ms", std::to_string(time_to_hello_.count()));
          return ::testing::AssertionSuccess();
        }
        failures += "hello: " + hello.error().ToString() + "\n";
      } else {
        failures += "connect: " + conn.error().ToString() + "\n";
      }
      failures += "console:\n" + Console() + "\n";
      (void)hv_->Destroy(*handle_);
      handle_.reset();
    }
    return ::testing::AssertionFailure() << failures;
  }

  ExecResult Run(std::vector<std::string> argv, std::string_view stdin_data = "") {
    auto r = conn_->Exec({.argv = std::move(argv)}, stdin_data, milliseconds(30000));
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : ExecResult{-1, false, "", r.error().ToString()};
  }

  std::string Console() const {
    auto t = ReadFile(config_.runtime_dir / "console.log");
    return t ? *t : "";
  }

  Hypervisor& hv() { return *hv_; }
  const VmHandle& handle() const { return *handle_; }
  AgentConnection& conn() { return *conn_; }
  const agent_protocol::Hello& hello() const { return hello_; }
  const VmLaunchConfig& config() const { return config_; }
  void DropConnection() { conn_.reset(); }

 private:
  std::unique_ptr<Hypervisor> hv_;
  VmLaunchConfig config_;
  std::optional<VmHandle> handle_;
  std::unique_ptr<AgentConnection> conn_;
  agent_protocol::Hello hello_;
  milliseconds time_to_hello_{0};
};

class QemuBootITest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_env->skip_reason.empty()) GTEST_SKIP() << g_env->skip_reason;
  }
};

GuestConfig TestGuest() {
  GuestConfig g;
  g.files.push_back({"/etc/banger-test", "hello file\n", 0640});
  g.files.push_back({"/opt/app/config.ini", "[app]\nname=x\n", 0600});
  g.authorized_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey banger@test"};
  g.env = {{"GREETING", "hi"}};
  return g;
}

TEST_F(QemuBootITest, ImageWithInitBootsExecsAndShutsDownGracefully) {
  Vm vm("with-init", TestGuest());
  ASSERT_TRUE(vm.Start());
  EXPECT_EQ(vm.hello().mode, "server") << "busybox init is PID 1; the agent serves beside it";

  EXPECT_EQ(vm.Run({"cat", "/etc/hostname"}).stdout_data, "vm-one\n");
  EXPECT_EQ(vm.Run({"hostname"}).stdout_data, "vm-one\n");
  EXPECT_EQ(vm.Run({"sh", "-c", "exit 7"}).exit_code, 7);
  ExecResult cat = vm.Run({"sh", "-c", "cat; echo \"$GREETING\""}, "through stdin\n");
  EXPECT_EQ(cat.stdout_data, "through stdin\nhi\n");
  EXPECT_EQ(vm.Run({"cat", "/etc/banger-test"}).stdout_data, "hello file\n");
  EXPECT_EQ(vm.Run({"stat", "-c", "%a", "/etc/banger-test", "/opt/app/config.ini"}).stdout_data, "640\n600\n");
  EXPECT_EQ(vm.Run({"stat", "-c", "%a", "/root/.ssh", "/root/.ssh/authorized_keys"}).stdout_data, "700\n600\n");
  EXPECT_EQ(vm.Run({"cat", "/root/.ssh/authorized_keys"}).stdout_data,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey banger@test\n");
  EXPECT_EQ(vm.Run({"cat", "/proc/1/comm"}).stdout_data, "init\n");
  EXPECT_EQ(vm.Run({"sh", "-c", "mount | grep ' / '"}).stdout_data.substr(0, 8), "/dev/vda");

  // An interactive command gets a pty (devpts moved into the new root).
  {
    int in[2], out[2];
    ASSERT_EQ(::pipe(in), 0);
    ASSERT_EQ(::pipe(out), 0);
    ::close(in[1]);
    auto code = vm.conn().ExecInteractive({.argv = {"sh", "-c", "tty; stty size"}},
                                          {.in_fd = in[0], .out_fd = out[1], .tty = true});
    ::close(in[0]);
    ::close(out[1]);
    std::string output;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof(buf))) > 0) output.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    ASSERT_TRUE(code.ok()) << code.error().ToString();
    EXPECT_EQ(*code, 0) << output;
    EXPECT_NE(output.find("/dev/pts/"), std::string::npos) << output;
    EXPECT_NE(output.find("24 80"), std::string::npos) << output;
  }

  VmObservation obs = vm.hv().Inspect(vm.handle());
  EXPECT_TRUE(obs.process_alive);
  EXPECT_TRUE(obs.vmm_responsive) << obs.detail;
  EXPECT_EQ(obs.detail, "");

  // The accelerator verdict was probed once and cached.
  auto verdict = ReadFile(g_env->dir / "accel-verdict");
  ASSERT_TRUE(verdict.ok());
  if (fs::exists("/sys/module/kvm_pvm")) {
    EXPECT_EQ(*verdict, "tcg\n") << "PVM cannot run stock kernels (HOST-NOTES.md)";
  }

  vm.DropConnection();  // Shutdown connects to the agent itself
  auto start = steady_clock::now();
  Status s = vm.hv().Shutdown(vm.handle(), milliseconds(30000));
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto took = steady_clock::now() - start;
  EXPECT_FALSE(ProcessAlive(vm.handle().process));
  EXPECT_LT(took, seconds(25)) << "guest powered off by itself, not by the SIGKILL fallback";
  EXPECT_NE(vm.Console().find("power off requested"), std::string::npos);
  EXPECT_FALSE(vm.hv().Inspect(vm.handle()).process_alive);
}

TEST_F(QemuBootITest, InitlessImageRunsEntrypointAsChildOfAgent) {
  GuestConfig g = TestGuest();
  g.entrypoint = {"sleep", "1000"};
  g.workdir = "/tmp";
  // A disk bigger than the 64 MiB image: the agent grows ext4 online.
  Vm vm("no-init", g, [](VmLaunchConfig& c, QemuOptions&) { c.disk_bytes = 160ull << 20; });
  ASSERT_TRUE(vm.Start());
  std::vector<std::string> df = Split(vm.Run({"df", "-k", "/"}).stdout_data, '\n');
  ASSERT_GE(df.size(), 2u);
  std::vector<std::string> cols;
  for (const auto& w : Split(df[1], ' ')) {
    if (!w.empty()) cols.push_back(w);
  }
  ASSERT_GE(cols.size(), 2u) << df[1];
  EXPECT_GT(std::stoll(cols[1]), 120000) << "root fs grown to the disk size: " << df[1];
  EXPECT_EQ(vm.hello().mode, "init") << "no /sbin/init: the agent stays PID 1";
  EXPECT_EQ(vm.Run({"cat", "/proc/1/comm"}).stdout_data, "init\n");  // the agent was /init
  std::string ps = vm.Run({"ps", "-o", "pid,ppid,args"}).stdout_data;
  EXPECT_TRUE(std::regex_search(ps, std::regex(R"(\s\d+\s+1\s+sleep 1000)"))) << ps;
  EXPECT_EQ(vm.Run({"cat", "/etc/hostname"}).stdout_data, "vm-one\n");
  EXPECT_EQ(vm.Run({"sh", "-c", "exit 7"}).exit_code, 7);
  // A second client after the first one left gets a fresh HELLO from the agent.
  vm.DropConnection();
  auto again = ConnectAgent(vm.handle().agent_socket, steady_clock::now() + seconds(10));
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  auto hello = (*again)->WaitHello(steady_clock::now() + seconds(20));
  ASSERT_TRUE(hello.ok()) << hello.error().ToString();
  auto echo = (*again)->Exec({.argv = {"echo", "reconnected"}}, "", milliseconds(20000));
  ASSERT_TRUE(echo.ok()) << echo.error().ToString();
  EXPECT_EQ(echo->stdout_data, "reconnected\n");
  auto sleep_pid_r = (*again)->Exec({.argv = {"pidof", "sleep"}}, "", milliseconds(20000));
  ASSERT_TRUE(sleep_pid_r.ok());
  std::string sleep_pid(Trim(sleep_pid_r->stdout_data));
  auto cwd = (*again)->Exec({.argv = {"readlink", "/proc/" + sleep_pid + "/cwd"}}, "", milliseconds(20000));
  ASSERT_TRUE(cwd.ok());
  EXPECT_EQ(cwd->stdout_data, "/tmp\n") << "entrypoint workdir";
  again->reset();

  // A VMM that dies is seen as not alive; Destroy still cleans up.
  const VmHandle& h = vm.handle();
  ASSERT_EQ(::kill(h.process.pid, SIGKILL), 0);
  for (int i = 0; i < 100 && ProcessAlive(h.process); ++i) ::usleep(50000);
  VmObservation obs = vm.hv().Inspect(h);
  EXPECT_FALSE(obs.process_alive);
  EXPECT_FALSE(obs.vmm_responsive);
  ASSERT_TRUE(vm.hv().Destroy(h).ok());
  EXPECT_FALSE(fs::exists(h.runtime_dir)) << "runtime dir (sockets, overlay, logs) removed";
}

TEST_F(QemuBootITest, UncompressedVmlinuxBootsDirectly) {
  if (g_env->vmlinux.empty()) GTEST_SKIP() << "the host bzImage has no xz payload to extract";
  Vm vm("no-init", GuestConfig{}, [](VmLaunchConfig& c, QemuOptions&) { c.kernel_path = g_env->vmlinux; });
  ASSERT_TRUE(vm.Start());
  EXPECT_EQ(vm.Run({"cat", "/etc/hostname"}).stdout_data, "vm-one\n");
}

// Removes a network namespace when it goes out of scope.
class NetnsGuard {
 public:
  explicit NetnsGuard(std::string name) : name_(std::move(name)) {}
  ~NetnsGuard() {
    if (created_) (void)g_env->runner->Run({.argv = {"ip", "netns", "del", name_}});
  }
  Status Create() {
    auto r = RunChecked(*g_env->runner, {.argv = {"ip", "netns", "add", name_}});
    created_ = r.ok();
    return r.status();
  }
  Status Exec(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", name_});
    return RunChecked(*g_env->runner, {.argv = argv, .timeout = milliseconds(30000)}).status();
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool created_ = false;
};

TEST_F(QemuBootITest, NetworkIsConfiguredFromGuestConfigInsideANetns) {
  NetnsGuard ns("banger-it-" + std::to_string(::getpid()));
  if (Status s = ns.Create(); !s.ok()) GTEST_SKIP() << "cannot create a network namespace: " << s.ToString();
  ASSERT_TRUE(ns.Exec({"ip", "tuntap", "add", "bgtap0", "mode", "tap"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "addr", "add", "10.213.0.1/24", "dev", "bgtap0"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "bgtap0", "up"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "lo", "up"}).ok());

  GuestConfig g;
  g.network = GuestNetwork{"eth0", "10.213.0.2", 24, "10.213.0.1", {"10.213.0.1"}};
  Vm vm("no-init", g, [&](VmLaunchConfig& c, QemuOptions& o) {
    c.tap_device = "bgtap0";
    c.mac_address = "52:54:00:12:34:56";
    o.launcher_prefix = {"ip", "netns", "exec", ns.name()};
  });
  ASSERT_TRUE(vm.Start());
  std::string addr = vm.Run({"ip", "-4", "addr", "show", "eth0"}).stdout_data;
  EXPECT_NE(addr.find("inet 10.213.0.2/24"), std::string::npos) << addr;
  EXPECT_NE(vm.Run({"ip", "link", "show", "eth0"}).stdout_data.find("52:54:00:12:34:56"), std::string::npos);
  EXPECT_NE(vm.Run({"ip", "route"}).stdout_data.find("default via 10.213.0.1 dev eth0"), std::string::npos);
  EXPECT_EQ(vm.Run({"cat", "/etc/resolv.conf"}).stdout_data, "nameserver 10.213.0.1\n");
  EXPECT_EQ(vm.Run({"ping", "-c", "1", "-W", "10", "10.213.0.1"}).exit_code, 0) << "guest -> host tap";
  Status ping = ns.Exec({"/bin/busybox", "ping", "-c", "1", "-W", "10", "10.213.0.2"});
  EXPECT_TRUE(ping.ok()) << "netns -> guest: " << ping.ToString();
}

// Bridged networking as banger sets it up: a bridge holding the gateway
// address and the sandbox's tap enslaved to it, in a private network
// namespace QEMU is started in. The guest gets its peers in /etc/hosts at
// boot, and a new list while it runs (SET_HOSTS).
TEST_F(QemuBootITest, BridgedTapWithPeersInEtcHostsUpdatedWhileRunning) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces, bridges and taps";
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/net/tun";
  NetnsGuard ns("banger-br-" + std::to_string(::getpid()));  // deleted after the VM (declared first)
  if (Status s = ns.Create(); !s.ok()) GTEST_SKIP() << "cannot create a network namespace: " << s.ToString();
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "lo", "up"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "add", "bgbr0", "type", "bridge"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "addr", "add", "10.99.0.1/24", "dev", "bgbr0"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "bgbr0", "up"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "tuntap", "add", "bgtap1", "mode", "tap"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "bgtap1", "master", "bgbr0"}).ok());
  ASSERT_TRUE(ns.Exec({"ip", "link", "set", "bgtap1", "up"}).ok());

  GuestConfig g;
  g.network = GuestNetwork{"eth0", "10.99.0.2", 24, "10.99.0.1", {"10.99.0.1"}};
  g.hosts = {{"10.99.0.7", {"peer", "peer.banger"}}};
  Vm vm("with-init", g, [&](VmLaunchConfig& c, QemuOptions& o) {
    c.tap_device = "bgtap1";
    c.mac_address = "02:42:0a:63:00:02";
    o.launcher_prefix = {"ip", "netns", "exec", ns.name()};
  });
  ASSERT_TRUE(vm.Start());

  // `ip netns exec` exec'd QEMU in place: the recorded pid is QEMU's, and the
  // /proc scan that recovers an unrecorded QEMU finds it by its argv.
  auto recovered = RecoverQemuProcess(vm.config().runtime_dir);
  ASSERT_TRUE(recovered.ok()) << recovered.error().ToString();
  EXPECT_EQ(recovered->pid, vm.handle().process.pid);
  auto comm = ReadFile("/proc/" + std::to_string(vm.handle().process.pid) + "/comm");
  ASSERT_TRUE(comm.ok());
  EXPECT_EQ(Trim(*comm), "qemu-system-x86");

  EXPECT_NE(vm.Run({"ip", "link", "show", "eth0"}).stdout_data.find("02:42:0a:63:00:02"), std::string::npos);
  ExecResult ping = vm.Run({"ping", "-c", "1", "-W", "10", "10.99.0.1"});
  EXPECT_EQ(ping.exit_code, 0) << "guest -> bridge: " << ping.stdout_data << ping.stderr_data;
  Status back = ns.Exec({"/bin/busybox", "ping", "-c", "1", "-W", "10", "10.99.0.2"});
  EXPECT_TRUE(back.ok()) << "bridge -> guest: " << back.ToString();

  const std::string block1 =
      "# banger: peers (managed by banger, do not edit)\n10.99.0.7\tpeer peer.banger\n# banger: end\n";
  std::string hosts = vm.Run({"cat", "/etc/hosts"}).stdout_data;
  EXPECT_NE(hosts.find("127.0.1.1\tvm-one\n" + block1), std::string::npos) << hosts;
  EXPECT_EQ(vm.Run({"stat", "-c", "%a", "/etc/hosts"}).stdout_data, "644\n");

  // Peers come and go while the guest runs.
  Status set = vm.conn().SetHosts({{"10.99.0.7", {"peer", "peer.banger"}}, {"10.99.0.9", {"cache", "cache.banger"}}},
                                  steady_clock::now() + seconds(20));
  ASSERT_TRUE(set.ok()) << set.ToString();
  hosts = vm.Run({"cat", "/etc/hosts"}).stdout_data;
  EXPECT_NE(hosts.find("127.0.1.1\tvm-one\n# banger: peers (managed by banger, do not edit)\n"
                       "10.99.0.7\tpeer peer.banger\n10.99.0.9\tcache cache.banger\n# banger: end\n"),
            std::string::npos)
      << hosts;
  EXPECT_EQ(hosts.find("# banger: peers"), hosts.rfind("# banger: peers")) << "one block: " << hosts;
  EXPECT_NE(hosts.find("127.0.0.1\tlocalhost\n"), std::string::npos) << hosts;
  EXPECT_EQ(vm.Run({"stat", "-c", "%a", "/etc/hosts"}).stdout_data, "644\n");
  EXPECT_EQ(vm.Run({"sh", "-c", "ls -a /etc | grep -c banger-hosts"}).stdout_data, "0\n") << "no temp file left";
  // The guest's resolver reads the block (busybox resolves through /etc/hosts).
  ExecResult resolve = vm.Run({"ping", "-c", "1", "-W", "1", "cache.banger"});
  EXPECT_NE((resolve.stdout_data + resolve.stderr_data).find("10.99.0.9"), std::string::npos)
      << resolve.stdout_data << resolve.stderr_data;
}

// Templates (docs/snapshots.md): a running VM is saved (paused, its state
// streamed through QMP into a zstd file, its overlay kept as an immutable
// layer) and new VMs resume from it instead of booting.
VmTemplateFiles SaveTemplateOf(const fs::path& dir) {
  Vm vm("with-init", TestGuest());
  EXPECT_TRUE(vm.Start());
  EXPECT_TRUE(vm.hv().SupportsTemplates());
  // State on the disk and only in memory (a tmpfs), both to be found again.
  EXPECT_EQ(vm.Run({"sh", "-c", "echo on-disk > /root/saved && sync"}).exit_code, 0);
  EXPECT_EQ(vm.Run({"sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo in-memory > /tmp/m/x"})
                .exit_code,
            0);
  vm.DropConnection();
  auto start = steady_clock::now();
  auto saved = vm.hv().SaveTemplate(vm.handle(), dir);
  EXPECT_TRUE(saved.ok()) << saved.error().ToString();
  std::printf("[ measure  ] SaveTemplate: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count()));
  EXPECT_FALSE(ProcessAlive(vm.handle().process)) << "the template VM is stopped once saved";
  return saved.ok() ? *saved : VmTemplateFiles{};
}

TEST_F(QemuBootITest, TemplateRestoresMemoryAndDiskAndItsLayerStaysImmutable) {
  auto dir = MakeTempDir("template", g_env->dir);
  ASSERT_TRUE(dir.ok());
  VmTemplateFiles t = SaveTemplateOf(*dir);
  ASSERT_FALSE(t.state_file.empty());
  for (const auto& p : {t.state_file, t.disk_layer, t.kernel_path, t.initrd_path}) {
    ASSERT_TRUE(fs::is_regular_file(p)) << p;
  }
  EXPECT_TRUE(t.memory_file.empty()) << "QEMU keeps memory in the state file";
  struct stat st{};
  ASSERT_EQ(::stat(t.disk_layer.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u) << "the disk layer is read-only";
  const auto state_bytes = fs::file_size(t.state_file);
  EXPECT_GT(state_bytes, 1u << 20);
  EXPECT_LT(state_bytes, 256ull << 20) << "compressed, and free pages cost nothing";
  std::printf("[ measure  ] template: state %llu KiB, disk layer %llu KiB\n",
              static_cast<unsigned long long>(state_bytes >> 10),
              static_cast<unsigned long long>(fs::file_size(t.disk_layer) >> 10));

  for (int i = 0; i < 2; ++i) {
    Vm r("with-init", TestGuest(), [&](VmLaunchConfig& c, QemuOptions&) {
      c.sandbox_id = "restored" + std::to_string(i);
      c.restore = t;
    });
    auto start = steady_clock::now();
    ASSERT_TRUE(r.Start());
    std::printf("[ measure  ] restore %d: Boot -> agent answers in %lld ms\n", i,
                static_cast<long long>(std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count()));
    EXPECT_EQ(r.Run({"cat", "/tmp/m/x"}).stdout_data, "in-memory\n") << "memory came back";
    EXPECT_EQ(r.Run({"cat", "/root/saved"}).stdout_data, "on-disk\n")
        << "the disk is the template's, unchanged by the previous restore";
    EXPECT_EQ(r.Run({"sh", "-c", "echo changed > /root/saved && sync && cat /root/saved"}).stdout_data, "changed\n");
    EXPECT_EQ(r.Run({"cat", "/proc/1/comm"}).stdout_data, "init\n");
    VmObservation obs = r.hv().Inspect(r.handle());
    EXPECT_TRUE(obs.vmm_responsive) << obs.detail;
    EXPECT_EQ(obs.detail, "") << "resumed, not paused";
  }
  ASSERT_EQ(::stat(t.disk_layer.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  (void)RemoveAll(*dir);
}

TEST_F(QemuBootITest, ABrokenRestoreFailsWithItsReasonLeavesNoQemuAndAColdBootStillWorks) {
  auto dir = MakeTempDir("template", g_env->dir);
  ASSERT_TRUE(dir.ok());
  VmTemplateFiles t = SaveTemplateOf(*dir);
  ASSERT_FALSE(t.state_file.empty());
  Vm vm("with-init", TestGuest());
  VmLaunchConfig restore = vm.config();
  restore.restore = t;

  // 1. QEMU fails while loading (the state file is cut in half): the error
  //    says so and quotes QEMU.
  {
    fs::path whole = t.state_file;
    whole += ".whole";
    fs::copy_file(t.state_file, whole);
    fs::resize_file(t.state_file, fs::file_size(t.state_file) / 2);
    auto h = vm.hv().Boot(restore);
    ASSERT_FALSE(h.ok()) << "a truncated state cannot restore";
    EXPECT_NE(h.error().message().find("template"), std::string::npos) << h.error().ToString();
    EXPECT_FALSE(RecoverQemuProcess(restore.runtime_dir).ok()) << "the restoring QEMU is gone";
    fs::rename(whole, t.state_file);
  }
  // 2. The restoring QEMU dies before it is resumed (killed at the failpoint).
  {
    ASSERT_TRUE(failpoint::Arm("template.restore.before_cont", failpoint::Mode::kError).ok());
    auto h = vm.hv().Boot(restore);
    failpoint::DisarmAll();
    ASSERT_FALSE(h.ok());
    EXPECT_NE(h.error().message().find("template.restore.before_cont"), std::string::npos) << h.error().ToString();
    EXPECT_FALSE(RecoverQemuProcess(restore.runtime_dir).ok()) << "the restoring QEMU is gone";
  }
  // 3. A cold boot in the same runtime dir works (what the runtime falls back to).
  ASSERT_TRUE(vm.Start());
  EXPECT_EQ(vm.Run({"cat", "/root/saved"}).exit_code, 1) << "a cold boot starts from the image's disk";
  (void)RemoveAll(*dir);
}

}  // namespace
}  // namespace banger
