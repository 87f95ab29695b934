#include "reconciler/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <latch>
#include <mutex>
#include <thread>

#include "spec/loader.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::MakeDoc;
using testing::MakeSpec;
using testing::TempDir;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    artifacts_.AddImage("busybox");
    artifacts_.AddKernel("default-kernel");
  }

  Engine MakeEngine(SandboxRuntime* runtime, int parallel = 4) {
    EngineOptions o;
    o.parallel = parallel;
    o.locks_dir = dir_.path() / "locks";
    return Engine(*store_, runtime, artifacts_, clock_, sink_, o);
  }

  Plan PlanFor(const std::vector<SandboxSpec>& specs, bool prune = false) {
    std::vector<SpecDocument> docs;
    for (const auto& s : specs) docs.push_back(MakeDoc(s));
    auto observed = store_->ListSandboxes();
    EXPECT_TRUE(observed.ok());
    PlanOptions o;
    o.owner = "set:test";
    o.prune = prune;
    o.default_kernel = artifacts_.DefaultKernel();
    o.artifact_present = [this](std::string_view kind, const std::string& n) {
      return kind == "image" ? artifacts_.ImagePresent(n) : artifacts_.KernelPresent(n);
    };
    return ComputePlan(docs, *observed, o);
  }

  SandboxRecord Get(const std::string& name) {
    auto r = store_->GetSandbox(name);
    EXPECT_TRUE(r.ok()) << name << ": " << r.error().ToString();
    return r.ok() ? *r : SandboxRecord{};
  }

  int Count(const std::vector<std::string>& calls, const std::string& call) {
    return static_cast<int>(std::count(calls.begin(), calls.end(), call));
  }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
  FakeArtifacts artifacts_;
  FakeClock clock_;
  NullEventSink sink_;
};

TEST_F(EngineTest, ApplyCreatesSandboxAndRecordsItReady) {
  // Given an empty host, when a new spec is applied, then its VM boots and it is recorded Ready.
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ApplyReport rep = e.Apply(PlanFor({MakeSpec("web")}));
  ASSERT_TRUE(rep.ok()) << rep.results[0].status.ToString();
  SandboxRecord r = Get("web");
  EXPECT_EQ(r.phase, SandboxPhase::kReady);
  EXPECT_EQ(r.owner, "set:test");
  EXPECT_EQ(r.hypervisor, "fake");
  EXPECT_NE(r.pid, 0);
  EXPECT_EQ(r.image_ref, "busybox");
  EXPECT_EQ(r.kernel_ref, "default-kernel");
  EXPECT_EQ(rt.running(), std::set<std::string>{"web"});
  // The journal has no step left open, and events tell the story.
  EXPECT_TRUE(store_->UnfinishedOperations()->empty());
  auto events = store_->ListEvents("web", 100);
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->back().reason, "Ready");
  // A second plan has nothing to do.
  EXPECT_FALSE(PlanFor({MakeSpec("web")}).HasChanges());
}

TEST_F(EngineTest, WithoutHypervisorApplyFailsClearlyAndRecordsNothing) {
  Engine e = MakeEngine(nullptr);
  ApplyReport rep = e.Apply(PlanFor({MakeSpec("web")}));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.results[0].status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(rep.results[0].status.message().find("no hypervisor available"), std::string::npos);
  EXPECT_TRUE(store_->ListSandboxes()->empty());
}

