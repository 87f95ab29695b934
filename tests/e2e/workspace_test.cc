// Workspaces and `banger cp` with real VMs (busybox under QEMU): a spec's
// workspace of a test git repository is in the guest after apply (committed
// file and uncommitted edit), guest edits come back with `workspace export`
// and apply with git on the host, and `cp` round-trips a directory with its
// modes. (Guest-side commits need git in the guest, which busybox lacks; the
// full-mode commit export is covered against the agent on the host in
// workspace/workspace_test.cc.)
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>

#include "base/files.h"
#include "sources/git_testing.h"
#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class WorkspaceE2eTest : public VmFixture {
 protected:
  std::string Git(const std::vector<std::string>& args) { return testing::RunGit(*runner_, dir_.path(), args); }
  static unsigned Mode(const fs::path& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
  }
};

TEST_F(WorkspaceE2eTest, SpecWorkspaceIsShippedAndGuestEditsExportAsAPatchGitApplies) {
  fs::path repo = dir_.path() / "specs" / "repo";
  fs::create_directories(repo);
  Git({"init", "-q", "-b", "main", repo.string()});
  Write("specs/repo/README.md", "committed line\n");
  Write("specs/repo/src/main.c", "int main(void) { return 0; }\n");
  Git({"-C", repo.string(), "add", "-A"});
  Git({"-C", repo.string(), "commit", "-q", "-m", "initial"});
  Write("specs/repo/README.md", "committed line\nuncommitted edit\n");

  SpecOptions o;
  o.extra = "  workspace:\n"
            "    source: repo\n";  // relative to the spec file
  std::string f = WriteSpec("ws", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "ws"));

  CommandOutput cat = Exec("ws", {"cat", "/root/work/README.md", "/root/work/src/main.c"});
  ASSERT_EQ(cat.exit_code, 0) << cat.stderr_data;
  EXPECT_EQ(cat.stdout_data, "committed line\nuncommitted edit\nint main(void) { return 0; }\n");
  CommandOutput marker = Exec("ws", {"cat", "/root/work/.banger-workspace.json"});
  EXPECT_NE(marker.stdout_data.find(Git({"-C", repo.string(), "rev-parse", "HEAD"})), std::string::npos)
      << marker.stdout_data;

  // Edits in the guest: a change and a new file.
  CommandOutput edit = Exec("ws", {"sh", "-c",
                                   "echo 'from the guest' >> /root/work/README.md && "
                                   "mkdir -p /root/work/docs && echo new > /root/work/docs/new.txt"});
  ASSERT_EQ(edit.exit_code, 0) << edit.stderr_data;

  fs::path patch = dir_.path() / "guest.patch";
  CommandOutput ex = Banger({"workspace", "export", "ws", "-o", patch.string()});
  ASSERT_EQ(ex.exit_code, 0) << ex.stderr_data;
  EXPECT_NE(ex.stderr_data.find("2 file(s) changed"), std::string::npos) << ex.stderr_data;
  Git({"-C", repo.string(), "apply", "--check", patch.string()});
  Git({"-C", repo.string(), "apply", patch.string()});
  EXPECT_EQ(ReadFile(repo / "README.md").value_or(""), "committed line\nuncommitted edit\nfrom the guest\n");
  EXPECT_EQ(ReadFile(repo / "docs/new.txt").value_or(""), "new\n");

  // The guest was not modified by export; sync ships the host state again.
  Write("specs/repo/synced.txt", "synced\n");
  Git({"-C", repo.string(), "add", "synced.txt"});
  CommandOutput sync = Banger({"workspace", "sync", "ws"});
  ASSERT_EQ(sync.exit_code, 0) << sync.stderr_data;
  CommandOutput synced = Exec("ws", {"cat", "/root/work/synced.txt"});
  EXPECT_EQ(synced.stdout_data, "synced\n") << synced.stderr_data;

  // A workspace change on the running sandbox is an in-place update: no restart.
  CommandOutput plan = Banger({"plan", "-f", Write("specs/ws.yaml", SpecYaml("ws", [&] {
                                                     SpecOptions p = o;
                                                     p.extra += "    includeUntracked: true\n";
                                                     return p;
                                                   }()))});
  EXPECT_NE(plan.stdout_data.find("update in place"), std::string::npos) << plan.stdout_data << plan.stderr_data;
}

TEST_F(WorkspaceE2eTest, CpRoundTripsADirectoryWithModes) {
  std::string f = WriteSpec("cp", SpecOptions{});
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "cp"));
  fs::path src = dir_.path() / "tree";
  Write("tree/bin/run.sh", "#!/bin/sh\necho ran\n");
  ::chmod((src / "bin/run.sh").c_str(), 0750);
  Write("tree/private.key", "k\n");
  ::chmod((src / "private.key").c_str(), 0600);
  fs::create_symlink("bin/run.sh", src / "run");

  CommandOutput in = Banger({"cp", src.string(), "cp:/opt/"});
  ASSERT_EQ(in.exit_code, 0) << in.stderr_data;
  CommandOutput ls = Exec("cp", {"sh", "-c", "stat -c '%a %n' /opt/tree/bin/run.sh /opt/tree/private.key; "
                                             "readlink /opt/tree/run; /opt/tree/run"});
  ASSERT_EQ(ls.exit_code, 0) << ls.stderr_data;
  EXPECT_EQ(ls.stdout_data, "750 /opt/tree/bin/run.sh\n600 /opt/tree/private.key\nbin/run.sh\nran\n");

  fs::path back = dir_.path() / "back";
  CommandOutput out = Banger({"cp", "cp:/opt/tree", back.string()});  // back does not exist: named so
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_EQ(ReadFile(back / "bin/run.sh").value_or(""), "#!/bin/sh\necho ran\n");
  EXPECT_EQ(Mode(back / "bin/run.sh"), 0750u);
  EXPECT_EQ(Mode(back / "private.key"), 0600u);
  EXPECT_EQ(fs::read_symlink(back / "run"), "bin/run.sh");
  // No staging directory is left next to the destination.
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(e.path().filename().string().rfind(".banger-cp", 0), std::string::npos) << e.path();
  }

  CommandOutput missing = Banger({"cp", "cp:/no/such", back.string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_data.find("does not exist"), std::string::npos) << missing.stderr_data;
  CommandOutput both = Banger({"cp", "cp:/a", "cp:/b"});
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.stderr_data.find("exactly one"), std::string::npos) << both.stderr_data;
}

}  // namespace
}  // namespace banger
