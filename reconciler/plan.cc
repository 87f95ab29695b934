#include "reconciler/plan.h"

#include <algorithm>
#include <thread>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "base/parallel.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "spec/loader.h"

namespace banger {

using nlohmann::json;

std::string_view ToString(Action a) {
  switch (a) {
    case Action::kNoOp: return "no-op";
    case Action::kCreate: return "create";
    case Action::kUpdate: return "update";
    case Action::kRestart: return "restart";
    case Action::kReplace: return "replace";
    case Action::kDelete: return "delete";
  }
  return "?";
}

std::string_view ActionSymbol(Action a) {
  switch (a) {
    case Action::kNoOp: return " ";
    case Action::kCreate: return "+";
    case Action::kUpdate: return "~";
    case Action::kRestart: return "~";
    case Action::kReplace: return "-/+";
    case Action::kDelete: return "-";
  }
  return "?";
}

std::string_view ToString(FieldClass c) {
  switch (c) {
    case FieldClass::kInPlace: return "in-place";
    case FieldClass::kRestart: return "restart";
    case FieldClass::kReplace: return "replace";
  }
  return "?";
}

namespace {

// Field classes, most specific prefix first. Documented in docs/field-classes.md;
// keep the two in sync (a test checks every documented path classifies as stated).
struct ClassRule {
  std::string_view prefix;
  FieldClass cls;
};
constexpr ClassRule kClassRules[] = {
    {"metadata.labels", FieldClass::kInPlace},
    {"spec.readiness", FieldClass::kInPlace},
    {"spec.restartPolicy", FieldClass::kInPlace},
    {"spec.workspace", FieldClass::kInPlace},  // takes effect at the next create or `workspace sync`
    {"spec.cpus", FieldClass::kRestart},
    {"spec.memory", FieldClass::kRestart},
    {"spec.network.ports", FieldClass::kInPlace},  // bridged: nftables rules (user mode: restart)
    {"spec.network", FieldClass::kRestart},
    {"spec.env", FieldClass::kRestart},
    {"spec.files", FieldClass::kRestart},
    {"spec.ssh", FieldClass::kRestart},
    {"spec.image", FieldClass::kReplace},
    {"spec.kernel", FieldClass::kReplace},
    {"spec.disk", FieldClass::kReplace},
    {"spec.hypervisor", FieldClass::kReplace},
    {"spec.start", FieldClass::kInPlace},  // how the next boot starts; the running VM is unchanged
    {"spec.provision", FieldClass::kReplace},
    // Adding or removing a volume, moving it and growing it take a restart;
    // seedFrom only matters at creation (VolumeFieldClass refines these).
    {"spec.volumes", FieldClass::kRestart},
};

bool PathHasPrefix(std::string_view path, std::string_view prefix) {
  if (!StartsWith(path, prefix)) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
}

void Flatten(const json& j, const std::string& prefix, std::map<std::string, const json*>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string p = prefix.empty() ? it.key() : prefix + "." + it.key();
      // Objects are descended into; an empty object contributes nothing, so
      // adding the first label shows as one added field.
      if (it->is_object()) {
        Flatten(*it, p, out);
      } else {
        out[p] = &*it;
      }
    }
  } else {
    out[prefix] = &j;
  }
}

Action ActionFor(FieldClass c) {
  switch (c) {
    case FieldClass::kInPlace: return Action::kUpdate;
    case FieldClass::kRestart: return Action::kRestart;
    case FieldClass::kReplace: return Action::kReplace;
  }
  return Action::kReplace;
}

std::string DisplayPath(std::string_view path) {
  if (StartsWith(path, "spec.")) return std::string(path.substr(5));
  if (StartsWith(path, "metadata.")) return std::string(path.substr(9));
  return std::string(path);
}

// spec.volumes.NAME.seedFrom changed on an existing volume: nothing to do.
bool IsVolumeSeedChange(const FieldDiff& d) {
  return PathHasPrefix(d.path, "spec.volumes") && EndsWith(d.path, ".seedFrom") && !d.old_value.empty() &&
         !d.new_value.empty();
}