TEST_F(EngineTest, WorkspaceIsShippedOnCreateAndReplaceButNotOnRestart) {
  struct RecordingShipper : WorkspaceShipper {
    std::vector<std::string> shipped, forgotten;
    Status result = OkStatus();
    void Forget(const std::string& sandbox) override { forgotten.push_back(sandbox); }
    Status Ship(const SandboxRecord& rec, const SandboxSpec& spec) override {
      shipped.push_back(rec.name + ":" + spec.workspace->path);
      return result;
    }
  } shipper;
  FakeRuntime rt;
  EngineOptions o;
  o.locks_dir = dir_.path() / "locks";
  o.workspace_shipper = &shipper;
  Engine e(*store_, &rt, artifacts_, clock_, sink_, o);
  SandboxSpec s = MakeSpec("web");
  s.workspace = WorkspaceSpec{.source = "/src/repo"};
  ASSERT_TRUE(e.Apply(PlanFor({s})).ok());
  EXPECT_EQ(shipper.shipped, std::vector<std::string>{"web:/root/work"});
  EXPECT_TRUE(store_->UnfinishedOperations()->empty());
  // A restart (more memory) keeps the disk and the guest's edits: no ship.
  s.memory_bytes *= 2;
  ASSERT_TRUE(e.Apply(PlanFor({s})).ok());
  EXPECT_EQ(shipper.shipped.size(), 1u);
  // A replace (new disk) ships again; a failing ship fails the sandbox.
  artifacts_.AddImage("alpine");
  s.image = "alpine";
  shipper.result = FailedPrecondition("extracting into /root/work in the guest failed");
  ApplyReport rep = e.Apply(PlanFor({s}));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(shipper.shipped.size(), 2u);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kFailed);
  EXPECT_NE(Get("web").last_error.find("extracting into /root/work"), std::string::npos) << Get("web").last_error;
  // Deleting the sandbox forgets its shipment.
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  EXPECT_EQ(shipper.forgotten, std::vector<std::string>{"web"});
}

TEST_F(EngineTest, WorkspaceWithoutAShipperFailsClearly) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  SandboxSpec s = MakeSpec("web");
  s.workspace = WorkspaceSpec{.source = "/src/repo"};
  ApplyReport rep = e.Apply(PlanFor({s}));
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.results[0].status.message().find("cannot ship workspaces"), std::string::npos)
      << rep.results[0].status.ToString();
}

TEST_F(EngineTest, FailureMidApplyIsRecordedAndReapplyConverges) {
  // Given three sandboxes where one boot fails, the others still become Ready,
  // the failed one is recorded Failed with the error, and a re-apply fixes it.
  FakeRuntime rt;
  rt.FailBoots("b", 1, Internal("qemu exited with status 1"));
  Engine e = MakeEngine(&rt);
  std::vector<SandboxSpec> specs = {MakeSpec("a"), MakeSpec("b"), MakeSpec("c")};
  ApplyReport rep = e.Apply(PlanFor(specs));
  EXPECT_FALSE(rep.ok());
  EXPECT_EQ(Get("a").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("c").phase, SandboxPhase::kReady);
  SandboxRecord b = Get("b");
  EXPECT_EQ(b.phase, SandboxPhase::kFailed);
  EXPECT_NE(b.last_error.find("qemu exited with status 1"), std::string::npos) << b.last_error;

  Plan again = PlanFor(specs);
  ASSERT_EQ(again.Summary().restart, 1);
  ASSERT_EQ(again.Summary().unchanged, 2);
  rep = e.Apply(again);
  ASSERT_TRUE(rep.ok()) << rep.results[0].status.ToString();
  EXPECT_EQ(Get("b").phase, SandboxPhase::kReady);
  EXPECT_EQ(rt.running(), (std::set<std::string>{"a", "b", "c"}));
  EXPECT_FALSE(PlanFor(specs).HasChanges());
}

TEST_F(EngineTest, IntentIsJournaledBeforeTheVmIsBooted) {
  struct Probe : FakeRuntime {
    StateStore* store = nullptr;
    std::vector<std::string> open_steps;
    Result<BootResult> Boot(const BootRequest& req) override {
      auto ops = store->UnfinishedOperations();
      for (const auto& o : *ops) open_steps.push_back(o.step);
      return FakeRuntime::Boot(req);
    }
  } rt;
  rt.store = store_.get();
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  EXPECT_EQ(rt.open_steps, std::vector<std::string>{"boot_vm"});
}

TEST_F(EngineTest, InterruptedApplyConvergesWithoutLeakingVms) {
  // Simulate a banger killed right after boot_vm started: the record says
  // Booting, a VM is running, the journal has an open step.
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  SandboxRecord r = Get("web");
  r.phase = SandboxPhase::kBooting;
  ASSERT_TRUE(store_->UpdateObserved(r).ok());
  ASSERT_TRUE(store_->BeginOperation("web", "boot_vm", "", ProcessIdentity{999999, 1}).ok());

  Engine restarted = MakeEngine(&rt);
  ASSERT_TRUE(restarted.Refresh().ok());
  EXPECT_TRUE(store_->UnfinishedOperations()->empty());
  Plan p = PlanFor({MakeSpec("web")});
  ASSERT_EQ(p.Summary().restart, 1);
  ASSERT_TRUE(restarted.Apply(p).ok());
  EXPECT_EQ(rt.running(), std::set<std::string>{"web"});
  // The old VM was stopped before the new one booted.
  auto calls = rt.calls();
  auto stop = std::find(calls.begin(), calls.end(), "stop web");
  auto boot = std::find(calls.rbegin(), calls.rend(), "boot web keep-disk");
  ASSERT_NE(stop, calls.end());
  ASSERT_NE(boot, calls.rend());
  EXPECT_LT(stop - calls.begin(), calls.rend() - boot - 1);
}

