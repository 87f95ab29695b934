#include "reconciler/watcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <latch>
#include <thread>

#include "base/strings.h"
#include "spec/loader.h"
#include "tests/support/fake_network.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::FakeSpecSource;
using testing::MakeDoc;
using testing::MakeSpec;
using testing::TempDir;

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    artifacts_.AddImage("busybox");
    artifacts_.AddImage("alpine");
    artifacts_.AddKernel("default-kernel");
  }

  std::unique_ptr<Engine> MakeEngine(Clock& clock) {
    EngineOptions o;
    o.locks_dir = dir_.path() / "locks";
    o.network_driver = &net_;
    return std::make_unique<Engine>(*store_, &rt_, artifacts_, clock, sink_, o);
  }

  PassResult Once(bool prune = false) {
    auto engine = MakeEngine(clock_);
    WatchOptions o;
    o.prune = prune;
    Watcher w(*store_, *engine, src_, clock_, o);
    return w.RunOnce();
  }

  SandboxRecord Get(const std::string& name) {
    auto r = store_->GetSandbox(name);
    EXPECT_TRUE(r.ok()) << name << ": " << r.error().ToString();
    return r.ok() ? *r : SandboxRecord{};
  }
  SourceRecord Source() {
    auto r = store_->GetSource(src_.Key());
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : SourceRecord{};
  }
  int Count(const std::string& call) {
    auto calls = rt_.calls();
    return static_cast<int>(std::count(calls.begin(), calls.end(), call));
  }
  static std::string Problems(const PassResult& r) { return Join(r.problems, "\n"); }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
  FakeArtifacts artifacts_;
  FakeRuntime rt_;
  testing::FakeNetworkDriver net_;
  FakeClock clock_;
  NullEventSink sink_;
  FakeSpecSource src_;
};

SandboxSpec OnNetwork(const std::string& name, const std::string& network) {
  SandboxSpec s = MakeSpec(name);
  s.network.mode = NetworkMode::kBridged;
  s.network.name = network;
  return s;
}

TEST_F(WatcherTest, DeclaredNetworksAreCreatedBeforeTheirSandboxesAndPrunedAfterThem) {
  src_.Set("rev1", {OnNetwork("web", "backend")});
  src_.AddNetwork("backend", "10.77.0.0/24");
  PassResult r = Once(/*prune=*/true);
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("web").address, "10.77.0.2");
  EXPECT_TRUE(net_.links().count("bgr-backend"));

  // The next revision drops both: the sandbox goes, then (next pass) the network.
  src_.Set("rev2", {});
  r = Once(/*prune=*/true);
  EXPECT_EQ(store_->GetSandbox("web").error().code(), StatusCode::kNotFound);
  r = Once(/*prune=*/true);
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(store_->GetNetwork("backend").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(net_.links().count("bgr-backend"));
}

TEST_F(WatcherTest, APassRepairsAFlushedTableAndADeletedBridge) {
  src_.Set("rev1", {OnNetwork("web", "default")});
  ASSERT_TRUE(Once().converged);
  net_.FlushRules();
  net_.RemoveLink("bgr-default");
  PassResult r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_TRUE(net_.links().count("bgr-default"));
  auto rules = net_.rules();
  ASSERT_TRUE(rules.has_value());
  EXPECT_EQ(rules->bridges.size(), 1u);
}

TEST_F(WatcherTest, NewRevisionIsAppliedAndRecordedAsApplied) {
  src_.Set("rev1", {MakeSpec("web"), MakeSpec("db")});
  PassResult r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, "rev1");
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("web").owner, "fake:specs");
  SourceRecord s = Source();
  EXPECT_EQ(s.applied_revision, "rev1");
  EXPECT_EQ(s.applied_summary, "commit rev1");
  EXPECT_EQ(s.last_result, "ok");
  EXPECT_EQ(s.watcher, SelfProcess());
  // Nothing to do the second time.
  int boots = rt_.boots();
  EXPECT_TRUE(Once().converged);
  EXPECT_EQ(rt_.boots(), boots);
}