// The notes and errors spec.volumes brings to a change (docs/volumes.md).
// Returns "" or the reason the change cannot be made (a shrink).
std::string PlanVolumes(const SandboxSpec& spec, const std::optional<SandboxSpec>& recorded, bool existing_sandbox,
                        const PlanOptions& o, std::vector<std::string>& notes) {
  for (const VolumeSpec& v : spec.volumes) {
    std::optional<uint64_t> have;
    if (o.volume_size) {
      have = o.volume_size(spec.name, v.name);
    } else if (existing_sandbox && recorded) {
      for (const VolumeSpec& r : recorded->volumes) {
        if (r.name == v.name) have = r.size_bytes;
      }
    }
    const std::string head = "volume " + v.name + ": ";
    if (!have) {
      notes.push_back(head + "create " + FormatByteSize(v.size_bytes) +
                      (v.seed_from == VolumeSeed::kImage ? " (seeded from image at " + v.mount_path + ")" : " (empty)"));
    } else if (*have < v.size_bytes) {
      notes.push_back(head + "grow " + FormatByteSize(*have) + " -> " + FormatByteSize(v.size_bytes));
    } else if (*have > v.size_bytes) {
      return "spec.volumes: volume \"" + v.name + "\" is " + FormatByteSize(*have) + " and cannot shrink to " +
             FormatByteSize(v.size_bytes) + "; keep its size, or remove it first with `banger volume rm " +
             spec.name + "/" + v.name + "` (its data is lost)";
    }
  }
  return "";
}

}  // namespace

FieldClass ClassifyField(std::string_view path) {
  for (const auto& r : kClassRules) {
    if (PathHasPrefix(path, r.prefix)) return r.cls;
  }
  return FieldClass::kReplace;
}

std::vector<FieldDiff> DiffCanonicalSpecs(std::string_view old_json, std::string_view new_json) {
  json a = json::parse(old_json, nullptr, /*allow_exceptions=*/false);
  json b = json::parse(new_json, nullptr, false);
  std::vector<FieldDiff> out;
  if (a.is_discarded() || b.is_discarded()) {
    out.push_back({"spec", "", "", FieldClass::kReplace});
    return out;
  }
  std::map<std::string, const json*> fa, fb;
  Flatten(a, "", fa);
  Flatten(b, "", fb);
  auto ia = fa.begin();
  auto ib = fb.begin();
  auto emit = [&](const std::string& path, const json* ov, const json* nv) {
    out.push_back({path, ov ? ov->dump() : "", nv ? nv->dump() : "", ClassifyField(path)});
  };
  while (ia != fa.end() || ib != fb.end()) {
    if (ib == fb.end() || (ia != fa.end() && ia->first < ib->first)) {
      emit(ia->first, ia->second, nullptr);
      ++ia;
    } else if (ia == fa.end() || ib->first < ia->first) {
      emit(ib->first, nullptr, ib->second);
      ++ib;
    } else {
      if (*ia->second != *ib->second) emit(ia->first, ia->second, ib->second);
      ++ia;
      ++ib;
    }
  }
  return out;
}

PlanSummary Plan::Summary() const {
  PlanSummary s;
  for (const auto& c : changes) {
    switch (c.action) {
      case Action::kNoOp: ++s.unchanged; break;
      case Action::kCreate: ++s.create; break;
      case Action::kUpdate: ++s.update; break;
      case Action::kRestart: ++s.restart; break;
      case Action::kReplace: ++s.replace; break;
      case Action::kDelete: ++s.remove; break;
    }
  }
  return s;
}

bool Plan::HasChanges() const {
  return std::any_of(changes.begin(), changes.end(), [](const Change& c) { return c.action != Action::kNoOp; }) ||
         std::any_of(networks.begin(), networks.end(),
                     [](const NetworkChange& c) { return c.action != Action::kNoOp; });
}

