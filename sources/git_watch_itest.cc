// A real Watcher over a real GitSource: repositories made here with the git
// CLI, a real SQLite state store, and the fake runtime and artifacts. These
// are the checks a user of GitOps would make: a pushed commit is applied by
// the next pass, edits become the right action, a bad commit changes nothing
// and is reported with its sha and file:line:col, deleted specs are pruned
// only on request, and --ref / --path select what is followed.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <iostream>
#include <regex>
#include <thread>

#include "base/command_runner.h"
#include "sources/git_testing.h"
#include "base/files.h"
#include "base/strings.h"
#include "reconciler/engine.h"
#include "reconciler/watcher.h"
#include "sources/git_source.h"
#include "spec/loader.h"
#include "state/state_store.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeRuntime;
using testing::TempDir;

struct Yaml {
  std::string name;
  std::string image = "busybox";
  int cpus = 0;                               // 0: not written (default)
  std::map<std::string, std::string> labels;  // written under metadata
};

// A spec file; without labels, a `cpus` line appended to it is line 8, its value at column 9.
std::string SpecYaml(const Yaml& y) {
  std::string out = "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: " + y.name + "\n";
  if (!y.labels.empty()) {
    out += "  labels:\n";
    for (const auto& [k, v] : y.labels) out += "    " + k + ": " + v + "\n";
  }
  out += "spec:\n  image: " + y.image + "\n";
  if (y.cpus != 0) out += "  cpus: " + std::to_string(y.cpus) + "\n";
  out += "  network: {mode: user}\n";  // the fake runtime needs no host network
  return out;
}

class GitWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runner_ = MakePosixCommandRunner();
    remote_ = dir_.path() / "remote.git";
    work_ = dir_.path() / "work";
    Git({"init", "-q", "--bare", "-b", "main", remote_.string()});
    Git({"clone", "-q", remote_.string(), work_.string()});
    WorkGit({"symbolic-ref", "HEAD", "refs/heads/main"});

    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    artifacts_.AddImage("busybox");
    artifacts_.AddImage("alpine");
    artifacts_.AddKernel("default-kernel");
    EngineOptions eo;
    eo.locks_dir = dir_.path() / "locks";
    engine_ = std::make_unique<Engine>(*store_, &rt_, artifacts_, clock_, sink_, eo);
  }

  std::string Git(const std::vector<std::string>& args) { return testing::RunGit(*runner_, dir_.path(), args); }

  std::string WorkGit(std::vector<std::string> args) {
    args.insert(args.begin(), {"-C", work_.string()});
    return Git(args);
  }

  // Writes `files` (and deletes `removed`) in the work tree, commits, pushes
  // main and returns `git rev-parse HEAD`.
  std::string Commit(const std::map<std::string, std::string>& files, const std::string& message,
                     const std::vector<std::string>& removed = {}) {
    for (const auto& [name, text] : files) {
      fs::path p = work_ / name;
      EXPECT_TRUE(MakeDirs(p.parent_path()).ok());
      EXPECT_TRUE(WriteFileAtomic(p, text).ok());
    }
    for (const auto& name : removed) WorkGit({"rm", "-q", name});
    WorkGit({"add", "-A"});
    WorkGit({"commit", "-q", "-m", message});
    WorkGit({"push", "-q", "origin", "HEAD:refs/heads/main"});
    return WorkGit({"rev-parse", "HEAD"});
  }

  GitSourceOptions Options(const std::string& ref = "main", const std::string& path = "specs") {
    GitSourceOptions o;
    o.url = remote_.string();
    o.ref = ref;
    o.path = path;
    o.cache_dir = dir_.path() / ("cache-" + std::to_string(++caches_));
    o.ssh_dir = dir_.path() / "no-ssh";
    return o;
  }

  GitSource& Source() {
    if (!source_) source_ = std::make_unique<GitSource>(Options());
    return *source_;
  }

  // One `banger watch --once` pass over `source` (a fresh Watcher each time,
  // as each run of the CLI would make).
  PassResult Once(GitSource& source, bool prune = false) {
    WatchOptions o;
    o.prune = prune;
    Watcher w(*store_, *engine_, source, clock_, o);
    return w.RunOnce();
  }
  PassResult Once(bool prune = false) { return Once(Source(), prune); }

  SandboxRecord Get(const std::string& name) {
    auto r = store_->GetSandbox(name);
    EXPECT_TRUE(r.ok()) << name << ": " << r.error().ToString();
    return r.ok() ? *r : SandboxRecord{};
  }
  bool Exists(const std::string& name) { return store_->GetSandbox(name).ok(); }
  SandboxSpec SpecOf(const std::string& name) {
    auto s = RecordSpec(Get(name));
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    return s.ok() ? *s : SandboxSpec{};
  }
  SourceRecord Row(GitSource& source) {
    auto r = store_->GetSource(source.Key());
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? *r : SourceRecord{};
  }
  SourceRecord Row() { return Row(Source()); }
  int Count(const std::string& call) {
    auto calls = rt_.calls();
    return static_cast<int>(std::count(calls.begin(), calls.end(), call));
  }
  int Boots(const std::string& name) { return Count("boot " + name + " fresh") + Count("boot " + name + " keep-disk"); }
  int InvalidSpecsEvents() {
    auto events = store_->ListEvents("", 0);
    EXPECT_TRUE(events.ok());
    if (!events.ok()) return -1;
    return static_cast<int>(std::count_if(events->begin(), events->end(),
                                          [](const EventRecord& e) { return e.reason == "InvalidSpecs"; }));
  }
  static std::string Problems(const PassResult& r) { return Join(r.problems, "\n"); }

  TempDir dir_;
  std::unique_ptr<CommandRunner> runner_;
  fs::path remote_, work_;
  int caches_ = 0;
  std::unique_ptr<StateStore> store_;
  FakeArtifacts artifacts_;
  FakeRuntime rt_;
  FakeClock clock_;
  NullEventSink sink_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<GitSource> source_;
};