TEST_F(WatcherTest, MetricsCountPassesAndApplies) {
  src_.Set("rev1", {MakeSpec("web"), MakeSpec("db")});
  auto engine = MakeEngine(clock_);
  Watcher w(*store_, *engine, src_, clock_, WatchOptions{});
  ASSERT_TRUE(w.RunOnce().converged);
  WatchMetrics m = w.Metrics();
  EXPECT_EQ(m.passes, 1);
  EXPECT_EQ(m.applies["create"], 2);
  EXPECT_TRUE(m.failures.empty());
  EXPECT_EQ(m.last_success_unix, clock_.NowUnix());
}

TEST_F(WatcherTest, EditsAreCarriedOutAsUpdateRestartOrReplace) {
  src_.Set("rev1", {MakeSpec("web")});
  ASSERT_TRUE(Once().converged);
  SandboxSpec web = MakeSpec("web");
  web.labels["tier"] = "front";
  src_.Set("rev2", {web});
  ASSERT_TRUE(Once().converged);
  EXPECT_EQ(rt_.boots(), 1) << "a label change is made in place";
  web.cpus = 2;
  src_.Set("rev3", {web});
  ASSERT_TRUE(Once().converged);
  EXPECT_EQ(Count("stop web"), 1);
  EXPECT_EQ(Count("boot web keep-disk"), 1) << "a cpu change restarts and keeps the disk";
  web.image = "alpine";
  src_.Set("rev4", {web});
  ASSERT_TRUE(Once().converged);
  EXPECT_EQ(Count("destroy web"), 1);
  EXPECT_EQ(Count("boot web fresh"), 2) << "an image change replaces the sandbox";
  EXPECT_EQ(Source().applied_revision, "rev4");
}

TEST_F(WatcherTest, BadRevisionChangesNothingAndTheNextGoodOneApplies) {
  src_.Set("rev1", {MakeSpec("web"), MakeSpec("db")});
  ASSERT_TRUE(Once(/*prune=*/true).converged);
  int pid = Get("web").pid;
  int boots = rt_.boots();

  src_.SetInvalid("rev2");
  PassResult bad = Once(/*prune=*/true);
  EXPECT_FALSE(bad.converged);
  EXPECT_NE(Problems(bad).find("specs/web.yaml:7:9"), std::string::npos) << Problems(bad);
  EXPECT_EQ(Get("web").pid, pid) << "a bad revision touched a running sandbox";
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady) << "a bad revision must never prune";
  EXPECT_EQ(rt_.boots(), boots);
  SourceRecord s = Source();
  EXPECT_EQ(s.last_result, "error");
  EXPECT_NE(s.last_error.find("specs/web.yaml:7:9: error: spec.cpus"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.last_error_revision, "rev2");
  EXPECT_EQ(s.applied_revision, "rev1");
  EXPECT_EQ(s.seen_revision, "rev2");

  SandboxSpec web = MakeSpec("web");
  web.memory_bytes = 1ull << 30;
  src_.Set("rev3", {web, MakeSpec("db")});
  PassResult good = Once(/*prune=*/true);
  EXPECT_TRUE(good.converged) << Problems(good);
  s = Source();
  EXPECT_EQ(s.applied_revision, "rev3");
  EXPECT_EQ(s.last_result, "ok");
  EXPECT_NE(Get("web").pid, pid);
}

TEST_F(WatcherTest, ARemovedSpecIsDeletedOnlyWithPrune) {
  src_.Set("rev1", {MakeSpec("web"), MakeSpec("db")});
  ASSERT_TRUE(Once().converged);
  src_.Set("rev2", {MakeSpec("web")});
  ASSERT_TRUE(Once(/*prune=*/false).converged);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady) << "without --prune a removed spec keeps its sandbox";
  ASSERT_TRUE(Once(/*prune=*/true).converged);
  EXPECT_EQ(store_->GetSandbox("db").error().code(), StatusCode::kNotFound);
  EXPECT_EQ(rt_.running(), std::set<std::string>{"web"});
}

