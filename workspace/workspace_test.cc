// Workspaces against the real agent on the host (--serve-unix) and real git
// repositories made with the git CLI: what is shipped, and that export's
// patches apply with `git apply` / `git am` on the host repository.
#include "workspace/workspace.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "providers/agent_testing.h"
#include "sources/git_testing.h"

namespace banger::workspace {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class Fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_ = std::make_unique<testing::HostAgent>(testing::HostAgentOptions{.tag = "workspace-test"});
    dir_ = agent_->dir();
    ASSERT_FALSE(dir_.empty());
    runner_ = MakePosixCommandRunner();
    conn_ = agent_->Connect();
    ASSERT_TRUE(conn_);
    repo_ = dir_ / "repo";
    fs::create_directories(repo_);
    Git({"init", "-q", "-b", "main", repo_.string()});
    Git({"-C", repo_.string(), "remote", "add", "origin", "https://example.invalid/repo.git"});
    WriteFile(repo_ / "committed.txt", "committed\n");
    WriteFile(repo_ / "edited.txt", "old\n");
    WriteFile(repo_ / "gone.txt", "gone\n");
    WriteFile(repo_ / ".gitignore", "*.log\n");
    WriteFile(repo_ / "tool.sh", "#!/bin/sh\n", 0755);
    Git({"-C", repo_.string(), "add", "-A"});
    Git({"-C", repo_.string(), "commit", "-q", "-m", "initial"});
    head_ = Git({"-C", repo_.string(), "rev-parse", "HEAD"});
    // Uncommitted state: an edit, a deletion, an untracked and an ignored file.
    WriteFile(repo_ / "edited.txt", "new\n");
    fs::remove(repo_ / "gone.txt");
    WriteFile(repo_ / "untracked.txt", "u\n");
    WriteFile(repo_ / "debug.log", "ignored\n");
    guest_ = dir_ / "guest" / "work";
    records_ = dir_ / "records";
  }
  void TearDown() override {
    conn_.reset();
    agent_.reset();  // ends the agent and removes dir_
  }
  std::string Git(const std::vector<std::string>& args) { return testing::RunGit(*runner_, dir_, args); }
  static void WriteFile(const fs::path& p, const std::string& content, unsigned mode = 0644) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
  }
  static std::string Read(const fs::path& p) {
    auto r = ReadFile(p);
    return r.ok() ? *r : "<missing>";
  }
  WorkspaceSpec Spec(WorkspaceMode mode, bool untracked = false) {
    auto ws = WorkspaceSpecForPath(repo_, mode, untracked);
    EXPECT_TRUE(ws.ok()) << ws.error().ToString();
    WorkspaceSpec s = ws.ok() ? *ws : WorkspaceSpec{};
    s.path = guest_.string();
    return s;
  }
  // `git apply --check` then `git apply` of `patch` in the host repository.
  void ApplyOnHost(const std::string& patch, const std::vector<std::string>& cmd = {"apply"}) {
    fs::path file = dir_ / "export.patch";
    ASSERT_TRUE(WriteFileAtomic(file, patch).ok());
    if (cmd[0] == "apply") Git({"-C", repo_.string(), "apply", "--check", file.string()});
    std::vector<std::string> args = {"-C", repo_.string()};
    args.insert(args.end(), cmd.begin(), cmd.end());
    args.push_back(file.string());
    Git(args);
  }

  fs::path dir_, repo_, guest_, records_;
  std::string head_;
  std::unique_ptr<testing::HostAgent> agent_;
  std::unique_ptr<CommandRunner> runner_;
  std::unique_ptr<AgentConnection> conn_;
};