TEST_F(EngineTest, AnAgentThatAnsweredAtBootIsNotWaitedForAgain) {
  // A restore's IDENTITY answer is the agent's HELLO: no second wait; a
  // cold boot is waited for.
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("cold")})).ok());
  EXPECT_EQ(Count(rt.calls(), "wait_agent cold"), 1);
  rt.agent_answered_at_boot = true;
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("cold"), MakeSpec("restored")})).ok());
  EXPECT_EQ(Count(rt.calls(), "wait_agent restored"), 0);
  EXPECT_EQ(Get("restored").phase, SandboxPhase::kReady);
}

TEST_F(EngineTest, ProvisionRunsOnceAcrossRestarts) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  SandboxSpec s = MakeSpec("web");
  s.provision = {"echo hi > /tmp/x"};
  ASSERT_TRUE(e.Apply(PlanFor({s})).ok());
  EXPECT_TRUE(Get("web").provisioned);
  SandboxSpec s2 = s;
  s2.cpus = 2;
  Plan p = PlanFor({s2});
  ASSERT_EQ(p.changes[0].action, Action::kRestart);
  ASSERT_TRUE(e.Apply(p).ok());
  EXPECT_EQ(Count(rt.calls(), "exec web /bin/sh -c echo hi > /tmp/x"), 1);
  EXPECT_EQ(Count(rt.calls(), "boot web keep-disk"), 1);
}

TEST_F(EngineTest, FailingProvisionMarksSandboxFailed) {
  FakeRuntime rt;
  rt.SetExecExit("web", "/bin/sh", 3);
  Engine e = MakeEngine(&rt);
  SandboxSpec s = MakeSpec("web");
  s.provision = {"false"};
  ApplyReport rep = e.Apply(PlanFor({s}));
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.results[0].status.message().find("exited with status 3"), std::string::npos);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kFailed);
}

TEST_F(EngineTest, ReadinessTimeoutFailsWithLastOutput) {
  FakeRuntime rt;
  rt.SetExecExit("web", "probe", 1);
  Engine e = MakeEngine(&rt);
  SandboxSpec s = MakeSpec("web");
  s.readiness.command = {"probe"};
  s.readiness.timeout = std::chrono::seconds(5);
  ApplyReport rep = e.Apply(PlanFor({s}));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.results[0].status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(rep.results[0].status.message().find("within 5s"), std::string::npos);
  EXPECT_GE(Count(rt.calls(), "exec web probe"), 5);
}

TEST_F(EngineTest, ReplaceDestroysThenBootsFreshDisk) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  artifacts_.AddImage("other");
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web", "other")})).ok());
  auto calls = rt.calls();
  EXPECT_EQ(Count(calls, "destroy web"), 1);
  EXPECT_EQ(Count(calls, "boot web fresh"), 2);
  EXPECT_EQ(Get("web").image_ref, "other");
}

TEST_F(EngineTest, MissingImageIsPulledDuringApply) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  Plan p = PlanFor({MakeSpec("web", "debian-bookworm")});
  ASSERT_EQ(p.changes[0].pulls, std::vector<std::string>{"image debian-bookworm"});
  ASSERT_TRUE(e.Apply(p).ok());
  EXPECT_EQ(artifacts_.pulls(), std::vector<std::string>{"image debian-bookworm"});
}

