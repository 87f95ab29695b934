// Clock: the only way banger code reads time or sleeps, so tests can use FakeClock.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace banger {

class Clock {
 public:
  virtual ~Clock() = default;
  /// Wall-clock time, for records shown to users.
  virtual std::chrono::system_clock::time_point Now() const = 0;
  /// Monotonic time, for deadlines and backoff.
  virtual std::chrono::steady_clock::time_point SteadyNow() const = 0;
  virtual void SleepFor(std::chrono::milliseconds d) = 0;

  /// Seconds since the Unix epoch of Now().
  int64_t NowUnix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count();
  }
};

/// The real clock.
std::unique_ptr<Clock> MakeSystemClock();

}  // namespace banger
