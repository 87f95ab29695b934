// End-to-end tests of `banger dns` and `banger watch --dns`: the binary,
// pointed at a private network namespace with BANGER_NETNS, answers `dig`
// run in that namespace, refuses a second responder on the same state
// directory, and exits 0 on SIGTERM. Needs root (namespaces, port 53).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "state/state_store.h"
#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: Background, TempDir, fs

class DnsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to create a network namespace and bind port 53";
    for (const char* p : {"ip", "dig"}) {
      if (!FindProgram(p)) GTEST_SKIP() << "needs `" << p << "` (scripts/setup.sh installs iproute2, bind9-dnsutils)";
    }
    static std::atomic<int> counter{0};
    netns_ = "banger-dnscli-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    ASSERT_TRUE(Run({"ip", "netns", "add", netns_}));
    created_ = true;
    ASSERT_TRUE(Run({"ip", "-n", netns_, "link", "set", "lo", "up"}));
    ASSERT_TRUE(Run({"ip", "-n", netns_, "link", "add", "bgr-default", "type", "bridge"}));
    ASSERT_TRUE(Run({"ip", "-n", netns_, "addr", "add", "10.213.0.1/24", "dev", "bgr-default"}));
    ASSERT_TRUE(Run({"ip", "-n", netns_, "link", "set", "bgr-default", "up"}));
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", "parallel: 2\n").ok());
    // The state a bridged apply leaves: the default network and a lease.
    auto store = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    NetworkRecord n;
    n.name = "default";
    n.spec_json = "{}";
    n.spec_hash = "test";
    n.subnet = "10.213.0.0/24";
    n.gateway = "10.213.0.1";
    n.bridge = "bgr-default";
    ASSERT_TRUE((*store)->PutNetwork(n).ok());
    LeaseRequest r;
    r.network = "default";
    r.sandbox = "web";
    r.mac = "02:00:00:00:00:01";
    r.fixed_address = "10.213.0.2";
    ASSERT_TRUE((*store)->AcquireLease(r).ok());
  }
  void TearDown() override {
    if (created_) {
      EXPECT_TRUE(Run({"ip", "netns", "del", netns_}));
    }
  }

  bool Run(const std::vector<std::string>& argv) {
    CommandSpec spec;
    spec.argv = argv;
    spec.timeout = seconds(30);
    auto out = RunChecked(*runner_, spec);
    EXPECT_TRUE(out.ok()) << Join(argv, " ") << ": " << out.status().ToString();
    return out.ok();
  }

  std::vector<std::string> BangerArgv(std::vector<std::string> args) {
    std::vector<std::string> argv = {BANGER_EXE, "--state-dir", (dir_.path() / "state").string(), "--config",
                                     (dir_.path() / "config.yaml").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  CommandOutput Banger(std::vector<std::string> args) {
    CommandSpec spec;
    spec.argv = BangerArgv(std::move(args));
    spec.env = {{"BANGER_NETNS", netns_}, {"NO_COLOR", "1"}};
    spec.timeout = seconds(60);
    auto out = runner_->Run(spec);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : CommandOutput{};
  }

  // `dig +short @10.213.0.1 NAME` in the namespace, until it prints `want`
  // or 10 s pass; returns the last output.
  std::string DigUntil(const std::string& name, const std::string& want) {
    std::string last;
    auto deadline = steady_clock::now() + seconds(10);
    while (steady_clock::now() < deadline) {
      CommandSpec spec;
      spec.argv = {"ip", "netns", "exec", netns_, "dig", "+short", "+time=1", "+tries=1", "@10.213.0.1", name};
      spec.timeout = seconds(10);
      auto out = runner_->Run(spec);
      last = out.ok() ? out->stdout_data : out.status().ToString();
      if (last == want) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return last;
  }

  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  TempDir dir_;
  std::string netns_;
  bool created_ = false;
};

TEST_F(DnsCliTest, DnsAnswersInTheNamespaceRefusesASecondOneAndStopsOnSigterm) {
  Background dns;
  ASSERT_TRUE(dns.Start(BangerArgv({"dns"}), {{"BANGER_NETNS", netns_}, {"NO_COLOR", "1"}},
                        dir_.path() / "dns.out", dir_.path() / "dns.err"));
  EXPECT_EQ(DigUntil("web.banger", "10.213.0.2\n"), "10.213.0.2\n") << dns.Output();

  CommandOutput second = Banger({"dns"});
  EXPECT_EQ(second.exit_code, 1) << second.stderr_data;
  EXPECT_NE(second.stderr_data.find("already running"), std::string::npos) << second.stderr_data;
  EXPECT_NE(second.stderr_data.find("pid " + std::to_string(dns.pid())), std::string::npos) << second.stderr_data;

  dns.Signal(SIGTERM);
  std::optional<int> code = dns.Wait(seconds(10));
  ASSERT_TRUE(code.has_value()) << "banger dns did not exit within 10 s of SIGTERM";
  EXPECT_EQ(*code, 0) << dns.Output();
  EXPECT_NE(dns.Stderr().find("answering on 10.213.0.1:53"), std::string::npos) << dns.Output();
  EXPECT_NE(dns.Stderr().find("stopped"), std::string::npos) << dns.Output();
}

TEST_F(DnsCliTest, DnsInAMissingNamespaceFailsWithExitOne) {
  CommandSpec spec;
  spec.argv = BangerArgv({"dns"});
  spec.env = {{"BANGER_NETNS", "banger-no-such-ns"}};
  spec.timeout = seconds(30);
  auto out = runner_->Run(spec);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 1) << out->stderr_data;
  EXPECT_NE(out->stderr_data.find("ip netns add banger-no-such-ns"), std::string::npos) << out->stderr_data;
}

TEST_F(DnsCliTest, WatchWithDnsAnswersWhileItWatchesAndStopsOnSigint) {
  std::filesystem::create_directories(dir_.path() / "specs");
  EXPECT_EQ(Banger({"watch", "-f", (dir_.path() / "specs").string(), "--once", "--dns"}).exit_code, 64);

  Background watch;
  ASSERT_TRUE(watch.Start(BangerArgv({"watch", "-f", (dir_.path() / "specs").string(), "--interval", "500ms", "--dns"}),
                          {{"BANGER_NETNS", netns_}, {"NO_COLOR", "1"}}, dir_.path() / "watch.out",
                          dir_.path() / "watch.err"));
  EXPECT_EQ(DigUntil("web.banger", "10.213.0.2\n"), "10.213.0.2\n") << watch.Output();
  CommandOutput second = Banger({"dns"});
  EXPECT_EQ(second.exit_code, 1) << second.stderr_data;
  EXPECT_NE(second.stderr_data.find("(watch --dns)"), std::string::npos) << second.stderr_data;

  watch.Signal(SIGINT);
  std::optional<int> code = watch.Wait(seconds(15));
  ASSERT_TRUE(code.has_value()) << "banger watch --dns did not exit within 15 s of SIGINT";
  EXPECT_EQ(*code, 0) << watch.Output();
}

}  // namespace
}  // namespace banger
