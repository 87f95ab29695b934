#include "base/command_runner.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/files.h"

namespace banger {
namespace {

TEST(CommandRunnerTest, RunCapturesOutputExitCodeAndStdin) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run({.argv = {"sh", "-c", "cat; echo err >&2; exit 3"}, .stdin_data = "hello"});
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->exit_code, 3);
  EXPECT_EQ(out->stdout_data, "hello");
  EXPECT_EQ(out->stderr_data, "err\n");
}

TEST(CommandRunnerTest, TimeoutKillsTheChildAndIsDeadlineExceeded) {
  auto runner = MakePosixCommandRunner();
  auto start = std::chrono::steady_clock::now();
  auto out = runner->Run({.argv = {"sleep", "30"}, .timeout = std::chrono::milliseconds(200)});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(CommandRunnerTest, MissingProgramIsNotFound) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run({.argv = {"/nonexistent/banger-no-such-program"}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code(), StatusCode::kNotFound);
}

TEST(ProcessIdentityTest, AliveOnlyWithMatchingStartTimeAndGoneAfterKill) {
  // Given a detached process, its identity is alive; the same pid with another
  // start time (a reused pid) is not; after SIGKILL it is gone, and checking
  // never throws even while the process is being reaped.
  auto runner = MakePosixCommandRunner();
  auto id = runner->StartDetached({.argv = {"sleep", "30"}});
  ASSERT_TRUE(id.ok()) << id.error().ToString();
  EXPECT_TRUE(ProcessAlive(*id));
  EXPECT_FALSE(ProcessAlive({id->pid, id->start_time + 1}));
  ASSERT_TRUE(SignalProcess(*id, SIGKILL).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ProcessAlive(*id) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(ProcessAlive(*id));
  EXPECT_EQ(SignalProcess(*id, SIGKILL).code(), StatusCode::kNotFound) << "never signals a dead identity";
  EXPECT_FALSE(ProcessAlive({0, 0}));
  EXPECT_FALSE(ProcessStartTime(-5).ok());
}

// A confined detached child runs with the uid, gid, groups, umask and
// no_new_privs asked for (it reports them from /proc/self/status), in the
// working directory asked for.
TEST(ConfinedStartTest, ChildDropsToTheGivenIdentity) {
  if (::geteuid() != 0) GTEST_SKIP() << "switching uids needs root";
  auto dir = MakeTempDir("confined-start");
  ASSERT_TRUE(dir.ok());
  ScopedRemove cleanup(*dir);
  ASSERT_EQ(::chmod(dir->c_str(), 0777), 0);
  const std::string out = (*dir / "status").string();
  auto runner = MakePosixCommandRunner();
  // A relative output path: the child also starts in spec.cwd.
  CommandSpec spec{.argv = {"sh", "-c", "grep -E '^(Uid|Gid|Groups|NoNewPrivs|Umask):' /proc/self/status > status"}};
  spec.cwd = *dir;
  spec.confine.uid = 2000001;
  spec.confine.gid = 2000002;
  spec.confine.groups = {2000000};
  spec.confine.umask = 077;
  spec.confine.no_new_privs = true;
  auto id = runner->StartDetached(spec);
  ASSERT_TRUE(id.ok()) << id.error().ToString();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (ProcessAlive(*id) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto text = ReadFile(out);
  ASSERT_TRUE(text.ok()) << text.error().ToString();
  EXPECT_NE(text->find("Uid:\t2000001\t2000001\t2000001\t2000001"), std::string::npos) << *text;
  EXPECT_NE(text->find("Gid:\t2000002\t2000002\t2000002\t2000002"), std::string::npos) << *text;
  EXPECT_NE(text->find("Groups:\t2000000"), std::string::npos) << *text;
  EXPECT_NE(text->find("NoNewPrivs:\t1"), std::string::npos) << *text;
  EXPECT_NE(text->find("Umask:\t0077"), std::string::npos) << *text;
  struct stat st{};
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 2000001u) << "the file was written by the dropped identity";
}

TEST(ConfinedStartTest, AFailingStepIsNamedAndNothingRuns) {
  auto runner = MakePosixCommandRunner();
  CommandSpec spec{.argv = {"sleep", "30"}};
  spec.confine.netns = "/nonexistent/banger-netns";
  auto id = runner->StartDetached(spec);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message().find("open network namespace /nonexistent/banger-netns"), std::string::npos)
      << id.error().message();
  // /dev/null is not a namespace: setns fails in the child, which says so.
  spec.confine.netns = "/dev/null";
  id = runner->StartDetached(spec);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message().find("enter network namespace"), std::string::npos) << id.error().message();
  // A working directory the child cannot enter is named too.
  spec.confine = {};
  spec.confine.no_new_privs = true;
  spec.cwd = "/nonexistent/banger-cwd";
  id = runner->StartDetached(spec);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message().find("change directory"), std::string::npos) << id.error().message();
  spec.cwd.clear();
  spec.confine = {};
  spec.confine.uid = 1;  // uid without gid
  EXPECT_EQ(runner->StartDetached(spec).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace banger
