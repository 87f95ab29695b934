// spec.volumes in the plan and the engine (docs/volumes.md): created once
// before the first boot, attached on every boot, kept across restart,
// replace and delete, grown on a restart, never shrunk, removed only on
// request.
#include <gtest/gtest.h>

#include <algorithm>

#include "reconciler/engine.h"
#include "spec/loader.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::FakeVolumeFiles;
using testing::MakeDoc;
using testing::MakeSpec;
using testing::TempDir;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

SandboxSpec WithVolumes(SandboxSpec s, std::vector<VolumeSpec> volumes) {
  s.volumes = std::move(volumes);
  NormalizeSpec(s);
  return s;
}

VolumeSpec Vol(const std::string& name, const std::string& mount, uint64_t size,
               VolumeSeed seed = VolumeSeed::kEmpty) {
  return VolumeSpec{name, mount, size, seed};
}

// --- plan (pure) -------------------------------------------------------------

SandboxRecord Applied(const SandboxSpec& spec) {
  SandboxRecord r;
  r.name = spec.name;
  r.id = "sb-" + spec.name;
  r.owner = "set:test";
  r.spec_json = CanonicalJson(spec);
  r.spec_hash = SpecHash(spec);
  r.phase = SandboxPhase::kReady;
  r.pid = 100;
  return r;
}

PlanOptions Opts(std::map<std::pair<std::string, std::string>, uint64_t> existing = {}) {
  PlanOptions o;
  o.owner = "set:test";
  o.default_kernel = "debian-6.1";
  o.artifact_present = [](std::string_view, const std::string&) { return true; };
  o.volume_size = [existing](const std::string& sb, const std::string& v) -> std::optional<uint64_t> {
    auto it = existing.find({sb, v});
    if (it == existing.end()) return std::nullopt;
    return it->second;
  };
  return o;
}

TEST(VolumePlanTest, CreateShowsEachVolumeItCreates) {
  SandboxSpec s = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB), Vol("home", "/root", 256 * kMiB,
                                                                                  VolumeSeed::kImage)});
  Plan p = ComputePlan({MakeDoc(s)}, {}, Opts());
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].action, Action::kCreate);
  EXPECT_EQ(p.changes[0].volume_notes,
            (std::vector<std::string>{"volume data: create 1GiB (empty)",
                                      "volume home: create 256MiB (seeded from image at /root)"}));
}

TEST(VolumePlanTest, AVolumeKeptFromADeletedSandboxIsNotCreatedAgain) {
  SandboxSpec s = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  Plan p = ComputePlan({MakeDoc(s)}, {}, Opts({{{"web", "data"}, kGiB}}));
  EXPECT_TRUE(p.changes[0].volume_notes.empty());
}

TEST(VolumePlanTest, AddingAVolumeIsARestartThatCreatesIt) {
  SandboxSpec before = MakeSpec("web");
  SandboxSpec after = WithVolumes(before, {Vol("data", "/data", kGiB)});
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts());
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].action, Action::kRestart);
  EXPECT_EQ(p.changes[0].reason, "volumes.data.mountPath requires restart");
  EXPECT_EQ(p.changes[0].volume_notes, std::vector<std::string>{"volume data: create 1GiB (empty)"});
}

TEST(VolumePlanTest, GrowingIsARestartWithAGrowNote) {
  SandboxSpec before = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  SandboxSpec after = WithVolumes(MakeSpec("web"), {Vol("data", "/data", 2 * kGiB)});
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts({{{"web", "data"}, kGiB}}));
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].action, Action::kRestart);
  EXPECT_EQ(p.changes[0].volume_notes, std::vector<std::string>{"volume data: grow 1GiB -> 2GiB"});
}

TEST(VolumePlanTest, ShrinkingIsRefusedAtPlanTime) {
  SandboxSpec before = WithVolumes(MakeSpec("web"), {Vol("data", "/data", 2 * kGiB)});
  SandboxSpec after = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts({{{"web", "data"}, 2 * kGiB}}));
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0],
            "specs/test.yaml:1: sandbox \"web\": spec.volumes: volume \"data\" is 2GiB and cannot shrink to 1GiB; "
            "keep its size, or remove it first with `banger volume rm web/data` (its data is lost)");
  // Without the recorded sizes the spec diff alone tells.
  PlanOptions o = Opts();
  o.volume_size = nullptr;
  EXPECT_EQ(ComputePlan({MakeDoc(after)}, {Applied(before)}, o).errors.size(), 1u);
}

