// Networks in the plan: `kind: Network` documents are planned like sandboxes
// (create, update in place, replace, delete with --prune and ownership), and
// the bridged sandboxes of a plan are checked against them: the network they
// name exists, a fixed address is inside its subnet and nobody else's, and no
// two sandboxes publish the same host port. Pure, like ComputePlan.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "reconciler/plan.h"
#include "spec/sandbox_spec.h"
#include "state/state_store.h"

namespace banger {

/// Field classes of a Network document: spec.subnet replaces the bridge (only
/// while no sandbox uses it); everything else is applied in place.
FieldClass ClassifyNetworkField(std::string_view path);

/// Adds network changes to `plan.networks` and conflicts to `plan.errors`.
/// `plan.changes` must already hold the sandbox changes (ComputePlan), so
/// deletes of sandboxes in the same plan free their networks.
void PlanNetworks(const std::vector<NetworkDocument>& desired_networks,
                  const std::vector<SpecDocument>& desired_sandboxes,
                  const std::vector<SandboxRecord>& observed_sandboxes,
                  const NetworkObservations& observed, const PlanOptions& options, Plan& plan);

/// The `kind: Network` spec a record holds (defaults for an implicit network).
NetworkSpecDoc RecordedNetworkSpec(const NetworkRecord& record);

/// The subnet a network record would get for a document ("" = chosen at apply).
std::string DescribeSubnet(const NetworkChange& change);

}  // namespace banger
