// End-to-end tests of banger's SSH integration and of `ports` and `stats`,
// with real VMs under QEMU.
//
// SshTest boots one debian-bookworm sandbox (debootstrap-built, systemd and
// sshd, user-mode networking: reached through the loopback forward banger adds
// on demand) in SetUpTestSuite and shares it between its tests, one of which
// checks the debootstrap-built image itself. The busybox
// test starts a server in the guest and checks `ports` and `stats`.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/strings.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/oci_registry.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

std::string Output(const CommandOutput& out) {
  return "exit " + std::to_string(out.exit_code) + "\nstdout:\n" + out.stdout_data + "stderr:\n" + out.stderr_data;
}

CommandOutput RunProgram(std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run({.argv = std::move(argv), .env = std::move(env), .timeout = std::chrono::minutes(2)});
  EXPECT_TRUE(out.ok()) << out.error().ToString();
  return out.ok() ? *out : CommandOutput{-1, "", ""};
}

struct SshSuite {
  BangerEnv env;
  std::string error;  // why the suite could not be set up
};

class SshTest : public ::testing::Test {
 protected:
  static constexpr const char* kName = "deb";

  static void SetUpTestSuite() {
    s_ = std::make_unique<SshSuite>();
    if (!fs::exists("/usr/bin/qemu-system-x86_64")) {
      s_->error = "qemu-system-x86_64 is not installed";
      return;
    }
    s_->env.Init();
    SpecOptions o;
    o.image = "debian-bookworm";
    o.memory = "512MiB";
    o.network = "network:\n    mode: user\n";
    // Ready once systemd has sshd running.
    o.readiness = R"(["systemctl", "is-active", "--quiet", "ssh"])";
    std::string f = s_->env.WriteSpec(kName, o);
    auto t0 = steady_clock::now();
    CommandOutput out = s_->env.Banger({"apply", "-f", f, "--yes"}, std::chrono::minutes(20));
    std::printf("[ suite    ] SshTest: debian-bookworm sandbox (image build + boot) in %.1f s\n",
                std::chrono::duration<double>(steady_clock::now() - t0).count());
    if (out.exit_code != 0) s_->error = "apply failed:\n" + Output(out) + "\nconsole:\n" + s_->env.Logs(kName);
  }
  static void TearDownTestSuite() { s_.reset(); }

  void SetUp() override {
    if (s_->error == "qemu-system-x86_64 is not installed") GTEST_SKIP() << s_->error;
    ASSERT_TRUE(s_->error.empty()) << s_->error;
  }
  void TearDown() override {
    if (HasFailure()) std::printf("commands:\n%s", s_->env.Timeline().c_str());
  }

  BangerEnv& env() { return s_->env; }
  fs::path SshDir() { return fs::path(env().state_) / "ssh"; }

  static std::unique_ptr<SshSuite> s_;
};

std::unique_ptr<SshSuite> SshTest::s_;

