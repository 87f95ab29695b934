#include "base/command_runner.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

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

}  // namespace
}  // namespace banger
