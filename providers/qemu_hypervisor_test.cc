#include "providers/qemu_hypervisor.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "base/files.h"
#include "base/strings.h"
#include "providers/initramfs.h"
#include "tests/support/qcow2.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Records every command; Run succeeds, StartDetached returns a fake identity.
class FakeCommandRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    runs.push_back(spec.argv);
    // qemu-img create: the overlay appears (confinement chowns it).
    if (spec.argv.size() > 9 && spec.argv[0] == "qemu-img") (void)WriteFileAtomic(spec.argv[9], "qcow2", 0644);
    return CommandOutput{};
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override {
    started.push_back(spec);
    return ProcessIdentity{999999, 42};
  }
  std::vector<std::vector<std::string>> runs;
  std::vector<CommandSpec> started;
};

class FakeClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override { return {}; }
  std::chrono::steady_clock::time_point SteadyNow() const override { return now; }
  void SleepFor(milliseconds d) override { now += d; }
  std::chrono::steady_clock::time_point now{};
};

VmLaunchConfig FixedConfig() {
  VmLaunchConfig c;
  c.sandbox_id = "sb-0001";
  c.name = "web-1";
  c.cpus = 2;
  c.memory_bytes = 512ull << 20;
  c.runtime_dir = "/run/banger/sb-0001";
  c.kernel_path = "/var/lib/banger/kernels/6.1/vmlinux";
  c.initrd_path = "/var/lib/banger/kernels/6.1/initrd.img";
  c.base_disk = "/var/lib/banger/images/abc/rootfs.ext4";
  c.kernel_cmdline_extra = "loglevel=4";
  c.tap_device = "bgtap0";
  c.mac_address = "52:54:00:12:34:56";
  return c;
}

std::string Render(const std::vector<std::string>& argv) { return Join(argv, "\n") + "\n"; }

void ExpectGolden(const std::string& name, const std::string& actual) {
  fs::path golden = fs::path(BANGER_SOURCE_DIR) / "providers/testdata" / name;
  if (std::getenv("BANGER_TEST_ACCEPT")) {
    ASSERT_TRUE(WriteFileAtomic(golden, actual).ok());
  }
  auto expected = ReadFile(golden);
  ASSERT_TRUE(expected.ok()) << "missing golden " << golden << "; run with BANGER_TEST_ACCEPT=1";
  EXPECT_EQ(actual, *expected) << "argv changed; review and re-run with BANGER_TEST_ACCEPT=1";
}

TEST(QemuArgvTest, MicrovmTcgMatchesGolden) {
  ExpectGolden("qemu_microvm_tcg.argv", Render(BuildQemuArgv(FixedConfig(), QemuOptions{}, {false, true, 2445431})));
}

TEST(QemuArgvTest, Q35KvmMatchesGolden) {
  VmLaunchConfig c = FixedConfig();
  c.tap_device.clear();
  ExpectGolden("qemu_q35_kvm.argv", Render(BuildQemuArgv(c, QemuOptions{}, {true, false, 2445431})));
}

// Bridged networking: a tap NIC with the sandbox's MAC on both machines,
// never user-mode networking beside it; the launcher prefix comes first.
TEST(QemuArgvTest, TapWithMacOnMicrovmAndQ35) {
  VmLaunchConfig c = FixedConfig();
  QemuOptions o;
  o.launcher_prefix = {"ip", "netns", "exec", "banger"};
  for (bool microvm : {true, false}) {
    std::vector<std::string> argv = BuildQemuArgv(c, o, {false, microvm, 0});
    ASSERT_GE(argv.size(), 5u);
    EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.begin() + 5),
              (std::vector<std::string>{"ip", "netns", "exec", "banger", o.qemu_binary}));
    std::string joined = Join(argv, " ");
    EXPECT_NE(joined.find("-netdev tap,id=net0,ifname=bgtap0,script=no,downscript=no"), std::string::npos) << joined;
    std::string nic = std::string(microvm ? "virtio-net-device" : "virtio-net-pci") + ",netdev=net0,mac=52:54:00:12:34:56";
    EXPECT_NE(joined.find("-device " + nic), std::string::npos) << joined;
    EXPECT_EQ(joined.find("user,"), std::string::npos) << joined;
  }
}

