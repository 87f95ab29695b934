// The Firecracker provider against Firecracker's API contract
// (docs/firecracker.md, "What is verified where"): every request banger sends
// is checked against providers/testdata/firecracker-api.yaml by a fake VMM in
// a process of its own (the fake `firecracker`), the sequences are golden
// files (BANGER_TEST_ACCEPT=1 rewrites them), and every error path leaves no
// process or file behind.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "base/files.h"
#include "providers/firecracker_api.h"
#include "providers/firecracker_hypervisor.h"
#include "providers/raw_disk.h"
#include "providers/testing/firecracker_contract.h"
#include "providers/testing/firecracker_test_env.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using testing::FakeVmm;
using testing::FakeVmmOptions;
using testing::FakeVmmServer;
using testing::FirecrackerTestEnv;
using testing::SwaggerContract;

const SwaggerContract& Contract() {
  static SwaggerContract c = SwaggerContract::Load(testing::FirecrackerSwaggerPath()).value();
  return c;
}

// ---------------------------------------------------------------------------
// The contract checker itself: it must refuse what Firecracker refuses.

TEST(SwaggerContractTest, AcceptsValidRequestsFromTheSwaggerFile) {
  const auto& c = Contract();
  std::string tmpl;
  EXPECT_EQ(c.CheckRequest("PUT", "/drives/rootfs",
                           R"({"drive_id":"rootfs","path_on_host":"disk.raw","is_root_device":true,
                              "rate_limiter":{"bandwidth":{"size":1,"refill_time":100}}})",
                           &tmpl),
            "");
  EXPECT_EQ(tmpl, "/drives/{drive_id}");
  EXPECT_EQ(c.CheckRequest("GET", "/", ""), "");
  EXPECT_EQ(c.CheckRequest("PUT", "/metrics", R"({"metrics_path":"m","properties":{"a":"b"}})"), "");
  EXPECT_EQ(c.CheckRequest("PUT", "/mmds", R"({"anything":{"goes":[1,2]}})"), "");
  EXPECT_EQ(c.CheckRequest("PUT", "/machine-config", ""), "") << "its body parameter is optional";
}

TEST(SwaggerContractTest, RefusesWhatTheContractForbids) {
  const auto& c = Contract();
  auto has = [](const std::string& err, const std::string& what) {
    return err.find(what) != std::string::npos ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << "'" << err << "' lacks '" << what << "'";
  };
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/drive/rootfs", "{}"), "no such path"));
  EXPECT_TRUE(has(c.CheckRequest("POST", "/actions", "{}"), "no POST"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/actions", ""), "body is required"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/actions", "{"), "not JSON"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/actions", R"({"action_type":"Reboot"})"), "enum"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/drives/x", R"({"drive_id":"x"})"), "missing required field \"is_root_device\""));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/drives/x", R"({"drive_id":"x","is_root_device":"yes"})"), "expected boolean"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/drives/x", R"({"drive_id":"x","is_root_device":true,"serial":"a"})"),
                  "unknown field \"serial\""));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/machine-config", R"({"vcpu_count":0,"mem_size_mib":128})"), "minimum"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/machine-config", R"({"vcpu_count":33,"mem_size_mib":128})"), "maximum"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/vsock", R"({"guest_cid":2,"uds_path":"v"})"), "minimum"));
  // Through $ref: RateLimiter -> TokenBucket.
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/drives/x",
                                 R"({"drive_id":"x","is_root_device":true,"rate_limiter":{"ops":{"size":1}}})"),
                  "rate_limiter.ops: missing required field \"refill_time\""));
  // additionalProperties with a schema: Metrics.properties holds strings.
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/metrics", R"({"metrics_path":"m","properties":{"a":1}})"), "expected string"));
  EXPECT_TRUE(has(c.CheckRequest("PUT", "/snapshot/load", R"({"snapshot_path":"s","mem_backend":{"backend_type":"Disk","backend_path":"m"}})"),
                  "mem_backend.backend_type"));
  EXPECT_TRUE(has(c.CheckRequest("GET", "/", "{}"), "takes no body"));
  EXPECT_TRUE(has(c.CheckResponse("GET", "/", 200, R"({"app_name":"x","id":"y","state":"Booting","vmm_version":"1"})"),
                  "enum"));
}

// ---------------------------------------------------------------------------
// The REST client, against the fake VMM in this process.

class FirecrackerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("banger-fc-api").value();
    socket_ = dir_ / "api.sock";
  }
  void TearDown() override { (void)RemoveAll(dir_); }
  fs::path dir_, socket_;
};

TEST_F(FirecrackerApiTest, RefusalNamesTheRequestAndFirecrackersFaultMessage) {
  FakeVmmOptions o;
  o.fail["PUT /boot-source"] = "Kernel file cannot be opened: No such file or directory (os error 2)";
  FakeVmm vmm(Contract(), o);
  auto server = FakeVmmServer::Start(socket_, vmm);
  ASSERT_TRUE(server.ok()) << server.error().message();
  (*server)->ServeInBackground();
  FirecrackerApi api(socket_, milliseconds(5000));
  Status s = api.Put("/boot-source", R"({"kernel_image_path":"/nope"})");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "Firecracker refused PUT /boot-source (HTTP 400): Kernel file cannot be opened: No such file or directory "
            "(os error 2)");
  EXPECT_TRUE(api.Put("/machine-config", R"({"vcpu_count":1,"mem_size_mib":128})").ok());
  auto info = api.Get("/");
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(json::parse(*info)["state"], "Not started");
  Status bad = api.Patch("/vm", R"({"state":"Paused"})");
  EXPECT_NE(bad.message().find("PATCH /vm"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("not supported before starting"), std::string::npos) << bad.message();
}

TEST_F(FirecrackerApiTest, AnUnansweredRequestFailsAtItsDeadline) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);  // accepts into the backlog, never answers
  FirecrackerApi api(socket_, milliseconds(300));
  Status s = api.Put("/actions", R"({"action_type":"InstanceStart"})");
  ::close(fd);
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_NE(s.message().find("PUT /actions"), std::string::npos) << s.message();
  Status gone = FirecrackerApi(dir_ / "missing.sock", milliseconds(300)).Put("/actions", "{}");
  EXPECT_EQ(gone.code(), StatusCode::kUnavailable) << gone.ToString();
}

// ---------------------------------------------------------------------------
// The provider with the fake firecracker process.

class FirecrackerProviderTest : public ::testing::Test {
 protected:
  std::unique_ptr<Hypervisor> Provider(FirecrackerOptions o) {
    return MakeFirecrackerHypervisor(env_.runner(), env_.clock(), std::move(o));
  }
  std::unique_ptr<Hypervisor> Provider() { return Provider(env_.Options()); }

  // Nothing of the sandbox is left: no process, no runtime dir.
  void ExpectNothingLeft(const VmLaunchConfig& c) {
    EXPECT_FALSE(RecoverFirecrackerProcess(c.runtime_dir).ok()) << "a firecracker of " << c.runtime_dir << " still runs";
    EXPECT_FALSE(fs::exists(c.runtime_dir)) << c.runtime_dir << " is left";
  }
  // Boots, checks the VM runs, compares the request sequence, destroys.
  VmHandle BootAndCheck(Hypervisor& hv, const VmLaunchConfig& c, const std::string& golden) {
    auto h = hv.Boot(c);
    EXPECT_TRUE(h.ok()) << h.error().message();
    if (!h.ok()) return {};
    EXPECT_TRUE(ProcessAlive(h->process));
    VmObservation obs = hv.Inspect(*h);
    EXPECT_TRUE(obs.process_alive && obs.vmm_responsive) << obs.detail;
    EXPECT_EQ(obs.detail, "");
    EXPECT_EQ(h->agent_socket.filename(), "vsock.sock");
    EXPECT_TRUE(fs::exists(h->agent_socket)) << "Firecracker creates the vsock socket";
    std::string seq = env_.Recorded();
    EXPECT_EQ(seq.find(" -> 4"), std::string::npos) << "a request was refused:\n" << seq;
    // The GET / of Inspect is not part of the boot sequence.
    size_t get = seq.find("GET / ");
    testing::ExpectFirecrackerGolden(golden, seq.substr(0, get));
    return *h;
  }

  FirecrackerTestEnv env_;
};

std::string GuestConfigIn(const fs::path& initrd) {
  std::string bytes = ReadFile(initrd).value_or("");
  size_t at = bytes.find('{', bytes.find("banger/config.json"));
  if (at == std::string::npos) return "";
  size_t end = bytes.find('\0', at);
  // Compact, so tests can look for "key":value.
  auto j = json::parse(bytes.substr(at, end - at), nullptr, false);
  return j.is_discarded() ? "" : j.dump();
}