std::string OwnerFor(const std::vector<std::string>& spec_paths, const std::string& set_name) {
  if (!set_name.empty()) return "set:" + set_name;
  std::vector<std::string> sorted = spec_paths;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  return "path:" + Join(sorted, ",");
}

std::string DescribeOwner(const std::string& owner) {
  if (StartsWith(owner, "set:")) return "apply set \"" + owner.substr(4) + "\"";
  if (StartsWith(owner, "path:")) return "specs at " + owner.substr(5);
  if (StartsWith(owner, "git:")) return "git source " + owner.substr(4);
  if (StartsWith(owner, "run:")) return "banger run (sandbox \"" + owner.substr(4) + "\")";
  return "\"" + owner + "\"";
}

std::string RecoveryReason(const SandboxRecord& rec) {
  if (rec.stopped_by_user) return "";
  switch (rec.phase) {
    case SandboxPhase::kReady: return "";
    case SandboxPhase::kFailed:
      return rec.last_error.empty() ? "failed" : "failed: " + rec.last_error;
    case SandboxPhase::kStopped: return "stopped unexpectedly";
    case SandboxPhase::kPending:
    case SandboxPhase::kBooting: return "interrupted before it became ready";
    case SandboxPhase::kUnknown:
      return rec.last_error.empty() ? "state unknown" : "state unknown: " + rec.last_error;
    case SandboxPhase::kDeleting: return "interrupted while deleting";
  }
  return "";
}

namespace {

// kPolicy: whether an automatic restart may happen now. Empty when it may;
// otherwise why not (the change stays a no-op), with `retry_at` set when it
// only has to wait for its backoff.
std::string PolicyBlocks(const SandboxRecord& rec, const SandboxSpec& spec, const PlanOptions& o,
                         int64_t& retry_at) {
  if (spec.restart_policy == RestartPolicy::kNever) return "restartPolicy is Never";
  if (spec.restart_policy == RestartPolicy::kOnFailure && rec.phase == SandboxPhase::kStopped) {
    return "stopped cleanly; restartPolicy is OnFailure";
  }
  if (rec.restart_count >= o.max_restart_attempts) {
    return "gave up after " + std::to_string(rec.restart_count) +
           " restart attempts; apply it again or change its spec";
  }
  if (rec.next_retry_at > o.now) {
    retry_at = rec.next_retry_at;
    return "backing off; next restart attempt in " + std::to_string(rec.next_retry_at - o.now) + "s";
  }
  return "";
}

}  // namespace