// Volumes: one raw virtio-blk disk each, after the root disk, with the serial
// the guest agent finds it by.
TEST(QemuArgvTest, VolumesAreExtraRawDisksWithSerials) {
  VmLaunchConfig c = FixedConfig();
  c.extra_disks = {{"/var/lib/banger/volumes/web-1/data.ext4", "bvol0"},
                   {"/var/lib/banger/volumes/web-1/home.ext4", "bvol1"}};
  for (bool microvm : {true, false}) {
    std::string joined = Join(BuildQemuArgv(c, QemuOptions{}, {false, microvm, 0}), " ");
    std::string dev = microvm ? "virtio-blk-device" : "virtio-blk-pci";
    EXPECT_NE(joined.find("-drive file=/var/lib/banger/volumes/web-1/data.ext4,format=raw,if=none,id=vol0,"
                          "discard=unmap -device " + dev + ",drive=vol0,serial=bvol0"),
              std::string::npos)
        << joined;
    EXPECT_NE(joined.find("-device " + dev + ",drive=vol1,serial=bvol1"), std::string::npos) << joined;
    EXPECT_NE(joined.find(",drive=root,serial=banger-root "), std::string::npos)
        << "the guest finds its root disk by serial when volumes are attached: " << joined;
  }
}

TEST(QemuArgvTest, NeverUsesQuietAndAlwaysSupervisesPanics) {
  auto argv = BuildQemuArgv(FixedConfig(), QemuOptions{}, {false, true});
  std::string joined = Join(argv, " ");
  EXPECT_EQ(joined.find("quiet"), std::string::npos);
  EXPECT_NE(joined.find("panic=-1"), std::string::npos);
  EXPECT_NE(joined.find("-no-reboot"), std::string::npos);
}

class QemuBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakeTempDir("qemu-hv-test");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
    ASSERT_TRUE(WriteFileAtomic(dir_ / "vmlinux", "kernel").ok());
    ASSERT_TRUE(WriteFileAtomic(dir_ / "initrd.img", "initramfs").ok());
    ASSERT_TRUE(WriteFileAtomic(dir_ / "rootfs.ext4", "disk").ok());
    config_.sandbox_id = "sb-1";
    config_.name = "web-1";
    config_.runtime_dir = dir_ / "run";
    config_.kernel_path = dir_ / "vmlinux";
    config_.initrd_path = dir_ / "initrd.img";
    config_.base_disk = dir_ / "rootfs.ext4";
    config_.disk_bytes = 1 << 30;
    opts_.accel = QemuAccel::kTcg;
    opts_.machine = QemuMachine::kMicrovm;
    opts_.early_boot_timeout = milliseconds(0);
    opts_.guest_tsc_khz = 2000000;
  }
  void TearDown() override { (void)RemoveAll(dir_); }

  fs::path dir_;
  VmLaunchConfig config_;
  QemuOptions opts_;
  FakeCommandRunner runner_;
  FakeClock clock_;
};

