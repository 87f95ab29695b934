#include "reconciler/plan.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "spec/loader.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::MakeDoc;
using testing::MakeSpec;

const char kOwner[] = "path:/specs";

SandboxRecord Applied(const SandboxSpec& spec, SandboxPhase phase = SandboxPhase::kReady,
                      const std::string& owner = kOwner) {
  SandboxRecord r;
  r.name = spec.name;
  r.id = "sb-" + spec.name;
  r.owner = owner;
  r.spec_json = CanonicalJson(spec);
  r.spec_hash = SpecHash(spec);
  r.phase = phase;
  r.pid = phase == SandboxPhase::kReady ? 100 : 0;
  return r;
}

PlanOptions Opts(bool prune = false) {
  PlanOptions o;
  o.owner = kOwner;
  o.prune = prune;
  o.default_kernel = "debian-6.1";
  o.artifact_present = [](std::string_view, const std::string&) { return true; };
  return o;
}

const Change& Only(const Plan& p) {
  EXPECT_EQ(p.changes.size(), 1u);
  return p.changes.front();
}

TEST(PlanTest, NewSpecIsCreated) {
  // Given no state, when a spec is planned, then it is created.
  Plan p = ComputePlan({MakeDoc(MakeSpec("web"))}, {}, Opts());
  EXPECT_EQ(Only(p).action, Action::kCreate);
  EXPECT_EQ(Only(p).reason, "new sandbox");
  EXPECT_TRUE(p.HasChanges());
}

TEST(PlanTest, UnchangedReadySandboxIsNoOp) {
  SandboxSpec s = MakeSpec("web");
  Plan p = ComputePlan({MakeDoc(s)}, {Applied(s)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kNoOp);
  EXPECT_FALSE(p.HasChanges());
}

TEST(PlanTest, LabelChangeIsUpdatedInPlace) {
  SandboxSpec before = MakeSpec("web");
  before.labels["tier"] = "batch";
  SandboxSpec after = before;
  after.labels["tier"] = "bulk";
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  const Change& c = Only(p);
  EXPECT_EQ(c.action, Action::kUpdate);
  ASSERT_EQ(c.diffs.size(), 1u);
  EXPECT_EQ(c.diffs[0].path, "metadata.labels.tier");
  EXPECT_EQ(c.diffs[0].old_value, "\"batch\"");
  EXPECT_EQ(c.diffs[0].new_value, "\"bulk\"");
  EXPECT_EQ(c.diffs[0].field_class, FieldClass::kInPlace);
}

TEST(PlanTest, AddingAWorkspaceToARunningSandboxIsUpdatedInPlace) {
  SandboxSpec before = MakeSpec("web");
  SandboxSpec after = before;
  after.workspace = WorkspaceSpec{.source = "/src/repo"};
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  const Change& c = Only(p);
  EXPECT_EQ(c.action, Action::kUpdate);  // shipped at the next create or `workspace sync`
  ASSERT_FALSE(c.diffs.empty());
  for (const auto& d : c.diffs) EXPECT_EQ(d.field_class, FieldClass::kInPlace) << d.path;
}

TEST(PlanTest, MemoryChangeRequiresRestart) {
  SandboxSpec before = MakeSpec("cache");
  SandboxSpec after = before;
  after.memory_bytes = 1ull << 30;
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kRestart);
  EXPECT_EQ(Only(p).reason, "memory requires restart");
}

TEST(PlanTest, CpusChangeRequiresRestart) {
  SandboxSpec before = MakeSpec("cache");
  SandboxSpec after = before;
  after.cpus = 2;
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kRestart);
}

TEST(PlanTest, ImageChangeForcesReplaceEvenWithSmallerChanges) {
  SandboxSpec before = MakeSpec("search");
  SandboxSpec after = before;
  after.image = "registry.local:5000/search:2";
  after.cpus = 4;
  after.labels["a"] = "b";
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kReplace);
  EXPECT_EQ(Only(p).reason, "image forces replacement");
  EXPECT_EQ(Only(p).diffs.size(), 3u);
}