Change PlanSandbox(const SpecDocument* desired, std::string canonical_json, std::string hash,
                   const SandboxRecord* observed, const PlanOptions& options, std::string* error) {
  auto pulls_for = [&](const SandboxSpec& spec) {
    std::vector<std::string> pulls;
    if (!options.artifact_present) return pulls;
    if (!options.artifact_present("image", spec.image)) pulls.push_back("image " + spec.image);
    const std::string& kernel = spec.kernel.empty() ? options.default_kernel : spec.kernel;
    if (!kernel.empty() && !options.artifact_present("kernel", kernel)) {
      pulls.push_back("kernel " + kernel);
    }
    return pulls;
  };
  Change c;
  if (desired == nullptr) {
    c.action = Action::kNoOp;
    c.reason = "not in specs";
    if (observed == nullptr) return c;
    c.name = observed->name;
    c.current = *observed;
    c.owner = observed->owner;
    if (options.prune && observed->owner == options.owner) {  // never prune another set's sandboxes
      c.action = Action::kDelete;
      c.reason = "not in specs; --prune";
    }
    return c;
  }
  const SpecDocument& doc = *desired;
  c.name = doc.spec.name;
  c.owner = options.owner;
  c.desired_json = std::move(canonical_json);
  c.desired_hash = std::move(hash);
  c.desired = doc;
  if (options.provider_for) {
    // A spec may only name a provider this host has (docs/spec-reference.md).
    Result<std::string> provider = options.provider_for(doc.spec.hypervisor);
    if (!provider) {
      const SourceLocation& at = doc.LocationOf("spec.hypervisor");
      if (error != nullptr) {
        *error = at.file + ":" + std::to_string(at.line) + ": sandbox \"" + c.name +
                 "\": spec.hypervisor: " + provider.error().message();
      }
      c.action = Action::kNoOp;
      c.reason = provider.error().message();
      if (observed != nullptr) c.current = *observed;
      return c;
    }
    c.provider = std::move(*provider);
  }
  if (options.start_for) {
    Result<std::string> start = options.start_for(doc.spec);
    if (!start) {
      const SourceLocation& at = doc.LocationOf("spec.start");
      if (error != nullptr) {
        *error = at.file + ":" + std::to_string(at.line) + ": sandbox \"" + c.name +
                 "\": spec.start: " + start.error().message();
      }
      c.action = Action::kNoOp;
      c.reason = start.error().message();
      if (observed != nullptr) c.current = *observed;
      return c;
    }
    c.start = std::move(*start);
  }
  if (observed == nullptr) {
    c.action = Action::kCreate;
    c.reason = "new sandbox";
    c.pulls = pulls_for(doc.spec);
    if (!doc.spec.volumes.empty()) {
      // A volume kept from a sandbox of this name deleted without --volumes
      // is attached again.
      std::string problem = PlanVolumes(doc.spec, std::nullopt, false, options, c.volume_notes);
      if (!problem.empty()) {
        if (error != nullptr) {
          *error = doc.location.file + ":" + std::to_string(doc.location.line) + ": sandbox \"" + c.name + "\": " + problem;
        }
        c.action = Action::kNoOp;
        c.reason = problem;
        c.volume_notes.clear();
      }
    }
    return c;
  }
  const SandboxRecord& rec = *observed;
  c.current = rec;
  if (!rec.owner.empty() && !options.owner.empty() && rec.owner != options.owner) {
    if (error != nullptr) {
      *error = doc.location.file + ":" + std::to_string(doc.location.line) + ": sandbox \"" + c.name +
               "\" is managed by " + DescribeOwner(rec.owner) + ", not by " +
               DescribeOwner(options.owner) +
               "; apply it from there (or with the same --set), or delete it first";
    }
    c.action = Action::kNoOp;
    c.reason = "managed by " + DescribeOwner(rec.owner);
    return c;
  }
  std::string recovery = RecoveryReason(rec);
  bool policy = options.recovery == RecoveryMode::kPolicy;
  if (rec.spec_hash != c.desired_hash) {
    // A record written by an older banger may spell the same spec differently
    // (new fields, renamed values): compare it in today's canonical form.
    std::string recorded = rec.spec_json;
    if (auto old = SpecFromCanonicalJson(rec.spec_json); old.ok()) recorded = CanonicalJson(*old);
    c.diffs = DiffCanonicalSpecs(recorded, c.desired_json);
    for (auto& d : c.diffs) {
      // QEMU's user-mode forwards are fixed at launch; bridged ports are rules.
      if (d.path == "spec.network.ports" && doc.spec.network.mode != NetworkMode::kBridged) {
        d.field_class = FieldClass::kRestart;
      }
      if (IsVolumeSeedChange(d)) d.field_class = FieldClass::kInPlace;
    }
    FieldClass worst = FieldClass::kInPlace;
    const FieldDiff* cause = nullptr;
    for (const auto& d : c.diffs) {
      if (cause == nullptr || d.field_class > worst) {
        worst = d.field_class;
        cause = &d;
      }
    }
    c.action = c.diffs.empty() ? Action::kUpdate : ActionFor(worst);
    if (cause == nullptr) {
      c.reason = recorded == c.desired_json ? "record rewritten in this banger's canonical form" : "spec changed";
    } else if (worst == FieldClass::kReplace) {
      c.reason = DisplayPath(cause->path) + " forces replacement";
    } else if (worst == FieldClass::kRestart) {
      c.reason = DisplayPath(cause->path) + " requires restart";
    } else {
      c.reason = "update in place";
    }
    if (c.action == Action::kUpdate && !recovery.empty()) {
      // A changed spec is new intent: the restart budget starts afresh.
      c.action = Action::kRestart;
      c.reason = recovery;
    }
  } else if (!recovery.empty()) {
    c.action = rec.phase == SandboxPhase::kDeleting ? Action::kReplace : Action::kRestart;
    c.reason = recovery;
    if (policy) {
      std::string blocked = PolicyBlocks(rec, doc.spec, options, c.retry_at);
      if (!blocked.empty()) {
        c.action = Action::kNoOp;
        c.reason = recovery + " (" + blocked + ")";
      } else {
        c.recovery = true;
      }
    }
  } else {
    c.action = Action::kNoOp;
    c.reason = "up to date";
  }
  if (c.action == Action::kRestart || c.action == Action::kReplace) c.pulls = pulls_for(doc.spec);
  if (!doc.spec.volumes.empty() && c.action != Action::kNoOp) {
    std::optional<SandboxSpec> recorded;
    if (auto old = SpecFromCanonicalJson(rec.spec_json); old.ok()) recorded = std::move(*old);
    std::string problem = PlanVolumes(doc.spec, recorded, true, options, c.volume_notes);
    if (!problem.empty()) {
      if (error != nullptr) {
        *error = doc.location.file + ":" + std::to_string(doc.location.line) + ": sandbox \"" + c.name + "\": " + problem;
      }
      c.action = Action::kNoOp;
      c.reason = problem;
      c.volume_notes.clear();
    }
  }
  return c;
}

