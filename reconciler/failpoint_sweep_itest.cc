// The failpoint sweep, in-process half (docs/testing.md, "Failpoints"): for
// every failpoint the engine sweep covers (failpoint::kEngineSweep) and both
// modes, an operation (apply, in-place update, restart, replace, delete, a
// watch pass) runs in a forked child with the point armed, as a banger
// process would; `crash` _exits there with no cleanup, `error` makes the call
// site fail. Then the same operation runs again unarmed, in this process,
// against the same state directory (real SQLite, real lock files), and must
// converge and leave nothing behind: the sandbox Ready with the desired spec
// (or gone), no journal step `started`, no lease, lock file or volume row
// that should not be there, and a record that says what the runtime says.
//
// The runtime, artifacts, network driver and volume files are the fakes
// (tests/support/fakes.h): what a crash leaves in a real QEMU, image store or
// kernel store is the real-binary half's (tests/e2e/failpoint_sweep_test.cc).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "base/failpoint.h"
#include "base/strings.h"
#include "reconciler/engine.h"
#include "reconciler/network_plan.h"
#include "reconciler/watcher.h"
#include "spec/loader.h"
#include "tests/support/fake_network.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeNetworkDriver;
using testing::FakeRuntime;
using testing::FakeSpecSource;
using testing::FakeVolumeFiles;
using testing::MakeDoc;
using testing::MakeSpec;
using testing::TempDir;

constexpr char kOwner[] = "set:sweep";
constexpr char kSandbox[] = "web";

// A sandbox that takes every step: bridged network, a volume, a provision
// command and a readiness command.
SandboxSpec Full() {
  SandboxSpec s = MakeSpec(kSandbox);
  s.network.mode = NetworkMode::kBridged;
  s.network.name = "default";
  s.volumes = {VolumeSpec{"data", "/data", 64ull << 20, VolumeSeed::kEmpty}};
  s.provision = {"echo provisioned > /etc/motd"};
  s.readiness.command = {"cat", "/etc/hostname"};
  NormalizeSpec(s);
  return s;
}
SandboxSpec InPlace() {  // spec.restartPolicy: in place
  SandboxSpec s = Full();
  s.restart_policy = RestartPolicy::kNever;
  return s;
}
SandboxSpec Restarted() {  // spec.cpus: restart
  SandboxSpec s = Full();
  s.cpus = 2;
  return s;
}
SandboxSpec Replaced() {  // spec.image: replace
  SandboxSpec s = Full();
  s.image = "alpine";
  return s;
}

// The host a run of banger sees: the state directory, and the fakes standing
// in for QEMU, the artifact stores, the network and the volume files.
struct World {
  TempDir dir;
  FakeArtifacts artifacts;
  FakeRuntime rt;
  FakeNetworkDriver net;
  FakeVolumeFiles volumes;
  FakeClock clock;
  NullEventSink sink;
  FakeSpecSource source;

  World() {
    artifacts.AddImage("busybox");
    artifacts.AddImage("alpine");
    artifacts.AddKernel("default-kernel");
    source.Set("rev1", {Full()});
  }
  fs::path locks() const { return dir.path() / "state" / "run" / "locks"; }
};

// One banger process: its own connection to the database, its own engine.
struct Run {
  explicit Run(World& w) : world(w) {
    auto s = StateStore::Open(w.dir.path() / "state");
    if (!s.ok()) {
      open_error = s.error();
      return;
    }
    store = std::move(*s);
    EngineOptions o;
    o.locks_dir = w.locks();
    o.network_driver = &w.net;
    o.volumes = &w.volumes;
    o.parallel = 1;
    engine = std::make_unique<Engine>(*store, &w.rt, w.artifacts, w.clock, w.sink, o);
  }