TEST_F(FirecrackerProviderTest, MinimalSandboxMatchesGoldenAndIsDestroyed) {
  auto hv = Provider();
  EXPECT_EQ(hv->Kind(), "firecracker");
  VmLaunchConfig c = env_.Config("sb-min");
  VmHandle h = BootAndCheck(*hv, c, "firecracker_minimal.requests");
  ASSERT_NE(h.process.pid, 0);
  // The raw disk: a copy of the base, grown to disk_bytes, sparse.
  struct stat st {};
  ASSERT_EQ(::stat(h.disk_path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), c.disk_bytes);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20) << "holes stay holes";
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(c.runtime_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_NE(GuestConfigIn(c.runtime_dir / "initrd.img").find("\"root_device\":\"/dev/vda\""), std::string::npos);
  ASSERT_TRUE(hv->Destroy(h).ok());
  EXPECT_FALSE(ProcessAlive(h.process));
  ExpectNothingLeft(c);
  EXPECT_TRUE(hv->Destroy(h).ok()) << "Destroy of a destroyed VM is OK";
}

TEST_F(FirecrackerProviderTest, VolumesAreFoundByTheSerialsFirecrackerDerives) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-vol");
  fs::path data = env_.Volume("data"), cache = env_.Volume("cache");
  c.extra_disks = {{data, "vol-data"}, {cache, "vol-cache"}};
  c.guest.root_serial = kRootDiskSerial;
  c.guest.volumes = {{"vol-data", "/data"}, {"vol-cache", "/var/cache"}};
  VmHandle h = BootAndCheck(*hv, c, "firecracker_volumes.requests");
  ASSERT_NE(h.process.pid, 0);
  std::string config = GuestConfigIn(c.runtime_dir / "initrd.img");
  auto j = json::parse(config, nullptr, false);
  ASSERT_TRUE(j.is_object()) << config;
  EXPECT_EQ(j["root_serial"], FirecrackerDiskSerial(h.disk_path).value());
  ASSERT_EQ(j["volumes"].size(), 2u) << config;
  EXPECT_EQ(j["volumes"][0]["serial"], FirecrackerDiskSerial(data).value());
  EXPECT_EQ(j["volumes"][1]["serial"], FirecrackerDiskSerial(cache).value());
  ASSERT_TRUE(hv->Destroy(h).ok());
  ExpectNothingLeft(c);
  EXPECT_TRUE(fs::exists(data)) << "volumes outlive the VM";
}

TEST_F(FirecrackerProviderTest, BridgedNetworkGivesTheTapAndMac) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-net");
  c.tap_device = "bgtap7";
  c.mac_address = "52:54:00:12:34:56";
  c.kernel_cmdline_extra = "loglevel=4";
  VmHandle h = BootAndCheck(*hv, c, "firecracker_network.requests");
  ASSERT_TRUE(hv->Destroy(h).ok());
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, UserModeNetworkingIsRefusedBeforeAnythingStarts) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-user");
  c.user_network.enabled = true;
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(h.error().message().find("Firecracker has no user-mode networking"), std::string::npos);
  EXPECT_EQ(env_.RecordedCount(), 0u);
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, TemplateSavedAndRestoredWithNetworkAndVsockOverrides) {
  auto hv = Provider();
  ASSERT_TRUE(hv->SupportsTemplates());
  VmLaunchConfig tc = env_.Config("sb-tmpl");
  tc.tap_device = "bgtap1";
  auto th = hv->Boot(tc);
  ASSERT_TRUE(th.ok()) << th.error().message();
  size_t booted = env_.RecordedCount();
  fs::path dir = env_.root() / "templates/t1.staging";
  fs::create_directories(dir);
  auto t = hv->SaveTemplate(*th, dir);
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_FALSE(ProcessAlive(th->process)) << "SaveTemplate stops the VM";
  testing::ExpectFirecrackerGolden("firecracker_save_template.requests", env_.Recorded(booted));
  for (const auto& f : {t->state_file, t->memory_file, t->disk_layer, t->initrd_path, t->kernel_path}) {
    EXPECT_TRUE(fs::is_regular_file(f)) << f;
  }
  EXPECT_EQ(t->kernel_path, tc.kernel_path);
  ASSERT_TRUE(hv->Destroy(*th).ok());
  // Published: the staging dir is renamed, as the template store does.
  fs::path published = env_.root() / "templates/t1";
  fs::rename(dir, published);
  VmTemplateFiles files = *t;
  for (fs::path* p : {&files.state_file, &files.memory_file, &files.disk_layer, &files.initrd_path}) {
    *p = published / p->filename();
  }
  env_.ClearRecord();
  VmLaunchConfig rc = env_.Config("sb-restored");
  rc.tap_device = "bgtap2";
  rc.restore = files;
  VmHandle h = BootAndCheck(*hv, rc, "firecracker_restore.requests");
  ASSERT_NE(h.process.pid, 0);
  ASSERT_TRUE(hv->Destroy(h).ok());
  ExpectNothingLeft(rc);
  EXPECT_TRUE(fs::exists(files.disk_layer)) << "the template stays";
}