TEST_F(EngineTest, UnpullableImageFailsTheSandboxOnly) {
  FakeRuntime rt;
  artifacts_.SetUnpullable("nope");
  Engine e = MakeEngine(&rt);
  ApplyReport rep = e.Apply(PlanFor({MakeSpec("a", "nope"), MakeSpec("b")}));
  EXPECT_FALSE(rep.results[0].status.ok());
  EXPECT_NE(rep.results[0].status.message().find("not in the catalog"), std::string::npos);
  EXPECT_TRUE(rep.results[1].status.ok());
  EXPECT_EQ(Get("a").phase, SandboxPhase::kFailed);
}

TEST_F(EngineTest, PruneDeletesVmAndRecord) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("a"), MakeSpec("b")})).ok());
  Plan p = PlanFor({MakeSpec("a")}, /*prune=*/true);
  ASSERT_EQ(p.Summary().remove, 1);
  ASSERT_TRUE(e.Apply(p).ok());
  EXPECT_EQ(rt.running(), std::set<std::string>{"a"});
  EXPECT_EQ(store_->GetSandbox("b").error().code(), StatusCode::kNotFound);
}

TEST_F(EngineTest, RefreshRecordsCrashedVmAsFailed) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  rt.Crash("web");
  ASSERT_TRUE(e.Refresh().ok());
  SandboxRecord r = Get("web");
  EXPECT_EQ(r.phase, SandboxPhase::kFailed);
  EXPECT_NE(r.last_error.find("is gone"), std::string::npos);
  Plan p = PlanFor({MakeSpec("web")});
  EXPECT_EQ(p.changes[0].action, Action::kRestart);
}

TEST_F(EngineTest, StopIsRememberedAndStartBootsAgain) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  ASSERT_TRUE(e.StopSandbox("web").ok());
  EXPECT_EQ(Get("web").phase, SandboxPhase::kStopped);
  EXPECT_FALSE(PlanFor({MakeSpec("web")}).HasChanges());
  ASSERT_TRUE(e.StartSandbox("web").ok());
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_FALSE(Get("web").stopped_by_user);
}

TEST_F(EngineTest, SandboxesBootConcurrentlyUpToTheLimit) {
  // Given 6 sandboxes and --parallel 3: the first three boots are held until
  // all three are in progress at once (a latch, no timing), so the pool must
  // run 3 together; and no boot ever overlaps 3 others.
  FakeRuntime rt;
  std::latch first_three(3);
  std::atomic<int> arrivals{0}, inside{0}, most{0};
  rt.on_boot = [&](const std::string&) {
    int now = ++inside;
    for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
    }
    if (++arrivals <= 3) first_three.arrive_and_wait();
    --inside;
  };
  Engine e = MakeEngine(&rt, /*parallel=*/3);
  std::vector<SandboxSpec> specs;
  for (int i = 0; i < 6; ++i) specs.push_back(MakeSpec("s" + std::to_string(i)));
  ASSERT_TRUE(e.Apply(PlanFor(specs)).ok());
  EXPECT_EQ(most.load(), 3);
  EXPECT_EQ(rt.boots(), 6);
}

TEST_F(EngineTest, DeleteRemovesEverything) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  EXPECT_TRUE(rt.running().empty());
  EXPECT_TRUE(store_->ListSandboxes()->empty());
  EXPECT_TRUE(e.DeleteSandbox("web").ok()) << "deleting twice is fine";
}

// --- several processes at once -----------------------------------------------

// An EventSink that lets a test wait until some message was emitted.
class SignalSink final : public EventSink {
 public:
  explicit SignalSink(std::string needle) : needle_(std::move(needle)) {}
  void StepStarted(const std::string&, const std::string&) override {}
  void StepFinished(const std::string&, const std::string&, const Status&, std::chrono::milliseconds) override {}
  void OnProgress(const Progress&) override {}
  void Message(const std::string&, const std::string& text) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!seen_ && text.find(needle_) != std::string::npos) {
      seen_ = true;
      cv_.notify_all();
    }
  }
  bool WaitSeen(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return seen_; });
  }

 private:
  std::string needle_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool seen_ = false;
};