TEST_F(GitWatchTest, ACommitAddingASpecIsAppliedByTheNextPass) {
  std::string first = Commit({{"specs/db.yaml", SpecYaml({.name = "db"})}}, "add db");
  PassResult r = Once();
  ASSERT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, first);
  EXPECT_FALSE(Exists("web"));

  std::string sha = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web\n\nthe front end");
  ASSERT_EQ(sha, WorkGit({"rev-parse", "HEAD"}));
  ASSERT_EQ(sha.size(), 40u) << "a full commit id";
  r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, sha);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("web").owner, Source().Key());
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
  EXPECT_EQ(Boots("db"), 1) << "db was not touched by the commit adding web";
  SourceRecord s = Row();
  EXPECT_EQ(s.key, "git:" + remote_.string() + "#main:specs");
  EXPECT_EQ(s.applied_revision, sha);
  EXPECT_EQ(s.applied_summary, "add web");
  EXPECT_EQ(s.seen_revision, sha);
  EXPECT_EQ(s.last_result, "ok");
  EXPECT_TRUE(s.last_error.empty()) << s.last_error;

  // Nothing new pushed: nothing is done.
  int boots = rt_.boots();
  r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(rt_.boots(), boots);
  EXPECT_EQ(Row().applied_revision, sha);
}