TEST_F(QemuBootTest, BootCreatesOverlayWritesInitrdAndStartsQemuDetached) {
  ASSERT_TRUE(MakeDirs(config_.runtime_dir).ok());
  ASSERT_TRUE(WriteFileAtomic(config_.runtime_dir / "qmp.sock", "stale").ok());
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  auto h = hv->Boot(config_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  ASSERT_EQ(runner_.runs.size(), 1u);
  EXPECT_EQ(runner_.runs[0],
            (std::vector<std::string>{"qemu-img", "create", "-q", "-f", "qcow2", "-b", config_.base_disk.string(),
                                      "-F", "raw", (config_.runtime_dir / "disk.qcow2").string(), "1073741824"}));
  EXPECT_FALSE(fs::exists(config_.runtime_dir / "qmp.sock")) << "leftovers are cleaned";
  EXPECT_EQ(fs::status(config_.runtime_dir).permissions() & fs::perms::all, fs::perms::owner_all);
  auto initrd = ReadFile(config_.runtime_dir / "initrd.img");
  ASSERT_TRUE(initrd.ok());
  EXPECT_TRUE(StartsWith(*initrd, "initramfs"));
  EXPECT_NE(initrd->find("\"hostname\": \"web-1\""), std::string::npos) << "hostname defaults to the name";
  ASSERT_EQ(runner_.started.size(), 1u);
  EXPECT_EQ(runner_.started[0].argv, BuildQemuArgv([&] {
              VmLaunchConfig c = config_;
              c.guest.hostname = "web-1";
              return c;
            }(), opts_, {false, true, 2000000}));
  EXPECT_EQ(runner_.started[0].log_file, config_.runtime_dir / "qemu.log");
  EXPECT_EQ(h->process.pid, 999999);
  EXPECT_EQ(h->agent_socket, config_.runtime_dir / "agent.sock");
  EXPECT_EQ(h->disk_path, config_.runtime_dir / "disk.qcow2");
}

TEST(QemuArgvTest, ConfinementAddsTheSeccompSandboxAndBoundsTcgsCache) {
  QemuOptions o;
  std::vector<std::string> plain = BuildQemuArgv(FixedConfig(), o, {false, true, 0});
  EXPECT_EQ(std::find(plain.begin(), plain.end(), "-sandbox"), plain.end()) << "off by default (golden argv unchanged)";
  o.confine.seccomp = true;
  o.confine.cgroups.mode = CgroupMode::kV2;
  std::vector<std::string> a = BuildQemuArgv(FixedConfig(), o, {false, true, 0});
  auto at = std::find(a.begin(), a.end(), "-sandbox");
  ASSERT_NE(at, a.end());
  EXPECT_EQ(*(at + 1), "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
  auto accel = std::find(a.begin(), a.end(), "-accel");
  ASSERT_NE(accel, a.end());
  EXPECT_EQ(*(accel + 1), "tcg,tb-size=64");
  std::vector<std::string> k = BuildQemuArgv(FixedConfig(), o, {true, true, 0});
  EXPECT_EQ(*(std::find(k.begin(), k.end(), "-accel") + 1), "kvm") << "KVM has no translation cache";
  o.confine.cgroups.mode = CgroupMode::kNone;
  a = BuildQemuArgv(FixedConfig(), o, {false, true, 0});
  EXPECT_EQ(*(std::find(a.begin(), a.end(), "-accel") + 1), "tcg") << "no limit: QEMU's default cache";
}

TEST_F(QemuBootTest, ConfinedBootGivesEachSandboxItsOwnUidAndFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  opts_.confine.per_sandbox_ids = true;
  opts_.confine.ids = {3000000, 8};
  opts_.confine.state_root = dir_;
  opts_.confine.seccomp = true;
  opts_.confine.reclaim_dirs = {dir_ / "volumes"};
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  ASSERT_TRUE(hv->Boot(config_).ok());
  VmLaunchConfig second = config_;
  second.sandbox_id = "sb-2";
  second.runtime_dir = dir_ / "run2";
  const fs::path vol = dir_ / "volumes" / "web-2" / "data.ext4";
  ASSERT_TRUE(MakeDirs(vol.parent_path(), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(vol, "ext4", 0600).ok());
  second.extra_disks = {{vol, "data"}};
  auto h2 = hv->Boot(second);
  ASSERT_TRUE(h2.ok()) << h2.error().ToString();
  ASSERT_EQ(runner_.started.size(), 2u);
  const ChildConfinement& c1 = runner_.started[0].confine;
  const ChildConfinement& c2 = runner_.started[1].confine;
  EXPECT_EQ(c1.uid, 3000001u);
  EXPECT_EQ(c1.gid, 3000001u);
  EXPECT_EQ(c2.uid, 3000002u) << "another sandbox, another uid";
  EXPECT_EQ(c1.groups, std::vector<uint32_t>{3000000});
  EXPECT_TRUE(c1.no_new_privs);
  EXPECT_EQ(c1.umask, 077u);
  auto stat_of = [](const fs::path& p) {
    struct stat st{};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st;
  };
  for (const char* f : {"disk.qcow2", "initrd.img"}) {
    struct stat st = stat_of(config_.runtime_dir / f);
    EXPECT_EQ(st.st_uid, 3000001u) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
  }
  EXPECT_EQ(stat_of(config_.runtime_dir).st_uid, 3000001u);
  EXPECT_EQ(stat_of(config_.runtime_dir).st_mode & 07777, 0700u);
  EXPECT_EQ(stat_of(config_.kernel_path).st_gid, 3000000u) << "shared, read-only";
  EXPECT_EQ(stat_of(config_.kernel_path).st_mode & 0070, 0040u);
  EXPECT_EQ(stat_of(dir_).st_mode & 07777, 0710u);
  const auto& argv = runner_.started[0].argv;
  EXPECT_NE(std::find(argv.begin(), argv.end(), "-sandbox"), argv.end());
  // A restart keeps the disk and the identity.
  config_.keep_disk = true;
  ASSERT_TRUE(hv->Boot(config_).ok());
  EXPECT_EQ(runner_.started.back().confine.uid, 3000001u);
  EXPECT_EQ(stat_of(vol).st_uid, 3000002u) << "a volume belongs to its sandbox's uid";
  EXPECT_EQ(stat_of(vol.parent_path()).st_mode & 07777, 0710u);
  // Destroy frees it: the next sandbox takes the lowest free uid, and the
  // kept volume is root's again (never the next holder of that uid's).
  ASSERT_TRUE(hv->Destroy(*h2).ok());
  EXPECT_EQ(stat_of(vol).st_uid, 0u);
  VmLaunchConfig third = config_;
  third.keep_disk = false;
  third.sandbox_id = "sb-3";
  third.runtime_dir = dir_ / "run3";
  ASSERT_TRUE(hv->Boot(third).ok());
  EXPECT_EQ(runner_.started.back().confine.uid, 3000002u);
}

TEST_F(QemuBootTest, AConfinedRestartOfARestoredSandboxMayReadItsTemplateLayer) {
  // A sandbox restored from a template keeps a disk whose backing file is
  // the template's layer; a cold restart (or the boot after a restore that
  // was interrupted) must still be allowed to read it.
  if (::geteuid() != 0) GTEST_SKIP() << "chown needs root";
  opts_.confine.per_sandbox_ids = true;
  opts_.confine.ids = {3000000, 8};
  opts_.confine.state_root = dir_;
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  ASSERT_TRUE(hv->Boot(config_).ok());
  const fs::path layer = dir_ / "templates" / std::string(64, 'a') / "disk.qcow2";
  ASSERT_TRUE(MakeDirs(layer.parent_path(), 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(layer, "layer", 0400).ok());
  ASSERT_TRUE(WriteFileAtomic(config_.runtime_dir / "disk.qcow2", testing::Qcow2Header(layer.string()), 0600).ok());
  auto backing = Qcow2BackingFile(config_.runtime_dir / "disk.qcow2");
  ASSERT_TRUE(backing.ok()) << backing.error().ToString();
  ASSERT_EQ(*backing, layer.string());

  config_.keep_disk = true;
  auto h = hv->Boot(config_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  struct stat st{};
  ASSERT_EQ(::stat(layer.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 3000000u) << "the layer is shared with the confined QEMUs' group";
  EXPECT_EQ(st.st_mode & 0070, 0040u) << "read-only to that group";
  ASSERT_EQ(::stat(layer.parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0010, 0010u) << "its directory is searchable by the group";
}

TEST(QemuTscTest, HostTscMeasurementIsPlausible) {
  if (ReadFile("/proc/cpuinfo").value_or("").find(" constant_tsc") == std::string::npos) {
    // No constant TSC: nothing to measure, and banger must not claim a frequency
    // (checked here rather than skipped, so BANGER_REQUIRE_ALL runs pass on any CPU).
    EXPECT_EQ(MeasureHostTscKhz(), 0u);
    return;
  }
  uint64_t a = MeasureHostTscKhz();
  uint64_t b = MeasureHostTscKhz();
  EXPECT_GT(a, 100000u);     // > 100 MHz
  EXPECT_LT(a, 10000000u);   // < 10 GHz
  EXPECT_LT(a > b ? a - b : b - a, a / 100) << "two measurements differ by more than 1%";
}

TEST_F(QemuBootTest, RejectsUnsafeInputsBeforeRunningAnything) {
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  VmLaunchConfig bad = config_;
  bad.base_disk = dir_ / "a,b.ext4";
  EXPECT_EQ(hv->Boot(bad).error().code(), StatusCode::kInvalidArgument);
  bad = config_;
  bad.tap_device = "tap0,script=/evil";
  EXPECT_EQ(hv->Boot(bad).error().code(), StatusCode::kInvalidArgument);
  bad = config_;
  bad.kernel_path = dir_ / "missing";
  auto r = hv->Boot(bad);
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_NE(r.error().message().find("missing"), std::string::npos);
  bad = config_;
  bad.sandbox_id = "../x";
  EXPECT_EQ(hv->Boot(bad).error().code(), StatusCode::kInvalidArgument);
  bad = config_;
  bad.guest.hosts = {{"10.0.0.1", {"peer\n10.6.6.6 evil"}}};
  auto hosts = hv->Boot(bad);
  EXPECT_EQ(hosts.error().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(hosts.error().message().find("invalid host name"), std::string::npos) << hosts.error().ToString();
  EXPECT_TRUE(runner_.runs.empty());
  EXPECT_TRUE(runner_.started.empty());
}

TEST_F(QemuBootTest, CachedTcgVerdictSkipsTheKvmProbe) {
  opts_.accel = QemuAccel::kAuto;
  opts_.accel_cache_file = dir_ / "accel";
  ASSERT_TRUE(WriteFileAtomic(opts_.accel_cache_file, "tcg\n").ok());
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  ASSERT_TRUE(hv->Boot(config_).ok());
  ASSERT_EQ(runner_.runs.size(), 1u) << "only qemu-img ran; no probe";
  std::string joined = Join(runner_.started[0].argv, " ");
  EXPECT_NE(joined.find("-accel tcg"), std::string::npos);
}

TEST_F(QemuBootTest, InspectOfDeadProcessSaysNotAlive) {
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  VmHandle h{{999999, 42}, config_.runtime_dir, {}, {}};
  VmObservation o = hv->Inspect(h);
  EXPECT_FALSE(o.process_alive);
  EXPECT_FALSE(o.vmm_responsive);
  EXPECT_NE(o.detail.find("999999"), std::string::npos);
  EXPECT_TRUE(hv->Shutdown(h, milliseconds(1000)).ok()) << "already stopped is OK";
}

TEST_F(QemuBootTest, DestroyRemovesRuntimeDir) {
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  auto h = hv->Boot(config_);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(fs::exists(config_.runtime_dir));
  ASSERT_TRUE(hv->Destroy(*h).ok());
  EXPECT_FALSE(fs::exists(config_.runtime_dir));
  EXPECT_TRUE(hv->Destroy(*h).ok()) << "idempotent";
}

}  // namespace
}  // namespace banger

namespace banger {
namespace {

TEST(QemuArgvUserNetTest, NatWithForwardsMatchesGolden) {
  VmLaunchConfig c;
  c.sandbox_id = "sb-0002";
  c.name = "web";
  c.cpus = 2;
  c.memory_bytes = 1ull << 30;
  c.runtime_dir = "/run/banger/sb-0002";
  c.kernel_path = "/k/vmlinux";
  c.initrd_path = "/k/initramfs.img";
  c.base_disk = "/i/rootfs.ext4";
  c.user_network.enabled = true;
  c.user_network.forwards = {{"tcp", "127.0.0.1", 2222, 22}, {"udp", "127.0.0.1", 5353, 53}};
  auto argv = BuildQemuArgv(c, QemuOptions{}, {false, true, 2445431});
  std::string joined = Join(argv, " ");
  EXPECT_NE(joined.find("-netdev user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=off,"
                        "hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:127.0.0.1:5353-:53"),
            std::string::npos)
      << joined;
  EXPECT_NE(joined.find("-device virtio-net-device,netdev=net0"), std::string::npos) << joined;
  c.user_network.restrict = true;
  joined = Join(BuildQemuArgv(c, QemuOptions{}, {false, true, 2445431}), " ");
  EXPECT_NE(joined.find("restrict=on"), std::string::npos) << "isolated mode restricts the guest";
}

TEST_F(QemuBootTest, RestartKeepsTheWritableDisk) {
  // Given a sandbox that booted once and wrote to its disk,
  auto hv = MakeQemuHypervisor(runner_, clock_, opts_);
  ASSERT_TRUE(hv->Boot(config_).ok());
  ASSERT_TRUE(WriteFileAtomic(config_.runtime_dir / "disk.qcow2", "guest data").ok());
  ASSERT_TRUE(WriteFileAtomic(config_.runtime_dir / "agent.sock", "stale").ok());
  // when it is booted again with keep_disk,
  VmLaunchConfig again = config_;
  again.keep_disk = true;
  ASSERT_TRUE(hv->Boot(again).ok());
  // then the disk survives, no new overlay is created and leftovers are gone.
  EXPECT_EQ(ReadFile(config_.runtime_dir / "disk.qcow2").value_or(""), "guest data");
  EXPECT_EQ(runner_.runs.size(), 1u) << "qemu-img ran only for the first boot";
  EXPECT_FALSE(fs::exists(config_.runtime_dir / "agent.sock"));
  // and a fresh boot replaces it.
  ASSERT_TRUE(hv->Boot(config_).ok());
  EXPECT_EQ(runner_.runs.size(), 2u);
}

TEST(QemuRecoverTest, UnknownRuntimeDirHasNoProcess) {
  auto r = RecoverQemuProcess("/nonexistent/banger/sb-x");
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace banger