// Two engines on one state directory, as two banger processes would have:
// their own database connections, the shared lock directory, the real clock.
class EngineConcurrencyTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store2_ = std::move(*s);
  }
  Engine Make(StateStore& store, SandboxRuntime* rt, EventSink& sink) {
    EngineOptions o;
    o.locks_dir = dir_.path() / "locks";
    return Engine(store, rt, artifacts_, *real_clock_, sink, o);
  }
  // Holds the first boot of the test until Release().
  void HoldFirstBoot(FakeRuntime& rt) {
    rt.on_boot = [this](const std::string&) {
      if (held_.exchange(true)) return;
      in_boot_.count_down();
      release_.wait();
    };
  }
  void Release() { release_.count_down(); }

  std::unique_ptr<StateStore> store2_;
  std::unique_ptr<Clock> real_clock_ = MakeSystemClock();
  std::atomic<bool> held_{false};
  std::latch in_boot_{1};
  std::latch release_{1};
};

TEST_F(EngineConcurrencyTest, TwoAppliesOfOneSpecAtOnceBootOneVm) {
  // Given two applies that both planned "create web"; when they run at once,
  // then one boots the VM, the other waits for it and finds web up to date.
  FakeRuntime rt;
  HoldFirstBoot(rt);
  Plan p1 = PlanFor({MakeSpec("web")});
  Plan p2 = PlanFor({MakeSpec("web")});
  ASSERT_EQ(p1.Summary().create, 1);
  ASSERT_EQ(p2.Summary().create, 1);
  NullEventSink quiet;
  SignalSink waiting("waiting for pid");
  Engine first = Make(*store_, &rt, quiet);
  Engine second = Make(*store2_, &rt, waiting);
  ApplyReport r1, r2;
  std::thread t1([&] { r1 = first.Apply(p1); });
  in_boot_.wait();
  std::thread t2([&] { r2 = second.Apply(p2); });
  bool second_waited = waiting.WaitSeen(std::chrono::seconds(20));
  Release();
  t1.join();
  t2.join();
  EXPECT_TRUE(second_waited) << "the second apply did not wait for the first";
  EXPECT_EQ(rt.boots(), 1);
  ASSERT_EQ(r1.results.size(), 1u);
  ASSERT_EQ(r2.results.size(), 1u);
  EXPECT_TRUE(r1.ok()) << r1.results[0].status.ToString();
  EXPECT_TRUE(r2.ok()) << r2.results[0].status.ToString();
  EXPECT_EQ(r1.results[0].action, Action::kCreate);
  EXPECT_EQ(r2.results[0].action, Action::kNoOp);
  EXPECT_NE(r2.results[0].note.find("another banger process"), std::string::npos) << r2.results[0].note;
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
}

TEST_F(EngineConcurrencyTest, ObserversLeaveASandboxBeingBootedToItsApply) {
  // Given an apply in the middle of booting web; when another process runs
  // get (Refresh), plan and reconcile, then no step is marked abandoned, no
  // second VM boots, and the apply finishes Ready.
  FakeRuntime rt;
  HoldFirstBoot(rt);
  NullEventSink quiet;
  Engine applier = Make(*store_, &rt, quiet);
  Engine other = Make(*store2_, &rt, quiet);
  Plan p = PlanFor({MakeSpec("web")});
  ApplyReport rep;
  std::thread t([&] { rep = applier.Apply(p); });
  in_boot_.wait();
  ASSERT_TRUE(other.Refresh().ok());
  auto open = store2_->UnfinishedOperations();
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u) << "the booting apply's step was abandoned by an observer";
  EXPECT_EQ((*open)[0].step, "boot_vm");
  EXPECT_EQ((*open)[0].owner, SelfProcess());
  ApplyReport rec = other.Reconcile();
  EXPECT_TRUE(rec.results.empty()) << "reconcile acted on a sandbox another process is booting";
  Release();
  t.join();
  EXPECT_TRUE(rep.ok()) << rep.results[0].status.ToString();
  EXPECT_EQ(rt.boots(), 1);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_TRUE(store_->UnfinishedOperations()->empty());
}