TEST(PlanTest, KernelChangeForcesReplace) {
  SandboxSpec before = MakeSpec("k");
  SandboxSpec after = before;
  after.kernel = "other-kernel";
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kReplace);
}

TEST(PlanTest, MissingFromSpecsIsIgnoredWithoutPrune) {
  SandboxSpec s = MakeSpec("old-demo");
  Plan p = ComputePlan({}, {Applied(s)}, Opts(/*prune=*/false));
  EXPECT_TRUE(p.changes.empty());
}

TEST(PlanTest, PruneDeletesOnlySandboxesOfTheSameSet) {
  SandboxSpec mine = MakeSpec("old-demo");
  SandboxSpec theirs = MakeSpec("other-team");
  Plan p = ComputePlan({}, {Applied(mine), Applied(theirs, SandboxPhase::kReady, "set:other")},
                       Opts(/*prune=*/true));
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].name, "old-demo");
  EXPECT_EQ(p.changes[0].action, Action::kDelete);
}

TEST(PlanTest, SandboxesOfBangerRunAreTheirOwnSetAndNeverPrunedBySpecs) {
  SandboxSpec run = MakeSpec("brave-otter");
  Plan p = ComputePlan({}, {Applied(run, SandboxPhase::kReady, "run:brave-otter")}, Opts(/*prune=*/true));
  EXPECT_TRUE(p.changes.empty());
  // A spec that names it is a conflict that says where it came from.
  Plan q = ComputePlan({MakeDoc(run)}, {Applied(run, SandboxPhase::kReady, "run:brave-otter")}, Opts());
  ASSERT_EQ(q.errors.size(), 1u);
  EXPECT_NE(q.errors[0].find("banger run"), std::string::npos) << q.errors[0];
  EXPECT_EQ(DescribeOwner("run:brave-otter"), "banger run (sandbox \"brave-otter\")");
  // `banger run --name brave-otter` again plans for its own set: no conflict.
  PlanOptions o = Opts();
  o.owner = "run:brave-otter";
  Plan r = ComputePlan({MakeDoc(run)}, {Applied(run, SandboxPhase::kReady, "run:brave-otter")}, o);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(Only(r).action, Action::kNoOp);
}

TEST(PlanTest, SpecOwnedByAnotherSetIsAConflict) {
  SandboxSpec s = MakeSpec("shared");
  Plan p = ComputePlan({MakeDoc(s)}, {Applied(s, SandboxPhase::kReady, "set:ops")}, Opts());
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].find("apply set \"ops\""), std::string::npos) << p.errors[0];
  EXPECT_NE(p.errors[0].find("specs/test.yaml:1"), std::string::npos) << p.errors[0];
}

TEST(PlanTest, FailedSandboxWithSameSpecIsRestarted) {
  SandboxSpec s = MakeSpec("web");
  SandboxRecord r = Applied(s, SandboxPhase::kFailed);
  r.last_error = "boot_vm: qemu exited";
  Plan p = ComputePlan({MakeDoc(s)}, {r}, Opts());
  EXPECT_EQ(Only(p).action, Action::kRestart);
  EXPECT_EQ(Only(p).reason, "failed: boot_vm: qemu exited");
}

TEST(PlanTest, InterruptedBootIsRestarted) {
  SandboxSpec s = MakeSpec("web");
  Plan p = ComputePlan({MakeDoc(s)}, {Applied(s, SandboxPhase::kBooting)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kRestart);
}

TEST(PlanTest, UserStoppedSandboxStaysStopped) {
  SandboxSpec s = MakeSpec("web");
  SandboxRecord r = Applied(s, SandboxPhase::kStopped);
  r.stopped_by_user = true;
  Plan p = ComputePlan({MakeDoc(s)}, {r}, Opts());
  EXPECT_EQ(Only(p).action, Action::kNoOp);
}

TEST(PlanTest, LabelChangeOnFailedSandboxAlsoRestartsIt) {
  SandboxSpec before = MakeSpec("web");
  SandboxSpec after = before;
  after.labels["x"] = "y";
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before, SandboxPhase::kFailed)}, Opts());
  EXPECT_EQ(Only(p).action, Action::kRestart);
}

