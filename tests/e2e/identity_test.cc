// A held guest becomes a sandbox (docs/guest-agent.md, "Held boot"): real
// QEMU (TCG here), the host's kernel, banger's initramfs with the real agent
// and busybox root disks built by the test. The VM boots with `hold`, refuses
// work until AgentConnection::SendIdentity, and then has the identity it was
// given: clock, MAC, address, hostname, machine-id, files, env, entrypoint.
// This proves the agent side without snapshots; restoring a template and
// giving it an identity is the same message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/agent_client.h"
#include "providers/initramfs.h"
#include "providers/qemu_hypervisor.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
namespace proto = agent_protocol;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr auto kHelloDeadline = seconds(90);
// An image's baked-in machine-id (as systemd-based images ship one).
constexpr char kImageMachineId[] = "0123456789abcdef0123456789abcdef";

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

// Removes a network namespace when it goes out of scope.
class Netns {
 public:
  Netns(CommandRunner& runner, std::string name) : runner_(runner), name_(std::move(name)) {}
  ~Netns() {
    if (created_) (void)runner_.Run({.argv = {"ip", "netns", "del", name_}});
  }
  Status Create() {
    auto r = RunChecked(runner_, {.argv = {"ip", "netns", "add", name_}});
    created_ = r.ok();
    return r.status();
  }
  Status Exec(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", name_});
    return RunChecked(runner_, {.argv = argv, .timeout = milliseconds(30000)}).status();
  }
  const std::string& name() const { return name_; }