TEST_F(FirecrackerProviderTest, JailerGetsTheFilesInItsChrootAndDestroyRemovesTheJail) {
  auto hv = Provider(env_.JailedOptions());
  VmLaunchConfig c = env_.Config("sb-jail");
  c.extra_disks = {{env_.Volume("jailed"), "vol-jailed"}};
  c.guest.volumes = {{"vol-jailed", "/data"}};
  VmHandle h = BootAndCheck(*hv, c, "firecracker_jailer.requests");
  ASSERT_NE(h.process.pid, 0);
  fs::path root = c.runtime_dir / "jail/banger-fake-firecracker/sb-jail/root";
  for (const char* f : {"vmlinux", "initrd.img", "disk.raw", "volume-0.raw", "firecracker.sock", "vsock.sock"}) {
    EXPECT_TRUE(fs::exists(root / f)) << f;
  }
  EXPECT_EQ(fs::read_symlink(h.agent_socket), root / "vsock.sock") << "the jail's vsock socket, by a short path";
  struct stat a {}, b {};
  ASSERT_EQ(::stat((root / "volume-0.raw").c_str(), &a), 0);
  ASSERT_EQ(::stat(c.extra_disks[0].path.c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "a volume is hard-linked, never copied";
  EXPECT_TRUE(RecoverFirecrackerProcess(c.runtime_dir).ok()) << "found by its jail";
  ASSERT_TRUE(hv->Destroy(h).ok());
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, RestartKeepsTheDisk) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-keep");
  auto h = hv->Boot(c);
  ASSERT_TRUE(h.ok()) << h.error().message();
  {
    std::fstream disk(h->disk_path, std::ios::in | std::ios::out | std::ios::binary);
    disk.seekp(1 << 20);
    disk << "written by the guest";
  }
  ASSERT_TRUE(hv->Shutdown(*h, milliseconds(0)).ok());
  c.keep_disk = true;
  auto h2 = hv->Boot(c);
  ASSERT_TRUE(h2.ok()) << h2.error().message();
  std::string bytes = ReadFile(h2->disk_path).value_or("");
  EXPECT_EQ(bytes.substr(1 << 20, 20), "written by the guest");
  ASSERT_TRUE(hv->Destroy(*h2).ok());
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, ShutdownFallsBackToCtrlAltDel) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-stop");
  auto h = hv->Boot(c);
  ASSERT_TRUE(h.ok()) << h.error().message();
  // The fake's vsock never answers the agent: banger sends Ctrl+Alt+Del and
  // the fake exits like Firecracker does when its guest reboots.
  ASSERT_TRUE(hv->Shutdown(*h, milliseconds(8000)).ok());
  EXPECT_FALSE(ProcessAlive(h->process));
  EXPECT_NE(env_.Recorded().find("PUT /actions {\"action_type\":\"SendCtrlAltDel\"} -> 204"), std::string::npos)
      << env_.Recorded();
  EXPECT_TRUE(fs::exists(h->disk_path)) << "Shutdown keeps the disk";
  VmObservation obs = hv->Inspect(*h);
  EXPECT_FALSE(obs.process_alive);
  ASSERT_TRUE(hv->Destroy(*h).ok());
  ExpectNothingLeft(c);
}

// --- Error paths: each names what failed and leaves nothing behind.

