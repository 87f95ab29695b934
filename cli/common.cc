#include "cli/common.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <utility>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "reconciler/network_plan.h"
#include "state/layout.h"
#include "state/state_store.h"

namespace banger::cli {

int Fail(const Status& s) {
  PrintError(s);
  return kExitError;
}

bool OpenOrFail(Context& ctx, int& exit_code) {
  Status s = ctx.Init();
  if (!s.ok()) exit_code = Fail(s);
  return s.ok();
}

bool LoadSpecs(const std::vector<std::string>& paths, LoadResult& out) {
  std::vector<std::filesystem::path> ps(paths.begin(), paths.end());
  out = LoadSpecPaths(ps);
  if (!out.diagnostics.items().empty()) std::fputs(out.diagnostics.ToString().c_str(), stderr);
  return !out.diagnostics.HasErrors();
}

std::vector<std::string> AbsolutePaths(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    std::error_code ec;
    auto abs = std::filesystem::weakly_canonical(std::filesystem::absolute(p, ec), ec);
    out.push_back(abs.string());
  }
  return out;
}

Result<Plan> MakePlan(Context& ctx, const LoadResult& specs, const std::string& owner, bool prune,
                      EventSink& sink) {
  Engine engine = ctx.MakeEngine(sink, 0);
  // Observe first, so the plan starts from the truth (crashed VMs, interrupted runs).
  BANGER_RETURN_IF_ERROR(engine.Refresh());
  BANGER_ASSIGN_OR_RETURN(auto observed, ctx.store().ListSandboxes());
  PlanOptions o;
  o.owner = owner;
  o.prune = prune;
  o.default_kernel = ctx.host().artifacts().DefaultKernel();
  ArtifactStore& a = ctx.host().artifacts();
  o.artifact_present = [&a](std::string_view kind, const std::string& name) {
    return kind == "image" ? a.ImagePresent(name) : a.KernelPresent(name);
  };
  o.provider_for = ctx.host().ProviderFor();  // spec.hypervisor must name what this host has
  o.start_for = ctx.host().StartFor();        // boot or restore from a template
  // Volumes kept by banger (docs/volumes.md): the plan says which are
  // created and which grow, and refuses a shrink.
  std::map<std::pair<std::string, std::string>, uint64_t> volume_sizes;
  BANGER_ASSIGN_OR_RETURN(auto volumes, ctx.store().ListVolumes(""));
  for (const auto& v : volumes) volume_sizes[{v.sandbox, v.name}] = v.size_bytes;
  o.volume_size = [&volume_sizes](const std::string& sandbox, const std::string& volume) -> std::optional<uint64_t> {
    auto it = volume_sizes.find({sandbox, volume});
    if (it == volume_sizes.end()) return std::nullopt;
    return it->second;
  };
  Plan plan = ComputePlan(specs.specs, observed, o);
  NetworkObservations networks;
  BANGER_ASSIGN_OR_RETURN(networks.networks, ctx.store().ListNetworks());
  BANGER_ASSIGN_OR_RETURN(networks.leases, ctx.store().ListLeases(""));
  PlanNetworks(specs.networks, specs.specs, observed, networks, o, plan);
  // Bridged networking the host cannot give (an ordinary user has no
  // CAP_NET_ADMIN) is a plan error, never a silent fallback to user mode
  // (docs/networking.md).
  Status bridges;
  bool checked = false;
  for (const SpecDocument& d : specs.specs) {
    if (d.spec.network.mode != NetworkMode::kBridged) continue;
    if (!checked) {
      bridges = ctx.host().network().CheckAvailable();
      checked = true;
    }
    if (bridges.ok()) break;
    plan.errors.push_back(d.location.file + ":" + std::to_string(d.location.line) + ": sandbox " +
                          d.spec.name + ": network.mode bridged" +
                          " is not available here: " + bridges.message());
  }
  return plan;
}

bool Confirm(const std::string& question) {
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  answer = std::string(Trim(answer));
  return answer == "y" || answer == "Y" || answer == "yes";
}

std::string ResultLine(const ChangeResult& r) {
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1fs", static_cast<double>(r.took.count()) / 1000.0);
  std::string verb(ToString(r.action));
  if (!r.status.ok()) return "✗ " + r.name + ": " + verb + " failed after " + secs + ": " + r.status.message();
  std::string what;
  const bool network = StartsWith(r.name, "network/");
  switch (r.action) {
    case Action::kCreate: what = network ? "created" : "created, Ready"; break;
    case Action::kUpdate: what = "updated in place"; break;
    case Action::kRestart: what = "restarted, Ready"; break;
    case Action::kReplace: what = network ? "replaced" : "replaced, Ready"; break;
    case Action::kDelete: what = "deleted"; break;
    case Action::kNoOp: what = "unchanged"; break;
  }
  if (!r.note.empty()) what += r.action == Action::kNoOp ? ": " + r.note : " (" + r.note + ")";
  return "✓ " + r.name + ": " + what + (r.address.empty() ? "" : " at " + r.address) + " (" + secs + ")";
}

std::string ReportJson(const ApplyReport& rep) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& r : rep.results) {
    items.push_back({{"name", r.name},
                     {"action", std::string(ToString(r.action))},
                     {"ok", r.status.ok()},
                     {"error", r.status.ok() ? "" : r.status.message()},
                     {"address", r.address},
                     {"note", r.note},
                     {"seconds", static_cast<double>(r.took.count()) / 1000.0}});
  }
  return nlohmann::json{{"results", items}, {"ok", rep.ok()}}.dump(2) + "\n";
}

Result<std::vector<std::string>> ExistingSandboxNames(const Globals& g) {
  BANGER_ASSIGN_OR_RETURN(StateLayout layout, ResolveStateLayout(g.state_dir));
  std::error_code ec;
  if (!std::filesystem::exists(layout.db_path, ec)) return std::vector<std::string>{};
  BANGER_ASSIGN_OR_RETURN(auto store, StateStore::Open(layout.root));
  BANGER_ASSIGN_OR_RETURN(auto recs, store->ListSandboxes());
  std::vector<std::string> names;
  for (const auto& r : recs) names.push_back(r.name);
  return names;
}

}  // namespace banger::cli
