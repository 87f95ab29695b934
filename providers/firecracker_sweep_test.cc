// The failpoint sweep of the Firecracker provider (docs/testing.md,
// "Failpoints"; failpoint::kFirecrackerSweep): every firecracker.* point, in
// both modes, against the fake firecracker process serving the API contract.
// The armed operation runs in a forked child, as a separate banger process
// would (`crash` _exits there with no cleanup, leaving whatever it started);
// then the same operation runs unarmed in this process on the same runtime
// dir and must succeed, and a Destroy must leave no process and no file.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "base/failpoint.h"
#include "providers/firecracker_hypervisor.h"
#include "providers/testing/firecracker_test_env.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// The processes whose command line or root names `runtime_dir`.
int CountFirecrackersOf(const fs::path& runtime_dir) {
  int n = 0;
  std::set<int> seen;
  // RecoverFirecrackerProcess returns one; kill-free count by scanning twice
  // would race, so count by /proc directly with the same rule.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = ReadFile(e.path() / "cmdline");
    if (!cmdline) continue;
    if (cmdline->find(runtime_dir.string() + "/") != std::string::npos) {
      int pid = std::atoi(name.c_str());
      auto start = ProcessStartTime(pid);
      if (start && ProcessAlive({pid, *start}) && pid != ::getpid()) ++n;
    }
  }
  return n;
}

enum class Op { kBoot, kRestore, kDestroy, kJailedBoot };
std::string OpName(Op op) {
  switch (op) {
    case Op::kBoot: return "boot";
    case Op::kRestore: return "restore";
    case Op::kDestroy: return "destroy";
    case Op::kJailedBoot: return "jailed boot";
  }
  return "";
}

class FirecrackerSweepTest : public ::testing::Test {
 protected:
  void TearDown() override { failpoint::DisarmAll(); }

  std::unique_ptr<Hypervisor> Provider(bool jailed) {
    return MakeFirecrackerHypervisor(env_.runner(), env_.clock(), jailed ? env_.JailedOptions() : env_.Options());
  }

  // A template to restore from, made once.
  VmTemplateFiles Template() {
    if (template_) return *template_;
    auto hv = Provider(false);
    VmLaunchConfig tc = env_.Config("tmpl");
    tc.tap_device = "bgtap8";  // a restored VM gets its own tap through network_overrides
    auto h = hv->Boot(tc);
    EXPECT_TRUE(h.ok()) << h.error().message();
    fs::path dir = env_.root() / "template";
    fs::create_directories(dir);
    auto t = hv->SaveTemplate(*h, dir);
    EXPECT_TRUE(t.ok()) << t.error().message();
    EXPECT_TRUE(hv->Destroy(*h).ok());
    template_ = *t;
    return *template_;
  }

  VmLaunchConfig ConfigFor(Op op, const std::string& id) {
    VmLaunchConfig c = env_.Config(id);
    c.tap_device = "bgtap9";
    if (op == Op::kRestore) {
      c.restore = Template();  // the template has no volumes, so neither has its clone
    } else {
      c.extra_disks = {{env_.Volume("v-" + id), "vol-data"}};
      c.guest.volumes = {{"vol-data", "/data"}};
    }
    return c;
  }

  // One case: the armed operation in a child, then the unarmed one here.
  void RunCase(const std::string& point, failpoint::Mode mode, Op op, int n) {
    const std::string id = "sw" + std::to_string(n);
    SCOPED_TRACE(point + (mode == failpoint::Mode::kCrash ? "=crash" : "=error") + " during " + OpName(op));
    const bool jailed = op == Op::kJailedBoot;
    VmLaunchConfig c = ConfigFor(op, id);
    auto hv = Provider(jailed);
    VmHandle handle;
    if (op == Op::kDestroy) {
      auto h = hv->Boot(c);
      ASSERT_TRUE(h.ok()) << h.error().message();
      handle = *h;
    }
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      if (!failpoint::Arm(point, mode).ok()) ::_exit(3);
      auto child_hv = Provider(jailed);
      Status s = op == Op::kDestroy ? child_hv->Destroy(handle) : child_hv->Boot(c).status();
      if (!failpoint::Fired(point)) ::_exit(4);
      // error mode: the operation fails, naming the point.
      ::_exit(!s.ok() && s.message().find("failpoint " + point) != std::string::npos ? 0 : 5);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (mode == failpoint::Mode::kCrash) {
      ASSERT_EQ(WEXITSTATUS(status), failpoint::kCrashExitCode) << "the point was not reached";
    } else {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "3: not armed, 4: not reached, 5: the error did not surface";
      if (op != Op::kDestroy) {
        EXPECT_EQ(CountFirecrackersOf(c.runtime_dir), 0) << "a failed boot left its Firecracker running";
        EXPECT_FALSE(fs::exists(c.runtime_dir)) << "a failed boot left its runtime dir";
      }
    }
    // The next run converges.
    if (op == Op::kDestroy) {
      ASSERT_TRUE(hv->Destroy(handle).ok());
    } else {
      auto h = hv->Boot(c);
      ASSERT_TRUE(h.ok()) << h.error().message();
      VmObservation obs = hv->Inspect(*h);
      EXPECT_TRUE(obs.process_alive && obs.vmm_responsive && obs.detail.empty()) << obs.detail;
      EXPECT_EQ(CountFirecrackersOf(c.runtime_dir), 1) << "exactly the new Firecracker runs";
      ASSERT_TRUE(hv->Destroy(*h).ok());
    }
    EXPECT_EQ(CountFirecrackersOf(c.runtime_dir), 0);
    EXPECT_FALSE(fs::exists(c.runtime_dir));
    ++cases_;
  }

  testing::FirecrackerTestEnv env_;
  std::optional<VmTemplateFiles> template_;
  int cases_ = 0;
};

TEST_F(FirecrackerSweepTest, EveryFirecrackerPointConverges) {
  // Which operations reach each point.
  const std::map<std::string, std::vector<Op>> scenarios = {
      {"firecracker.boot.after_disk", {Op::kBoot, Op::kRestore, Op::kJailedBoot}},
      {"firecracker.boot.after_spawn", {Op::kBoot, Op::kRestore, Op::kJailedBoot}},
      {"firecracker.boot.before_start", {Op::kBoot, Op::kRestore, Op::kJailedBoot}},
      {"firecracker.boot.after_start", {Op::kBoot, Op::kRestore, Op::kJailedBoot}},
      {"firecracker.destroy.after_kill", {Op::kDestroy}},
  };
  int n = 0;
  for (const failpoint::Point& p : failpoint::All()) {
    if (!(p.sweeps & failpoint::kFirecrackerSweep)) continue;
    auto it = scenarios.find(std::string(p.name));
    ASSERT_NE(it, scenarios.end()) << p.name << " is in the Firecracker sweep but has no scenario here";
    for (failpoint::Mode mode : {failpoint::Mode::kCrash, failpoint::Mode::kError}) {
      for (Op op : it->second) RunCase(std::string(p.name), mode, op, n++);
    }
  }
  EXPECT_EQ(cases_, 26);
}

}  // namespace
}  // namespace banger
