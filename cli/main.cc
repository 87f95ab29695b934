// banger: the command-line entry point. The real implementations (SQLite
// store, hypervisor, artifact stores) come from host::Host, opened lazily by
// the commands that need them.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/files.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/artifact_commands.h"
#include "cli/output.h"
#include "cli/vm_commands.h"
#include "cli/watch_commands.h"
#include "cli/dns_commands.h"
#include "cli/network_commands.h"
#include "cli/guest_files_commands.h"
#include "reconciler/network_plan.h"
#include "host/config.h"
#include "host/host.h"
#include "host/vm_runtime.h"
#include "reconciler/engine.h"
#include "reconciler/plan.h"
#include "spec/loader.h"
#include "state/layout.h"
#include "state/state_store.h"

namespace banger::cli {
namespace {

// Exit codes (docs/cli.md).
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitChanges = 2;
constexpr int kExitUsage = 64;

struct Globals {
  std::string state_dir;
  std::string config_path;
  std::string log_level = "warn";
  bool verbose = false;
};

// The host, opened by the commands that need it (validate, schema and
// config show never create a state directory).
class Context {
 public:
  explicit Context(const Globals& g) : globals_(g) {}

  Status Init() {
    BANGER_ASSIGN_OR_RETURN(host_, host::Host::Open(Options(globals_)));
    return OkStatus();
  }

  static host::HostOptions Options(const Globals& g) { return {g.state_dir, g.config_path}; }

  host::Host& host() { return *host_; }
  Engine MakeEngine(EventSink& sink, int parallel) { return host_->MakeEngine(sink, parallel); }
  StateStore& store() { return host_->store(); }
  Clock& clock() { return host_->clock(); }
  Result<SandboxRecord> FindSandbox(const std::string& name) { return host_->FindSandbox(name); }
  const host::Config& config() const { return host_->config(); }
  const StateLayout& layout() const { return host_->layout(); }