TEST(PlanTest, MissingArtifactsAreListedAsPulls) {
  PlanOptions o = Opts();
  o.artifact_present = [](std::string_view kind, const std::string&) { return kind != "image"; };
  Plan p = ComputePlan({MakeDoc(MakeSpec("web", "debian-bookworm"))}, {}, o);
  EXPECT_EQ(Only(p).pulls, std::vector<std::string>{"image debian-bookworm"});
  o.artifact_present = [](std::string_view, const std::string&) { return false; };
  p = ComputePlan({MakeDoc(MakeSpec("web", "debian-bookworm"))}, {}, o);
  EXPECT_EQ(Only(p).pulls, (std::vector<std::string>{"image debian-bookworm", "kernel debian-6.1"}));
}

TEST(PlanTest, StartIsShownAndAnImpossibleSnapshotStartIsAnErrorAtItsLine) {
  LoadResult loaded = ParseSpecText(R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: snap
spec:
  image: busybox
  start: snapshot
---
apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: busybox
)", "specs/two.yaml");
  ASSERT_FALSE(loaded.diagnostics.HasErrors()) << loaded.diagnostics.ToString();
  PlanOptions o = Opts();
  o.start_for = [](const SandboxSpec& s) -> Result<std::string> {
    if (s.start == StartMode::kSnapshot) return FailedPrecondition("the provider has no templates");
    return std::string("restore from template 0123456789ab");
  };
  Plan p = ComputePlan(loaded.specs, {}, o);
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0], "specs/two.yaml:7: sandbox \"snap\": spec.start: the provider has no templates");
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_NE(RenderPlanText(Plan{.changes = p.changes}, false).find("      start: restore from template 0123456789ab\n"),
            std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(RenderPlanJson(p))["changes"][0]["start"], "restore from template 0123456789ab");
}

TEST(PlanTest, ProviderIsNamedAndAMissingOneIsAnErrorAtTheHypervisorLine) {
  LoadResult loaded = ParseSpecText(R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: fc
spec:
  image: busybox
  hypervisor: firecracker
---
apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: busybox
)", "specs/two.yaml");
  ASSERT_FALSE(loaded.diagnostics.HasErrors()) << loaded.diagnostics.ToString();
  PlanOptions o = Opts();
  o.provider_for = [](HypervisorKind k) -> Result<std::string> {
    if (k == HypervisorKind::kFirecracker) return FailedPrecondition("firecracker is not available on this host");
    return std::string("qemu (auto: firecracker provider not available)");
  };
  Plan p = ComputePlan(loaded.specs, {}, o);
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0],
            "specs/two.yaml:7: sandbox \"fc\": spec.hypervisor: firecracker is not available on this host");
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].provider, "qemu (auto: firecracker provider not available)");
  EXPECT_NE(RenderPlanText(Plan{.changes = p.changes}, false)
                .find("      provider: qemu (auto: firecracker provider not available)\n"),
            std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(RenderPlanJson(p))["changes"][0]["provider"],
            "qemu (auto: firecracker provider not available)");
  // Without provider_for nothing is checked or shown (the golden plans).
  Plan unchecked = ComputePlan(loaded.specs, {}, Opts());
  EXPECT_TRUE(unchecked.errors.empty());
  EXPECT_EQ(unchecked.changes.size(), 2u);
}