TEST_F(GitWatchTest, EditsInCommitsAreCarriedOutAsTheRightAction) {
  Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  ASSERT_TRUE(Once().converged);
  ASSERT_EQ(Count("boot web fresh"), 1);
  int pid = Get("web").pid;

  // A label change is made in place.
  std::string label = Commit({{"specs/web.yaml", SpecYaml({.name = "web", .labels = {{"tier", "front"}}})}},
                             "label web");
  PassResult r = Once();
  ASSERT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(rt_.boots(), 1) << "a label change booted web";
  EXPECT_EQ(Count("stop web"), 0);
  EXPECT_EQ(Get("web").pid, pid);
  EXPECT_EQ(SpecOf("web").labels.at("tier"), "front");
  EXPECT_EQ(Row().applied_revision, label);

  // A cpu change restarts web and keeps its disk.
  std::string cpus = Commit(
      {{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 2, .labels = {{"tier", "front"}}})}}, "web: 2 cpus");
  r = Once();
  ASSERT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(Count("stop web"), 1);
  EXPECT_EQ(Count("boot web keep-disk"), 1);
  EXPECT_EQ(Count("destroy web"), 0);
  EXPECT_EQ(SpecOf("web").cpus, 2u);
  EXPECT_EQ(Row().applied_revision, cpus);
  EXPECT_EQ(Row().applied_summary, "web: 2 cpus");

  // An image change replaces it with a fresh disk.
  std::string image = Commit(
      {{"specs/web.yaml",
        SpecYaml({.name = "web", .image = "alpine", .cpus = 2, .labels = {{"tier", "front"}}})}},
      "web on alpine");
  r = Once();
  ASSERT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(Count("destroy web"), 1);
  EXPECT_EQ(Count("boot web fresh"), 2);
  EXPECT_EQ(Count("boot web keep-disk"), 1);
  EXPECT_EQ(SpecOf("web").image, "alpine");
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Row().applied_revision, image);
  EXPECT_EQ(Row().last_result, "ok");
}

TEST_F(GitWatchTest, ABadCommitChangesNothingAndTheNextGoodOneApplies) {
  std::string good = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})},  //
                             {"specs/db.yaml", SpecYaml({.name = "db"})}},
                            "web and db");
  ASSERT_TRUE(Once(/*prune=*/true).converged);
  const int web_pid = Get("web").pid;
  const int db_pid = Get("db").pid;
  const int boots = rt_.boots();
  const size_t calls = rt_.calls().size();

  // An invalid value: cpus 0 on line 7, column 9.
  std::string bad = Commit({{"specs/web.yaml", SpecYaml({.name = "web"}) + "  cpus: 0\n"}}, "web: 0 cpus");
  PassResult r = Once(/*prune=*/true);
  EXPECT_FALSE(r.converged);
  EXPECT_NE(Problems(r).find("specs/web.yaml:8:9"), std::string::npos) << Problems(r);
  EXPECT_EQ(Get("web").pid, web_pid) << "a bad commit touched a running sandbox";
  EXPECT_EQ(Get("db").pid, db_pid) << "a bad commit touched a running sandbox";
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady) << "a bad commit must never prune";
  EXPECT_EQ(rt_.boots(), boots);
  EXPECT_EQ(rt_.calls().size(), calls) << Join(rt_.calls(), ", ");
  SourceRecord s = Row();
  EXPECT_EQ(s.last_result, "error");
  EXPECT_NE(s.last_error.find("specs/web.yaml:8:9: error: spec.cpus"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.last_error_revision, bad);
  EXPECT_EQ(s.seen_revision, bad);
  EXPECT_EQ(s.applied_revision, good);
  EXPECT_EQ(s.applied_summary, "web and db");
  EXPECT_EQ(InvalidSpecsEvents(), 1);

  // The next pass over the same bad commit reports the same, once.
  r = Once(/*prune=*/true);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(Row().last_error_revision, bad);
  EXPECT_EQ(rt_.calls().size(), calls) << Join(rt_.calls(), ", ");
  EXPECT_EQ(InvalidSpecsEvents(), 1) << "the same bad commit was reported again as a new event";

  // Broken YAML (an unclosed flow sequence) in the next commit: the same.
  std::string broken =
      Commit({{"specs/web.yaml", "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: web\n"
                                 "spec:\n  image: [busybox\n  cpus: 2\n"}},
             "web: broken yaml");
  r = Once(/*prune=*/true);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(Get("web").pid, web_pid);
  EXPECT_EQ(Get("db").pid, db_pid);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
  EXPECT_EQ(rt_.calls().size(), calls) << Join(rt_.calls(), ", ");
  s = Row();
  EXPECT_EQ(s.last_result, "error");
  EXPECT_TRUE(std::regex_search(s.last_error, std::regex("specs/web\\.yaml:[0-9]+:[0-9]+: error: invalid YAML")))
      << s.last_error;
  EXPECT_EQ(s.last_error_revision, broken);
  EXPECT_EQ(s.applied_revision, good);

  // The fix applies and clears the error.
  std::string fixed = Commit({{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 2})}}, "web: 2 cpus");
  r = Once(/*prune=*/true);
  EXPECT_TRUE(r.converged) << Problems(r);
  s = Row();
  EXPECT_EQ(s.applied_revision, fixed);
  EXPECT_EQ(s.applied_summary, "web: 2 cpus");
  EXPECT_EQ(s.last_result, "ok");
  EXPECT_EQ(s.last_error, "");
  EXPECT_EQ(s.last_error_revision, "");
  EXPECT_EQ(SpecOf("web").cpus, 2u);
  EXPECT_NE(Get("web").pid, web_pid);
  EXPECT_EQ(Get("db").pid, db_pid) << "db did not change";
}