TEST(VolumePlanTest, SeedFromOnlyMattersAtCreation) {
  SandboxSpec before = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  SandboxSpec after = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB, VolumeSeed::kImage)});
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts({{{"web", "data"}, kGiB}}));
  ASSERT_EQ(p.changes.size(), 1u);
  EXPECT_EQ(p.changes[0].action, Action::kUpdate);
  EXPECT_TRUE(p.changes[0].volume_notes.empty());
}

TEST(VolumePlanTest, MovingAVolumeIsARestart) {
  SandboxSpec before = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  SandboxSpec after = WithVolumes(MakeSpec("web"), {Vol("data", "/srv", kGiB)});
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts({{{"web", "data"}, kGiB}}));
  EXPECT_EQ(p.changes[0].action, Action::kRestart);
  EXPECT_EQ(ClassifyField("spec.volumes.data.mountPath"), FieldClass::kRestart);
  EXPECT_EQ(ClassifyField("spec.volumes.data.size"), FieldClass::kRestart);
}

TEST(VolumePlanTest, ReplaceKeepsVolumesAndSaysNothingAboutThem) {
  SandboxSpec before = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  SandboxSpec after = before;
  after.image = "debian-bookworm";
  Plan p = ComputePlan({MakeDoc(after)}, {Applied(before)}, Opts({{{"web", "data"}, kGiB}}));
  EXPECT_EQ(p.changes[0].action, Action::kReplace);
  EXPECT_TRUE(p.changes[0].volume_notes.empty());
}

TEST(VolumePlanTest, TextAndJsonRenderingMatchGolden) {
  SandboxSpec fresh = WithVolumes(MakeSpec("api"), {Vol("data", "/data", kGiB),
                                                    Vol("home", "/root", 256 * kMiB, VolumeSeed::kImage)});
  SandboxSpec before = WithVolumes(MakeSpec("db"), {Vol("pg", "/var/lib/postgresql", kGiB)});
  SandboxSpec after = WithVolumes(MakeSpec("db"), {Vol("pg", "/var/lib/postgresql", 4 * kGiB)});
  Plan p = ComputePlan({MakeDoc(fresh), MakeDoc(after)}, {Applied(before)}, Opts({{{"db", "pg"}, kGiB}}));
  testing::ExpectGolden("plan_volumes.txt", RenderPlanText(p, /*color=*/false));
  testing::ExpectGolden("plan_volumes.json", RenderPlanJson(p));
}

// --- engine (FakeRuntime, FakeVolumeFiles, real SQLite) -------------------------

class VolumeEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    artifacts_.AddImage("busybox");
    artifacts_.AddImage("alpine");
    artifacts_.AddKernel("default-kernel");
  }

  Engine MakeEngine(VolumeFiles* volumes) {
    EngineOptions o;
    o.locks_dir = dir_.path() / "locks";
    o.volumes = volumes;
    return Engine(*store_, &rt_, artifacts_, clock_, sink_, o);
  }

  ApplyReport Apply(Engine& e, const SandboxSpec& spec) {
    auto observed = store_->ListSandboxes();
    EXPECT_TRUE(observed.ok());
    PlanOptions o;
    o.owner = "set:test";
    o.default_kernel = artifacts_.DefaultKernel();
    Plan plan = ComputePlan({MakeDoc(spec)}, *observed, o);
    EXPECT_TRUE(plan.errors.empty()) << plan.errors[0];
    return e.Apply(plan);
  }

  static std::string Describe(const ApplyReport& r) {
    std::string out;
    for (const auto& x : r.results) out += x.name + ": " + x.status.ToString() + "\n";
    return out;
  }

  int Creates() const {
    auto calls = files_.calls();
    return static_cast<int>(std::count_if(calls.begin(), calls.end(),
                                          [](const std::string& c) { return c.rfind("create ", 0) == 0; }));
  }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
  FakeArtifacts artifacts_;
  FakeClock clock_;
  NullEventSink sink_;
  FakeRuntime rt_;
  FakeVolumeFiles files_;
};

