#include "sources/directory_source.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "base/files.h"
#include "reconciler/plan.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr char kWeb[] = R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: busybox
)";

void Write(const fs::path& p, const std::string& text) {
  ASSERT_TRUE(MakeDirs(p.parent_path()).ok());
  ASSERT_TRUE(WriteFileAtomic(p, text).ok());
}

std::string Revision(DirectorySource& source) {
  Result<SourceSnapshot> snap = source.Fetch();
  EXPECT_TRUE(snap.ok()) << snap.status().ToString();
  return snap.ok() ? snap->revision : "";
}

// Counts on_change calls and lets a test wait for one with a deadline.
class ChangeCounter {
 public:
  std::function<void()> Callback() {
    return [this] {
      std::lock_guard<std::mutex> l(mu_);
      ++count_;
      cv_.notify_all();
    };
  }
  int count() {
    std::lock_guard<std::mutex> l(mu_);
    return count_;
  }
  bool WaitForMoreThan(int n, std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return count_ > n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

TEST(DirectorySourceTest, RevisionChangesOnlyWhenAFileChanges) {
  // Given a directory of specs, when nothing changes the revision is stable;
  // when a file's content changes or a file is added, it changes.
  TempDir dir;
  Write(dir.path() / "specs/web.yaml", kWeb);
  DirectorySource source({dir.path() / "specs"});
  std::string r1 = Revision(source);
  EXPECT_TRUE(r1.starts_with("sha256:")) << r1;
  EXPECT_EQ(r1.size(), 7u + 64u);
  EXPECT_EQ(Revision(source), r1);
  // Non-spec files do not count.
  Write(dir.path() / "specs/README.md", "notes");
  EXPECT_EQ(Revision(source), r1);

  std::string changed = kWeb;
  changed.replace(changed.find("busybox"), 7, "alpine");
  Write(dir.path() / "specs/web.yaml", changed);
  std::string r2 = Revision(source);
  EXPECT_NE(r2, r1);
  EXPECT_EQ(Revision(source), r2);

  Write(dir.path() / "specs/sub/other.yml", "# empty\n");
  EXPECT_NE(Revision(source), r2);
}

TEST(DirectorySourceTest, FetchLoadsSpecsWithEmptySummary) {
  TempDir dir;
  Write(dir.path() / "web.yaml", kWeb);
  DirectorySource source({dir.path() / "web.yaml"});
  Result<SourceSnapshot> snap = source.Fetch();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  ASSERT_EQ(snap->specs.specs.size(), 1u);
  EXPECT_EQ(snap->specs.specs[0].spec.name, "web");
  EXPECT_TRUE(snap->summary.empty());
  EXPECT_FALSE(snap->specs.diagnostics.HasErrors()) << snap->specs.diagnostics.ToString();
}

TEST(DirectorySourceTest, KeyEqualsTheApplySetOwner) {
  // Given relative and unsorted paths, Key() is what `banger apply -f` uses.
  TempDir dir;
  Write(dir.path() / "b/web.yaml", kWeb);
  Write(dir.path() / "a.yaml", kWeb);
  fs::path cwd = fs::current_path();
  fs::current_path(dir.path());
  DirectorySource source({"b", "./a.yaml"});
  std::string key = source.Key();
  fs::current_path(cwd);
  fs::path root = fs::weakly_canonical(dir.path());
  EXPECT_EQ(key, OwnerFor({(root / "b").string(), (root / "a.yaml").string()}, ""));
  EXPECT_EQ(key, "path:" + (root / "a.yaml").string() + "," + (root / "b").string());
  EXPECT_EQ(source.Ref(), "");
}

TEST(DirectorySourceTest, BadFileIsADiagnosticNotAnError) {
  TempDir dir;
  Write(dir.path() / "bad.yaml", "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: web\nspec:\n  cpus: 0\n");
  DirectorySource source({dir.path()});
  Result<SourceSnapshot> snap = source.Fetch();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_TRUE(snap->specs.diagnostics.HasErrors());
  EXPECT_TRUE(snap->specs.specs.empty());
  std::string text = snap->specs.diagnostics.ToString();
  EXPECT_NE(text.find((dir.path() / "bad.yaml").string() + ":"), std::string::npos) << text;
}

TEST(DirectorySourceTest, MissingPathIsADiagnostic) {
  TempDir dir;
  DirectorySource source({dir.path() / "nope"});
  Result<SourceSnapshot> snap = source.Fetch();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->specs.diagnostics.HasErrors());
}

TEST(DirectorySourceTest, RenameIntoWatchedDirectoryNotifies) {
  // Given a watched directory, when an editor saves via rename, on_change runs.
  TempDir dir;
  Write(dir.path() / "specs/web.yaml", kWeb);
  DirectorySource source({dir.path() / "specs"});
  ChangeCounter changes;
  ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
  // WriteFileAtomic writes a temporary file, then renames it over the target.
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "specs/web.yaml", kWeb).ok());
  EXPECT_TRUE(changes.WaitForMoreThan(0));
  source.StopNotifications();
}