TEST_F(GitWatchTest, ADeletedSpecIsPrunedOnlyWithPruneAndNeverAnotherSetsSandbox) {
  SandboxRecord other;
  other.name = "other";
  other.id = "sb-other";
  other.owner = "set:other";
  other.spec_json = CanonicalJson(testing::MakeSpec("other"));
  other.spec_hash = SpecHash(testing::MakeSpec("other"));
  other.phase = SandboxPhase::kFailed;
  ASSERT_TRUE(store_->PutSandbox(other).ok());

  Commit({{"specs/web.yaml", SpecYaml({.name = "web"})},  //
          {"specs/db.yaml", SpecYaml({.name = "db"})}},
         "web and db");
  PassResult r = Once(/*prune=*/true);
  ASSERT_TRUE(r.converged) << Problems(r);
  ASSERT_EQ(Get("db").phase, SandboxPhase::kReady);

  std::string removed = Commit({}, "drop db", {"specs/db.yaml"});
  r = Once(/*prune=*/false);
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady) << "without prune a removed spec keeps its sandbox";
  EXPECT_EQ(Count("destroy db"), 0);
  EXPECT_EQ(Row().applied_revision, removed);

  r = Once(/*prune=*/true);
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_FALSE(Exists("db")) << "with prune a removed spec's sandbox is deleted";
  EXPECT_EQ(Count("destroy db"), 1);
  EXPECT_EQ(rt_.running(), std::set<std::string>{"web"});
  EXPECT_EQ(Row().applied_revision, removed);
  EXPECT_EQ(Row().last_result, "ok");

  // The sandbox of another apply set was never touched.
  ASSERT_TRUE(Exists("other"));
  EXPECT_EQ(Get("other").owner, "set:other");
  EXPECT_EQ(Count("destroy other") + Boots("other") + Count("stop other"), 0);
}

TEST_F(GitWatchTest, ATagAndASubdirectoryAreFollowed) {
  Commit({{"deploy/api.yaml", SpecYaml({.name = "api"})},
          {"specs/web.yaml", SpecYaml({.name = "web"})},
          {"deploy-other/db.yaml", SpecYaml({.name = "db"})}},
         "three specs");
  WorkGit({"tag", "-a", "v1", "-m", "release one"});
  WorkGit({"push", "-q", "origin", "v1"});
  std::string v1 = WorkGit({"rev-parse", "v1^{commit}"});
  // A later commit on main that the tag does not include.
  Commit({{"deploy/api.yaml", SpecYaml({.name = "api", .cpus = 3})},
          {"deploy/late.yaml", SpecYaml({.name = "late"})}},
         "after the tag");

  GitSource tagged(Options("v1", "./deploy/"));
  EXPECT_EQ(tagged.Key(), "git:" + remote_.string() + "#v1:deploy");
  PassResult r = Once(tagged);
  ASSERT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, v1) << "the revision is the tagged commit, not the tag object";
  EXPECT_EQ(Get("api").phase, SandboxPhase::kReady);
  EXPECT_EQ(SpecOf("api").cpus, SandboxSpec{}.cpus) << "the spec at the tag, not at main";
  EXPECT_FALSE(Exists("web")) << "specs outside --path were applied";
  EXPECT_FALSE(Exists("db")) << "a sibling directory sharing the prefix was applied";
  EXPECT_FALSE(Exists("late")) << "a spec committed after the tag was applied";
  SourceRecord s = Row(tagged);
  EXPECT_EQ(s.ref, "v1");
  EXPECT_EQ(s.applied_revision, v1);
  EXPECT_EQ(s.applied_summary, "three specs");

  // Moving the tag to main's head brings main's specs in.
  WorkGit({"tag", "-f", "-a", "v1", "-m", "release one, again"});
  WorkGit({"push", "-q", "-f", "origin", "v1"});
  std::string head = WorkGit({"rev-parse", "HEAD"});
  r = Once(tagged);
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, head);
  EXPECT_EQ(Row(tagged).applied_revision, head);
  EXPECT_EQ(SpecOf("api").cpus, 3u);
  EXPECT_TRUE(Exists("late"));
  EXPECT_FALSE(Exists("web"));
}

