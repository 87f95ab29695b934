#include "cli/snapshot_commands.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "host/templates.h"

namespace banger::cli {

namespace {

std::string Mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fMiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string FormatUnixTime(int64_t t) {
  if (t <= 0) return "-";
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Sandbox ids -> names, for "in use by".
std::map<std::string, std::string> SandboxNames(host::Host& h) {
  std::map<std::string, std::string> names;
  if (auto all = h.store().ListSandboxes(); all.ok()) {
    for (const auto& s : *all) names[s.id] = s.name;
  }
  return names;
}

std::vector<std::string> UsersOf(const host::TemplateInfo& t, const std::map<std::string, std::string>& names) {
  std::vector<std::string> out;
  for (const auto& id : t.used_by) {
    auto it = names.find(id);
    out.push_back(it == names.end() ? id : it->second);
  }
  return out;
}

nlohmann::json ToJson(const host::TemplateInfo& t, const std::map<std::string, std::string>& names) {
  nlohmann::json identity = nlohmann::json::parse(t.identity_json, nullptr, false);
  return {{"id", host::ShortHash(t.hash)},
          {"hash", t.hash},
          {"identity", identity},
          {"stateBytes", t.state_bytes},
          {"diskLayerBytes", t.disk_layer_bytes},
          {"createdAt", FormatUnixTime(t.created_at)},
          {"buildMs", t.build_ms},
          {"usedBy", UsersOf(t, names)}};
}

}  // namespace

void AddSnapshotCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto* snapshot = app.add_subcommand(
      "snapshot", "Templates: saved VMs that sandboxes restore instead of booting (spec.start)");
  snapshot->footer("Examples:\n  banger snapshot ls\n  banger snapshot rm 3f9a1c2e4b5d\n  banger snapshot prune");
  snapshot->require_subcommand(1);

  auto* ls = snapshot->add_subcommand("ls", "List templates: boot identity, sizes, age, sandboxes using them");
  ls->footer("Examples:\n  banger snapshot ls\n  banger snapshot ls -o json");
  auto* output = new std::string("table");
  ls->add_option("-o,--output", *output, "table|json")->check(CLI::IsMember({"table", "json"}));
  ls->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    auto all = host::ListTemplates((*h)->layout());
    if (!all) {
      exit_code = PrintError(all.error());
      return;
    }
    auto names = SandboxNames(**h);
    if (*output == "json") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& t : *all) out.push_back(ToJson(t, names));
      std::printf("%s\n", out.dump(2).c_str());
      exit_code = 0;
      return;
    }
    if (all->empty()) {
      std::printf("No templates. A sandbox with spec.start snapshot saves one at its first start;\n"
                  "sandboxes with start auto (the default) then restore it instead of booting.\n");
      exit_code = 0;
      return;
    }
    std::vector<std::vector<std::string>> rows = {
        {"ID", "IMAGE", "KERNEL", "CPUS", "MEMORY", "STATE", "DISK LAYER", "CREATED", "IN USE BY"}};
    for (const auto& t : *all) {
      std::vector<std::string> users = UsersOf(t, names);
      rows.push_back({host::ShortHash(t.hash), t.image_digest.empty() ? "(built)" : t.image_digest.substr(0, 19), t.kernel_sha256.substr(0, 12),
                      std::to_string(t.cpus), FormatByteSize(t.memory_bytes), Mib(t.state_bytes),
                      Mib(t.disk_layer_bytes), FormatUnixTime(t.created_at),
                      users.empty() ? "-" : std::to_string(users.size()) + " (" + Join(users, ",") + ")"});
    }
    std::printf("%s", RenderTable(rows).c_str());
    exit_code = 0;
  });

  auto* rm = snapshot->add_subcommand("rm", "Remove a template (refused while a sandbox's disk is layered on it)");
  rm->footer("Example:\n  banger snapshot rm 3f9a1c2e4b5d");
  auto* ids = new std::vector<std::string>();
  rm->add_option("ID", *ids, "Template id (at least 4 leading hex digits of its hash)")->required();
  rm->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    exit_code = 0;
    for (const auto& id : *ids) {
      auto t = host::ResolveTemplate((*h)->layout(), id);
      Status s = t ? host::RemoveTemplate((*h)->layout(), *t) : t.error();
      if (!s.ok()) {
        exit_code = PrintError(s);
        continue;
      }
      std::printf("removed template %s\n", host::ShortHash(t->hash).c_str());
    }
  });

  auto* prune = snapshot->add_subcommand("prune", "Remove every template no sandbox uses");
  prune->footer("Example:\n  banger snapshot prune");
  prune->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    exit_code = 0;
    // Builds an interrupted banger left (build VM, staging) go too.
    if (auto* rt = (*h)->runtime(); rt != nullptr) {
      if (Status s = rt->CleanUpAbandoned(); !s.ok()) exit_code = PrintError(s);
    }
    auto all = host::ListTemplates((*h)->layout());
    if (!all) {
      exit_code = PrintError(all.error());
      return;
    }
    int removed = 0;
    for (const auto& t : *all) {
      if (!t.used_by.empty()) continue;
      Status s = host::RemoveTemplate((*h)->layout(), t);
      if (!s.ok()) {
        // Taken into use since it was listed: kept.
        if (s.code() != StatusCode::kFailedPrecondition) exit_code = PrintError(s);
        continue;
      }
      std::printf("removed template %s\n", host::ShortHash(t.hash).c_str());
      ++removed;
    }
    std::printf("%d template%s removed\n", removed, removed == 1 ? "" : "s");
  });
}

}  // namespace banger::cli
