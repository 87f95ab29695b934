// WorkQueue: the keys (sandbox names) a watcher still has to converge,
// controller-runtime style. A key is queued at most once; a key added while
// a worker processes it is processed again after that worker is Done, never
// by two workers at once. Keys can be added with a delay (backoff, resync).
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/clock.h"

namespace banger {

class WorkQueue {
 public:
  explicit WorkQueue(Clock& clock) : clock_(clock) {}

  /// Makes `key` ready now (no-op if already queued; marks it for another
  /// round if it is being processed).
  void Add(const std::string& key);
  /// Makes `key` ready after `delay` (an earlier pending time wins).
  void AddAfter(const std::string& key, std::chrono::milliseconds delay);
  /// Waits for a ready key and marks it processing; nullopt once shut down.
  /// Delayed keys become ready when the clock reaches their time (the wait
  /// re-checks at least every `poll`).
  std::optional<std::string> Get(std::chrono::milliseconds poll = std::chrono::milliseconds(200));
  /// Ends processing of `key`; if it was added meanwhile it is ready again.
  void Done(const std::string& key);
  /// Wakes every Get with nullopt; later Adds are ignored.
  void ShutDown();
  /// True when no key is ready or being processed (delayed keys do not count).
  bool Idle() const;
  /// Waits until Idle() or `timeout`; returns Idle().
  bool WaitIdle(std::chrono::milliseconds timeout);
  /// Keys waiting for their time, with it (for status and tests).
  std::map<std::string, std::chrono::steady_clock::time_point> Delayed() const;
  /// Wakes waiters so they re-check delayed keys (after a fake clock moved).
  void Kick();

 private:
  void PromoteDueLocked();

  Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> ready_;           // FIFO
  std::set<std::string> queued_;             // in ready_
  std::set<std::string> processing_;
  std::set<std::string> dirty_;              // added while processing
  std::map<std::string, std::chrono::steady_clock::time_point> delayed_;
  bool shut_down_ = false;
};

}  // namespace banger