Plan ComputePlan(const std::vector<SpecDocument>& desired,
                 const std::vector<SandboxRecord>& observed, const PlanOptions& options) {
  Plan plan;
  plan.owner = options.owner;
  std::unordered_map<std::string, const SandboxRecord*> by_name;
  by_name.reserve(observed.size());
  for (const auto& rec : observed) by_name.emplace(rec.name, &rec);

  // Canonical forms and hashes are independent per spec and are most of a
  // large no-op plan's cost, so they are computed on all cores first.
  std::vector<std::pair<std::string, std::string>> canonical(desired.size());
  auto canonicalise = [&](size_t i) {
    canonical[i].first = CanonicalJson(desired[i].spec);
    canonical[i].second = Sha256Hex(canonical[i].first);  // == SpecHash
  };
  size_t workers = desired.size() < 256 ? 1 : std::min<size_t>(8, std::max(1u, std::thread::hardware_concurrency()));
  RunParallel(desired.size(), static_cast<int>(workers), canonicalise);

  plan.changes.reserve(desired.size());
  std::unordered_map<std::string, bool> desired_names;
  desired_names.reserve(desired.size());
  for (size_t i = 0; i < desired.size(); ++i) {
    const SpecDocument& doc = desired[i];
    desired_names.emplace(doc.spec.name, true);
    auto it = by_name.find(doc.spec.name);
    std::string error;
    Change c = PlanSandbox(&doc, std::move(canonical[i].first), std::move(canonical[i].second),
                           it == by_name.end() ? nullptr : it->second, options, &error);
    if (!error.empty()) {
      plan.errors.push_back(std::move(error));
      continue;
    }
    plan.changes.push_back(std::move(c));
  }

  if (options.prune) {
    for (const auto& rec : observed) {
      if (desired_names.count(rec.name)) continue;
      Change c = PlanSandbox(nullptr, "", "", &rec, options, nullptr);
      if (c.action == Action::kDelete) plan.changes.push_back(std::move(c));
    }
  }
  std::sort(plan.changes.begin(), plan.changes.end(),
            [](const Change& a, const Change& b) { return a.name < b.name; });
  return plan;
}

