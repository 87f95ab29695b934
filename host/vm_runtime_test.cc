// VmRuntime::Boot's translation of a BootRequest into QEMU's argv and the
// guest's config.json, with a recording command runner (no QEMU is started).
#include "host/vm_runtime.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>

#include "base/files.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "providers/initramfs.h"
#include "providers/qemu_hypervisor.h"
#include "tests/support/test_util.h"

namespace banger::host {
namespace {

namespace fs = std::filesystem;
using testing::ScopedEnv;
using testing::TempDir;

// Run succeeds; StartDetached records the argv and plays a QEMU whose guest
// got as far as the agent (the console marker), reporting this test process
// as the VMM so that Boot sees a live process. Tests must not Stop or
// Destroy what it "started".
class RecordingRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    runs.push_back(spec.argv);
    // `qemu-img create ... PATH`: the overlay exists afterwards, as for real
    // (a confined QEMU's access to it is checked before the start).
    if (spec.argv.size() > 2 && spec.argv[0] == "qemu-img" && spec.argv[1] == "create") {
      for (const std::string& a : spec.argv) {
        if (EndsWith(a, ".qcow2")) BANGER_RETURN_IF_ERROR(WriteFileAtomic(a, "", 0600));
      }
    }
    return CommandOutput{};
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override {
    started.push_back(spec.argv);
    BANGER_RETURN_IF_ERROR(WriteFileAtomic(spec.log_file.parent_path() / "console.log", "banger-agent: starting\n"));
    BANGER_ASSIGN_OR_RETURN(uint64_t start, ProcessStartTime(::getpid()));
    return ProcessIdentity{::getpid(), start};
  }
  std::vector<std::vector<std::string>> runs;
  std::vector<std::vector<std::string>> started;
};

class VmRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::path root = dir_.path();
    // As root each QEMU runs as its own uid (docs/qemu.md, "Confinement"),
    // which must be able to search its way to the kernel and the state, as
    // under /var/lib: a private 0700 temporary directory would stop it.
    ASSERT_EQ(::chmod(root.c_str(), 0711), 0);
    ASSERT_TRUE(WriteFileAtomic(root / "banger-agent", "not really an agent").ok());
    agent_env_.emplace("BANGER_AGENT", (root / "banger-agent").string());
    layout_ = LayoutAt(root / "state");
    ASSERT_TRUE(EnsureLayout(layout_).ok());
    fs::create_directories(root / "kernel");
    kernel_.name = "k";
    kernel_.kernel_path = (root / "kernel/bzImage").string();
    ASSERT_TRUE(WriteFileAtomic(kernel_.kernel_path, "kernel").ok());
    // The runtime's initramfs cache (keyed by the agent and the modules),
    // filled beforehand so that nothing is built from these stand-in modules.
    kernel_.modules_dir = (root / "kernel/modules").string();
    std::string dep;
    for (const auto& m : DefaultGuestModules()) {
      dep += "kernel/" + m + ".ko:\n";
      ASSERT_TRUE(MakeDirs(root / "kernel/modules/kernel").ok());
      ASSERT_TRUE(WriteFileAtomic(root / "kernel/modules/kernel" / (m + ".ko"), m).ok());
    }
    ASSERT_TRUE(WriteFileAtomic(root / "kernel/modules/modules.dep", dep).ok());
    auto cached = InitramfsCacheName(kernel_.modules_dir, Sha256OfAgent());
    ASSERT_TRUE(cached.ok()) << cached.status().ToString();
    ASSERT_TRUE(WriteFileAtomic(root / "kernel" / *cached, "kernel initramfs").ok());
    image_.name = "busybox";
    image_.rootfs_path = (root / "rootfs.ext4").string();
    ASSERT_TRUE(WriteFileAtomic(image_.rootfs_path, "disk").ok());
    config_.accel = "tcg";
    config_.machine = "microvm";
  }

  std::string Sha256OfAgent() {
    auto h = Sha256File(dir_.path() / "banger-agent");
    EXPECT_TRUE(h.ok());
    return h.ok() ? *h : std::string(64, '0');
  }

  BootRequest Request(const std::string& name) {
    BootRequest r;
    r.record.name = name;
    r.record.id = "sb-" + name;
    r.spec = testing::MakeSpec(name);
    // These tests pin a cold boot's argv and initrd; starting from templates
    // is covered by the providers' itests and tests/e2e/template_test.cc.
    r.spec.start = StartMode::kBoot;
    r.image = image_;
    r.kernel = kernel_;
    return r;
  }

  // Boots and returns QEMU's argv joined by spaces, and the initrd's bytes.
  std::pair<std::string, std::string> Boot(const BootRequest& req, BootResult* result = nullptr) {
    auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
    auto r = rt->Boot(req);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    if (!r.ok() || runner_.started.empty()) return {};
    if (result) *result = *r;
    std::string initrd = ReadFile(SandboxRuntimeDir(layout_, req.record.id) / "initrd.img").value_or("");
    return {Join(runner_.started.back(), " "), initrd};
  }

  TempDir dir_;
  std::optional<ScopedEnv> agent_env_;
  StateLayout layout_;
  KernelRecord kernel_;
  ImageRecord image_;
  Config config_;
  RecordingRunner runner_;
  testing::FakeClock clock_;
};