TEST_F(GitWatchTest, OfTwoCommitsPushedBetweenPassesOnlyTheNewestIsApplied) {
  Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  ASSERT_TRUE(Once().converged);
  Commit({{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 2})}}, "web: 2 cpus");
  std::string newest = Commit({{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 3})},  //
                               {"specs/db.yaml", SpecYaml({.name = "db"})}},
                              "web: 3 cpus, add db");
  PassResult r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, newest);
  EXPECT_EQ(SpecOf("web").cpus, 3u);
  EXPECT_EQ(Count("stop web"), 1) << "the intermediate commit was applied too";
  EXPECT_EQ(Count("boot web keep-disk"), 1);
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
  SourceRecord s = Row();
  EXPECT_EQ(s.seen_revision, newest);
  EXPECT_EQ(s.applied_revision, newest);
  EXPECT_EQ(s.applied_summary, "web: 3 cpus, add db");
}

TEST_F(GitWatchTest, ACommitWithOneBadFileAppliesNoneOfItsChanges) {
  // Given a commit that edits web validly and adds a broken db, then neither
  // change is made: a revision applies whole or not at all.
  std::string good = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  ASSERT_TRUE(Once().converged);
  const int boots = rt_.boots();
  std::string bad = Commit({{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 2})},
                            {"specs/db.yaml", SpecYaml({.name = "db"}) + "  cpus: 0\n"}},
                           "web: 2 cpus, add db");
  PassResult r = Once();
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(SpecOf("web").cpus, 1u) << "the valid half of a bad commit was applied";
  EXPECT_FALSE(Exists("db"));
  EXPECT_EQ(rt_.boots(), boots);
  SourceRecord s = Row();
  EXPECT_NE(s.last_error.find("specs/db.yaml:8:9: error: spec.cpus"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.last_error_revision, bad);
  EXPECT_EQ(s.applied_revision, good);
}

TEST_F(GitWatchTest, AForcePushedRollbackIsApplied) {
  // Given main rewound to an older commit with a force push, the watcher
  // applies that older commit (the mirror follows non-fast-forward updates).
  std::string old = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  Commit({{"specs/web.yaml", SpecYaml({.name = "web", .image = "alpine"})}}, "web on alpine");
  ASSERT_TRUE(Once().converged);
  ASSERT_EQ(SpecOf("web").image, "alpine");
  WorkGit({"reset", "-q", "--hard", old});
  WorkGit({"push", "-q", "-f", "origin", "HEAD:refs/heads/main"});
  PassResult r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  EXPECT_EQ(r.revision, old);
  EXPECT_EQ(SpecOf("web").image, "busybox");
  EXPECT_EQ(Row().applied_revision, old);
  EXPECT_EQ(Row().applied_summary, "add web");
}

TEST_F(GitWatchTest, RemovingTheLastSpecRemovesTheDirectoryAndIsReportedNotPruned) {
  // git does not keep empty directories: deleting the last spec removes
  // `specs/` from the commit. The watcher treats a missing --path as an
  // error (a typo in --path must not prune everything), so nothing is deleted.
  std::string good = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}, {"README.md", "hi"}}, "add web");
  ASSERT_TRUE(Once(/*prune=*/true).converged);
  std::string gone = Commit({}, "drop web", {"specs/web.yaml"});
  PassResult r = Once(/*prune=*/true);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Count("destroy web"), 0);
  SourceRecord s = Row();
  EXPECT_EQ(s.last_result, "error");
  EXPECT_NE(s.last_error.find("specs"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.last_error_revision, gone);
  EXPECT_EQ(s.applied_revision, good);
  std::cerr << "last_error when the directory is gone: " << s.last_error << "\n";
}