TEST_F(EngineConcurrencyTest, DeleteWaitsForTheApplyAndLeavesNoVm) {
  // Given an apply booting web; when delete runs meanwhile, it waits for the
  // apply, then removes the VM and the record.
  FakeRuntime rt;
  HoldFirstBoot(rt);
  NullEventSink quiet;
  SignalSink waiting("waiting for pid");
  Engine applier = Make(*store_, &rt, quiet);
  Engine deleter = Make(*store2_, &rt, waiting);
  Plan p = PlanFor({MakeSpec("web")});
  std::thread t([&] { (void)applier.Apply(p); });
  in_boot_.wait();
  Status deleted;
  std::thread d([&] { deleted = deleter.DeleteSandbox("web"); });
  EXPECT_TRUE(waiting.WaitSeen(std::chrono::seconds(20)));
  Release();
  t.join();
  d.join();
  EXPECT_TRUE(deleted.ok()) << deleted.ToString();
  EXPECT_TRUE(rt.running().empty());
  EXPECT_TRUE(store_->ListSandboxes()->empty());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "locks" / "sandbox-web.lock"))
      << "a deleted sandbox's lock file stays behind";
}

}  // namespace
}  // namespace banger

namespace banger {
namespace {

TEST(BackoffTest, DoublesFromBaseAndCaps) {
  using std::chrono::seconds;
  EXPECT_EQ(BackoffDelay(0, seconds(10), seconds(300)), seconds(0));
  EXPECT_EQ(BackoffDelay(1, seconds(10), seconds(300)), seconds(10));
  EXPECT_EQ(BackoffDelay(2, seconds(10), seconds(300)), seconds(20));
  EXPECT_EQ(BackoffDelay(4, seconds(10), seconds(300)), seconds(80));
  EXPECT_EQ(BackoffDelay(6, seconds(10), seconds(300)), seconds(300));
  EXPECT_EQ(BackoffDelay(60, seconds(10), seconds(300)), seconds(300));
}

class ReconcileTest : public EngineTest {};

TEST_F(ReconcileTest, CrashedSandboxIsRestartedKeepingItsDisk) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  rt.Crash("web");
  ApplyReport rep = e.Reconcile();
  ASSERT_EQ(rep.results.size(), 1u);
  EXPECT_TRUE(rep.ok()) << rep.results[0].status.ToString();
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Count(rt.calls(), "boot web keep-disk"), 1);
  EXPECT_EQ(store_->ListEvents("web", 100)->back().reason, "Restarted");
}

TEST_F(ReconcileTest, HealthySandboxesAreLeftAlone) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  EXPECT_TRUE(e.Reconcile().results.empty());
  EXPECT_EQ(rt.boots(), 1);
}

TEST_F(ReconcileTest, NeverPolicyAndUserStopAreHonoured) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  SandboxSpec never = MakeSpec("never");
  never.restart_policy = RestartPolicy::kNever;
  ASSERT_TRUE(e.Apply(PlanFor({never, MakeSpec("stopped")})).ok());
  ASSERT_TRUE(e.StopSandbox("stopped").ok());
  rt.Crash("never");
  EXPECT_TRUE(e.Reconcile().results.empty());
  EXPECT_EQ(Get("never").phase, SandboxPhase::kFailed);
  EXPECT_EQ(Get("stopped").phase, SandboxPhase::kStopped);
}

TEST_F(ReconcileTest, RepeatedFailuresBackOffThenGiveUp) {
  FakeRuntime rt;
  Engine e = MakeEngine(&rt);
  ASSERT_TRUE(e.Apply(PlanFor({MakeSpec("web")})).ok());
  rt.Crash("web");
  rt.FailBoots("web", 100, Internal("qemu exited with status 1"));
  // First attempt fails and schedules the next one 10s later.
  ASSERT_EQ(e.Reconcile().results.size(), 1u);
  SandboxRecord r = Get("web");
  EXPECT_EQ(r.restart_count, 1);
  EXPECT_EQ(r.next_retry_at, clock_.NowUnix() + 10);
  // Within the backoff window nothing is attempted.
  EXPECT_TRUE(e.Reconcile().results.empty());
  int boots = rt.boots();
  // Each later attempt waits twice as long; after 5 attempts reconcile gives up.
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(std::chrono::seconds(400));
    (void)e.Reconcile();
  }
  r = Get("web");
  EXPECT_EQ(r.restart_count, 5);
  EXPECT_EQ(rt.boots() - boots, 4);
  EXPECT_EQ(r.phase, SandboxPhase::kFailed);
  EXPECT_NE(r.last_error.find("gave up after 5 restart attempts"), std::string::npos) << r.last_error;
  // An explicit apply tries again from scratch.
  Plan p = PlanFor({MakeSpec("web")});
  ASSERT_EQ(p.Summary().restart, 1);
}

}  // namespace
}  // namespace banger