NetworkAttachment Bridged() {
  NetworkAttachment n;
  n.network = "default";
  n.bridge = "bgr-default";
  n.tap = "bgt-web";
  n.mac = "02:42:0a:63:00:02";
  n.address = "10.99.0.2";
  n.prefix = 24;
  n.gateway = "10.99.0.1";
  n.dns = {"10.99.0.1"};
  n.hosts = {{"10.99.0.7", {"peer", "peer.banger"}}};
  return n;
}

TEST_F(VmRuntimeTest, BridgedBootUsesTheTapMacLeaseAndPeers) {
  BootRequest req = Request("web");
  req.network = Bridged();
  req.spec.network.ports.push_back({});  // published by the network driver, not by QEMU
  BootResult result;
  auto [argv, initrd] = Boot(req, &result);
  EXPECT_NE(argv.find("-netdev tap,id=net0,ifname=bgt-web,script=no,downscript=no"), std::string::npos) << argv;
  EXPECT_NE(argv.find("virtio-net-device,netdev=net0,mac=02:42:0a:63:00:02"), std::string::npos) << argv;
  EXPECT_EQ(argv.find("user,"), std::string::npos) << "no user-mode networking beside the tap: " << argv;
  EXPECT_EQ(argv.find("hostfwd"), std::string::npos) << argv;
  EXPECT_EQ(argv.rfind("qemu-system-x86_64", 0), 0u) << "no launcher without network.netns: " << argv;
  EXPECT_EQ(result.address, "10.99.0.2");
  // config.json travels uncompressed at the end of the initrd.
  EXPECT_NE(initrd.find(R"("address": "10.99.0.2")"), std::string::npos);
  EXPECT_NE(initrd.find(R"("gateway": "10.99.0.1")"), std::string::npos);
  EXPECT_NE(initrd.find(R"("address": "10.99.0.7")"), std::string::npos) << "peer in hosts";
  EXPECT_NE(initrd.find(R"("peer.banger")"), std::string::npos);
}

TEST_F(VmRuntimeTest, NetnsStartsQemuInsideTheNamespace) {
  config_.netns = "banger-test-no-such-ns";
  BootRequest req = Request("web");
  req.network = Bridged();
  if (::geteuid() == 0) {
    // Confined (docs/qemu.md): the child enters /run/netns/NAME itself before
    // dropping to the sandbox's uid, so a missing namespace is named before
    // anything starts. (tests/e2e runs QEMU in real namespaces.)
    auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
    auto r = rt->Boot(req);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("/run/netns/banger-test-no-such-ns"), std::string::npos) << r.error().ToString();
    EXPECT_TRUE(runner_.started.empty());
    return;
  }
  // As an ordinary user there is no uid to drop: `ip netns exec` starts QEMU.
  auto [argv, initrd] = Boot(req);
  EXPECT_EQ(argv.rfind("ip netns exec banger-test-no-such-ns qemu-system-x86_64 ", 0), 0u) << argv;
}

TEST_F(VmRuntimeTest, WithoutAnAttachmentTheUserModePathIsKept) {
  BootRequest req = Request("web");
  BootResult result;
  auto [argv, initrd] = Boot(req, &result);
  EXPECT_NE(argv.find("-netdev user,id=net0"), std::string::npos) << argv;
  EXPECT_EQ(argv.find("tap,"), std::string::npos) << argv;
  EXPECT_EQ(result.address, "10.0.2.15");
  EXPECT_NE(initrd.find(R"("hosts": [])"), std::string::npos);

  BootRequest none = Request("quiet");
  none.spec.network.mode = NetworkMode::kNone;
  auto [argv2, initrd2] = Boot(none, &result);
  EXPECT_EQ(argv2.find("-netdev"), std::string::npos) << argv2;
  EXPECT_EQ(result.address, "");
}