TEST_F(Fixture, TrackedShipsHeadPlusUncommittedChanges) {
  auto rec = Ship(*conn_, "web", Spec(WorkspaceMode::kTracked), records_);
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  EXPECT_EQ(Read(guest_ / "committed.txt"), "committed\n");
  EXPECT_EQ(Read(guest_ / "edited.txt"), "new\n");
  EXPECT_FALSE(fs::exists(guest_ / "gone.txt"));
  EXPECT_FALSE(fs::exists(guest_ / "untracked.txt"));
  EXPECT_FALSE(fs::exists(guest_ / "debug.log"));
  EXPECT_FALSE(fs::exists(guest_ / ".git"));
  struct stat st;
  ASSERT_EQ(::stat((guest_ / "tool.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_EQ(rec->head, head_);
  EXPECT_EQ(rec->origin, "https://example.invalid/repo.git");
  auto marker = nlohmann::json::parse(Read(guest_ / kGuestMarker));
  EXPECT_EQ(marker["head"], head_);
  EXPECT_EQ(marker["origin"], "https://example.invalid/repo.git");
  auto loaded = LoadShipRecord(records_, "web");
  ASSERT_TRUE(loaded.ok()) << loaded.error().ToString();
  EXPECT_EQ(loaded->baseline, rec->baseline);
  // The baseline is kept alive by a ref in the host repository.
  EXPECT_EQ(Git({"-C", repo_.string(), "rev-parse", "refs/banger/workspaces/web"}), rec->baseline);

  auto with_untracked = Ship(*conn_, "web", Spec(WorkspaceMode::kTracked, true), records_);
  ASSERT_TRUE(with_untracked.ok()) << with_untracked.error().ToString();
  EXPECT_EQ(Read(guest_ / "untracked.txt"), "u\n");
  EXPECT_FALSE(fs::exists(guest_ / "debug.log"));
}

TEST_F(Fixture, ExportOfGuestEditsAppliesOnTheHost) {
  auto rec = Ship(*conn_, "web", Spec(WorkspaceMode::kTracked), records_);
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  // "Guest" changes: an edit, a new file, a deletion, a mode change, an
  // ignored build artifact, and a binary file.
  WriteFile(guest_ / "committed.txt", "changed in the guest\n");
  WriteFile(guest_ / "src/new.c", "int main() { return 0; }\n");
  fs::remove(guest_ / "edited.txt");
  ::chmod((guest_ / "tool.sh").c_str(), 0644);
  WriteFile(guest_ / "build.log", "noise\n");
  WriteFile(guest_ / "blob.bin", std::string("\0\1\2\3binary", 10));

  auto exported = Export(*conn_, *rec, {});
  ASSERT_TRUE(exported.ok()) << exported.error().ToString();
  EXPECT_FALSE(exported->mbox);
  EXPECT_EQ(exported->files_changed, 5u) << exported->patch;
  EXPECT_EQ(exported->patch.find(kGuestMarker), std::string::npos);
  EXPECT_EQ(exported->patch.find("build.log"), std::string::npos);
  ASSERT_EQ(exported->warnings.size(), 1u);
  // The guest was only read.
  EXPECT_EQ(Read(guest_ / "src/new.c"), "int main() { return 0; }\n");

  // The host still has its uncommitted edit (what was shipped): the patch applies there.
  ApplyOnHost(exported->patch);
  EXPECT_EQ(Read(repo_ / "committed.txt"), "changed in the guest\n");
  EXPECT_EQ(Read(repo_ / "src/new.c"), "int main() { return 0; }\n");
  EXPECT_FALSE(fs::exists(repo_ / "edited.txt"));
  EXPECT_EQ(Read(repo_ / "blob.bin"), std::string("\0\1\2\3binary", 10));
  struct stat st;
  ASSERT_EQ(::stat((repo_ / "tool.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  // Shipped again (the applied new files are untracked on the host, so with
  // includeUntracked): guest and baseline agree, the patch is empty.
  auto again = Ship(*conn_, "web", Spec(WorkspaceMode::kTracked, true), records_);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  auto none = Export(*conn_, *again, {});
  ASSERT_TRUE(none.ok()) << none.error().ToString();
  EXPECT_EQ(none->files_changed, 0u) << none->patch;
  EXPECT_TRUE(none->patch.empty());
}

TEST_F(Fixture, ExportAgainstABaseCommit) {
  auto rec = Ship(*conn_, "web", Spec(WorkspaceMode::kTracked), records_);
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  auto exported = Export(*conn_, *rec, {.base = head_});
  ASSERT_TRUE(exported.ok()) << exported.error().ToString();
  // Against HEAD, the shipped uncommitted changes are the patch.
  EXPECT_NE(exported->patch.find("edited.txt"), std::string::npos);
  EXPECT_NE(exported->patch.find("gone.txt"), std::string::npos);
  auto bad = Export(*conn_, *rec, {.base = "no-such-commit"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("--base no-such-commit"), std::string::npos);
}

TEST_F(Fixture, FullModeShipsHistoryAndGuestCommitsComeBackForGitAm) {
  // A clean host repository, as for committing work.
  Git({"-C", repo_.string(), "checkout", "-q", "--", "edited.txt", "gone.txt"});
  auto rec = Ship(*conn_, "web", Spec(WorkspaceMode::kFull), records_);
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  ASSERT_TRUE(fs::is_directory(guest_ / ".git"));
  EXPECT_EQ(Git({"-C", guest_.string(), "rev-parse", "HEAD"}), head_);
  EXPECT_EQ(Git({"-C", guest_.string(), "log", "--format=%s"}), "initial");
  // Two commits in the "guest" (git runs there as it would in a guest that has it).
  WriteFile(guest_ / "feature.txt", "feature\n");
  Git({"-C", guest_.string(), "add", "feature.txt"});
  Git({"-C", guest_.string(), "commit", "-q", "-m", "add feature"});
  WriteFile(guest_ / "committed.txt", "committed\nmore\n");
  Git({"-C", guest_.string(), "commit", "-q", "-am", "extend committed"});
  WriteFile(guest_ / "wip.txt", "not committed\n");

  auto exported = Export(*conn_, *rec, {});
  ASSERT_TRUE(exported.ok()) << exported.error().ToString();
  EXPECT_TRUE(exported->mbox);
  EXPECT_EQ(exported->commits, 2u);
  ASSERT_EQ(exported->warnings.size(), 1u);
  EXPECT_NE(exported->warnings[0].find("uncommitted"), std::string::npos);
  ApplyOnHost(exported->patch, {"am", "-q"});
  EXPECT_EQ(Git({"-C", repo_.string(), "log", "--format=%s", "-2"}), "extend committed\nadd feature");
  EXPECT_EQ(Read(repo_ / "feature.txt"), "feature\n");
  EXPECT_EQ(Read(repo_ / "committed.txt"), "committed\nmore\n");
}

TEST_F(Fixture, NotAGitRepositoryIsAClearError) {
  fs::create_directories(dir_ / "plain");
  auto ws = WorkspaceSpecForPath(dir_ / "plain");
  // dir_ is below $TMPDIR, which is not in a repository.
  ASSERT_FALSE(ws.ok());
  EXPECT_NE(ws.error().message().find("not inside a git repository"), std::string::npos) << ws.error().ToString();
  auto missing = LoadShipRecord(records_, "nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace banger::workspace