 private:
  Globals globals_;
  std::unique_ptr<host::Host> host_;
};

int Fail(const Status& s) {
  PrintError(s);
  return kExitError;
}

// Opens the host context; on failure prints the error and sets exit_code.
bool OpenOrFail(Context& ctx, int& exit_code) {
  Status s = ctx.Init();
  if (!s.ok()) exit_code = Fail(s);
  return s.ok();
}

// Loads specs and prints diagnostics; returns false on errors.
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

Result<Plan> MakePlan(Context& ctx, const LoadResult& specs, const std::vector<std::string>& paths,
                      const std::string& set_name, bool prune, EventSink& sink) {
  Engine engine = ctx.MakeEngine(sink, 0);
  // Observe first, so the plan starts from the truth (crashed VMs, interrupted runs).
  BANGER_RETURN_IF_ERROR(engine.Refresh());
  BANGER_ASSIGN_OR_RETURN(auto observed, ctx.store().ListSandboxes());
  PlanOptions o;
  o.owner = OwnerFor(AbsolutePaths(paths), set_name);
  o.prune = prune;
  o.default_kernel = ctx.host().artifacts().DefaultKernel();
  ArtifactStore& a = ctx.host().artifacts();
  o.artifact_present = [&a](std::string_view kind, const std::string& name) {
    return kind == "image" ? a.ImagePresent(name) : a.KernelPresent(name);
  };
  Plan plan = ComputePlan(specs.specs, observed, o);
  NetworkObservations networks;
  BANGER_ASSIGN_OR_RETURN(networks.networks, ctx.store().ListNetworks());
  BANGER_ASSIGN_OR_RETURN(networks.leases, ctx.store().ListLeases(""));
  PlanNetworks(specs.networks, specs.specs, observed, networks, o, plan);
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

// When parsing stopped because a command that needs a subcommand got a word
// that is none of them ("banger frobnicate"), says so and names the word;
// false when that is not what went wrong.
bool ReportUnknownCommand(CLI::App& app) {
  CLI::App* cur = &app;
  std::string path;
  while (!cur->get_subcommands().empty()) {
    cur = cur->get_subcommands().front();
    path += cur->get_name() + " ";
  }
  if (cur->get_require_subcommand_min() == 0) return false;
  std::string word;
  for (const auto& arg : app.remaining(true)) {
    if (!arg.empty() && arg[0] != '-') {
      word = arg;
      break;
    }
  }
  if (word.empty()) return false;
  std::vector<std::string> names;
  for (const CLI::App* sub : cur->get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
  }
  std::string hint = ClosestMatch(word, names);
  std::fprintf(stderr, "error: unknown command \"%s%s\"%s\n", path.c_str(), word.c_str(),
               hint.empty() ? "" : (" (did you mean \"" + path + hint + "\"?)").c_str());
  std::fprintf(stderr, "Commands: %s\nRun 'banger %s--help' for more.\n", Join(names, ", ").c_str(), path.c_str());
  return true;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"banger: declarative microVM sandboxes.\n"
               "Keep sandbox specs in YAML, see the plan, converge the host."};
  app.set_version_flag("--version", std::string("banger ") + BANGER_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  Globals g;
  app.add_option("--state-dir", g.state_dir, "State directory (default: $BANGER_HOME, /var/lib/banger as root, XDG data dir otherwise)");
  app.add_option("--config", g.config_path, "Config file (default: /etc/banger/config.yaml as root)");
  app.add_option("--log-level", g.log_level, "trace|debug|info|warn|error|off")->envname("BANGER_LOG");
  app.add_flag("-v,--verbose", g.verbose, "Show every step as it starts");

  int exit_code = kExitOk;

  // validate
  auto* validate = app.add_subcommand("validate", "Check spec files without touching the host");
  std::vector<std::string> v_files;
  std::string v_output = "text";
  validate->add_option("-f,--filename", v_files, "Spec file or directory (repeatable)")->required();
  validate->add_option("-o,--output", v_output, "text|json")->check(CLI::IsMember({"text", "json"}));
  validate->callback([&] {
    std::vector<std::filesystem::path> ps(v_files.begin(), v_files.end());
    LoadResult r = LoadSpecPaths(ps);
    if (v_output == "json") {
      nlohmann::json diags = nlohmann::json::array();
      for (const auto& d : r.diagnostics.items()) {
        diags.push_back({{"file", d.where.file}, {"line", d.where.line}, {"column", d.where.column},
                         {"severity", d.severity == Severity::kError ? "error" : "warning"},
                         {"message", d.message}});
      }
      nlohmann::json names = nlohmann::json::array();
      for (const auto& s : r.specs) names.push_back(s.spec.name);
      std::cout << nlohmann::json{{"valid", !r.diagnostics.HasErrors()}, {"sandboxes", names},
                                  {"diagnostics", diags}}.dump(2)
                << "\n";
    } else {
      std::fputs(r.diagnostics.ToString().c_str(), stderr);
      if (!r.diagnostics.HasErrors()) {
        std::printf("%zu sandbox spec%s valid.\n", r.specs.size(), r.specs.size() == 1 ? "" : "s");
      }
    }
    exit_code = r.diagnostics.HasErrors() ? kExitError : kExitOk;
  });

  // schema
  auto* schema = app.add_subcommand("schema", "Print the JSON Schema of a sandbox spec");
  schema->callback([&] { std::cout << SpecJsonSchema() << "\n"; });

  // plan
  auto* plan_cmd = app.add_subcommand("plan", "Show what apply would change, and why");
  std::vector<std::string> p_files;
  std::string p_output = "text", p_set;
  bool p_prune = false, p_detailed = false;
  plan_cmd->add_option("-f,--filename", p_files, "Spec file or directory (repeatable)")->required();
  plan_cmd->add_option("-o,--output", p_output, "text|json")->check(CLI::IsMember({"text", "json"}));
  plan_cmd->add_option("--set", p_set, "Name of the apply set (default: the spec paths)");
  plan_cmd->add_flag("--prune", p_prune, "Also plan deletion of this set's sandboxes missing from the specs");
  plan_cmd->add_flag("--detailed-exitcode", p_detailed, "Exit 0 when no changes, 2 when changes, 1 on error");
  plan_cmd->callback([&] {
    LoadResult specs;
    if (!LoadSpecs(p_files, specs)) {
      exit_code = kExitError;
      return;
    }
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    NullEventSink sink;
    auto plan = MakePlan(ctx, specs, p_files, p_set, p_prune, sink);
    if (!plan) {
      exit_code = Fail(plan.error());
      return;
    }
    if (p_output == "json") {
      std::cout << RenderPlanJson(*plan);
    } else {
      std::cout << RenderPlanText(*plan, UseColor(stdout));
    }
    if (!plan->errors.empty()) exit_code = kExitError;
    else if (p_detailed && plan->HasChanges()) exit_code = kExitChanges;
  });

  // apply
  auto* apply = app.add_subcommand("apply", "Converge the host to the specs");
  std::vector<std::string> a_files;
  std::string a_set, a_output = "text";
  bool a_prune = false, a_yes = false;
  int a_parallel = 0;
  apply->add_option("-f,--filename", a_files, "Spec file or directory (repeatable)")->required();
  apply->add_option("--set", a_set, "Name of the apply set (default: the spec paths)");
  apply->add_flag("--prune", a_prune, "Delete this set's sandboxes that are no longer in the specs");
  apply->add_flag("-y,--yes", a_yes, "Do not ask for confirmation");
  apply->add_option("--parallel", a_parallel, "Sandboxes worked on at once (default: config, 4)")
      ->check(CLI::Range(1, 64));
  apply->add_option("-o,--output", a_output, "text|json")->check(CLI::IsMember({"text", "json"}));
  apply->callback([&] {
    LoadResult specs;
    if (!LoadSpecs(a_files, specs)) {
      exit_code = kExitError;
      return;
    }
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    TerminalSink sink(g.verbose);
    NullEventSink quiet;
    EventSink& out_sink = a_output == "json" ? static_cast<EventSink&>(quiet) : sink;
    auto plan = MakePlan(ctx, specs, a_files, a_set, a_prune, out_sink);
    if (!plan) {
      exit_code = Fail(plan.error());
      return;
    }
    if (a_output == "text") std::cout << RenderPlanText(*plan, UseColor(stdout));
    if (!plan->errors.empty()) {
      exit_code = kExitError;
      return;
    }
    if (!plan->HasChanges()) {
      if (a_output == "json") std::cout << ReportJson(ApplyReport{});
      return;
    }
    bool interactive = IsTerminal(stdin) && IsTerminal(stderr);
    if (!a_yes && interactive) {
      std::cout << std::flush;
      if (!Confirm("\nApply these changes?")) {
        std::fprintf(stderr, "Apply cancelled.\n");
        exit_code = kExitError;
        return;
      }
    }
    if (a_output == "text") std::cout << "\n" << std::flush;
    Engine engine = ctx.MakeEngine(out_sink, a_parallel);
    ApplyReport rep = engine.Apply(*plan);
    if (a_output == "json") {
      std::cout << ReportJson(rep);
    } else {
      std::cout << "\n";
      for (const auto& r : rep.results) std::cout << ResultLine(r) << "\n";
    }
    exit_code = rep.ok() ? kExitOk : kExitError;
  });

  // get
  auto* get = app.add_subcommand("get", "List sandboxes and their status");
  std::string get_name, get_output = "table";
  get->add_option("name", get_name, "Sandbox name");
  get->add_option("-o,--output", get_output, "table|wide|json|yaml")
      ->check(CLI::IsMember({"table", "wide", "json", "yaml"}));
  get->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    NullEventSink sink;
    Engine engine = ctx.MakeEngine(sink, 0);
    if (Status s = engine.Refresh(); !s.ok()) {
      exit_code = Fail(s);
      return;
    }
    std::vector<SandboxRecord> recs;
    if (!get_name.empty()) {
      auto r = ctx.FindSandbox(get_name);
      if (!r) {
        exit_code = Fail(r.error());
        return;
      }
      recs.push_back(*r);
    } else {
      auto r = ctx.store().ListSandboxes();
      if (!r) {
        exit_code = Fail(r.error());
        return;
      }
      recs = *r;
    }
    if (get_output == "json") {
      std::cout << SandboxJson(recs, !get_name.empty());
      return;
    }
    if (get_output == "yaml") {
      std::cout << SandboxYaml(recs);
      return;
    }
    if (recs.empty()) {
      std::fprintf(stderr, "No sandboxes.\n");
      return;
    }
    int64_t now = ctx.clock().NowUnix();
    std::vector<std::vector<std::string>> rows;
    bool wide = get_output == "wide";
    if (wide) rows.push_back({"NAME", "STATUS", "IMAGE", "KERNEL", "ADDRESS", "HYPERVISOR", "PID", "SET", "AGE", "ERROR"});
    else rows.push_back({"NAME", "STATUS", "IMAGE", "ADDRESS", "AGE"});
    for (const auto& r : recs) {
      auto spec = RecordSpec(r);
      std::string image = r.image_ref.empty() && spec ? spec->image : r.image_ref;
      std::string status = StatusWord(r);
      if (wide) {
        rows.push_back({r.name, status, image, r.kernel_ref.empty() ? "-" : r.kernel_ref,
                        r.address.empty() ? "-" : r.address, r.hypervisor.empty() ? "-" : r.hypervisor,
                        r.pid ? std::to_string(r.pid) : "-", r.owner, Age(r.created_at, now),
                        r.last_error});
      } else {
        rows.push_back({r.name, status, image, r.address.empty() ? "-" : r.address, Age(r.created_at, now)});
      }
    }
    std::cout << RenderTable(rows);
  });