TEST_F(WatcherTest, SandboxesOfAnotherSetAreNeverTouched) {
  SandboxRecord other;
  other.name = "other";
  other.id = "sb-other";
  other.owner = "set:someone-else";
  other.spec_json = CanonicalJson(MakeSpec("other"));
  other.spec_hash = SpecHash(MakeSpec("other"));
  other.phase = SandboxPhase::kFailed;
  ASSERT_TRUE(store_->PutSandbox(other).ok());
  src_.Set("rev1", {MakeSpec("web"), MakeSpec("other")});
  PassResult r = Once(/*prune=*/true);
  EXPECT_FALSE(r.converged);
  EXPECT_NE(Problems(r).find("managed by apply set \"someone-else\""), std::string::npos) << Problems(r);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("other").owner, "set:someone-else");
  EXPECT_EQ(Count("boot other fresh") + Count("boot other keep-disk"), 0);
}

TEST_F(WatcherTest, CrashedVmIsRestartedAndACrashLoopBacksOff) {
  src_.Set("rev1", {MakeSpec("web")});
  ASSERT_TRUE(Once().converged);
  rt_.Crash("web");
  EXPECT_TRUE(Once().converged) << "a crashed VM is brought back on the next pass";
  EXPECT_EQ(Count("boot web keep-disk"), 1);

  rt_.Crash("web");
  rt_.FailBoots("web", 100, Internal("qemu exited with status 1"));
  EXPECT_FALSE(Once().converged);
  int attempts = rt_.boots();
  EXPECT_FALSE(Once().converged);
  EXPECT_EQ(rt_.boots(), attempts) << "restarted again inside its backoff window";
  SandboxRecord r = Get("web");
  ASSERT_GT(r.next_retry_at, clock_.NowUnix());
  clock_.Advance(seconds(r.next_retry_at - clock_.NowUnix()));
  EXPECT_FALSE(Once().converged);
  EXPECT_EQ(rt_.boots(), attempts + 1) << "the backoff elapsed: one more attempt";
}

TEST_F(WatcherTest, AnUnreadableSourceKeepsTheLastGoodStateAndRecoveryGoesOn) {
  src_.Set("rev1", {MakeSpec("web")});
  auto engine = MakeEngine(clock_);
  Watcher w(*store_, *engine, src_, clock_, WatchOptions{});
  ASSERT_TRUE(w.RunOnce().converged);
  src_.Fail(Unavailable("connection refused"));
  rt_.Crash("web");
  Watcher w2(*store_, *engine, src_, clock_, WatchOptions{});
  PassResult r = w2.RunOnce();
  EXPECT_FALSE(r.converged) << "the source could not be read";
  EXPECT_NE(Problems(r).find("connection refused"), std::string::npos) << Problems(r);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady) << "recovery runs from the recorded specs";
  EXPECT_EQ(Source().last_result, "error");
  EXPECT_EQ(Source().applied_revision, "rev1");
}

TEST_F(WatcherTest, AChangeToASandboxStillBootingIsAppliedAfterThatBoot) {
  // Given the watcher booting web (held); when a new revision changes web,
  // then no second boot starts while the first runs, and once it ends the
  // new revision is applied.
  auto real = MakeSystemClock();
  auto engine = MakeEngine(*real);
  std::latch in_boot(1), release(1);
  std::atomic<bool> held{false};
  rt_.on_boot = [&](const std::string&) {
    if (held.exchange(true)) return;
    in_boot.count_down();
    release.wait();
  };
  src_.Set("rev1", {MakeSpec("web")});
  WatchOptions o;
  o.interval = milliseconds(100);
  o.debounce = milliseconds(10);
  Watcher w(*store_, *engine, src_, *real, o);
  bool clean = false;
  std::thread loop([&] { clean = w.Run(); });
  in_boot.wait();
  SandboxSpec web = MakeSpec("web");
  web.cpus = 2;
  src_.Set("rev2", {web});
  w.Trigger();
  int passes = w.passes();
  while (w.passes() < passes + 3) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(Count("boot web fresh") + Count("boot web keep-disk"), 1) << "a second boot started meanwhile";
  release.count_down();
  auto deadline = std::chrono::steady_clock::now() + seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    auto rec = store_->GetSandbox("web");
    if (rec.ok() && rec->phase == SandboxPhase::kReady && rec->spec_hash == SpecHash(web)) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  w.Stop();
  loop.join();
  EXPECT_TRUE(clean);
  EXPECT_EQ(Get("web").spec_hash, SpecHash(web)) << "rev2 was never applied";
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(rt_.max_concurrent_boots(), 1);
  EXPECT_EQ(Count("boot web keep-disk"), 1) << "the change restarted web once after the first boot";
}