// The Firecracker wiring (docs/firecracker.md): a spec resolved to
// Firecracker never boots QEMU instead, one that cannot have it is refused,
// and a record that names it is inspected and destroyed by its provider.
// (The provider's own process, API and jail: providers' FirecrackerProvider
// tests against the swagger contract.)
TEST_F(VmRuntimeTest, SpecsResolvedToFirecrackerNeverBootQemu) {
  ProviderProbe works;
  works.firecracker_provider = true;
  works.firecracker_binary = true;
  works.kvm_ok = "a probe VM ran to HLT";
  // The test kernel has no extracted vmlinux: Firecracker refuses it before
  // anything starts, whether the spec said firecracker or auto.
  for (HypervisorKind kind : {HypervisorKind::kFirecracker, HypervisorKind::kAuto}) {
    auto rt = MakeVmRuntimeWithProbe(config_, layout_, runner_, clock_, works);
    BootRequest req = Request("web");
    req.spec.hypervisor = kind;
    auto r = rt->Boot(req);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("kernel k has no extracted vmlinux, which Firecracker boots"),
              std::string::npos)
        << r.error().ToString();
    EXPECT_TRUE(runner_.started.empty()) << "QEMU was started for a Firecracker spec";
  }
  // Without a working KVM: an explicit firecracker spec is refused, auto boots QEMU.
  ProviderProbe broken = works;
  broken.kvm_ok.clear();
  broken.kvm_problem = "no /dev/kvm";
  auto rt = MakeVmRuntimeWithProbe(config_, layout_, runner_, clock_, broken);
  BootRequest req = Request("web");
  req.spec.hypervisor = HypervisorKind::kFirecracker;
  auto refused = rt->Boot(req);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("a working KVM (no /dev/kvm)"), std::string::npos)
      << refused.error().ToString();
  EXPECT_TRUE(runner_.started.empty());
  req.spec.hypervisor = HypervisorKind::kAuto;
  auto booted = rt->Boot(req);
  ASSERT_TRUE(booted.ok()) << booted.error().ToString();
  EXPECT_EQ(booted->hypervisor, "qemu");
  ASSERT_EQ(runner_.started.size(), 1u);
  EXPECT_NE(Join(runner_.started[0], " ").find("qemu-system-x86_64"), std::string::npos);

  // A recorded Firecracker sandbox (no process left): not alive, its agent
  // is the vsock socket, and Destroy removes its runtime dir.
  SandboxRecord rec;
  rec.id = "sb-fc";
  rec.name = "fc";
  rec.hypervisor = "firecracker";
  rec.runtime_dir = SandboxRuntimeDir(layout_, rec.id).string();
  fs::create_directories(rec.runtime_dir);
  ASSERT_TRUE(WriteFileAtomic(fs::path(rec.runtime_dir) / "disk.raw", "disk", 0600).ok());
  auto fc = MakeVmRuntimeWithProbe(config_, layout_, runner_, clock_, works);
  EXPECT_FALSE(fc->Inspect(rec).alive);
  EXPECT_EQ(AgentEndpointOf(rec).vsock_port, std::optional<uint32_t>(agent_protocol::kVsockPort));
  Status destroyed = fc->Destroy(rec);
  ASSERT_TRUE(destroyed.ok()) << destroyed.ToString();
  EXPECT_FALSE(fs::exists(rec.runtime_dir));
  EXPECT_EQ(runner_.started.size(), 1u) << "nothing else was started";
}

TEST_F(VmRuntimeTest, AutoStartBootsWithoutATemplateAndSavesNone) {
  // start: auto uses a template only when one exists: no build VM, no
  // template, a plain boot (docs/snapshots.md).
  BootRequest req = Request("plain");
  req.spec.start = StartMode::kAuto;
  auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
  auto how = rt->DescribeStart(req.spec, &image_, &kernel_);
  ASSERT_TRUE(how.ok()) << how.error().ToString();
  EXPECT_TRUE(StartsWith(*how, "boot (no template ")) << *how;
  EXPECT_NE(how->find("start: snapshot saves one"), std::string::npos) << *how;
  SandboxSpec snap = req.spec;
  snap.start = StartMode::kSnapshot;
  how = rt->DescribeStart(snap, &image_, &kernel_);
  ASSERT_TRUE(how.ok());
  EXPECT_TRUE(StartsWith(*how, "boot, save template ")) << *how;

  auto r = rt->Boot(req);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->start, "boot");
  EXPECT_EQ(r->start_note, "");
  ASSERT_EQ(runner_.started.size(), 1u) << "one QEMU: the sandbox's, no template build VM";
  EXPECT_EQ(Join(runner_.started[0], " ").find("-incoming"), std::string::npos);
  std::error_code ec;
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(layout_.sandboxes_dir, ec)) dirs.push_back(e.path().filename().string());
  EXPECT_EQ(dirs, std::vector<std::string>{"sb-plain"}) << "no template build VM's runtime dir";
  size_t templates = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(layout_.root / "templates", ec)) ++templates;
  EXPECT_EQ(templates, 0u);
}

