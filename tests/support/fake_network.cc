#include "tests/support/fake_network.h"

namespace banger::testing {

void FakeNetworkDriver::Record(std::string call) { calls_.push_back(std::move(call)); }

Status FakeNetworkDriver::CheckAvailable() {
  std::lock_guard l(mu_);
  return available_;
}

void FakeNetworkDriver::SetAvailable(Status s) {
  std::lock_guard l(mu_);
  available_ = std::move(s);
}

Status FakeNetworkDriver::EnsureBridge(const BridgeConfig& b) {
  std::lock_guard l(mu_);
  Record("ensure-bridge " + b.bridge + " " + b.gateway + "/" + std::to_string(b.prefix));
  LinkObservation& link = links_[b.bridge];
  link.name = b.bridge;
  link.kind = "bridge";
  link.up = true;
  link.addresses = {b.gateway + "/" + std::to_string(b.prefix)};
  return OkStatus();
}

Status FakeNetworkDriver::DeleteBridge(const std::string& bridge) {
  std::lock_guard l(mu_);
  Record("delete-bridge " + bridge);
  links_.erase(bridge);
  for (auto& [name, link] : links_) {
    if (link.master == bridge) link.master.clear();
  }
  return OkStatus();
}

Status FakeNetworkDriver::EnsureTap(const TapConfig& t) {
  std::lock_guard l(mu_);
  if (!links_.count(t.bridge)) return FailedPrecondition("bridge " + t.bridge + " does not exist");
  Record("ensure-tap " + t.tap + " " + t.bridge + (t.isolated ? " isolated" : ""));
  LinkObservation& link = links_[t.tap];
  link.name = t.tap;
  link.kind = "tun";
  link.master = t.bridge;
  link.up = true;
  link.isolated = t.isolated;
  return OkStatus();
}

Status FakeNetworkDriver::DeleteTap(const std::string& tap) {
  std::lock_guard l(mu_);
  Record("delete-tap " + tap);
  links_.erase(tap);
  return OkStatus();
}

Status FakeNetworkDriver::ApplyRules(const NetworkRules& rules) {
  std::lock_guard l(mu_);
  Record("apply-rules " + std::to_string(rules.bridges.size()) + " bridges " + std::to_string(rules.ports.size()) +
         " ports");
  ++loads_;
  flushed_ = false;
  if (rules.bridges.empty() && rules.ports.empty()) {
    rules_.reset();
  } else {
    rules_ = rules;
  }
  return OkStatus();
}

Result<bool> FakeNetworkDriver::RulesCurrent(const NetworkRules& rules) {
  std::lock_guard l(mu_);
  if (rules.bridges.empty() && rules.ports.empty()) return !rules_.has_value();
  return rules_.has_value() && !flushed_ && *rules_ == rules;
}

Result<std::map<std::string, LinkObservation>> FakeNetworkDriver::ObserveLinks() {
  std::lock_guard l(mu_);
  return links_;
}

Result<std::vector<std::string>> FakeNetworkDriver::RoutedPrefixes() {
  std::lock_guard l(mu_);
  return routes_;
}

void FakeNetworkDriver::AddRoute(const std::string& prefix) {
  std::lock_guard l(mu_);
  routes_.push_back(prefix);
}

void FakeNetworkDriver::RemoveLink(const std::string& name) {
  std::lock_guard l(mu_);
  links_.erase(name);
  for (auto& [n, link] : links_) {
    if (link.master == name) link.master.clear();
  }
}

void FakeNetworkDriver::FlushRules() {
  std::lock_guard l(mu_);
  flushed_ = true;
}

std::vector<std::string> FakeNetworkDriver::calls() const {
  std::lock_guard l(mu_);
  return calls_;
}

std::map<std::string, LinkObservation> FakeNetworkDriver::links() const {
  std::lock_guard l(mu_);
  return links_;
}

std::optional<NetworkRules> FakeNetworkDriver::rules() const {
  std::lock_guard l(mu_);
  if (flushed_) return NetworkRules{};
  return rules_;
}

int FakeNetworkDriver::rule_loads() const {
  std::lock_guard l(mu_);
  return loads_;
}

}  // namespace banger::testing
