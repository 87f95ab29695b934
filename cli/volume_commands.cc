#include "cli/volume_commands.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "host/host.h"
#include "reconciler/engine.h"
#include "base/strings.h"

namespace banger::cli {
namespace {

constexpr int kExitUsage = 64;

// Bytes the file really takes on the host (it is sparse): st_blocks * 512.
int64_t UsedBytes(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

// Whether `rec`'s VM is running with volume `name` attached.
bool AttachedTo(const SandboxRecord& rec, const std::string& name) {
  bool running = rec.pid != 0 && (rec.phase == SandboxPhase::kReady || rec.phase == SandboxPhase::kBooting ||
                                  rec.phase == SandboxPhase::kUnknown || rec.phase == SandboxPhase::kPending);
  if (!running) return false;
  auto spec = RecordSpec(rec);
  if (!spec) return false;
  for (const auto& v : spec->volumes) {
    if (v.name == name) return true;
  }
  return false;
}

}  // namespace

void AddVolumeCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto* volume = app.add_subcommand("volume", "Persistent volumes of sandboxes (spec.volumes)");
  volume->require_subcommand(1);

  auto* ls = volume->add_subcommand("ls", "List volumes with their size, use on the host and attachment");
  ls->footer("Example:\n  banger volume ls\n  banger volume ls -o json");
  auto* output = new std::string("table");
  ls->add_option("-o,--output", *output, "table|json")->check(CLI::IsMember({"table", "json"}));
  ls->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    NullEventSink sink;
    Engine engine = (*h)->MakeEngine(sink);
    (void)engine.Refresh();  // a VM that died no longer holds its volumes
    StateStore& store = (*h)->store();
    auto volumes = store.ListVolumes("");
    auto sandboxes = store.ListSandboxes();
    if (!volumes || !sandboxes) {
      exit_code = PrintError(!volumes ? volumes.error() : sandboxes.error());
      return;
    }
    std::map<std::string, const SandboxRecord*> by_name;
    for (const auto& r : *sandboxes) by_name[r.name] = &r;
    auto attached = [&](const VolumeRecord& v) {
      auto it = by_name.find(v.sandbox);
      return it != by_name.end() && AttachedTo(*it->second, v.name);
    };
    if (*output == "json") {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& v : *volumes) {
        int64_t used = UsedBytes(v.path);
        out.push_back({{"sandbox", v.sandbox},
                       {"name", v.name},
                       {"mountPath", v.mount_path},
                       {"sizeBytes", v.size_bytes},
                       {"usedBytes", used < 0 ? nlohmann::json(nullptr) : nlohmann::json(used)},
                       {"seededFrom", v.seeded_from},
                       {"seedImage", v.seed_image},
                       {"path", v.path},
                       {"sandboxExists", by_name.count(v.sandbox) > 0},
                       {"attached", attached(v)},
                       {"createdAt", v.created_at}});
      }
      std::printf("%s\n", out.dump(2).c_str());
      exit_code = 0;
      return;
    }
    if (volumes->empty()) {
      std::printf("No volumes. Declare them in a sandbox spec under spec.volumes.\n");
      exit_code = 0;
      return;
    }
    std::vector<std::vector<std::string>> rows = {
        {"SANDBOX", "NAME", "MOUNT PATH", "SIZE", "USED", "SEEDED FROM", "ATTACHED"}};
    for (const auto& v : *volumes) {
      int64_t used = UsedBytes(v.path);
      std::string seeded = v.seeded_from == "image" ? "image " + v.seed_image : v.seeded_from;
      std::string state = attached(v) ? "yes" : by_name.count(v.sandbox) ? "no" : "no (sandbox deleted)";
      rows.push_back({v.sandbox, v.name, v.mount_path, FormatByteSize(v.size_bytes),
                      used < 0 ? "missing" : HumanBytes(static_cast<uint64_t>(used)), seeded, state});
    }
    std::printf("%s", RenderTable(rows).c_str());
    exit_code = 0;
  });

  auto* rm = volume->add_subcommand("rm", "Delete a volume and its data (refused while its sandbox runs with it)");
  rm->footer("Example:\n  banger volume rm web/data");
  auto* target = new std::string();
  rm->add_option("volume", *target, "SANDBOX/VOLUME")->required();
  rm->callback([=, &exit_code] {
    size_t slash = target->find('/');
    std::string sandbox = slash == std::string::npos ? "" : target->substr(0, slash);
    std::string name = slash == std::string::npos ? "" : target->substr(slash + 1);
    if (!IsDnsLabel(sandbox) || !IsDnsLabel(name)) {
      std::fprintf(stderr, "error: expected SANDBOX/VOLUME (like web/data), got \"%s\"\n", target->c_str());
      exit_code = kExitUsage;
      return;
    }
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    NullEventSink sink;
    Engine engine = (*h)->MakeEngine(sink);
    (void)engine.Refresh();
    Status s = engine.RemoveVolume(sandbox, name);
    if (!s.ok()) {
      exit_code = PrintError(s);
      return;
    }
    std::printf("✓ %s/%s: volume deleted\n", sandbox.c_str(), name.c_str());
    exit_code = 0;
  });
}

}  // namespace banger::cli
