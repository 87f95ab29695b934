#include "reconciler/work_queue.h"

#include <algorithm>

namespace banger {

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  if (shut_down_) return;
  delayed_.erase(key);
  if (processing_.count(key)) {
    dirty_.insert(key);
    return;
  }
  if (queued_.insert(key).second) {
    ready_.push_back(key);
    cv_.notify_all();
  }
}

void WorkQueue::AddAfter(const std::string& key, std::chrono::milliseconds delay) {
  if (delay.count() <= 0) {
    Add(key);
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  if (shut_down_ || queued_.count(key)) return;
  auto at = clock_.SteadyNow() + delay;
  auto it = delayed_.find(key);
  if (it == delayed_.end() || at < it->second) delayed_[key] = at;
  cv_.notify_all();
}

void WorkQueue::PromoteDueLocked() {
  auto now = clock_.SteadyNow();
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    const std::string key = it->first;
    it = delayed_.erase(it);
    if (processing_.count(key)) {
      dirty_.insert(key);
    } else if (queued_.insert(key).second) {
      ready_.push_back(key);
    }
  }
}

std::optional<std::string> WorkQueue::Get(std::chrono::milliseconds poll) {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    if (shut_down_) return std::nullopt;
    PromoteDueLocked();
    if (!ready_.empty()) {
      std::string key = ready_.front();
      ready_.erase(ready_.begin());
      queued_.erase(key);
      processing_.insert(key);
      return key;
    }
    auto wait = poll;
    if (!delayed_.empty()) {
      auto first = std::min_element(delayed_.begin(), delayed_.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(first->second - clock_.SteadyNow());
      wait = std::clamp(until, std::chrono::milliseconds(1), poll);
    }
    cv_.wait_for(l, wait);
  }
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  processing_.erase(key);
  if (dirty_.erase(key) && !shut_down_ && queued_.insert(key).second) ready_.push_back(key);
  cv_.notify_all();
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> l(mu_);
  shut_down_ = true;
  cv_.notify_all();
}

bool WorkQueue::Idle() const {
  std::lock_guard<std::mutex> l(mu_);
  return ready_.empty() && processing_.empty();
}

bool WorkQueue::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return ready_.empty() && processing_.empty(); });
}

std::map<std::string, std::chrono::steady_clock::time_point> WorkQueue::Delayed() const {
  std::lock_guard<std::mutex> l(mu_);
  return delayed_;
}

void WorkQueue::Kick() {
  std::lock_guard<std::mutex> l(mu_);
  cv_.notify_all();
}

}  // namespace banger
