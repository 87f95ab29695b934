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
#include "base/failpoint.h"
#include "base/files.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/artifact_commands.h"
#include "cli/common.h"
#include "cli/output.h"
#include "cli/run_commands.h"
#include "cli/completion_commands.h"
#include "cli/vm_commands.h"
#include "cli/watch_commands.h"
#include "cli/dns_commands.h"
#include "cli/doctor_commands.h"
#include "cli/network_commands.h"
#include "cli/snapshot_commands.h"
#include "cli/ssh_commands.h"
#include "cli/volume_commands.h"
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
    if (sub->get_group().empty()) continue;  // hidden (__complete)
    names.push_back(sub->get_name());
  }
  std::string hint = ClosestMatch(word, names);
  std::fprintf(stderr, "error: unknown command \"%s%s\"%s\n", path.c_str(), word.c_str(),
               hint.empty() ? "" : (" (did you mean \"" + path + hint + "\"?)").c_str());
  std::fprintf(stderr, "Commands: %s\nRun 'banger %s--help' for more.\n", Join(names, ", ").c_str(), path.c_str());
  return true;
}

// CLI11 prints a footer as given; the examples end with a newline so the
// shell prompt (or an error) starts on a line of its own.
void EndFootersWithNewline(CLI::App& app) {
  std::string f = app.get_footer();
  if (!f.empty() && f.back() != '\n') app.footer(f + "\n");
  for (CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) EndFootersWithNewline(*sub);
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"banger: declarative microVM sandboxes.\n"
               "Keep sandbox specs in YAML, see the plan, converge the host."};
  app.set_version_flag("--version", std::string("banger ") + BANGER_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  banger run --rm -- uname -a       # a throwaway sandbox for one command\n"
      "  banger apply -f specs/            # converge the host to the specs\n"
      "  banger get                        # what is running\n"
      "Run 'banger COMMAND --help' for a command's flags and examples.");
  app.fallthrough();  // global options may also follow the subcommand
  Globals g;
  app.add_option("--state-dir", g.state_dir, "State directory (default: $BANGER_HOME, /var/lib/banger as root, XDG data dir otherwise)");
  app.add_option("--config", g.config_path, "Config file (default: /etc/banger/config.yaml as root)");
  app.add_option("--log-level", g.log_level, "trace|debug|info|warn|error|off")->envname("BANGER_LOG");
  app.add_flag("-v,--verbose", g.verbose, "Show every step as it starts");

  int exit_code = kExitOk;

  // validate
  auto* validate = app.add_subcommand("validate", "Check spec files without touching the host");
  validate->footer("Examples:\n  banger validate -f specs/\n  banger validate -f web.yaml -o json");
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
  schema->footer("Example:\n  banger schema > sandbox.schema.json   # for editors' YAML validation");
  schema->callback([&] { std::cout << SpecJsonSchema() << "\n"; });

  // plan
  auto* plan_cmd = app.add_subcommand("plan", "Show what apply would change, and why");
  plan_cmd->footer("Examples:\n  banger plan -f specs/\n  banger plan -f specs/ --prune --detailed-exitcode   # CI: exit 2 when changes");
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
    auto plan = MakePlan(ctx, specs, OwnerFor(AbsolutePaths(p_files), p_set), p_prune, sink);
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
  apply->footer("Examples:\n  banger apply -f specs/ --yes\n  banger apply -f specs/ --prune --set team-a");
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
    auto plan = MakePlan(ctx, specs, OwnerFor(AbsolutePaths(a_files), a_set), a_prune, out_sink);
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
  get->footer("Examples:\n  banger get\n  banger get web -o json\n  banger get -o wide   # ORIGIN: the apply set, or run:NAME for banger run");
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
    if (wide) rows.push_back({"NAME", "STATUS", "IMAGE", "KERNEL", "ADDRESS", "HYPERVISOR", "PID", "ORIGIN", "AGE", "ERROR"});
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
  describe->footer("Example:\n  banger describe web");
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
  events->footer("Examples:\n  banger events\n  banger events web --limit 10 -o json");
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
  del->footer("Examples:\n  banger delete web --yes\n  banger delete -f specs/ --yes");
  std::vector<std::string> del_names, del_files;
  bool del_yes = false;
  del->add_option("names", del_names, "Sandbox names");
  del->add_option("-f,--filename", del_files,
                  "Delete the sandboxes these specs define, then the networks they declare (once unused)");
  del->add_flag("-y,--yes", del_yes, "Do not ask for confirmation");
  bool del_volumes = false;
  del->add_flag("--volumes", del_volumes,
                "Also delete the sandboxes' volumes (spec.volumes), which a delete otherwise keeps");
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
    // Closes the journal steps of an interrupted run first, as every other
    // command that acts on sandboxes does (a crashed apply's `started` steps).
    (void)engine.Refresh();
    for (const auto& n : names) {
      auto rec = ctx.store().GetSandbox(n);
      auto volumes = ctx.store().ListVolumes(n);
      bool has_volumes = volumes.ok() && !volumes->empty();
      if (!rec && !(del_volumes && has_volumes)) {
        std::fprintf(stderr, "%s: not found\n", n.c_str());
        continue;
      }
      Status s = rec ? engine.DeleteSandbox(n) : OkStatus();
      if (!s.ok()) {
        std::fprintf(stderr, "✗ %s: %s\n", n.c_str(), s.message().c_str());
        exit_code = kExitError;
        continue;
      }
      if (rec) std::printf("✓ %s: deleted\n", n.c_str());
      if (!has_volumes) continue;
      if (!del_volumes) {
        std::printf("  %s: kept %zu volume%s (banger volume ls; delete with banger delete --volumes %s)\n", n.c_str(),
                    volumes->size(), volumes->size() == 1 ? "" : "s", n.c_str());
        continue;
      }
      if (Status v = engine.DeleteVolumes(n); !v.ok()) {
        std::fprintf(stderr, "✗ %s: volumes: %s\n", n.c_str(), v.message().c_str());
        exit_code = kExitError;
      } else {
        for (const auto& vol : *volumes) std::printf("✓ %s/%s: volume deleted\n", n.c_str(), vol.name.c_str());
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
    cmd->footer(std::string("Example:\n  banger ") + name + " web");
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
  exec->footer("Examples:\n  banger exec web -- uname -a\n  banger exec -it web -- sh");
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
  logs->footer("Examples:\n  banger logs web\n  banger logs -f web");
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

  // reconcile
  auto* reconcile = app.add_subcommand("reconcile", "One pass: restart crashed or hung sandboxes as their restartPolicy allows");
  reconcile->footer("Examples:\n  banger reconcile\n  banger reconcile -o json");
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

  // doctor: cli/doctor_commands.cc
  AddDoctorCommands(app, g, exit_code);

  // config
  auto* config = app.add_subcommand("config", "Show the effective configuration");
  config->footer("Example:\n  banger config show");
  auto* config_show = config->add_subcommand("show", "Print the effective configuration and where each value came from");
  config_show->footer("Examples:\n  banger config show\n  banger config show -o json");
  config->require_subcommand(1);
  std::string c_output = "yaml";
  config_show->add_option("-o,--output", c_output, "yaml|json")->check(CLI::IsMember({"yaml", "json"}));
  config_show->callback([&] {
    auto c = host::LoadConfig(g.config_path);
    if (!c) {
      exit_code = Fail(c.error());
      return;
    }
    // The settings that flags and the environment decide, before the file's.
    std::vector<host::ConfigEntry> extra;
    auto given = [&](const char* flag) { return app.get_option(flag)->count() > 0; };
    const char* env_config = std::getenv("BANGER_CONFIG");
    extra.push_back({"configFile", c->path.empty() ? "(none)" : c->path,
                     given("--config")                 ? "flag --config"
                     : env_config && *env_config       ? "env BANGER_CONFIG"
                                                       : "default"});
    auto layout = ResolveStateLayout(g.state_dir);
    const char* env_home = std::getenv("BANGER_HOME");
    extra.push_back({"stateDir", layout ? layout->root.string() : "(" + layout.error().message() + ")",
                     given("--state-dir")          ? "flag --state-dir"
                     : env_home && *env_home       ? "env BANGER_HOME"
                                                   : "default"});
    bool level_flag = false;
    for (int i = 1; i < argc; ++i) level_flag = level_flag || std::string(argv[i]) == "--log-level";
    const char* env_log = std::getenv("BANGER_LOG");
    extra.push_back({"logLevel", g.log_level,
                     level_flag ? "flag --log-level" : env_log && *env_log ? "env BANGER_LOG" : "default"});
    if (c_output == "json") {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& e : extra) j[e.key] = {{"value", e.value}, {"source", e.source}};
      for (const auto& e : host::ConfigEntries(*c)) j[e.key] = {{"value", e.value}, {"source", e.source}};
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << host::RenderConfig(*c, extra);
  });

  // version
  auto* version = app.add_subcommand("version", "Print the version");
  version->footer("Example:\n  banger version");
  version->callback([&] { std::printf("banger %s\n", BANGER_VERSION); });

  AddArtifactCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddWatchCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddNetworkCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddSnapshotCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddVolumeCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddDnsCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  AddSshCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);
  std::vector<std::string> raw_args(argv, argv + argc);
  AddRunCommands(app, g, exit_code, &raw_args);
  AddCompletionCommands(app, g, exit_code);
  AddGuestFilesCommands(app, [&g] { return host::Host::Open(Context::Options(g)); }, exit_code);

  EndFootersWithNewline(app);
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
  const char* env = std::getenv("BANGER_LOG");
  std::string lvl = env && *env ? env : "warn";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--log-level") lvl = argv[i + 1];
  }
  banger::InitLogging(lvl);
  // Failpoints (docs/testing.md): a misspelt name must not silently arm nothing.
  if (banger::Status fp = banger::failpoint::ConfigureFromEnvironment(); !fp.ok()) {
    std::fprintf(stderr, "banger: error: %s\n", fp.message().c_str());
    return 2;
  }
  return banger::cli::Main(argc, argv);
}