TEST_F(VolumeEngineTest, CreatedOnceBeforeTheFirstBootAndAttachedOnEveryBoot) {
  Engine e = MakeEngine(&files_);
  SandboxSpec spec = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB),
                                                   Vol("home", "/root", 64 * kMiB, VolumeSeed::kImage)});
  ApplyReport r = Apply(e, spec);
  ASSERT_TRUE(r.ok()) << Describe(r);
  EXPECT_EQ(Creates(), 2);
  auto data = store_->GetVolume("web", "data");
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(data->path, "/fake/volumes/web/data.ext4");
  EXPECT_EQ(data->size_bytes, kGiB);
  EXPECT_EQ(data->seeded_from, "empty");
  auto home = store_->GetVolume("web", "home");
  EXPECT_EQ(home->seeded_from, "image");
  EXPECT_EQ(home->seed_image, "busybox");
  EXPECT_EQ(files_.file(home->path)->seeded_from, "/fake/images/busybox/rootfs.ext4");
  EXPECT_EQ(files_.file(data->path)->seeded_from, "");
  EXPECT_EQ(rt_.boot_volumes("web"),
            (std::vector<VolumeAttachment>{{"data", "/fake/volumes/web/data.ext4", "/data", "bvol0"},
                                           {"home", "/fake/volumes/web/home.ext4", "/root", "bvol1"}}));

  // A restart (start after stop) attaches the same volumes and creates nothing.
  ASSERT_TRUE(e.StopSandbox("web").ok());
  ASSERT_TRUE(e.StartSandbox("web").ok());
  EXPECT_EQ(Creates(), 2);
  EXPECT_EQ(rt_.boot_volumes("web").size(), 2u);
}

TEST_F(VolumeEngineTest, ReplaceKeepsTheVolumeAndAttachesItToTheNewVm) {
  Engine e = MakeEngine(&files_);
  SandboxSpec spec = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  ASSERT_TRUE(Apply(e, spec).ok());
  SandboxSpec replaced = spec;
  replaced.image = "alpine";
  ApplyReport r = Apply(e, replaced);
  ASSERT_TRUE(r.ok()) << Describe(r);
  ASSERT_EQ(r.results[0].action, Action::kReplace);
  EXPECT_EQ(Creates(), 1) << "the volume is not rebuilt";
  EXPECT_EQ(files_.file("/fake/volumes/web/data.ext4")->generation, 1);
  EXPECT_EQ(rt_.boot_volumes("web").size(), 1u);
  EXPECT_EQ(rt_.boot_volumes("web")[0].path, "/fake/volumes/web/data.ext4");
}

TEST_F(VolumeEngineTest, DeleteKeepsVolumesAndARecreatedSandboxGetsThemBack) {
  Engine e = MakeEngine(&files_);
  SandboxSpec spec = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  ASSERT_TRUE(Apply(e, spec).ok());
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  EXPECT_TRUE(store_->GetVolume("web", "data").ok());
  EXPECT_TRUE(files_.file("/fake/volumes/web/data.ext4").has_value());
  ASSERT_TRUE(Apply(e, spec).ok());
  EXPECT_EQ(Creates(), 1);
  EXPECT_EQ(rt_.boot_volumes("web")[0].path, "/fake/volumes/web/data.ext4");
}