TEST_F(FirecrackerProviderTest, ApiRefusalNamesTheRequestAndFaultMessage) {
  json control, fail;
  fail["PUT /drives/rootfs"] = "Unable to create the block device: Permission denied (os error 13)";
  control["fail"] = fail;
  env_.SetControl(control);
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-refused");
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("Firecracker refused PUT /drives/rootfs (HTTP 400): Unable to create the block "
                                     "device: Permission denied (os error 13)"),
            std::string::npos)
      << h.error().message();
  EXPECT_NE(h.error().message().find("booting sandbox sb-refused with Firecracker"), std::string::npos);
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, ProcessExitingEarlyGivesItsOutput) {
  json control;
  control["exit_early"] = "Error: Failed to open /dev/kvm: Permission denied";
  env_.SetControl(control);
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-exit");
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("Firecracker exited before its API socket"), std::string::npos)
      << h.error().message();
  EXPECT_NE(h.error().message().find("Failed to open /dev/kvm: Permission denied"), std::string::npos)
      << h.error().message();
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, SocketThatNeverAppearsTimesOutAndTheProcessIsKilled) {
  json control;
  control["never_listen"] = true;
  env_.SetControl(control);
  FirecrackerOptions o = env_.Options();
  o.socket_timeout = milliseconds(500);
  auto hv = Provider(o);
  VmLaunchConfig c = env_.Config("sb-silent");
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code(), StatusCode::kDeadlineExceeded) << h.error().ToString();
  EXPECT_NE(h.error().message().find("did not open its API socket"), std::string::npos) << h.error().message();
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, JailerFailureGivesItsMessage) {
  json control;
  control["jailer_fail"] = "Invalid uid: 1234 is not allowed here";
  env_.SetControl(control);
  auto hv = Provider(env_.JailedOptions());
  VmLaunchConfig c = env_.Config("sb-jailfail");
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("the jailer (or Firecracker in it) exited before its API socket"),
            std::string::npos)
      << h.error().message();
  EXPECT_NE(h.error().message().find("jailer: Invalid uid: 1234 is not allowed here"), std::string::npos)
      << h.error().message();
  ExpectNothingLeft(c);
}

TEST_F(FirecrackerProviderTest, MissingInputsAreRefusedBeforeAnythingStarts) {
  auto hv = Provider();
  VmLaunchConfig c = env_.Config("sb-bad");
  c.kernel_path = env_.root() / "kernels/none/vmlinux";
  auto h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("missing kernel file"), std::string::npos) << h.error().message();
  c = env_.Config("bad/id");
  EXPECT_EQ(hv->Boot(c).error().code(), StatusCode::kInvalidArgument);
  c = env_.Config("sb-bzimage");
  c.kernel_path = env_.root() / "kernels/6.1/bzImage";
  ASSERT_TRUE(WriteFileAtomic(c.kernel_path, "MZ compressed kernel").ok());
  h = hv->Boot(c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("Firecracker boots an uncompressed vmlinux (ELF)"), std::string::npos)
      << h.error().message();
  EXPECT_FALSE(fs::exists(c.runtime_dir));
  EXPECT_EQ(env_.RecordedCount(), 0u);
}

// --- Raw disks.

TEST(RawDiskTest, SparseCopyKeepsHolesAndData) {
  fs::path dir = MakeTempDir("banger-rawdisk").value();
  fs::path src = dir / "base.ext4", dst = dir / "copy.raw";
  {
    std::ofstream out(src, std::ios::binary);
    out << "head";
    out.seekp(32 << 20);
    out << "middle";
    out.seekp((64 << 20) - 4);
    out << "tail";
  }
  auto r = CopyRawDisk(src, dst, 128ull << 20, /*allow_reflink=*/false);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->method, RawCopyMethod::kSparse);
  EXPECT_LE(r->bytes_written, 4u << 20);
  std::string bytes = ReadFile(dst).value();
  EXPECT_EQ(bytes.size(), 128u << 20);
  EXPECT_EQ(bytes.substr(0, 4), "head");
  EXPECT_EQ(bytes.substr(32 << 20, 6), "middle");
  EXPECT_EQ(bytes.substr((64 << 20) - 4, 4), "tail");
  EXPECT_FALSE(fs::exists(dir / "copy.raw.partial"));
  auto missing = CopyRawDisk(dir / "none", dst);
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(fs::exists(dst)) << "a failed copy leaves the old file";
  (void)RemoveAll(dir);
}

}  // namespace
}  // namespace banger