TEST_F(WatcherTest, AWatcherPassNextToAnApplyBootsOneVm) {
  // Given an apply (another engine, as another process would be) in the
  // middle of booting web; when a watcher pass over the same spec runs, it
  // leaves web to the apply: no second boot; once the apply is done, the
  // next pass finds web converged.
  auto real = MakeSystemClock();
  std::latch in_boot(1), release(1);
  std::atomic<bool> held{false};
  rt_.on_boot = [&](const std::string&) {
    if (held.exchange(true)) return;
    in_boot.count_down();
    release.wait();
  };
  auto applier = MakeEngine(*real);
  auto s2 = StateStore::Open(dir_.path() / "state");
  ASSERT_TRUE(s2.ok());
  EngineOptions o;
  o.locks_dir = dir_.path() / "locks";
  Engine watch_engine(**s2, &rt_, artifacts_, *real, sink_, o);
  // The apply's plan and the source declare the same spec, in the same set.
  src_.Set("rev1", {MakeSpec("web")});
  PlanOptions po;
  po.owner = src_.Key();
  Plan p = ComputePlan({MakeDoc(MakeSpec("web"), "specs/web.yaml")}, {}, po);
  ApplyReport rep;
  std::thread t([&] { rep = applier->Apply(p); });
  in_boot.wait();
  Watcher w(**s2, watch_engine, src_, *real, WatchOptions{});
  PassResult during = w.RunOnce();
  EXPECT_FALSE(during.converged) << "web was still booting";
  EXPECT_EQ(Count("boot web fresh"), 1) << "the watcher booted a second VM";
  release.count_down();
  t.join();
  ASSERT_TRUE(rep.ok()) << rep.results[0].status.ToString();
  Watcher w2(**s2, watch_engine, src_, *real, WatchOptions{});
  PassResult after = w2.RunOnce();
  EXPECT_TRUE(after.converged) << Problems(after);
  EXPECT_EQ(rt_.boots(), 1);
  EXPECT_EQ(rt_.running(), std::set<std::string>{"web"});
}

}  // namespace
}  // namespace banger

namespace banger {
namespace {

TEST(WatchMetricsTest, RendersPrometheusText) {
  WatchMetrics m;
  m.passes = 7;
  m.last_pass_seconds = 0.25;
  m.applies["create"] = 2;
  m.failures["restart"] = 1;
  m.last_success_unix = 1700000000;
  std::string text = RenderWatchMetrics(m, "git:file:///r#main:\"x\"", {{"Ready", 3}, {"Failed", 1}});
  EXPECT_NE(text.find("# TYPE banger_watch_passes_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("banger_watch_passes_total{source=\"git:file:///r#main:\\\"x\\\"\"} 7\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("banger_watch_pass_duration_seconds{source=\"git:file:///r#main:\\\"x\\\"\"} 0.250000\n"),
            std::string::npos);
  EXPECT_NE(text.find("action=\"create\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("banger_watch_failures_total{"), std::string::npos);
  EXPECT_NE(text.find("banger_watch_last_success_timestamp_seconds{source=\"git:file:///r#main:\\\"x\\\"\"} 1700000000\n"),
            std::string::npos);
  EXPECT_NE(text.find("banger_sandboxes{phase=\"Ready\"} 3\n"), std::string::npos);
}

}  // namespace
}  // namespace banger