  // What `banger apply -f web.yaml --yes` does.
  Status Apply(const SandboxSpec& spec) {
    BANGER_RETURN_IF_ERROR(open_error);
    BANGER_RETURN_IF_ERROR(engine->Refresh());
    BANGER_ASSIGN_OR_RETURN(auto observed, store->ListSandboxes());
    std::vector<SpecDocument> docs = {MakeDoc(spec)};
    PlanOptions o;
    o.owner = kOwner;
    o.default_kernel = world.artifacts.DefaultKernel();
    o.volume_size = [this](const std::string& sb, const std::string& v) -> std::optional<uint64_t> {
      auto row = store->GetVolume(sb, v);
      if (!row.ok()) return std::nullopt;
      return row->size_bytes;
    };
    Plan plan = ComputePlan(docs, observed, o);
    BANGER_ASSIGN_OR_RETURN(auto networks, store->ListNetworks());
    BANGER_ASSIGN_OR_RETURN(auto leases, store->ListLeases(""));
    PlanNetworks({}, docs, observed, NetworkObservations{networks, leases}, o, plan);
    if (!plan.errors.empty()) return FailedPrecondition(Join(plan.errors, "; "));
    ApplyReport report = engine->Apply(plan);
    for (const auto& r : report.results) BANGER_RETURN_IF_ERROR(r.status);
    return OkStatus();
  }
  // What `banger delete web --yes` does.
  Status Delete() {
    BANGER_RETURN_IF_ERROR(open_error);
    BANGER_RETURN_IF_ERROR(engine->Refresh());
    return engine->DeleteSandbox(kSandbox);
  }
  // One pass of `banger watch --once`.
  Status WatchOnce() {
    BANGER_RETURN_IF_ERROR(open_error);
    WatchOptions o;
    o.workers = 1;
    Watcher w(*store, *engine, world.source, world.clock, o);
    PassResult r = w.RunOnce();
    if (!r.converged) return Internal("watch pass: " + Join(r.problems, "; "));
    return OkStatus();
  }

  World& world;
  Status open_error;
  std::unique_ptr<StateStore> store;
  std::unique_ptr<Engine> engine;
};

struct Scenario {
  std::string name;
  std::function<Status(Run&)> setup;  // unarmed, before the armed attempt
  std::function<Status(Run&)> op;     // armed once, then unarmed
  bool deletes = false;               // converged = the sandbox is gone
  SandboxSpec desired;                // converged = Ready with this spec
  bool watch = false;
};

std::vector<Scenario> Scenarios() {
  auto none = [](Run&) { return OkStatus(); };
  auto create = [](Run& r) { return r.Apply(Full()); };
  return {
      {"create", none, create, false, Full(), false},
      {"update", create, [](Run& r) { return r.Apply(InPlace()); }, false, InPlace(), false},
      {"restart", create, [](Run& r) { return r.Apply(Restarted()); }, false, Restarted(), false},
      {"replace", create, [](Run& r) { return r.Apply(Replaced()); }, false, Replaced(), false},
      {"delete", create, [](Run& r) { return r.Delete(); }, true, {}, false},
      {"watch", none, [](Run& r) { return r.WatchOnce(); }, false, Full(), true},
  };
}

// Which scenario drives each engine-sweep point. A point registered for the
// engine sweep without an entry here fails EveryEnginePointHasAScenario.
const std::map<std::string, std::string>& ScenarioOf() {
  static const std::map<std::string, std::string> m = {
      {"engine.record.after_put", "create"},
      {"engine.ensure_image.before", "create"},
      {"engine.ensure_image.after", "create"},
      {"engine.ensure_kernel.before", "create"},
      {"engine.ensure_kernel.after", "create"},
      {"engine.ensure_volumes.before", "create"},
      {"engine.ensure_volumes.after", "create"},
      {"engine.attach_network.before", "create"},
      {"engine.attach_network.after", "create"},
      {"engine.boot_vm.before", "create"},
      {"engine.boot.after_launch", "create"},
      {"engine.boot_vm.after", "create"},
      {"engine.wait_agent.before", "create"},
      {"engine.wait_agent.after", "create"},
      {"engine.provision.before", "create"},
      {"engine.provision.after", "create"},
      {"engine.wait_ready.before", "create"},
      {"engine.wait_ready.after", "create"},
      {"engine.ready.before_record", "create"},
      {"engine.update_record.before", "update"},
      {"engine.update_record.after", "update"},
      {"engine.destroy_vm.before", "replace"},
      {"engine.destroy_vm.after", "replace"},
      {"engine.stop_vm.before", "restart"},
      {"engine.stop_vm.after", "restart"},
      {"engine.delete.before", "delete"},
      {"engine.delete.after_destroy", "delete"},
      {"engine.delete.after_detach", "delete"},
      {"engine.delete.after", "delete"},
      {"network.lease.after_acquire", "create"},
      {"network.tap.after_create", "create"},
      {"volume.create.after_file", "create"},
      // Every write transaction of these, one at a time (crash@N, error@N).
      {"state.tx.before_commit", "create,delete,restart"},
      {"state.tx.after_commit", "create,delete,restart"},
      {"watch.pass.after_fetch", "watch"},
      {"watch.converge.after", "watch"},
  };
  return m;
}