TEST_F(VolumeEngineTest, DeleteVolumesRemovesFilesAndRows) {
  Engine e = MakeEngine(&files_);
  ASSERT_TRUE(Apply(e, WithVolumes(MakeSpec("web"), {Vol("a", "/a", kGiB), Vol("b", "/b", kGiB)})).ok());
  // While the sandbox runs with them, they stay.
  EXPECT_EQ(e.DeleteVolumes("web").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.RemoveVolume("web", "a").code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(files_.file("/fake/volumes/web/a.ext4").has_value());
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  ASSERT_TRUE(e.DeleteVolumes("web").ok());
  EXPECT_TRUE(store_->ListVolumes("web")->empty());
  EXPECT_FALSE(files_.file("/fake/volumes/web/a.ext4").has_value());
  EXPECT_FALSE(files_.file("/fake/volumes/web/b.ext4").has_value());
  EXPECT_EQ(e.RemoveVolume("web", "a").code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(e.LockPathOf("web"))) << "no lock file is left for a sandbox that is gone";
}

TEST_F(VolumeEngineTest, RemoveVolumeOfAStoppedSandboxIsRecreatedEmptyOnItsNextBoot) {
  Engine e = MakeEngine(&files_);
  SandboxSpec spec = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  ASSERT_TRUE(Apply(e, spec).ok());
  ASSERT_TRUE(e.StopSandbox("web").ok());
  ASSERT_TRUE(e.RemoveVolume("web", "data").ok());
  EXPECT_FALSE(store_->GetVolume("web", "data").ok());
  ASSERT_TRUE(e.StartSandbox("web").ok());
  EXPECT_EQ(Creates(), 2);
  EXPECT_EQ(files_.file("/fake/volumes/web/data.ext4")->generation, 1);
}

TEST_F(VolumeEngineTest, GrowingGrowsTheFileBeforeTheRestartBoot) {
  Engine e = MakeEngine(&files_);
  ASSERT_TRUE(Apply(e, WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)})).ok());
  ApplyReport r = Apply(e, WithVolumes(MakeSpec("web"), {Vol("data", "/data", 3 * kGiB)}));
  ASSERT_TRUE(r.ok()) << Describe(r);
  EXPECT_EQ(r.results[0].action, Action::kRestart);
  EXPECT_EQ(store_->GetVolume("web", "data")->size_bytes, 3 * kGiB);
  EXPECT_EQ(files_.file("/fake/volumes/web/data.ext4")->size, 3 * kGiB);
  auto calls = files_.calls();
  EXPECT_NE(std::find(calls.begin(), calls.end(), "grow /fake/volumes/web/data.ext4 " + std::to_string(3 * kGiB)),
            calls.end());
}

TEST_F(VolumeEngineTest, AFailedCreationRecordsNothingAndTheNextApplyConverges) {
  Engine e = MakeEngine(&files_);
  SandboxSpec spec = WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)});
  files_.FailCreates(1, Internal("mkfs.ext4 exited with status 1"));
  ApplyReport r = Apply(e, spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.results[0].status.message().find("volume data"), std::string::npos) << Describe(r);
  EXPECT_FALSE(store_->GetVolume("web", "data").ok());
  EXPECT_EQ(rt_.boots(), 0) << "never boots without its volumes";
  EXPECT_EQ(store_->GetSandbox("web")->phase, SandboxPhase::kFailed);
  r = Apply(e, spec);
  ASSERT_TRUE(r.ok()) << Describe(r);
  EXPECT_TRUE(store_->GetVolume("web", "data").ok());
  EXPECT_EQ(rt_.boots(), 1);
}

TEST_F(VolumeEngineTest, ALargerVolumeOnDiskThanTheSpecStopsTheBoot) {
  Engine e = MakeEngine(&files_);
  ASSERT_TRUE(Apply(e, WithVolumes(MakeSpec("web"), {Vol("data", "/data", 2 * kGiB)})).ok());
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  auto observed = store_->ListSandboxes();
  PlanOptions o;
  o.owner = "set:test";
  Plan plan = ComputePlan({MakeDoc(WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)}))}, *observed, o);
  ApplyReport r = e.Apply(plan);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.results[0].status.message().find("cannot shrink"), std::string::npos) << Describe(r);
  EXPECT_EQ(store_->GetVolume("web", "data")->size_bytes, 2 * kGiB);
}

TEST_F(VolumeEngineTest, WithoutVolumeSupportASpecWithVolumesFailsClearly) {
  Engine e = MakeEngine(nullptr);
  ApplyReport r = Apply(e, WithVolumes(MakeSpec("web"), {Vol("data", "/data", kGiB)}));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.results[0].status.message().find("no volume support"), std::string::npos) << Describe(r);
  EXPECT_EQ(rt_.boots(), 0);
}

}  // namespace
}  // namespace banger