TEST_F(GitWatchTest, ARunningWatcherAppliesPushedCommitsAtItsResync) {
  // `banger watch` (no --once): one Watcher over many passes. A git source
  // sends no notifications, so pushed commits arrive with the resync.
  auto real = MakeSystemClock();
  EngineOptions eo;
  eo.locks_dir = dir_.path() / "locks";
  Engine engine(*store_, &rt_, artifacts_, *real, sink_, eo);
  std::string first = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  WatchOptions o;
  o.interval = std::chrono::milliseconds(50);
  Watcher w(*store_, engine, Source(), *real, o);
  bool clean = false;
  std::thread loop([&] { clean = w.Run(); });
  auto wait_applied = [&](const std::string& sha) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      auto row = store_->GetSource(Source().Key());
      if (row.ok() && row->applied_revision == sha) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  EXPECT_TRUE(wait_applied(first));
  std::string bad = Commit({{"specs/web.yaml", SpecYaml({.name = "web"}) + "  cpus: 0\n"}}, "web: 0 cpus");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto row = store_->GetSource(Source().Key());
    if (row.ok() && row->last_error_revision == bad) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int passes = w.passes();
  while (w.passes() < passes + 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  SourceRecord s = Row();
  EXPECT_EQ(s.last_result, "error") << "a later pass over the same bad commit cleared the error";
  EXPECT_EQ(s.last_error_revision, bad);
  EXPECT_EQ(s.applied_revision, first);
  EXPECT_EQ(InvalidSpecsEvents(), 1) << "every pass over the same bad commit added an event";
  std::string fixed = Commit({{"specs/web.yaml", SpecYaml({.name = "web", .cpus = 2})}}, "web: 2 cpus");
  EXPECT_TRUE(wait_applied(fixed));
  w.Stop();
  loop.join();
  EXPECT_TRUE(clean);
  EXPECT_EQ(SpecOf("web").cpus, 2u);
  EXPECT_EQ(Row().last_result, "ok");
  EXPECT_EQ(Row().last_error, "");
  EXPECT_EQ(Count("boot web fresh"), 1);
  EXPECT_EQ(Count("boot web keep-disk"), 1);
}

TEST_F(GitWatchTest, ACommitThatFailsToApplyIsReportedWithItsSha) {
  // Given a valid commit whose sandbox cannot be created (its image cannot be
  // pulled), the status names the sandbox, the error and the commit, and the
  // applied revision stays at the last commit that applied.
  std::string good = Commit({{"specs/web.yaml", SpecYaml({.name = "web"})}}, "add web");
  ASSERT_TRUE(Once().converged);
  artifacts_.SetUnpullable("nosuch");
  std::string failing = Commit({{"specs/db.yaml", SpecYaml({.name = "db", .image = "nosuch"})}}, "add db");
  PassResult r = Once();
  EXPECT_FALSE(r.converged);
  EXPECT_NE(Problems(r).find("sandbox db"), std::string::npos) << Problems(r);
  SourceRecord s = Row();
  EXPECT_EQ(s.last_result, "error");
  EXPECT_NE(s.last_error.find("sandbox db: "), std::string::npos) << s.last_error;
  EXPECT_NE(s.last_error.find("nosuch"), std::string::npos) << s.last_error;
  EXPECT_EQ(s.last_error_revision, failing);
  EXPECT_EQ(s.seen_revision, failing);
  EXPECT_EQ(s.applied_revision, good);
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);

  std::string fixed = Commit({{"specs/db.yaml", SpecYaml({.name = "db", .image = "alpine"})}}, "db on alpine");
  r = Once();
  EXPECT_TRUE(r.converged) << Problems(r);
  s = Row();
  EXPECT_EQ(s.applied_revision, fixed);
  EXPECT_EQ(s.last_result, "ok");
  EXPECT_EQ(s.last_error, "");
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
}

}  // namespace
}  // namespace banger