  // describe
  auto* describe = app.add_subcommand("describe", "Show one sandbox in detail, with recent events");
  std::string d_name;
  describe->add_option("name", d_name, "Sandbox name")->required();
  describe->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    NullEventSink sink;
    Engine engine = ctx.MakeEngine(sink, 0);
    (void)engine.Refresh();
    auto r = ctx.FindSandbox(d_name);
    if (!r) {
      exit_code = Fail(r.error());
      return;
    }
    int64_t now = ctx.clock().NowUnix();
    std::vector<std::vector<std::string>> rows = {
        {"Name:", r->name},
        {"Id:", r->id},
        {"Status:", StatusWord(*r)},
        {"Error:", r->last_error.empty() ? "-" : r->last_error},
        {"Set:", r->owner},
        {"Image:", r->image_ref.empty() ? "-" : r->image_ref},
        {"Kernel:", r->kernel_ref.empty() ? "-" : r->kernel_ref},
        {"Hypervisor:", r->hypervisor.empty() ? "-" : r->hypervisor},
        {"PID:", r->pid ? std::to_string(r->pid) : "-"},
        {"Address:", r->address.empty() ? "-" : r->address},
        {"Disk:", r->disk_path.empty() ? "-" : r->disk_path},
        {"Runtime dir:", r->runtime_dir.empty() ? "-" : r->runtime_dir},
        {"Provisioned:", r->provisioned ? "yes" : "no"},
        {"Spec hash:", r->spec_hash.substr(0, 16)},
        {"Generation:", std::to_string(r->generation)},
        {"Created:", Age(r->created_at, now) + " ago"},
    };
    std::cout << RenderTable(rows);
    auto spec = RecordSpec(*r);
    if (spec) {
      auto j = nlohmann::json::parse(r->spec_json, nullptr, false);
      if (!j.is_discarded()) std::cout << "\nSpec:\n" << j["spec"].dump(2) << "\n";
    }
    auto events = ctx.store().ListEvents(d_name, 20);
    if (events && !events->empty()) {
      std::cout << "\nEvents:\n";
      std::vector<std::vector<std::string>> ev = {{"  AGE", "TYPE", "REASON", "MESSAGE"}};
      for (const auto& e : *events) ev.push_back({"  " + Age(e.time, now), e.type, e.reason, e.message});
      std::cout << RenderTable(ev);
    }
  });

  // events
  auto* events = app.add_subcommand("events", "Show recorded events");
  std::string e_name, e_output = "text";
  int e_limit = 50;
  events->add_option("name", e_name, "Only events of this sandbox");
  events->add_option("--limit", e_limit, "Newest N events")->check(CLI::Range(1, 100000));
  events->add_option("-o,--output", e_output, "text|json")->check(CLI::IsMember({"text", "json"}));
  events->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    auto evs = ctx.store().ListEvents(e_name, e_limit);
    if (!evs) {
      exit_code = Fail(evs.error());
      return;
    }
    if (e_output == "json") {
      nlohmann::json items = nlohmann::json::array();
      for (const auto& e : *evs) {
        items.push_back({{"id", e.id}, {"time", e.time}, {"sandbox", e.sandbox}, {"type", e.type},
                         {"reason", e.reason}, {"message", e.message}});
      }
      std::cout << nlohmann::json{{"items", items}}.dump(2) << "\n";
      return;
    }
    int64_t now = ctx.clock().NowUnix();
    std::vector<std::vector<std::string>> rows = {{"AGE", "SANDBOX", "TYPE", "REASON", "MESSAGE"}};
    for (const auto& e : *evs) rows.push_back({Age(e.time, now), e.sandbox, e.type, e.reason, e.message});
    std::cout << RenderTable(rows);
  });

  // delete
  auto* del = app.add_subcommand("delete", "Delete sandboxes (VM, disk and record)");
  std::vector<std::string> del_names, del_files;
  bool del_yes = false;
  del->add_option("names", del_names, "Sandbox names");
  del->add_option("-f,--filename", del_files,
                  "Delete the sandboxes these specs define, then the networks they declare (once unused)");
  del->add_flag("-y,--yes", del_yes, "Do not ask for confirmation");
  del->callback([&] {
    std::vector<std::string> names = del_names;
    std::vector<NetworkDocument> del_networks;
    if (!del_files.empty()) {
      LoadResult specs;
      if (!LoadSpecs(del_files, specs)) {
        exit_code = kExitError;
        return;
      }
      for (const auto& s : specs.specs) names.push_back(s.spec.name);
      del_networks = specs.networks;
    }
    if (names.empty() && del_networks.empty()) {
      std::fprintf(stderr, "error: name a sandbox or pass -f PATH\n");
      exit_code = kExitUsage;
      return;
    }
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    TerminalSink sink(g.verbose);
    Engine engine = ctx.MakeEngine(sink, 0);
    for (const auto& n : names) {
      auto rec = ctx.store().GetSandbox(n);
      if (!rec) {
        std::fprintf(stderr, "%s: not found\n", n.c_str());
        continue;
      }
      Status s = engine.DeleteSandbox(n);
      if (!s.ok()) {
        std::fprintf(stderr, "✗ %s: %s\n", n.c_str(), s.message().c_str());
        exit_code = kExitError;
      } else {
        std::printf("✓ %s: deleted\n", n.c_str());
      }
    }
    // The networks declared in those files go too, once no sandbox uses them.
    for (const auto& doc : del_networks) {
      auto rec = ctx.store().GetNetwork(doc.spec.name);
      if (!rec || !rec->declared) continue;
      NetworkChange c;
      c.name = doc.spec.name;
      c.action = Action::kDelete;
      c.current = *rec;
      Status s = engine.networks().Apply(c);
      if (!s.ok()) {
        std::fprintf(stderr, "✗ network/%s: %s\n", c.name.c_str(), s.message().c_str());
        exit_code = kExitError;
      } else {
        std::printf("✓ network/%s: deleted\n", c.name.c_str());
      }
    }
  });

  // stop / start / restart
  auto add_lifecycle = [&](const char* name, const char* help, int which) {
    auto* cmd = app.add_subcommand(name, help);
    auto* target = new std::string();  // lives as long as the app
    cmd->add_option("name", *target, "Sandbox name")->required();
    cmd->callback([&, target, which, name] {
      Context ctx(g);
      if (!OpenOrFail(ctx, exit_code)) return;
      TerminalSink sink(g.verbose);
      Engine engine = ctx.MakeEngine(sink, 0);
      (void)engine.Refresh();
      Status s;
      if (which == 0) s = engine.StopSandbox(*target);
      else if (which == 1) s = engine.StartSandbox(*target);
      else {
        s = engine.StopSandbox(*target);
        if (s.ok()) s = engine.StartSandbox(*target);
      }
      if (!s.ok()) {
        exit_code = Fail(s);
        return;
      }
      std::printf("✓ %s: %s\n", target->c_str(), which == 0 ? "stopped" : (which == 1 ? "started" : "restarted"));
      (void)name;
    });
  };
  add_lifecycle("stop", "Stop a sandbox (it stays stopped until started)", 0);
  add_lifecycle("start", "Start a stopped sandbox", 1);
  add_lifecycle("restart", "Stop and start a sandbox", 2);

  // exec
  auto* exec = app.add_subcommand("exec", "Run a command in a sandbox (exit code passed through)");
  std::string x_name, x_cwd;
  std::vector<std::string> x_cmd, x_env;
  bool x_stdin = false, x_tty = false;
  exec->add_option("name", x_name, "Sandbox name")->required();
  exec->add_flag("-i,--stdin", x_stdin, "Pass stdin to the command");
  exec->add_flag("-t,--tty", x_tty, "Allocate a terminal");
  exec->add_option("-e,--env", x_env, "KEY=VALUE for the command (repeatable)");
  exec->add_option("-w,--workdir", x_cwd, "Working directory in the guest");
  exec->add_option("command", x_cmd, "Command and arguments (after --)")->required();
  exec->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    auto rec = ctx.FindSandbox(x_name);
    if (!rec) {
      exit_code = Fail(rec.error());
      return;
    }
    if (rec->phase != SandboxPhase::kReady && rec->phase != SandboxPhase::kBooting) {
      exit_code = Fail(FailedPrecondition("sandbox \"" + x_name + "\" is " + std::string(ToString(rec->phase)) +
                                          (rec->last_error.empty() ? "" : ": " + rec->last_error)));
      return;
    }
    std::map<std::string, std::string> env;
    for (const auto& kv : x_env) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        exit_code = Fail(InvalidArgument("--env " + kv + ": expected KEY=VALUE"));
        return;
      }
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto code = RunInteractiveExec(*rec, x_cmd, env, x_cwd, x_stdin, x_tty);
    if (!code) {
      exit_code = Fail(code.error());
      return;
    }
    exit_code = *code;
  });

  // logs
  auto* logs = app.add_subcommand("logs", "Print a sandbox's serial console");
  std::string l_name;
  bool l_follow = false;
  logs->add_option("name", l_name, "Sandbox name")->required();
  logs->add_flag("-f,--follow", l_follow, "Keep printing new output until interrupted");
  logs->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    auto rec = ctx.FindSandbox(l_name);
    if (!rec) {
      exit_code = Fail(rec.error());
      return;
    }
    if (rec->runtime_dir.empty()) {
      exit_code = Fail(FailedPrecondition("sandbox \"" + l_name + "\" has not booted yet"));
      return;
    }
    exit_code = FollowFile(host::ConsoleLogOf(*rec), l_follow, ctx.clock()) ? kExitOk : kExitError;
  });

  // ssh
  auto* ssh = app.add_subcommand("ssh", "Open an SSH session to a sandbox (needs sshd and a port for 22)");
  std::string s_name, s_user = "root";
  std::vector<std::string> s_args;
  ssh->add_option("name", s_name, "Sandbox name")->required();
  ssh->add_option("-l,--user", s_user, "User to log in as");
  ssh->add_option("args", s_args, "Extra ssh arguments (after --)");
  ssh->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    auto rec = ctx.FindSandbox(s_name);
    if (!rec) {
      exit_code = Fail(rec.error());
      return;
    }
    auto spec = RecordSpec(*rec);
    if (!spec) {
      exit_code = Fail(spec.error());
      return;
    }
    uint16_t port = 0;
    for (const auto& p : spec->network.ports) {
      if (p.guest == 22 && p.protocol == Protocol::kTcp) port = p.host;
    }
    if (port == 0 || spec->network.mode == NetworkMode::kNone) {
      exit_code = Fail(FailedPrecondition("sandbox \"" + s_name + "\" forwards no host port to guest port 22; add "
                                          "network.ports: [{host: 2222, guest: 22}] to its spec"));
      return;
    }
    std::vector<std::string> ssh_argv = {"ssh", "-p", std::to_string(port), "-o", "StrictHostKeyChecking=no",
                                     "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                     s_user + "@127.0.0.1"};
    ssh_argv.insert(ssh_argv.end(), s_args.begin(), s_args.end());
    std::vector<char*> cargv;
    for (auto& a : ssh_argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp("ssh", cargv.data());
    exit_code = Fail(ErrnoStatus(errno, "running ssh"));
  });

  // reconcile
  auto* reconcile = app.add_subcommand("reconcile", "One pass: restart crashed or hung sandboxes as their restartPolicy allows");
  std::string r_output = "text";
  reconcile->add_option("-o,--output", r_output, "text|json")->check(CLI::IsMember({"text", "json"}));
  reconcile->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    TerminalSink sink(g.verbose);
    NullEventSink quiet;
    Engine engine = ctx.MakeEngine(r_output == "json" ? static_cast<EventSink&>(quiet) : sink, 0);
    ApplyReport rep = engine.Reconcile();
    if (r_output == "json") {
      std::cout << ReportJson(rep);
    } else if (rep.results.empty()) {
      std::cout << "All sandboxes are as they should be.\n";
    } else {
      for (const auto& r : rep.results) std::cout << ResultLine(r) << "\n";
    }
    exit_code = rep.ok() ? kExitOk : kExitError;
  });

  // doctor
  auto* doctor = app.add_subcommand("doctor", "Check that this host can run sandboxes");
  doctor->callback([&] {
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    int problems = 0;
    auto check = [&](const std::string& what, const Status& s) {
      std::printf("%s %s%s\n", s.ok() ? "✓" : "✗", what.c_str(), s.ok() ? "" : (": " + s.message()).c_str());
      if (!s.ok()) ++problems;
    };
    check("state directory " + ctx.layout().root.string(), ctx.host().CheckStateDirectory());
    SandboxRuntime* rt = ctx.host().runtime();
    check("hypervisor (QEMU) and guest agent", rt ? rt->CheckAvailable() : FailedPrecondition("none"));
    auto verdict = ReadFile(ctx.layout().root / "accel-verdict");
    std::printf("  acceleration: %s (config accel: %s, machine: %s)\n",
                verdict ? std::string(Trim(*verdict)).c_str() : "not probed yet (decided at first boot)",
                ctx.config().accel.c_str(), ctx.config().machine.c_str());
    std::error_code ec;
    check("/dev/kvm", std::filesystem::exists("/dev/kvm", ec)
                          ? OkStatus()
                          : FailedPrecondition("absent: sandboxes run under software emulation (slower)"));
    NetworkDriver& net = ctx.host().network();
    check("bridged networking" + (net.Namespace().empty() ? std::string() : " in network namespace " + net.Namespace()),
          net.CheckAvailable().ok()
              ? OkStatus()
              : FailedPrecondition(net.CheckAvailable().message() +
                                   " (sandboxes with network.mode: user or none still work)"));
    std::string kernel = ctx.host().artifacts().DefaultKernel();
    check("default kernel " + kernel,
          ctx.host().artifacts().KernelPresent(kernel)
              ? OkStatus()
              : FailedPrecondition("not installed yet; apply pulls it, or run `banger kernel pull " + kernel + "`"));
    for (const char* tool : {"qemu-img", "mkfs.ext4", "debootstrap"}) {
      auto found = FindProgram(tool);
      check(found ? std::string(tool) + " (" + found->string() + ")" : std::string(tool),
            found ? OkStatus() : FailedPrecondition("not installed (scripts/setup.sh)"));
    }
    exit_code = problems == 0 ? kExitOk : kExitError;
  });

  // config
  auto* config = app.add_subcommand("config", "Show the effective configuration");
  auto* config_show = config->add_subcommand("show", "Print the effective configuration");
  config->require_subcommand(1);
  config_show->callback([&] {
    auto c = host::LoadConfig(g.config_path);
    if (!c) {
      exit_code = Fail(c.error());
      return;
    }
    std::cout << host::RenderConfig(*c);
  });

  // version
  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([&] { std::printf("banger %s\n", BANGER_VERSION); });

  AddArtifactCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddWatchCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddNetworkCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddDnsCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddGuestFilesCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (!ReportUnknownCommand(app)) app.exit(e);
    return kExitUsage;
  }
  return exit_code;
}

}  // namespace banger::cli

int main(int argc, char** argv) {
  // Logging before anything else so errors during start-up are formatted.
  const char* lvl = std::getenv("BANGER_LOG");
  banger::InitLogging(lvl && *lvl ? lvl : "warn");
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--log-level") spdlog::set_level(spdlog::level::from_str(argv[i + 1]));
  }
  return banger::cli::Main(argc, argv);
}