TEST_F(SshTest, BangerSshLogsInWithBangersKeyAndPassesTheExitCodeThrough) {
  CommandOutput ok = env().Banger({"ssh", kName, "--", "true"}, std::chrono::minutes(2));
  ASSERT_EQ(ok.exit_code, 0) << Output(ok);
  CommandOutput who = env().Banger({"ssh", kName, "--", "id", "-un"}, std::chrono::minutes(2));
  EXPECT_EQ(who.exit_code, 0) << Output(who);
  EXPECT_EQ(who.stdout_data, "root\n");
  CommandOutput seven = env().Banger({"ssh", kName, "--", "exit", "7"}, std::chrono::minutes(2));
  EXPECT_EQ(seven.exit_code, 7) << Output(seven);

  // banger's key pair is private, and its public key is what the guest trusts.
  struct stat st {};
  ASSERT_EQ(::stat((SshDir() / "id_ed25519").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(SshDir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string pub(Trim(ReadFile(SshDir() / "id_ed25519.pub").value_or("")));
  CommandOutput keys = env().Exec(kName, {"cat", "/root/.ssh/authorized_keys"});
  EXPECT_NE(keys.stdout_data.find(pub), std::string::npos) << keys.stdout_data;

  // The guest's host key was recorded under NAME.banger on first contact...
  std::string known = ReadFile(SshDir() / "known_hosts").value_or("");
  EXPECT_TRUE(StartsWith(known, "deb.banger ")) << known;
  // ...and is checked afterwards: a different recorded key is refused.
  TempDir other;
  ASSERT_EQ(RunProgram({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (other.path() / "k").string()}).exit_code, 0);
  std::vector<std::string> fields = Split(std::string(Trim(ReadFile(other.path() / "k.pub").value_or(""))), ' ');
  ASSERT_GE(fields.size(), 2u);
  ASSERT_TRUE(WriteFileAtomic(SshDir() / "known_hosts", "deb.banger " + fields[0] + " " + fields[1] + "\n", 0600).ok());
  CommandOutput refused = env().Banger({"ssh", kName, "--", "true"}, std::chrono::minutes(2));
  EXPECT_EQ(refused.exit_code, 255) << Output(refused);
  ASSERT_TRUE(WriteFileAtomic(SshDir() / "known_hosts", known, 0600).ok());
  EXPECT_EQ(env().Banger({"ssh", kName, "--", "true"}, std::chrono::minutes(2)).exit_code, 0);

}

TEST_F(SshTest, PlainSshAndScpWorkThroughTheInstalledSshConfig) {
  TempDir home;
  fs::path ssh_dir = home.path() / ".ssh";
  fs::create_directories(ssh_dir);
  ::chmod(ssh_dir.c_str(), 0700);
  const std::string before = "Host example.invalid\n  User nobody\n";
  ASSERT_TRUE(WriteFileAtomic(ssh_dir / "config", before, 0644).ok());
  std::map<std::string, std::string> henv = {{"HOME", home.path().string()}};

  auto banger = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = env().Prefix();
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, henv);
  };
  CommandOutput inst = banger({"ssh-config", "--install"});
  ASSERT_EQ(inst.exit_code, 0) << Output(inst);
  std::string installed = ReadFile(ssh_dir / "config").value_or("");
  EXPECT_TRUE(StartsWith(installed, "# >>> banger ssh-config")) << installed;
  EXPECT_NE(installed.find(before), std::string::npos);
  // Twice is the same.
  ASSERT_EQ(banger({"ssh-config", "--install"}).exit_code, 0);
  EXPECT_EQ(ReadFile(ssh_dir / "config").value_or(""), installed);

  // ssh reads the config of the passwd home, not $HOME: point it at the test's.
  std::string cfg = (ssh_dir / "config").string();
  CommandOutput plain = RunProgram({"ssh", "-F", cfg, "-o", "BatchMode=yes", "deb.banger", "true"}, henv);
  EXPECT_EQ(plain.exit_code, 0) << Output(plain);
  CommandOutput host = RunProgram({"ssh", "-F", cfg, "-o", "BatchMode=yes", "deb.banger", "hostname"}, henv);
  EXPECT_EQ(host.stdout_data, "deb\n") << Output(host);

  fs::path local = home.path() / "payload.txt";
  ASSERT_TRUE(WriteFileAtomic(local, "copied by scp\n").ok());
  CommandOutput scp = RunProgram({"scp", "-F", cfg, "-o", "BatchMode=yes", local.string(), "deb.banger:/tmp/payload"},
                                 henv);
  EXPECT_EQ(scp.exit_code, 0) << Output(scp);
  EXPECT_EQ(env().Exec(kName, {"cat", "/tmp/payload"}).stdout_data, "copied by scp\n");

  CommandOutput un = banger({"ssh-config", "--uninstall"});
  ASSERT_EQ(un.exit_code, 0) << Output(un);
  EXPECT_EQ(ReadFile(ssh_dir / "config").value_or(""), before);
  EXPECT_FALSE(fs::exists(SshDir() / "config"));
  struct stat st {};
  ASSERT_EQ(::stat((ssh_dir / "config").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "the user's mode is kept";

  // Without a ~/.ssh, install creates it private.
  TempDir bare;
  std::vector<std::string> argv = env().Prefix();
  argv.insert(argv.end(), {"ssh-config", "--install"});
  ASSERT_EQ(RunProgram(argv, {{"HOME", bare.path().string()}}).exit_code, 0);
  ASSERT_EQ(::stat((bare.path() / ".ssh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((bare.path() / ".ssh/config").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  argv.back() = "--uninstall";
  ASSERT_EQ(RunProgram(argv, {{"HOME", bare.path().string()}}).exit_code, 0);
  EXPECT_EQ(ReadFile(bare.path() / ".ssh/config").value_or("x"), "");
}

// The suite's debian-bookworm image was built by debootstrap through the host's
// apt mirror (images/recipes.cc) on the way to the sandbox. This checks the
// published artifact itself: the one debootstrap run is shared with the tests
// above rather than repeated by a test of its own.
TEST_F(SshTest, DebianImageBuiltByDebootstrapIsACleanBookwormWithSshdAndLeftNothingBehind) {
  CommandOutput ls = env().Banger({"image", "ls", "-o", "json"});
  ASSERT_EQ(ls.exit_code, 0) << Output(ls);
  json items = json::parse(ls.stdout_data, nullptr, false)["items"];
  ASSERT_TRUE(items.is_array()) << ls.stdout_data;
  std::string rootfs, id;
  for (const json& i : items) {
    if (i.value("name", "") == "debian-bookworm") {
      rootfs = i.value("rootfs", "");
      id = i.value("id", "");
    }
  }
  ASSERT_FALSE(rootfs.empty()) << ls.stdout_data;
  // Read-only checks: the running sandbox writes to its own overlay, never here.
  CommandOutput fsck = RunProgram({"e2fsck", "-fn", rootfs});
  EXPECT_EQ(fsck.exit_code, 0) << Output(fsck);
  auto debugfs = [&](const std::string& request) { return RunProgram({"debugfs", "-R", request, rootfs}); };
  std::string os_release = debugfs("cat /usr/lib/os-release").stdout_data;
  EXPECT_NE(os_release.find("Debian GNU/Linux 12 (bookworm)"), std::string::npos) << os_release;
  for (const char* path : {"/usr/sbin/sshd", "/usr/sbin/ip", "/sbin/init"}) {
    CommandOutput st = debugfs(std::string("stat ") + path);
    EXPECT_NE(st.stdout_data.find("Inode:"), std::string::npos) << path << " is missing:\n" << Output(st);
  }
  // Only the published image is in the images directory (no staging tree left
  // by the build) and nothing debootstrap mounted is still mounted.
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(fs::path(env().state_) / "images")) {
    entries.push_back(e.path().filename().string());
  }
  EXPECT_EQ(entries, std::vector<std::string>{id});
  std::string mounts = ReadFile("/proc/self/mountinfo").value_or("");
  EXPECT_EQ(mounts.find(env().state_), std::string::npos) << mounts;
}

TEST_F(SshTest, PortsShowsSshdWithTheForwardThatReachesIt) {
  ASSERT_EQ(env().Banger({"ssh", kName, "--", "true"}, std::chrono::minutes(2)).exit_code, 0);
  CommandOutput out = env().Banger({"ports", kName, "-o", "json"});
  ASSERT_EQ(out.exit_code, 0) << Output(out);
  json j = json::parse(out.stdout_data, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out.stdout_data;
  bool found = false;
  for (const json& p : j) {
    if (p.value("protocol", "") == "tcp" && p.value("port", 0) == 22 && p.value("address", "") == "0.0.0.0") {
      found = true;
      EXPECT_EQ(p.value("process", ""), "sshd") << p.dump();
      ASSERT_TRUE(p["hostEndpoint"].is_string()) << p.dump();
      EXPECT_TRUE(StartsWith(p["hostEndpoint"].get<std::string>(), "127.0.0.1:")) << p.dump();
    }
  }
  EXPECT_TRUE(found) << out.stdout_data;
}

// ---------------------------------------------------------------------------

class LookInsideTest : public VmFixture {};

TEST_F(LookInsideTest, PortsListsAServerStartedInTheGuestAndStatsAreSane) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  SpecOptions o;
  o.network = "network:\n    mode: user\n    ports:\n      - host: " + std::to_string(port) + "\n        guest: 8080\n";
  o.extra = "  files:\n    - path: /www/index.html\n      content: hi\n";
  std::string f = WriteSpec("box", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "box"));
  // busybox httpd daemonizes; a second one only on guest loopback.
  ASSERT_EQ(Exec("box", {"httpd", "-p", "8080", "-h", "/www"}).exit_code, 0);
  ASSERT_EQ(Exec("box", {"httpd", "-p", "127.0.0.1:9090", "-h", "/www"}).exit_code, 0);

  CommandOutput out = Banger({"ports", "box", "-o", "json"});
  ASSERT_EQ(out.exit_code, 0) << Output(out);
  json j = json::parse(out.stdout_data, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out.stdout_data;
  json http, local;
  for (const json& p : j) {
    if (p.value("port", 0) == 8080) http = p;
    if (p.value("port", 0) == 9090) local = p;
  }
  ASSERT_FALSE(http.is_null()) << out.stdout_data;
  EXPECT_EQ(http.value("protocol", ""), "tcp");
  EXPECT_EQ(http.value("process", ""), "httpd");
  EXPECT_EQ(http["hostEndpoint"], "127.0.0.1:" + std::to_string(port)) << http.dump();
  ASSERT_FALSE(local.is_null()) << out.stdout_data;
  EXPECT_EQ(local.value("address", ""), "127.0.0.1");
  EXPECT_TRUE(local["hostEndpoint"].is_null()) << local.dump();
  CommandOutput table = Banger({"ports", "box"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.stdout_data.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << table.stdout_data;

  CommandOutput st = Banger({"stats", "box", "-o", "json"});
  ASSERT_EQ(st.exit_code, 0) << Output(st);
  json s = json::parse(st.stdout_data, nullptr, false);
  ASSERT_TRUE(s.is_object()) << st.stdout_data;
  EXPECT_EQ(s.value("name", ""), "box");
  EXPECT_EQ(s.value("running", false), true);
  const json& mem = s["memory"];
  ASSERT_TRUE(mem["guestTotalBytes"].is_number()) << s.dump(2);
  uint64_t total = mem["guestTotalBytes"].get<uint64_t>();
  EXPECT_GT(total, 128ull << 20) << "spec memory is 256MiB";
  EXPECT_LE(total, 256ull << 20);
  EXPECT_GT(mem["guestUsedBytes"].get<uint64_t>(), 0u);
  EXPECT_LT(mem["guestUsedBytes"].get<uint64_t>(), total);
  EXPECT_GT(mem["hostRssBytes"].get<uint64_t>(), 16ull << 20) << "QEMU's RSS";
  EXPECT_GT(s["cpu"]["hostSeconds"].get<double>(), 0.1);
  double pct = s["cpu"]["utilisationPercent"].get<double>();
  EXPECT_GE(pct, 0.0);
  EXPECT_LE(pct, 100.0 * ::sysconf(_SC_NPROCESSORS_ONLN) + 1);
  EXPECT_GT(s["disk"]["hostBytes"].get<uint64_t>(), 0u);
  EXPECT_GT(s["disk"]["guestTotalBytes"].get<uint64_t>(), s["disk"]["guestUsedBytes"].get<uint64_t>());
  EXPECT_GT(s["uptimeSeconds"].get<uint64_t>(), 0u);
  CommandOutput all = Banger({"stats"});
  EXPECT_EQ(all.exit_code, 0) << Output(all);
  EXPECT_NE(all.stdout_data.find("box"), std::string::npos) << all.stdout_data;
}

TEST_F(LookInsideTest, SshToASandboxWithoutNetworkSaysWhyAndDeleteForgetsItsHostKey) {
  SpecOptions o;  // network.mode: none
  std::string f = WriteSpec("offline", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "offline"));
  CommandOutput out = Banger({"ssh", "offline", "--", "true"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.stderr_data.find("network.mode: none"), std::string::npos) << Output(out);

  // Deleting a sandbox forgets its host key (and only its).
  fs::path known = fs::path(state_) / "ssh/known_hosts";
  ASSERT_TRUE(fs::exists(known.parent_path())) << "the boot created banger's key";
  ASSERT_TRUE(WriteFileAtomic(known, "other.banger ssh-ed25519 AAAAother\noffline.banger ssh-ed25519 AAAAoff\n", 0600).ok());
  CommandOutput del = Banger({"delete", "offline", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << Output(del);
  EXPECT_EQ(ReadFile(known).value_or(""), "other.banger ssh-ed25519 AAAAother\n");
}

}  // namespace
}  // namespace banger