TEST_F(VmRuntimeTest, MalformedPeersAreRefusedBeforeQemuStarts) {
  BootRequest req = Request("web");
  req.network = Bridged();
  req.network->hosts.push_back({"10.99.0.8", {"two words"}});
  auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
  auto r = rt->Boot(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument) << r.error().ToString();
  EXPECT_TRUE(runner_.started.empty());
  SandboxRecord rec = req.record;
  Status s = rt->UpdateHosts(rec, {{"10.99.0.8", {"two words"}}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
}

TEST_F(VmRuntimeTest, UpdateHostsOfAStoppedSandboxIsUnavailableAtOnce) {
  auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
  SandboxRecord rec;
  rec.name = "web";
  rec.id = "sb-web";
  Status s = rt->UpdateHosts(rec, {{"10.99.0.7", {"peer"}}});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("not running"), std::string::npos) << s.ToString();
}

TEST_F(VmRuntimeTest, CheckAvailableNamesAMissingNetns) {
  config_.netns = "banger-no-such-namespace";
  auto rt = MakeVmRuntime(config_, layout_, runner_, clock_);
  Status s = rt->CheckAvailable();
  if (!FindProgram("qemu-system-x86_64") || !FindProgram("ip")) GTEST_SKIP() << "qemu or ip not installed";
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("ip netns add banger-no-such-namespace"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace banger::host

namespace banger::host {
namespace {

// A host with the Firecracker provider, the binary and a working KVM.
ProviderProbe FirecrackerHost() {
  ProviderProbe p;
  p.firecracker_provider = true;
  p.firecracker_binary = true;
  p.kvm_ok = "a probe VM (in-kernel irqchip, 1 vCPU) ran to HLT in 2 ms";
  return p;
}

TEST(ResolveProviderTest, FirecrackerNamesEverythingTheHostLacks) {
  ProviderProbe p;  // QEMU fine, no Firecracker provider, no binary, no KVM
  p.kvm_problem = "/dev/kvm does not exist (no KVM on this host)";
  auto r = ResolveProvider(HypervisorKind::kFirecracker, p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(),
            "firecracker is not available on this host: missing the Firecracker provider (this banger has none "
            "yet), the firecracker binary (not on PATH), a working KVM (/dev/kvm does not exist (no KVM on "
            "this host)); use hypervisor: qemu or auto");
  // With the binary and KVM present it still lacks the provider, and says only that.
  p.firecracker_binary = true;
  p.kvm_problem.clear();
  r = ResolveProvider(HypervisorKind::kFirecracker, p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("missing the Firecracker provider (this banger has none yet); use"),
            std::string::npos) << r.error().message();
}

TEST(ResolveProviderTest, AutoAndQemuPickQemuAndSayWhy) {
  ProviderProbe p;
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kQemu, p), "qemu");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, p), "qemu (auto: firecracker provider not available)");
  p.qemu = FailedPrecondition("no hypervisor available: qemu-system-x86_64 is not installed");
  auto q = ResolveProvider(HypervisorKind::kQemu, p);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().message(),
            "qemu is not available on this host: no hypervisor available: qemu-system-x86_64 is not installed");
  EXPECT_FALSE(ResolveProvider(HypervisorKind::kAuto, p).ok());
}