// Exit codes of the armed child besides failpoint::kCrashExitCode.
constexpr int kChildNotReached = 3;
constexpr int kChildReachedOk = 4;      // error mode: fired, the operation still succeeded
constexpr int kChildReachedFailed = 5;  // error mode: fired, the operation failed
constexpr int kChildCrashNotReached = 6;

// Runs the operation in a child process with `point` armed; the child's
// exit status says whether the point was reached.
int ArmedAttempt(World& w, const Scenario& sc, const std::string& point, failpoint::Mode mode, int nth) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!failpoint::Arm(point, mode, nth).ok()) ::_exit(100);
    Run r(w);
    Status s = sc.op(r);
    bool fired = failpoint::Fired(point);
    if (mode == failpoint::Mode::kCrash) ::_exit(kChildCrashNotReached);  // a crash point that fired never gets here
    ::_exit(!fired ? kChildNotReached : s.ok() ? kChildReachedOk : kChildReachedFailed);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// What must hold once the unarmed run succeeded.
void ExpectConverged(World& w, Run& r, const Scenario& sc, const std::string& what) {
  auto rec = r.store->GetSandbox(kSandbox);
  if (sc.deletes) {
    EXPECT_EQ(rec.status().code(), StatusCode::kNotFound) << what << ": the sandbox is still recorded";
    EXPECT_FALSE(fs::exists(w.locks() / "sandbox-web.lock")) << what << ": stale lock file";
    auto lease = r.store->GetLease(kSandbox);
    EXPECT_EQ(lease.status().code(), StatusCode::kNotFound) << what << ": lease left for a deleted sandbox";
    auto vols = r.store->ListVolumes(kSandbox);
    ASSERT_TRUE(vols.ok());
    EXPECT_EQ(vols->size(), 1u) << what << ": a delete keeps the sandbox's volumes (docs/volumes.md)";
  } else {
    ASSERT_TRUE(rec.ok()) << what << ": " << rec.status().ToString();
    EXPECT_EQ(rec->phase, SandboxPhase::kReady) << what << ": " << rec->last_error;
    EXPECT_EQ(rec->spec_hash, SpecHash(sc.desired)) << what << ": not the desired spec";
    EXPECT_TRUE(rec->last_error.empty()) << what << ": " << rec->last_error;
    EXPECT_TRUE(rec->provisioned) << what;
    // `banger get` says Ready: the runtime agrees that this VM runs.
    RuntimeObservation obs = w.rt.Inspect(*rec);
    EXPECT_TRUE(obs.alive && obs.responsive) << what << ": recorded Ready but the VM (pid " << rec->pid
                                             << ") is " << obs.detail;
    EXPECT_EQ(rec->image_ref, sc.desired.image) << what;
    auto lease = r.store->GetLease(kSandbox);
    ASSERT_TRUE(lease.ok()) << what << ": no lease for a bridged sandbox";
    EXPECT_EQ(lease->address, rec->address) << what << ": record and lease disagree";
    auto vol = r.store->GetVolume(kSandbox, "data");
    EXPECT_TRUE(vol.ok()) << what << ": volume row missing";
  }
  // No journal step left `started` (the crashed process's were closed).
  auto open = r.store->UnfinishedOperations();
  ASSERT_TRUE(open.ok());
  for (const auto& op : *open) {
    ADD_FAILURE() << what << ": journal step " << op.step << " of " << op.sandbox << " left `started`";
  }
  // Leases only for recorded sandboxes; one lease per address.
  auto leases = r.store->ListLeases("");
  ASSERT_TRUE(leases.ok());
  std::set<std::string> addresses;
  for (const auto& l : *leases) {
    EXPECT_TRUE(r.store->GetSandbox(l.sandbox).ok()) << what << ": lease of unknown sandbox " << l.sandbox;
    EXPECT_TRUE(addresses.insert(l.address).second) << what << ": address " << l.address << " leased twice";
  }
  // Lock files only for recorded sandboxes (and the network's own locks).
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(w.locks(), ec)) {
    std::string n = e.path().filename().string();
    if (!StartsWith(n, "sandbox-")) continue;
    std::string sb = n.substr(8, n.size() - 8 - 5);
    EXPECT_TRUE(r.store->GetSandbox(sb).ok()) << what << ": lock file " << n << " of a sandbox that is gone";
  }
  if (sc.watch) {
    auto src = r.store->GetSource(w.source.Key());
    ASSERT_TRUE(src.ok()) << what;
    EXPECT_EQ(src->applied_revision, "rev1") << what << ": the watch pass did not record what it applied";
  }
}