struct ClassCase {
  const char* path;
  FieldClass cls;
};
void PrintTo(const ClassCase& c, std::ostream* os) { *os << c.path; }
class FieldClassTest : public ::testing::TestWithParam<ClassCase> {};
TEST_P(FieldClassTest, ClassifiesDocumentedFields) {
  EXPECT_EQ(ClassifyField(GetParam().path), GetParam().cls) << GetParam().path;
}
INSTANTIATE_TEST_SUITE_P(
    Fields, FieldClassTest,
    ::testing::Values(ClassCase{"metadata.labels.team", FieldClass::kInPlace},
                      ClassCase{"spec.readiness.timeout", FieldClass::kInPlace},
                      ClassCase{"spec.readiness.command", FieldClass::kInPlace},
                      ClassCase{"spec.restartPolicy", FieldClass::kInPlace},
                      ClassCase{"spec.workspace.source", FieldClass::kInPlace},
                      ClassCase{"spec.workspace.mode", FieldClass::kInPlace},
                      ClassCase{"spec.cpus", FieldClass::kRestart},
                      ClassCase{"spec.memory", FieldClass::kRestart},
                      ClassCase{"spec.network.mode", FieldClass::kRestart},
                      ClassCase{"spec.network.ports", FieldClass::kInPlace},
                      ClassCase{"spec.env.APP_ENV", FieldClass::kRestart},
                      ClassCase{"spec.files", FieldClass::kRestart},
                      ClassCase{"spec.ssh.authorizedKeys", FieldClass::kRestart},
                      ClassCase{"spec.image", FieldClass::kReplace},
                      ClassCase{"spec.kernel", FieldClass::kReplace},
                      ClassCase{"spec.disk", FieldClass::kReplace},
                      ClassCase{"spec.hypervisor", FieldClass::kReplace},
                      ClassCase{"spec.start", FieldClass::kInPlace},
                      ClassCase{"spec.provision", FieldClass::kReplace},
                      ClassCase{"spec.cpusx", FieldClass::kReplace},
                      ClassCase{"spec.somethingNew", FieldClass::kReplace}));

// The five-action example from the product sketch, rendered as text and JSON.
Plan SketchPlan() {
  SandboxSpec api = MakeSpec("api-dev", "debian-bookworm");
  api.cpus = 2;
  api.memory_bytes = 2ull << 30;
  SandboxSpec worker = MakeSpec("worker");
  worker.labels["tier"] = "batch";
  SandboxSpec worker2 = worker;
  worker2.labels["tier"] = "bulk";
  SandboxSpec cache = MakeSpec("cache");
  cache.memory_bytes = 512ull << 20;
  SandboxSpec cache2 = cache;
  cache2.memory_bytes = 1ull << 30;
  SandboxSpec search = MakeSpec("search", "debian-bookworm");
  SandboxSpec search2 = search;
  search2.image = "registry.local:5000/org/search:2";
  SandboxSpec old = MakeSpec("old-demo");
  SandboxSpec same = MakeSpec("steady");
  PlanOptions o = Opts(/*prune=*/true);
  o.artifact_present = [](std::string_view kind, const std::string& n) {
    return !(kind == "image" && n == "debian-bookworm");
  };
  return ComputePlan({MakeDoc(api), MakeDoc(worker2), MakeDoc(cache2), MakeDoc(search2), MakeDoc(same)},
                     {Applied(worker), Applied(cache), Applied(search), Applied(old), Applied(same)}, o);
}

TEST(PlanRenderTest, TextMatchesGolden) {
  testing::ExpectGolden("plan_sketch.txt", RenderPlanText(SketchPlan(), /*color=*/false));
}

TEST(PlanRenderTest, JsonMatchesGoldenAndParses) {
  std::string j = RenderPlanJson(SketchPlan());
  testing::ExpectGolden("plan_sketch.json", j);
  auto parsed = nlohmann::json::parse(j);
  EXPECT_EQ(parsed["summary"]["create"], 1);
  EXPECT_EQ(parsed["summary"]["delete"], 1);
  EXPECT_EQ(parsed["summary"]["unchanged"], 1);
}

TEST(PlanRenderTest, NoChangesSaysSo) {
  SandboxSpec s = MakeSpec("web");
  Plan p = ComputePlan({MakeDoc(s)}, {Applied(s)}, Opts());
  EXPECT_EQ(RenderPlanText(p, false), "No changes. 1 sandbox is up to date.\n");
}

TEST(PlanRenderTest, ColorOnlyWhenAsked) {
  Plan p = SketchPlan();
  EXPECT_EQ(RenderPlanText(p, false).find('\033'), std::string::npos);
  EXPECT_NE(RenderPlanText(p, true).find('\033'), std::string::npos);
}

