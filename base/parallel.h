// RunParallel: a bounded fork-join over an index range.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace banger {

/// Calls fn(0) .. fn(n-1), each exactly once, on up to `parallel` threads
/// (the calling thread included), and returns when all have returned.
inline void RunParallel(size_t n, int parallel, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  size_t threads_n = std::min<size_t>(n, static_cast<size_t>(std::max(1, parallel)));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < threads_n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}

}  // namespace banger
