#include "base/file_lock.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "base/files.h"

namespace banger {
namespace {

namespace fs = std::filesystem;

class FileLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = MakeTempDir("banger-lock-test");
    ASSERT_TRUE(d.ok());
    dir_ = *d;
  }
  void TearDown() override { (void)RemoveAll(dir_); }
  fs::path dir_;
};

TEST_F(FileLockTest, SecondHolderIsRefusedWithTheFirstOnesPid) {
  fs::path p = dir_ / "x.lock";
  auto a = FileLock::TryAcquire(p, "apply");
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  auto b = FileLock::TryAcquire(p, "watch");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(b.error().message().find("pid " + std::to_string(::getpid()) + " (apply)"), std::string::npos)
      << b.error().message();
  a->Release();
  EXPECT_TRUE(FileLock::TryAcquire(p, "watch").ok());
}

TEST_F(FileLockTest, AHolderKilledWithSigkillReleasesTheLock) {
  // Given a child process holding the lock; when it is killed with SIGKILL,
  // then the lock is free at once (no stale-pid cleanup needed).
  fs::path p = dir_ / "x.lock";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto l = FileLock::TryAcquire(p, "child");
    char c = l.ok() ? '1' : '0';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_EQ(c, '1');
  auto busy = FileLock::TryAcquire(p, "parent");
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().message().find("pid " + std::to_string(child)), std::string::npos)
      << busy.error().message();
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(FileLock::TryAcquire(p, "parent").ok());
}

TEST_F(FileLockTest, WaiterGetsTheLockWhenTheHolderUnlinksIt) {
  // A holder that removes its lock file on release must not leave a waiter
  // holding a lock on the removed file while a third process locks a new one.
  fs::path p = dir_ / "x.lock";
  auto a = FileLock::TryAcquire(p, "delete");
  ASSERT_TRUE(a.ok());
  auto clock = MakeSystemClock();
  Result<FileLock> waited = Internal("not run");
  bool told = false;
  std::thread t([&] {
    waited = FileLock::Acquire(p, "apply", *clock, clock->SteadyNow() + std::chrono::seconds(20),
                               [&](const LockHolder& h) { told = h.pid == ::getpid(); });
  });
  while (!told) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  a->UnlinkAndRelease();
  t.join();
  ASSERT_TRUE(waited.ok()) << waited.error().ToString();
  EXPECT_TRUE(fs::exists(p)) << "the waiter holds a lock on a file nobody else can see";
  EXPECT_FALSE(FileLock::TryAcquire(p, "third").ok());
}

TEST_F(FileLockTest, WaitingEndsAtTheDeadlineOrWhenCancelled) {
  fs::path p = dir_ / "x.lock";
  auto a = FileLock::TryAcquire(p, "watch");
  ASSERT_TRUE(a.ok());
  auto clock = MakeSystemClock();
  auto late = FileLock::Acquire(p, "apply", *clock, clock->SteadyNow() + std::chrono::milliseconds(120));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(late.error().message().find("(watch)"), std::string::npos) << late.error().message();
  auto cancelled = FileLock::Acquire(p, "apply", *clock, clock->SteadyNow() + std::chrono::seconds(30), {},
                                     [] { return true; });
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().code(), StatusCode::kCancelled);
}

}  // namespace
}  // namespace banger
