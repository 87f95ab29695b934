// `banger run` with real VMs: one command from nothing to a command's exit
// code, and --rm leaving nothing behind, also when interrupted.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "sources/git_testing.h"
#include "tests/e2e/vm_fixture.h"

namespace banger::e2e {
namespace {

class RunTest : public VmFixture {
 protected:
  // Everything a sandbox leaves on the host is gone: record, QEMU process,
  // disk and runtime files, sockets.
  void ExpectNothingLeftOf(const std::string& name) {
    EXPECT_TRUE(GetItem(name).is_null()) << name << " is still recorded: " << GetItem(name).dump();
    EXPECT_TRUE(Qemus().empty()) << "a QEMU process still names the state dir";
    std::error_code ec;
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(fs::path(state_) / "sandboxes", ec)) left.push_back(e.path().string());
    EXPECT_TRUE(left.empty()) << "left in sandboxes/: " << left.front();
    for (auto it = fs::recursive_directory_iterator(state_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      EXPECT_FALSE(it->is_socket(ec)) << "socket left: " << it->path();
      // Runtime directories are named after the sandbox id, which is gone
      // with the record; the one of this run must not survive either.
      EXPECT_EQ(it->path().filename().string().find(name), std::string::npos) << "left: " << it->path();
    }
  }
};

TEST_F(RunTest, RmRunsTheCommandPassesItsExitCodeAndLeavesNothing) {
  guard_.Track("exit-42");
  CommandOutput out = Banger({"run", "--rm", "--name", "exit-42", "--memory", "256MiB", "--", "sh", "-c",
                              "echo out; echo err >&2; exit 42"});
  EXPECT_EQ(out.exit_code, 42) << out.stdout_data << out.stderr_data << "\nconsole:\n" << Logs("exit-42");
  EXPECT_EQ(out.stdout_data, "out\n") << "stdout is the command's alone";
  EXPECT_NE(out.stderr_data.find("err\n"), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("exit-42: deleted"), std::string::npos) << out.stderr_data;
  ExpectNothingLeftOf("exit-42");
}

TEST_F(RunTest, RmWithARepositorySeesItsCommittedFileAndUncommittedEditAndLeavesNothing) {
  fs::path repo = dir_.path() / "repo";
  fs::create_directories(repo);
  auto git = [&](const std::vector<std::string>& args) { return testing::RunGit(*runner_, dir_.path(), args); };
  git({"init", "-q", "-b", "main", repo.string()});
  Write("repo/committed.txt", "from a commit\n");
  Write("repo/edited.txt", "before\n");
  git({"-C", repo.string(), "add", "-A"});
  git({"-C", repo.string(), "commit", "-q", "-m", "initial"});
  Write("repo/edited.txt", "after an uncommitted edit\n");

  guard_.Track("ws-run");
  // The command starts in the workspace (/root/work), so relative paths work.
  CommandOutput out = Banger({"run", "--rm", "--name", "ws-run", "--memory", "256MiB", repo.string(), "--", "cat",
                              "committed.txt", "edited.txt"});
  EXPECT_EQ(out.exit_code, 0) << out.stdout_data << out.stderr_data << "\nconsole:\n" << Logs("ws-run");
  EXPECT_EQ(out.stdout_data, "from a commit\nafter an uncommitted edit\n");
  ExpectNothingLeftOf("ws-run");
}

TEST_F(RunTest, DetachedSandboxTakesExecAndSurvivesAPruneOfASpecDirectory) {
  guard_.Track("bg");
  CommandOutput out = Banger({"run", "-d", "--name", "bg", "--memory", "256MiB"});
  ASSERT_EQ(out.exit_code, 0) << out.stdout_data << out.stderr_data;
  EXPECT_EQ(out.stdout_data, "bg\n");
  EXPECT_EQ(Phase("bg"), "Ready");
  EXPECT_EQ(GetItem("bg").value("owner", ""), "run:bg") << GetItem("bg").dump();
  CommandOutput x = Exec("bg", {"cat", "/etc/hostname"});
  EXPECT_EQ(x.exit_code, 0) << x.stderr_data;
  EXPECT_EQ(x.stdout_data, "bg\n");

  // A spec directory applied with --prune owns only its own sandboxes.
  WriteSpec("other", SpecOptions{});
  CommandOutput apply = Banger({"apply", "-f", (dir_.path() / "specs").string(), "--prune", "--yes"});
  EXPECT_EQ(apply.exit_code, 0) << apply.stdout_data << apply.stderr_data;
  EXPECT_EQ(apply.stdout_data.find("sandbox/bg "), std::string::npos) << "the plan touched bg:\n" << apply.stdout_data;
  EXPECT_EQ(apply.stdout_data.find("bg: deleted"), std::string::npos) << apply.stdout_data;
  EXPECT_EQ(Phase("bg"), "Ready");
  CommandOutput wide = Banger({"get", "-o", "wide"});
  EXPECT_NE(wide.stdout_data.find("ORIGIN"), std::string::npos) << wide.stdout_data;
  EXPECT_NE(wide.stdout_data.find("run:bg"), std::string::npos) << wide.stdout_data;

  // Running again with the same name reuses the sandbox (no new VM).
  std::vector<int> before = Qemus();
  CommandOutput again = Banger({"run", "--name", "bg", "--memory", "256MiB", "--", "cat", "/etc/hostname"});
  EXPECT_EQ(again.exit_code, 0) << again.stderr_data;
  EXPECT_EQ(again.stdout_data, "bg\n");
  EXPECT_EQ(Qemus(), before);
}

TEST_F(RunTest, RmStillDeletesTheSandboxWhenBangerGetsSigint) {
  guard_.Track("interrupted");
  Background bg;
  ASSERT_TRUE(StartBanger(bg, "run", {"run", "--rm", "--name", "interrupted", "--memory", "256MiB", "--", "sh",
                                      "-c", "echo started; sleep 600"}));
  auto deadline = steady_clock::now() + seconds(180);
  while (bg.Running() && bg.Stdout().find("started") == std::string::npos && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(bg.Stdout().find("started"), std::string::npos) << bg.Output();
  ASSERT_EQ(Qemus().size(), 1u);
  bg.Signal(SIGINT);
  auto code = bg.Wait(seconds(120));
  ASSERT_TRUE(code.has_value()) << "banger run did not exit after SIGINT\n" << bg.Output();
  EXPECT_EQ(*code, 130) << bg.Output();
  ExpectNothingLeftOf("interrupted");
}

TEST_F(RunTest, RmDeletesTheSandboxWhenInterruptedWhileItBoots) {
  guard_.Track("early");
  Background bg;
  ASSERT_TRUE(StartBanger(bg, "run", {"run", "--rm", "--name", "early", "--memory", "256MiB", "--", "true"}));
  auto deadline = steady_clock::now() + seconds(180);
  while (bg.Running() && Qemus().empty() && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(Qemus().size(), 1u) << bg.Output();
  bg.Signal(SIGTERM);
  auto code = bg.Wait(seconds(120));
  ASSERT_TRUE(code.has_value()) << bg.Output();
  EXPECT_EQ(*code, 143) << bg.Output();
  ExpectNothingLeftOf("early");
}

}  // namespace
}  // namespace banger::e2e