TEST(DirectorySourceTest, NewSubdirectoryIsWatched) {
  TempDir dir;
  ASSERT_TRUE(MakeDirs(dir.path() / "specs").ok());
  DirectorySource source({dir.path() / "specs"});
  ChangeCounter changes;
  ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
  ASSERT_TRUE(MakeDirs(dir.path() / "specs/team").ok());
  ASSERT_TRUE(changes.WaitForMoreThan(0));
  // The watch on the new directory is added by the notification thread
  // before it reports the creation, so a write now is seen.
  int seen = changes.count();
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "specs/team/db.yaml", kWeb).ok());
  EXPECT_TRUE(changes.WaitForMoreThan(seen));
  source.StopNotifications();
}

TEST(DirectorySourceTest, WatchedFileIsFilteredByName) {
  // Given a single followed file, writes to its siblings are ignored and a
  // rename over the file is reported.
  TempDir dir;
  Write(dir.path() / "web.yaml", kWeb);
  DirectorySource source({dir.path() / "web.yaml"});
  ChangeCounter changes;
  ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "zz-other.txt", "x").ok());
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "web.yaml", kWeb).ok());
  ASSERT_TRUE(changes.WaitForMoreThan(0));
  source.StopNotifications();
  // Events are handled in order and only web.yaml's are relevant; its rename
  // may be reported together with the temp file's events, so at least one.
  EXPECT_GE(changes.count(), 1);
}

TEST(DirectorySourceTest, DeletionsNotify) {
  // Given a followed file and a followed directory, deleting the file or the
  // whole directory is reported.
  TempDir dir;
  Write(dir.path() / "web.yaml", kWeb);
  Write(dir.path() / "specs/db.yaml", kWeb);
  DirectorySource source({dir.path() / "web.yaml", dir.path() / "specs"});
  ChangeCounter changes;
  ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
  fs::remove(dir.path() / "web.yaml");
  ASSERT_TRUE(changes.WaitForMoreThan(0));
  int seen = changes.count();
  fs::remove_all(dir.path() / "specs");
  EXPECT_TRUE(changes.WaitForMoreThan(seen));
  source.StopNotifications();
}

TEST(DirectorySourceTest, StopJoinsAndIsIdempotent) {
  TempDir dir;
  ASSERT_TRUE(MakeDirs(dir.path() / "specs").ok());
  ChangeCounter changes;
  {
    DirectorySource source({dir.path() / "specs"});
    ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
    EXPECT_FALSE(source.StartNotifications(changes.Callback()).ok());
    source.StopNotifications();
    source.StopNotifications();
    int before = changes.count();
    ASSERT_TRUE(WriteFileAtomic(dir.path() / "specs/web.yaml", kWeb).ok());
    // Stopped: nothing may call back (Stop joined the thread, so a call
    // would have to come from it).
    EXPECT_EQ(changes.count(), before);
    // Restart works, and the destructor stops it.
    ASSERT_TRUE(source.StartNotifications(changes.Callback()).ok());
  }
  SUCCEED();
}

}  // namespace
}  // namespace banger