namespace {

constexpr const char* kReset = "\033[0m";
constexpr const char* kGreen = "\033[32m";
constexpr const char* kYellow = "\033[33m";
constexpr const char* kRed = "\033[31m";
constexpr const char* kBold = "\033[1m";

const char* ColorFor(Action a) {
  switch (a) {
    case Action::kCreate: return kGreen;
    case Action::kUpdate:
    case Action::kRestart: return kYellow;
    case Action::kReplace:
    case Action::kDelete: return kRed;
    case Action::kNoOp: return "";
  }
  return "";
}

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string CreateDetail(const Change& c) {
  std::vector<std::string> parts;
  if (!c.desired) return "";
  const SandboxSpec& s = c.desired->spec;
  std::string image = "image " + s.image;
  for (const auto& p : c.pulls) {
    if (p == "image " + s.image) image += ": pull";
  }
  parts.push_back(image);
  for (const auto& p : c.pulls) {
    if (StartsWith(p, "kernel ")) parts.push_back(p + ": pull");
  }
  parts.push_back(std::to_string(s.cpus) + " vCPU");
  parts.push_back(FormatByteSize(s.memory_bytes));
  return "(" + Join(parts, ", ") + ")";
}

}  // namespace

std::string RenderPlanText(const Plan& plan, bool color) {
  std::string out;
  auto paint = [&](const char* code, const std::string& text) {
    return color && *code ? std::string(code) + text + kReset : text;
  };
  for (const auto& e : plan.errors) out += paint(kRed, "error: ") + e + "\n";
  if (!plan.errors.empty()) return out;
  PlanSummary s = plan.Summary();
  std::string network_lines;
  for (const auto& n : plan.networks) {
    if (n.action == Action::kNoOp) continue;
    std::string sym = Pad(std::string(ActionSymbol(n.action)), 3);
    std::string head = "  " + paint(ColorFor(n.action), sym) + " " + Pad("network/" + n.name, 28) + " ";
    std::string verb = n.action == Action::kUpdate ? "update in place" : std::string(ToString(n.action));
    network_lines += head + Pad(verb, 8) + " (" + n.reason + ")\n";
    for (const auto& d : n.diffs) {
      network_lines += "      " + paint(kYellow, "~") + " " + DisplayPath(d.path) + ": " +
                       (d.old_value.empty() ? "(none)" : d.old_value) + " -> " +
                       (d.new_value.empty() ? "(none)" : d.new_value) +
                       (d.field_class == FieldClass::kReplace ? "   " + paint(kBold, "# forces replacement") : "") +
                       "\n";
    }
  }
  if (!plan.HasChanges()) {
    out += "No changes. " + std::to_string(s.unchanged) +
           (s.unchanged == 1 ? " sandbox is" : " sandboxes are") + " up to date.\n";
    return out;
  }
  out += "banger will perform these actions:\n\n";
  out += network_lines;
  for (const auto& c : plan.changes) {
    if (c.action == Action::kNoOp) continue;
    std::string sym = Pad(std::string(ActionSymbol(c.action)), 3);
    std::string head = "  " + paint(ColorFor(c.action), sym) + " " + Pad("sandbox/" + c.name, 28) + " ";
    switch (c.action) {
      case Action::kCreate:
        out += head + "create   " + CreateDetail(c) + "\n";
        break;
      case Action::kUpdate:
        out += head + "update in place\n";
        break;
      case Action::kRestart:
        out += head + "restart" + (c.diffs.empty() ? "  (" + c.reason + ")" : "") + "\n";
        break;
      case Action::kReplace:
        out += head + "replace" + (c.diffs.empty() ? "  (" + c.reason + ")" : "") + "\n";
        break;
      case Action::kDelete:
        out += head + "delete   (" + c.reason + ")\n";
        break;
      case Action::kNoOp:
        break;
    }
    for (const auto& d : c.diffs) {
      std::string line = "      ";
      std::string path = DisplayPath(d.path);
      if (d.old_value.empty()) {
        line += paint(kGreen, "+") + " " + path + ": " + d.new_value;
      } else if (d.new_value.empty()) {
        line += paint(kRed, "-") + " " + path + ": " + d.old_value;
      } else {
        line += paint(kYellow, "~") + " " + path + ": " + d.old_value + " -> " + d.new_value;
      }
      if (d.field_class == FieldClass::kReplace) {
        line += "   " + paint(kBold, "# forces replacement");
      } else if (d.field_class == FieldClass::kRestart) {
        line += "   # requires restart";
      }
      out += line + "\n";
    }
    if (c.action != Action::kCreate) {
      for (const auto& p : c.pulls) out += "      " + p + ": pull\n";
    }
    if (!c.provider.empty() && c.action != Action::kUpdate && c.action != Action::kDelete) {
      out += "      provider: " + c.provider + "\n";  // what boots it
    }
    if (!c.start.empty() && c.action != Action::kUpdate && c.action != Action::kDelete && c.action != Action::kNoOp) {
      out += "      start: " + c.start + "\n";  // boot or restore from a template
    }
    for (const auto& note : c.volume_notes) out += "      " + note + "\n";
  }
  out += "\nPlan: " + std::to_string(s.create) + " to create, " + std::to_string(s.update) +
         " to update, " + std::to_string(s.restart) + " to restart, " + std::to_string(s.replace) +
         " to replace, " + std::to_string(s.remove) + " to delete.";
  int network_changes = static_cast<int>(std::count_if(plan.networks.begin(), plan.networks.end(),
                                                       [](const NetworkChange& n) { return n.action != Action::kNoOp; }));
  if (network_changes > 0) {
    out += " Networks: " + std::to_string(network_changes) + (network_changes == 1 ? " change." : " changes.");
  }
  out += "\n";
  return out;
}