struct Tally {
  int cases = 0;
  std::set<std::string> points;
};

// One case: set up, armed attempt in a child, unarmed run here, checks.
// Returns false when the point was not reached (an `@N` past the last hit).
bool RunCase(const Scenario& sc, const std::string& point, failpoint::Mode mode, int nth, bool must_reach,
             Tally& tally) {
  const std::string what = point + "=" + (mode == failpoint::Mode::kCrash ? "crash" : "error") +
                           (nth > 1 ? "@" + std::to_string(nth) : "") + " during " + sc.name;
  World w;
  {
    Run setup(w);
    Status s = sc.setup(setup);
    EXPECT_TRUE(s.ok()) << what << ": setup: " << s.ToString();
    if (!s.ok()) return false;
  }
  int code = ArmedAttempt(w, sc, point, mode, nth);
  bool reached = mode == failpoint::Mode::kCrash ? code == failpoint::kCrashExitCode
                                                 : (code == kChildReachedOk || code == kChildReachedFailed);
  if (!reached) {
    EXPECT_FALSE(must_reach) << what << ": the point was never reached (child exit " << code << ")";
    EXPECT_TRUE(code == kChildNotReached || code == kChildCrashNotReached) << what << ": child exit " << code;
    return false;
  }
  ++tally.cases;
  tally.points.insert(point);
  Run again(w);
  Status s = sc.op(again);
  EXPECT_TRUE(s.ok()) << what << ": the unarmed run did not converge: " << s.ToString();
  ExpectConverged(w, again, sc, what);
  // And a further run has nothing left to do.
  if (!sc.deletes && !sc.watch) {
    int boots = w.rt.boots();
    EXPECT_TRUE(sc.op(again).ok()) << what;
    EXPECT_EQ(w.rt.boots(), boots) << what << ": a third run still changed something";
  }
  return true;
}

TEST(FailpointSweepTest, EveryEnginePointHasAScenario) {
  std::set<std::string> scenarios;
  for (const auto& sc : Scenarios()) scenarios.insert(sc.name);
  for (const auto& p : failpoint::All()) {
    if (!(p.sweeps & failpoint::kEngineSweep)) continue;
    auto it = ScenarioOf().find(std::string(p.name));
    EXPECT_NE(it, ScenarioOf().end()) << p.name << " is registered for the engine sweep but no scenario drives it";
    if (it == ScenarioOf().end()) continue;
    for (const auto& n : Split(it->second, ',')) EXPECT_TRUE(scenarios.count(n)) << p.name << ": " << n;
  }
  for (const auto& [name, _] : ScenarioOf()) {
    EXPECT_TRUE(failpoint::IsRegistered(name)) << name << " is not a registered failpoint";
  }
}

TEST(FailpointSweepTest, EveryEnginePointCrashedOrFailingConvergesOnTheNextRun) {
  std::map<std::string, Scenario> by_name;
  for (auto& sc : Scenarios()) by_name[sc.name] = sc;
  Tally tally;
  for (const auto& p : failpoint::All()) {
    if (!(p.sweeps & failpoint::kEngineSweep)) continue;
    auto it = ScenarioOf().find(std::string(p.name));
    if (it == ScenarioOf().end()) continue;  // EveryEnginePointHasAScenario says so
    const bool every_hit = StartsWith(std::string(p.name), "state.tx.");
    for (const auto& scenario : Split(it->second, ',')) {
      for (auto mode : {failpoint::Mode::kCrash, failpoint::Mode::kError}) {
        if (!every_hit) {
          RunCase(by_name[scenario], std::string(p.name), mode, 1, /*must_reach=*/true, tally);
          continue;
        }
        // Each write transaction of the operation in turn, until past the last.
        int n = 1;
        while (n <= 200 && RunCase(by_name[scenario], std::string(p.name), mode, n, n == 1, tally)) ++n;
        EXPECT_LT(n, 200) << p.name;
      }
    }
  }
  std::printf("engine sweep: %zu points, %d cases (crash and error, every transaction for state.tx.*)\n",
              tally.points.size(), tally.cases);
  RecordProperty("engine_sweep_cases", tally.cases);
}

}  // namespace
}  // namespace banger