TEST(ResolveProviderTest, AutoPicksFirecrackerOnlyWithTheBinaryAndAWorkingKvm) {
  ProviderProbe p = FirecrackerHost();
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, p), "firecracker (auto: firecracker on PATH and KVM works)");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kFirecracker, p), "firecracker");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kQemu, p), "qemu");

  // /dev/kvm opens but the probe VM does not run (nested PVM): QEMU, saying why.
  ProviderProbe pvm = FirecrackerHost();
  pvm.kvm_ok.clear();
  pvm.kvm_problem = "KVM here is nested through PVM (module kvm_pvm), which runs only guest kernels built for PVM";
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, pvm),
            "qemu (auto: firecracker lacks a working KVM (KVM here is nested through PVM (module kvm_pvm), which "
            "runs only guest kernels built for PVM))");
  auto fc = ResolveProvider(HypervisorKind::kFirecracker, pvm);
  ASSERT_FALSE(fc.ok());
  EXPECT_EQ(fc.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(fc.error().message().find("missing a working KVM (KVM here is nested through PVM"), std::string::npos)
      << fc.error().message();

  // No binary: QEMU, saying so.
  ProviderProbe nobin = FirecrackerHost();
  nobin.firecracker_binary = false;
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, nobin),
            "qemu (auto: firecracker lacks the firecracker binary (not on PATH))");
  // Firecracker works and QEMU does not: auto still has a provider.
  ProviderProbe noqemu = FirecrackerHost();
  noqemu.qemu = FailedPrecondition("qemu-system-x86_64 is not installed");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, noqemu), "firecracker (auto: firecracker on PATH and KVM works)");
}

TEST(ResolveProviderTest, HostConfigDefaultDecidesForAutoSpecsAndSaysSo) {
  ProviderProbe p = FirecrackerHost();
  p.host_default = HypervisorKind::kQemu;
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, p), "qemu (host config hypervisor: qemu)");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kFirecracker, p), "firecracker") << "a spec's own choice wins";
  p.host_default = HypervisorKind::kFirecracker;
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kAuto, p), "firecracker (host config hypervisor: firecracker)");
  EXPECT_EQ(*ResolveProvider(HypervisorKind::kQemu, p), "qemu");
  // The config asks for Firecracker on a host without it: an error, naming the config.
  p.firecracker_binary = false;
  auto r = ResolveProvider(HypervisorKind::kAuto, p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(),
            "firecracker (host config hypervisor: firecracker) is not available on this host: missing the "
            "firecracker binary (not on PATH); use hypervisor: qemu or auto, or change hypervisor in the host config");
}

// The real probe of this host gives ProbeProviders a definite KVM answer with
// a reason (on the development hosts: does not work, nested PVM).
TEST(ProbeProvidersTest, RealHostGivesADefiniteKvmAnswerWithAReason) {
  auto dir = MakeTempDir("probe-providers");
  ASSERT_TRUE(dir.ok());
  StateLayout layout = LayoutAt(*dir);
  Config config;
  config.hypervisor = "qemu";
  ProviderProbe p = ProbeProviders(nullptr, config, layout);
  EXPECT_NE(p.kvm_ok.empty(), p.kvm_problem.empty()) << "exactly one of works / does not work";
  EXPECT_EQ(p.host_default, HypervisorKind::kQemu);
  EXPECT_FALSE(p.qemu.ok());  // no runtime given
  EXPECT_TRUE(p.firecracker_provider) << "the Firecracker provider is built in";
  std::printf("[provider probe] kvm: %s\n", p.kvm_ok.empty() ? p.kvm_problem.c_str() : p.kvm_ok.c_str());
  std::error_code ec;
  if (std::filesystem::exists("/sys/module/kvm_pvm", ec)) {
    EXPECT_NE(p.kvm_problem.find("PVM"), std::string::npos) << p.kvm_problem;
  }
  (void)RemoveAll(*dir);
}

TEST(AgentEndpointOfTest, FirecrackerRecordsUseTheVsockSocketAndPort) {
  SandboxRecord q;
  q.hypervisor = "qemu";
  q.runtime_dir = "/state/sandboxes/abc";
  AgentEndpoint eq = AgentEndpointOf(q);
  EXPECT_EQ(eq.socket, AgentSocketOf(q));
  EXPECT_FALSE(eq.vsock_port.has_value());
  SandboxRecord f = q;
  f.hypervisor = "firecracker";
  AgentEndpoint ef = AgentEndpointOf(f);
  EXPECT_EQ(ef.socket, std::filesystem::path("/state/sandboxes/abc/vsock.sock"));
  ASSERT_TRUE(ef.vsock_port.has_value());
  EXPECT_EQ(*ef.vsock_port, agent_protocol::kVsockPort);
  EXPECT_EQ(ef.Describe(), "/state/sandboxes/abc/vsock.sock (vsock port 52)");
}

}  // namespace
}  // namespace banger::host