std::string RenderPlanJson(const Plan& plan) {
  json j;
  j["formatVersion"] = "1";
  j["owner"] = plan.owner;
  j["changes"] = json::array();
  for (const auto& c : plan.changes) {
    json jc;
    jc["name"] = c.name;
    jc["action"] = std::string(ToString(c.action));
    jc["reason"] = c.reason;
    jc["diffs"] = json::array();
    for (const auto& d : c.diffs) {
      json jd;
      jd["path"] = DisplayPath(d.path);
      jd["before"] = d.old_value.empty() ? json(nullptr) : json::parse(d.old_value, nullptr, false);
      jd["after"] = d.new_value.empty() ? json(nullptr) : json::parse(d.new_value, nullptr, false);
      jd["class"] = std::string(ToString(d.field_class));
      jc["diffs"].push_back(std::move(jd));
    }
    jc["pulls"] = c.pulls;
    if (!c.volume_notes.empty()) jc["volumes"] = c.volume_notes;
    if (!c.provider.empty()) jc["provider"] = c.provider;
    if (!c.start.empty()) jc["start"] = c.start;
    if (!c.desired_hash.empty()) jc["specHash"] = c.desired_hash;
    j["changes"].push_back(std::move(jc));
  }
  j["networks"] = json::array();
  for (const auto& n : plan.networks) {
    json jn;
    jn["name"] = n.name;
    jn["action"] = std::string(ToString(n.action));
    jn["reason"] = n.reason;
    jn["implicit"] = n.implicit;
    jn["diffs"] = json::array();
    for (const auto& d : n.diffs) {
      jn["diffs"].push_back({{"path", DisplayPath(d.path)},
                             {"before", d.old_value.empty() ? json(nullptr) : json::parse(d.old_value, nullptr, false)},
                             {"after", d.new_value.empty() ? json(nullptr) : json::parse(d.new_value, nullptr, false)},
                             {"class", std::string(ToString(d.field_class))}});
    }
    j["networks"].push_back(std::move(jn));
  }
  PlanSummary s = plan.Summary();
  j["summary"] = {{"create", s.create},   {"update", s.update}, {"restart", s.restart},
                  {"replace", s.replace}, {"delete", s.remove}, {"unchanged", s.unchanged}};
  j["errors"] = plan.errors;
  return j.dump(2) + "\n";
}

}  // namespace banger
