#include "reconciler/work_queue.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/support/test_util.h"

namespace banger {
namespace {

using std::chrono::milliseconds;
using testing::FakeClock;

TEST(WorkQueueTest, AKeyIsQueuedOnceAndReturnedInOrder) {
  FakeClock clock;
  WorkQueue q(clock);
  q.Add("a");
  q.Add("b");
  q.Add("a");
  EXPECT_EQ(q.Get(milliseconds(1)), "a");
  EXPECT_EQ(q.Get(milliseconds(1)), "b");
  EXPECT_FALSE(q.Idle());
  q.Done("a");
  q.Done("b");
  EXPECT_TRUE(q.Idle());
}

TEST(WorkQueueTest, AKeyAddedWhileProcessingIsProcessedAgainAfterDoneNotConcurrently) {
  // Given a worker processing "web"; when "web" is added again, no other
  // worker gets it until the first is done, and then it is ready once more.
  FakeClock clock;
  WorkQueue q(clock);
  q.Add("web");
  ASSERT_EQ(q.Get(milliseconds(1)), "web");
  q.Add("web");
  q.Add("db");
  EXPECT_EQ(q.Get(milliseconds(1)), "db") << "web must not be handed out while being processed";
  q.Done("db");
  q.Done("web");
  EXPECT_EQ(q.Get(milliseconds(1)), "web");
  q.Done("web");
  EXPECT_TRUE(q.Idle());
}

TEST(WorkQueueTest, DelayedKeysBecomeReadyWhenTheirTimeComes) {
  FakeClock clock;
  WorkQueue q(clock);
  q.AddAfter("web", milliseconds(5000));
  EXPECT_TRUE(q.Idle()) << "a delayed key does not make the queue busy";
  ASSERT_EQ(q.Delayed().size(), 1u);
  clock.Advance(milliseconds(4999));
  q.Add("other");
  EXPECT_EQ(q.Get(milliseconds(1)), "other");
  q.Done("other");
  clock.Advance(milliseconds(1));
  EXPECT_EQ(q.Get(milliseconds(1)), "web");
  q.Done("web");
  EXPECT_TRUE(q.Delayed().empty());
}

TEST(WorkQueueTest, AnEarlierDelayWinsAndAddNowCancelsTheDelay) {
  FakeClock clock;
  WorkQueue q(clock);
  q.AddAfter("web", milliseconds(5000));
  q.AddAfter("web", milliseconds(1000));
  clock.Advance(milliseconds(1000));
  EXPECT_EQ(q.Get(milliseconds(1)), "web");
  q.Done("web");
  q.AddAfter("db", milliseconds(9000));
  q.Add("db");
  EXPECT_TRUE(q.Delayed().empty());
  EXPECT_EQ(q.Get(milliseconds(1)), "db");
  q.Done("db");
}

TEST(WorkQueueTest, ShutDownWakesWaiters) {
  FakeClock clock;
  WorkQueue q(clock);
  std::optional<std::string> got = "unset";
  std::thread t([&] { got = q.Get(milliseconds(50)); });
  q.ShutDown();
  t.join();
  EXPECT_FALSE(got.has_value());
  q.Add("late");
  EXPECT_TRUE(q.Idle());
}

}  // namespace
}  // namespace banger