TEST(OwnerTest, SetNameWinsOverPaths) {
  EXPECT_EQ(OwnerFor({"/b", "/a"}, ""), "path:/a,/b");
  EXPECT_EQ(OwnerFor({"/b"}, "team"), "set:team");
}

// --- recovery under restartPolicy (watch and reconcile) --------------------

class PolicyPlanTest : public ::testing::Test {
 protected:
  Change PlanOne(const SandboxSpec& spec, const SandboxRecord& rec, int64_t now) {
    PlanOptions o;
    o.owner = "set:test";
    o.recovery = RecoveryMode::kPolicy;
    o.now = now;
    o.max_restart_attempts = 5;
    SpecDocument doc = testing::MakeDoc(spec);
    std::string json = CanonicalJson(spec);
    return PlanSandbox(&doc, json, SpecHash(spec), &rec, o, nullptr);
  }
  SandboxRecord Failed(const SandboxSpec& spec) {
    SandboxRecord r;
    r.name = spec.name;
    r.owner = "set:test";
    r.spec_json = CanonicalJson(spec);
    r.spec_hash = SpecHash(spec);
    r.phase = SandboxPhase::kFailed;
    r.last_error = "VM process 1 is gone";
    return r;
  }
};

TEST_F(PolicyPlanTest, CrashedSandboxIsRestartedAsARecovery) {
  SandboxSpec s = testing::MakeSpec("web");
  Change c = PlanOne(s, Failed(s), 1000);
  EXPECT_EQ(c.action, Action::kRestart);
  EXPECT_TRUE(c.recovery);
}

TEST_F(PolicyPlanTest, NeverPolicyLeavesItFailed) {
  SandboxSpec s = testing::MakeSpec("web");
  s.restart_policy = RestartPolicy::kNever;
  Change c = PlanOne(s, Failed(s), 1000);
  EXPECT_EQ(c.action, Action::kNoOp);
  EXPECT_NE(c.reason.find("restartPolicy is Never"), std::string::npos) << c.reason;
}

TEST_F(PolicyPlanTest, BackoffDelaysTheNextAttemptAndSaysWhen) {
  SandboxSpec s = testing::MakeSpec("web");
  SandboxRecord r = Failed(s);
  r.restart_count = 2;
  r.next_retry_at = 1020;
  Change c = PlanOne(s, r, 1000);
  EXPECT_EQ(c.action, Action::kNoOp);
  EXPECT_EQ(c.retry_at, 1020);
  EXPECT_NE(c.reason.find("in 20s"), std::string::npos) << c.reason;
  EXPECT_EQ(PlanOne(s, r, 1020).action, Action::kRestart);
}

TEST_F(PolicyPlanTest, ExhaustedBudgetGivesUpButASpecChangeTriesAgain) {
  SandboxSpec s = testing::MakeSpec("web");
  SandboxRecord r = Failed(s);
  r.restart_count = 5;
  Change c = PlanOne(s, r, 1000);
  EXPECT_EQ(c.action, Action::kNoOp);
  EXPECT_NE(c.reason.find("gave up"), std::string::npos) << c.reason;
  SandboxSpec changed = s;
  changed.cpus = 2;
  Change again = PlanOne(changed, r, 1000);
  EXPECT_EQ(again.action, Action::kRestart);
  EXPECT_FALSE(again.recovery) << "new intent starts a fresh budget";
}

TEST_F(PolicyPlanTest, ApplyModeIgnoresPolicyAndBackoff) {
  SandboxSpec s = testing::MakeSpec("web");
  s.restart_policy = RestartPolicy::kNever;
  SandboxRecord r = Failed(s);
  r.restart_count = 5;
  r.next_retry_at = 5000;
  PlanOptions o;
  o.owner = "set:test";
  Plan p = ComputePlan({testing::MakeDoc(s)}, {r}, o);
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].action, Action::kRestart);
  EXPECT_FALSE(p.changes[0].recovery);
}

}  // namespace
}  // namespace banger
