// FakeNetworkDriver: an in-memory host for the engine's network tests. It
// keeps links (bridges, taps) and the last rules loaded, records every call,
// and lets a test delete a tap or flush the table to simulate drift.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "reconciler/ports.h"

namespace banger::testing {

class FakeNetworkDriver : public NetworkDriver {
 public:
  Status CheckAvailable() override;
  std::string Namespace() const override { return "fake-ns"; }
  Status EnsureBridge(const BridgeConfig& bridge) override;
  Status DeleteBridge(const std::string& bridge) override;
  Status EnsureTap(const TapConfig& tap) override;
  Status DeleteTap(const std::string& tap) override;
  Status ApplyRules(const NetworkRules& rules) override;
  Result<bool> RulesCurrent(const NetworkRules& rules) override;
  Result<std::map<std::string, LinkObservation>> ObserveLinks() override;
  Result<std::vector<std::string>> RoutedPrefixes() override;
  std::vector<std::string> GuestResolvers() override { return resolvers; }

  // --- scripting ---
  void SetAvailable(Status s);
  void AddRoute(const std::string& prefix);
  /// Drift, as a user (or another program) would cause it.
  void RemoveLink(const std::string& name);
  void FlushRules();
  std::vector<std::string> resolvers = {"192.0.2.53"};

  // --- inspecting ---
  std::vector<std::string> calls() const;
  std::map<std::string, LinkObservation> links() const;
  std::optional<NetworkRules> rules() const;  // nullopt: no table
  int rule_loads() const;

 private:
  void Record(std::string call);
  mutable std::mutex mu_;
  Status available_;
  std::vector<std::string> calls_;
  std::map<std::string, LinkObservation> links_;
  std::optional<NetworkRules> rules_;
  bool flushed_ = false;
  int loads_ = 0;
  std::vector<std::string> routes_ = {"192.168.1.0/24"};
};

}  // namespace banger::testing