 private:
  CommandRunner& runner_;
  std::string name_;
  bool created_ = false;
};

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces and taps";
    runner_ = MakePosixCommandRunner();
    clock_ = MakeSystemClock();
    kernel_ = FindHostKernel(&kernel_version_);
    ASSERT_FALSE(kernel_.empty()) << "no Debian 6.1 kernel in /boot with modules in /lib/modules";
    fs::path agent = fs::path(BANGER_EXE).parent_path() / "../agent/banger-agent";
    ASSERT_TRUE(fs::exists(agent)) << agent;
    auto d = MakeTempDir("banger-identity-e2e");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
    initramfs_ = dir_ / "initramfs.img";
    Status s = BuildInitramfs(fs::path("/lib/modules") / kernel_version_, agent, initramfs_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void TearDown() override {
    if (handle_) {
      conn_.reset();
      Status s = hv_->Destroy(*handle_);
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_FALSE(ProcessAlive(handle_->process)) << "QEMU left running";
    }
    netns_.reset();
    if (!dir_.empty()) (void)RemoveAll(dir_);
  }

  // A busybox root disk; with_init: busybox init as /sbin/init.
  fs::path MakeRootDisk(const std::string& name, bool with_init) {
    fs::path root = dir_ / (name + "-root");
    for (const char* d : {"bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "var/lib/dbus"}) {
      EXPECT_TRUE(MakeDirs(root / d).ok());
    }
    std::error_code ec;
    fs::copy_file("/bin/busybox", root / "bin/busybox", ec);
    EXPECT_FALSE(ec) << ec.message();
    auto list = RunChecked(*runner_, {.argv = {"/bin/busybox", "--list"}});
    EXPECT_TRUE(list.ok());
    if (list.ok()) {
      for (const std::string& applet : Split(list->stdout_data, '\n')) {
        if (applet.empty() || applet == "busybox") continue;
        fs::create_symlink("busybox", root / "bin" / applet, ec);
      }
    }
    if (with_init) {
      fs::create_symlink("/bin/busybox", root / "sbin/init", ec);
      EXPECT_TRUE(WriteFileAtomic(root / "etc/inittab",
                                  "::sysinit:/bin/echo busybox-init-started\n::respawn:/bin/sleep 100000\n")
                      .ok());
    } else {
      EXPECT_TRUE(WriteFileAtomic(root / "etc/machine-id", std::string(kImageMachineId) + "\n").ok());
      EXPECT_TRUE(WriteFileAtomic(root / "var/lib/dbus/machine-id", std::string(kImageMachineId) + "\n").ok());
    }
    EXPECT_TRUE(WriteFileAtomic(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n").ok());
    fs::path img = dir_ / (name + ".ext4");
    auto mk = RunChecked(*runner_, {.argv = {"mkfs.ext4", "-q", "-F", "-d", root.string(), img.string(), "64M"}});
    EXPECT_TRUE(mk.ok()) << mk.status().ToString();
    return img;
  }

  // A tap in a private netns (10.213.<net>.1/24 on the host side).
  void MakeTap(int net) {
    netns_ = std::make_unique<Netns>(*runner_, "banger-id-" + std::to_string(::getpid()));
    ASSERT_TRUE(netns_->Create().ok());
    ASSERT_TRUE(netns_->Exec({"ip", "tuntap", "add", "bgtap0", "mode", "tap"}).ok());
    ASSERT_TRUE(netns_->Exec({"ip", "addr", "add", "10.213." + std::to_string(net) + ".1/24", "dev", "bgtap0"}).ok());
    ASSERT_TRUE(netns_->Exec({"ip", "link", "set", "bgtap0", "up"}).ok());
  }

  // Boots `disk` with `held` as its config.json (hold set), template MAC
  // 52:54:00:00:00:aa, the RTC at 2001-01-01 (so a clock the agent did not
  // step is far off), and waits for the agent's HELLO.
  void BootHeld(const fs::path& disk, GuestConfig held) {
    held.hold_for_identity = true;
    VmLaunchConfig c;
    c.sandbox_id = "identity";
    c.name = "template";
    c.cpus = 1;
    c.memory_bytes = 256ull << 20;
    c.runtime_dir = dir_ / "vm" / "run";
    ASSERT_TRUE(MakeDirs(c.runtime_dir.parent_path()).ok());
    c.kernel_path = kernel_;
    c.initrd_path = initramfs_;
    c.base_disk = disk;
    c.tap_device = "bgtap0";
    c.mac_address = "52:54:00:00:00:aa";
    c.guest = std::move(held);
    QemuOptions o;
    o.accel_cache_file = dir_ / "accel-verdict";
    o.early_boot_timeout = milliseconds(90000);
    // The netns, then QEMU with its RTC in 2001 (argv, no user input: the
    // shell only appends the option and execs QEMU, keeping its pid).
    o.launcher_prefix = {"ip", "netns", "exec", netns_->name(), "/bin/sh", "-c",
                         "exec \"$0\" \"$@\" -rtc base=2001-01-01T00:00:00"};
    hv_ = MakeQemuHypervisor(*runner_, *clock_, o);
    auto h = hv_->Boot(c);
    ASSERT_TRUE(h.ok()) << h.error().ToString() << "\n" << Console();
    handle_ = *h;
    auto conn = ConnectAgent(handle_->agent_socket, steady_clock::now() + kHelloDeadline);
    ASSERT_TRUE(conn.ok()) << conn.error().ToString() << "\n" << Console();
    conn_ = std::move(*conn);
    auto hello = conn_->WaitHello(steady_clock::now() + kHelloDeadline);
    ASSERT_TRUE(hello.ok()) << hello.error().ToString() << "\n" << Console();
    hello_ = *hello;
  }

  ExecResult Run(std::vector<std::string> argv) {
    auto r = conn_->Exec({.argv = std::move(argv)}, "", milliseconds(60000));
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : ExecResult{-1, false, "", r.error().ToString()};
  }
  std::string Out(std::vector<std::string> argv) { return Run(std::move(argv)).stdout_data; }

  std::string Console() const {
    if (!handle_) return "";
    auto t = ReadFile(handle_->runtime_dir / "console.log");
    return t ? *t : "";
  }

  // Exec is refused while held, with the reason.
  void ExpectHeld() {
    EXPECT_TRUE(proto::IsHeld(hello_)) << "mode " << hello_.mode;
    auto r = conn_->Exec({.argv = {"true"}}, "", milliseconds(30000));
    ASSERT_FALSE(r.ok()) << "exec ran in a held guest";
    EXPECT_EQ(r.error().code(), StatusCode::kFailedPrecondition) << r.error().ToString();
    EXPECT_NE(r.error().message().find("waiting for identity"), std::string::npos) << r.error().ToString();
    EXPECT_TRUE(conn_->Ping(milliseconds(30000)).ok()) << "a held agent answers PING";
  }

  // The guest's wall clock is within a few seconds of the host's.
  void ExpectClockNearHost() {
    std::string guest = std::string(Trim(Out({"date", "+%s"})));
    ASSERT_FALSE(guest.empty());
    long long diff = std::stoll(guest) - static_cast<long long>(::time(nullptr));
    EXPECT_LE(std::llabs(diff), 10) << "guest clock " << guest << " (its RTC said 2001)";
  }

  std::unique_ptr<CommandRunner> runner_;
  std::unique_ptr<Clock> clock_;
  fs::path dir_, kernel_, initramfs_;
  std::string kernel_version_;
  std::unique_ptr<Netns> netns_;
  std::unique_ptr<Hypervisor> hv_;
  std::optional<VmHandle> handle_;
  std::unique_ptr<AgentConnection> conn_;
  proto::Hello hello_;
};

// The agent stays PID 1 (no /sbin/init) and runs the sandbox's entrypoint.
TEST_F(IdentityTest, HeldGuestRefusesWorkThenBecomesTheSandboxItIsGiven) {
  ASSERT_NO_FATAL_FAILURE(MakeTap(7));
  fs::path disk = MakeRootDisk("no-init", false);
  // The template's own config: none of it may show in the sandbox.
  GuestConfig held;
  held.hostname = "template";
  held.network = GuestNetwork{"eth0", "10.213.7.99", 24, "10.213.7.1", {"10.213.7.1"}};
  held.files = {{"/etc/template-file", "template\n", 0644}};
  held.env = {{"WHO", "template"}};
  ASSERT_NO_FATAL_FAILURE(BootHeld(disk, held));
  ASSERT_NO_FATAL_FAILURE(ExpectHeld());

  GuestConfig a;
  a.hostname = "sandbox-a";
  a.network = GuestNetwork{"eth0", "10.213.7.2", 24, "10.213.7.1", {"10.213.7.1"}};
  a.files = {{"/etc/identity-test", "sandbox a\n", 0640}};
  a.authorized_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey a@test"};
  a.env = {{"WHO", "a"}};
  a.entrypoint = {"sh", "-c", "echo \"$WHO $EP\" > /tmp/entrypoint-ran; exec sleep 100000"};
  a.entrypoint_env = {{"EP", "ep-env"}};
  a.workdir = "/tmp";
  a.init = GuestInitMode::kAgent;
  a.hosts = {{"10.213.7.3", {"peer-b"}}};
  Status s = conn_->SendIdentity(a, "52:54:00:12:34:0a", milliseconds(120000));
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << Console();
  auto hello = conn_->WaitHello(steady_clock::now() + seconds(1));
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->mode, "init") << "no /sbin/init: the agent stays PID 1";

  ExpectClockNearHost();
  EXPECT_EQ(Out({"cat", "/sys/class/net/eth0/address"}), "52:54:00:12:34:0a\n");
  std::string addr = Out({"ip", "-4", "addr", "show", "eth0"});
  EXPECT_NE(addr.find("inet 10.213.7.2/24"), std::string::npos) << addr;
  EXPECT_EQ(addr.find("10.213.7.99"), std::string::npos) << addr;
  EXPECT_NE(Out({"ip", "route"}).find("default via 10.213.7.1 dev eth0"), std::string::npos);
  EXPECT_EQ(Run({"ping", "-c", "1", "-W", "10", "10.213.7.1"}).exit_code, 0) << "the NIC works with its new MAC";
  Status ping = netns_->Exec({"/bin/busybox", "ping", "-c", "1", "-W", "10", "10.213.7.2"});
  EXPECT_TRUE(ping.ok()) << "host -> guest at its new address and MAC: " << ping.ToString();
  EXPECT_EQ(Out({"hostname"}), "sandbox-a\n");
  EXPECT_EQ(Out({"cat", "/etc/hostname"}), "sandbox-a\n");
  EXPECT_NE(Out({"cat", "/etc/hosts"}).find("10.213.7.3\tpeer-b"), std::string::npos);

  std::string machine_id = std::string(Trim(Out({"cat", "/etc/machine-id"})));
  EXPECT_EQ(machine_id.size(), 32u) << machine_id;
  EXPECT_EQ(machine_id.find_first_not_of("0123456789abcdef"), std::string::npos) << machine_id;
  EXPECT_NE(machine_id, kImageMachineId) << "the image's machine-id was kept";
  EXPECT_EQ(std::string(Trim(Out({"cat", "/var/lib/dbus/machine-id"}))), machine_id);

  EXPECT_EQ(Out({"cat", "/etc/identity-test"}), "sandbox a\n");
  EXPECT_EQ(Out({"stat", "-c", "%a", "/etc/identity-test"}), "640\n");
  EXPECT_NE(Run({"test", "-e", "/etc/template-file"}).exit_code, 0) << "the template's files were written";
  EXPECT_EQ(Out({"cat", "/root/.ssh/authorized_keys"}), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey a@test\n");
  EXPECT_EQ(Out({"sh", "-c", "echo $WHO"}), "a\n");
  // The entrypoint ran with the sandbox's env, in its workdir, as the agent's child.
  std::string ran;
  for (int i = 0; i < 100 && ran.empty(); ++i) {
    ran = Run({"cat", "/tmp/entrypoint-ran"}).stdout_data;
    if (ran.empty()) ::usleep(100000);
  }
  EXPECT_EQ(ran, "a ep-env\n");
  std::string sleep_pid = std::string(Trim(Out({"pidof", "sleep"})));
  ASSERT_FALSE(sleep_pid.empty());
  EXPECT_EQ(Out({"readlink", "/proc/" + sleep_pid + "/cwd"}), "/tmp\n");
  EXPECT_EQ(Out({"sh", "-c", "grep -E '^(SigBlk|SigIgn)' /proc/" + sleep_pid + "/status"}),
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n")
      << "the entrypoint inherited the server's signal state";
  EXPECT_EQ(Out({"cat", "/proc/1/comm"}), "init\n");  // the agent, as /init

  // A second identity is refused; the sandbox keeps its own.
  GuestConfig b = a;
  b.hostname = "sandbox-b";
  s = conn_->SendIdentity(b, "52:54:00:12:34:0b", milliseconds(60000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(Out({"hostname"}), "sandbox-a\n");
  EXPECT_EQ(Out({"cat", "/sys/class/net/eth0/address"}), "52:54:00:12:34:0a\n");
}

// With the image's init, the agent hands PID 1 to /sbin/init after IDENTITY
// and keeps serving the same channel from a child.
TEST_F(IdentityTest, HeldGuestWithImageInitHandsOverPid1AfterItsIdentity) {
  ASSERT_NO_FATAL_FAILURE(MakeTap(8));
  fs::path disk = MakeRootDisk("with-init", true);
  ASSERT_NO_FATAL_FAILURE(BootHeld(disk, GuestConfig{}));
  ASSERT_NO_FATAL_FAILURE(ExpectHeld());
  // A config the agent refuses leaves it held; the good one then applies.
  GuestConfig bad;
  bad.network = GuestNetwork{"eth9", "10.213.8.2", 24, "", {}};  // no such NIC
  Status s = conn_->SendIdentity(bad, "52:54:00:12:34:0c", milliseconds(60000));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("eth9"), std::string::npos) << s.ToString();
  auto r = conn_->Exec({.argv = {"true"}}, "", milliseconds(30000));
  EXPECT_FALSE(r.ok()) << "still held after a refused identity";

  GuestConfig c;
  c.hostname = "sandbox-c";
  c.network = GuestNetwork{"eth0", "10.213.8.2", 24, "10.213.8.1", {"10.213.8.1"}};
  c.env = {{"WHO", "c"}};
  s = conn_->SendIdentity(c, "52:54:00:12:34:0c", milliseconds(120000));
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << Console();
  EXPECT_EQ(conn_->WaitHello(steady_clock::now() + seconds(1))->mode, "server")
      << "busybox init is PID 1; the agent serves beside it";

  EXPECT_EQ(Out({"hostname"}), "sandbox-c\n");
  EXPECT_EQ(Out({"cat", "/sys/class/net/eth0/address"}), "52:54:00:12:34:0c\n");
  EXPECT_NE(Out({"ip", "-4", "addr", "show", "eth0"}).find("inet 10.213.8.2/24"), std::string::npos);
  EXPECT_EQ(Out({"sh", "-c", "echo $WHO"}), "c\n");
  ExpectClockNearHost();
  EXPECT_EQ(Out({"cat", "/proc/1/comm"}), "init\n");
  EXPECT_NE(Console().find("busybox-init-started"), std::string::npos) << Console();
  EXPECT_NE(Run({"test", "-e", "/etc/machine-id"}).exit_code, 0) << "no machine-id in the image: none is made";

  // The agent powers the VM off through init, as after a normal boot.
  conn_.reset();
  auto start = steady_clock::now();
  Status down = hv_->Shutdown(*handle_, milliseconds(60000));
  ASSERT_TRUE(down.ok()) << down.ToString();
  EXPECT_FALSE(ProcessAlive(handle_->process));
  EXPECT_LT(steady_clock::now() - start, seconds(50)) << "powered off by the guest, not by SIGKILL";
}

}  // namespace
}  // namespace banger
