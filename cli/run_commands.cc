#include "cli/run_commands.h"

#include <CLI/CLI.hpp>
#include <signal.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "base/strings.h"
#include "cli/output.h"
#include "cli/vm_commands.h"
#include "spec/names.h"
#include "workspace/workspace.h"

namespace banger::cli {
namespace {

constexpr const char* kAdjectives[] = {
    "amber", "bold", "brave", "brisk", "calm", "clever", "cosy", "crisp", "daring", "eager",
    "fancy", "fleet", "gentle", "glad", "grand", "happy", "jolly", "keen", "kind", "lively",
    "lucky", "merry", "mighty", "misty", "nimble", "noble", "plucky", "proud", "quick", "quiet",
    "rapid", "rosy", "shiny", "silent", "snappy", "steady", "sunny", "swift", "tidy", "witty"};
constexpr const char* kNouns[] = {
    "badger", "beaver", "bison", "condor", "cricket", "dingo", "dolphin", "falcon", "ferret", "finch",
    "gecko", "heron", "ibis", "jackal", "koala", "lemur", "lynx", "marmot", "marten", "moose",
    "newt", "ocelot", "otter", "panda", "pelican", "puffin", "quail", "raven", "salmon", "seal",
    "sparrow", "stoat", "tapir", "toucan", "turtle", "urchin", "walrus", "weasel", "wombat", "yak"};

// One line that the spec would carry for a flag, checked before the loader
// sees it so the error names the flag.
Status ParsePort(const std::string& text, YAML::Emitter& e) {
  std::string body = text, proto = "tcp";
  if (size_t slash = text.find('/'); slash != std::string::npos) {
    body = text.substr(0, slash);
    proto = text.substr(slash + 1);
  }
  auto parts = Split(body, ':');
  auto port = [](const std::string& s) -> int {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) return 0;
    int n = std::stoi(s);
    return n >= 1 && n <= 65535 ? n : 0;
  };
  if (parts.size() != 2 || port(parts[0]) == 0 || port(parts[1]) == 0 || (proto != "tcp" && proto != "udp")) {
    return InvalidArgument("--port " + text + ": expected HOST:GUEST or HOST:GUEST/udp (ports 1-65535)");
  }
  e << YAML::Flow << YAML::BeginMap << YAML::Key << "host" << YAML::Value << port(parts[0]) << YAML::Key
    << "guest" << YAML::Value << port(parts[1]);
  if (proto == "udp") e << YAML::Key << "protocol" << YAML::Value << "udp";
  e << YAML::EndMap;
  return OkStatus();
}

// The command run when none is given: a login shell, bash when the image has it.
const std::vector<std::string> kShell = {
    "/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec /bin/sh -l"};

// SIGINT/SIGTERM while `run` works: blocked in every thread and collected by
// one thread, so the sandbox of `--rm` is deleted before banger exits.
class SignalWatch {
 public:
  SignalWatch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGWINCH);  // so RunInteractiveExec's signalfd sees every resize
    ::pthread_sigmask(SIG_BLOCK, &set_, &saved_);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    thread_ = std::thread([this, stop] {
      timespec tick{0, 200 * 1000 * 1000};
      while (!done_) {
        int sig = ::sigtimedwait(&stop, nullptr, &tick);
        if (sig > 0) {
          signal_ = sig;
          cancel_ = true;
          std::lock_guard<std::mutex> l(mu_);
          cv_.notify_all();
        }
      }
    });
  }
  ~SignalWatch() {
    done_ = true;
    thread_.join();
    ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  const std::atomic<bool>* cancel() const { return &cancel_; }
  int signal() const { return signal_; }
  /// Waits until `finished` says so or a signal arrives; true if a signal did.
  bool WaitUnlessSignalled(const std::function<bool()>& finished) {
    std::unique_lock<std::mutex> l(mu_);
    while (!finished() && signal_ == 0) cv_.wait_for(l, std::chrono::milliseconds(100));
    return signal_ != 0 && !finished();
  }
  std::mutex& mu() { return mu_; }
  std::condition_variable& cv() { return cv_; }

 private:
  sigset_t set_{}, saved_{};
  std::atomic<bool> done_{false}, cancel_{false};
  std::atomic<int> signal_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace

std::string RunOwner(const std::string& name) { return "run:" + name; }

std::string GenerateSandboxName(const std::set<std::string>& taken) {
  std::random_device rd;
  std::mt19937 rng(rd());
  constexpr size_t na = sizeof(kAdjectives) / sizeof(kAdjectives[0]);
  constexpr size_t nn = sizeof(kNouns) / sizeof(kNouns[0]);
  for (int attempt = 0; attempt < 200; ++attempt) {
    std::string name = std::string(kAdjectives[rng() % na]) + "-" + kNouns[rng() % nn];
    if (attempt >= 20) name += "-" + std::to_string(rng() % 10000);
    if (!taken.count(name)) return name;
  }
  return "run-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 100000);
}

Result<std::string> RunSpecYaml(const RunFlags& f, const host::Config& config) {
  if (!IsDnsLabel(f.name)) {
    return InvalidArgument("--name " + f.name + ": must be a DNS label (1-63 of a-z 0-9 -, starting and ending "
                           "alphanumeric)");
  }
  std::string image = f.image.empty() ? config.run.image : f.image;
  if (!IsCatalogName(image) && !IsImageReference(image)) {
    return InvalidArgument("--image " + image + ": neither a catalog name nor an OCI reference");
  }
  std::string memory = f.memory.empty() ? config.run.memory : f.memory;
  if (!ParseByteSize(memory).ok()) return InvalidArgument("--memory " + memory + ": expected a size such as 1GiB");
  std::string disk = f.disk.empty() ? config.run.disk : f.disk;
  if (disk != "auto" && !ParseByteSize(disk).ok()) {
    return InvalidArgument("--disk " + disk + ": expected a size such as 4GiB, or auto");
  }
  std::string network = f.network.empty() ? config.run.network : f.network;
  if (network != "bridged" && network != "user" && network != "isolated" && network != "none") {
    return InvalidArgument("--network " + network + ": must be bridged, user, isolated or none");
  }
  std::optional<WorkspaceSpec> workspace;
  if (!f.path.empty()) {
    const std::string mode = f.workspace_mode.empty() ? "tracked" : f.workspace_mode;
    if (mode != "tracked" && mode != "full") {
      return InvalidArgument("--workspace-mode " + mode + ": must be tracked or full");
    }
    if (mode == "full" && f.include_untracked) {
      return InvalidArgument("--include-untracked: only with --workspace-mode tracked");
    }
    auto ws = workspace::WorkspaceSpecForPath(
        f.path, mode == "full" ? WorkspaceMode::kFull : WorkspaceMode::kTracked, f.include_untracked);
    if (!ws) return ws.error().WithContext("PATH " + f.path);
    workspace = std::move(*ws);
  } else if (!f.workspace_mode.empty() || f.include_untracked) {
    return InvalidArgument("--workspace-mode and --include-untracked need a PATH (the repository to ship)");
  }
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "apiVersion" << YAML::Value << kApiVersion;
  e << YAML::Key << "kind" << YAML::Value << kKindSandbox;
  e << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap << YAML::Key << "name" << YAML::Value << f.name
    << YAML::EndMap;
  e << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "image" << YAML::Value << image;
  e << YAML::Key << "cpus" << YAML::Value << (f.cpus > 0 ? f.cpus : config.run.cpus);
  e << YAML::Key << "memory" << YAML::Value << memory;
  e << YAML::Key << "disk" << YAML::Value << disk;
  e << YAML::Key << "network" << YAML::Value << YAML::BeginMap << YAML::Key << "mode" << YAML::Value << network;
  if (!f.ports.empty()) {
    e << YAML::Key << "ports" << YAML::Value << YAML::BeginSeq;
    for (const auto& p : f.ports) BANGER_RETURN_IF_ERROR(ParsePort(p, e));
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
  if (!f.env.empty()) {
    e << YAML::Key << "env" << YAML::Value << YAML::BeginMap;
    std::set<std::string> seen;
    for (const auto& kv : f.env) {
      size_t eq = kv.find('=');
      std::string key = kv.substr(0, eq);
      if (eq == std::string::npos || !IsEnvName(key)) {
        return InvalidArgument("--env " + kv + ": expected KEY=VALUE with KEY of [A-Za-z_][A-Za-z0-9_]*");
      }
      if (!seen.insert(key).second) return InvalidArgument("--env " + key + ": given twice");
      // Always quoted: the loader keeps the text as written.
      e << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << kv.substr(eq + 1);
    }
    e << YAML::EndMap;
  }
  if (workspace) {
    e << YAML::Key << "workspace" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "source" << YAML::Value << YAML::DoubleQuoted << workspace->source;
    e << YAML::Key << "path" << YAML::Value << workspace->path;
    e << YAML::Key << "mode" << YAML::Value << std::string(ToString(workspace->mode));
    if (workspace->include_untracked) e << YAML::Key << "includeUntracked" << YAML::Value << true;
    e << YAML::EndMap;
  }
  e << YAML::EndMap << YAML::EndMap;
  if (!e.good()) return Internal("rendering the spec: " + e.GetLastError());
  return std::string(e.c_str()) + "\n";
}

size_t CountAfterDoubleDash(const std::vector<std::string>& argv) {
  bool in_run = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (!in_run) {
      if (a == "--state-dir" || a == "--config" || a == "--log-level") {
        ++i;
        continue;
      }
      if (a == "--") return 0;
      in_run = a == "run";
      continue;
    }
    if (a == "--") return argv.size() - i - 1;
  }
  return 0;
}

void AddRunCommands(CLI::App& app, const Globals& g, int& exit_code, const std::vector<std::string>* raw_args) {
  auto* run = app.add_subcommand("run", "Create a sandbox from flags and run a command (or a shell) in it");
  struct State {
    RunFlags flags;
    bool rm = false, detach = false, dry_run = false;
    std::string path;
    std::vector<std::string> args;
    std::vector<std::string> cmd;
  };
  auto* st = new State();  // lives as long as the app
  RunFlags& fl = st->flags;
  run->add_option("--name", fl.name, "Sandbox name (default: a generated one such as brave-otter)");
  run->add_option("--image", fl.image, "Image: catalog name or OCI reference (default: config run.image, busybox)");
  run->add_option("--cpus", fl.cpus, "Virtual CPUs (default: config run.cpus, 1)")->check(CLI::Range(1, 64));
  run->add_option("--memory", fl.memory, "Memory, e.g. 1GiB (default: config run.memory, 512MiB)");
  run->add_option("--disk", fl.disk, "Root disk size, e.g. 4GiB, or auto (default: config run.disk)");
  run->add_option("-p,--port", fl.ports, "Publish HOST:GUEST[/udp] on 127.0.0.1 (repeatable)");
  run->add_option("-e,--env", fl.env, "KEY=VALUE in the sandbox's environment (repeatable)");
  run->add_option("--network", fl.network, "bridged|user|isolated|none (default: config run.network, user)")
      ->check(CLI::IsMember({"bridged", "user", "isolated", "none"}));
  auto* rm = run->add_flag("--rm", st->rm, "Delete the sandbox when the command ends (also on failure or Ctrl-C)");
  auto* detach = run->add_flag("-d,--detach", st->detach, "Leave the sandbox running and print its name");
  rm->excludes(detach);
  run->add_option("--workspace-mode", fl.workspace_mode, "With PATH: tracked (HEAD + uncommitted changes, default) or full (with history)")
      ->check(CLI::IsMember({"tracked", "full"}));
  run->add_flag("--include-untracked", fl.include_untracked, "With PATH in tracked mode: also ship untracked, non-ignored files");
  run->add_flag("--dry-run", st->dry_run, "Print the spec as YAML (for `banger apply -f`) and do nothing");
  // PATH and CMD: CLI11 fills positionals in order, whether or not they
  // follow `--`, so the callback splits them again at the `--` of the
  // command line (CountAfterDoubleDash).
  run->add_option("path", st->path, "A host git repository to ship into the sandbox as its workspace");
  run->add_option("command", st->args, "Command and arguments, after -- (default: a login shell)")
      ->allow_extra_args();
  run->footer(
      "Examples:\n"
      "  banger run                                # a shell in a new busybox sandbox\n"
      "  banger run --rm -- sh -c 'uname -a'       # run one command, then delete the sandbox\n"
      "  banger run -d --name web --image debian-bookworm -p 8080:80\n"
      "  banger run --dry-run --cpus 2 > web.yaml  # the spec, for banger apply -f web.yaml");
  run->callback([st, &g, &exit_code, raw_args] {
    RunFlags f = st->flags;
    std::vector<std::string> all;
    if (!st->path.empty()) all.push_back(st->path);
    all.insert(all.end(), st->args.begin(), st->args.end());
    size_t after = std::min(CountAfterDoubleDash(*raw_args), all.size());
    std::vector<std::string> before(all.begin(), all.end() - static_cast<std::ptrdiff_t>(after));
    st->cmd.assign(all.end() - static_cast<std::ptrdiff_t>(after), all.end());
    if (before.size() > 1) {
      std::fprintf(stderr, "error: run takes one PATH; put the command after --: banger run [PATH] -- CMD...\n");
      exit_code = kExitUsage;
      return;
    }
    if (!before.empty()) f.path = before[0];
    if (st->detach && !st->cmd.empty()) {
      std::fprintf(stderr, "error: -d starts the sandbox only; run the command with `banger exec` instead\n");
      exit_code = kExitUsage;
      return;
    }
    auto config = host::LoadConfig(g.config_path);
    if (!config) {
      exit_code = Fail(config.error());
      return;
    }
    if (f.name.empty()) {
      auto names = ExistingSandboxNames(g);
      if (!names) {
        exit_code = Fail(names.error());
        return;
      }
      f.name = GenerateSandboxName(std::set<std::string>(names->begin(), names->end()));
    }
    auto yaml = RunSpecYaml(f, *config);
    if (!yaml) {
      exit_code = yaml.error().code() == StatusCode::kInvalidArgument ? (PrintError(yaml.error()), kExitUsage)
                                                                        : Fail(yaml.error());
      return;
    }
    LoadResult specs = ParseSpecText(*yaml, "banger run");
    if (specs.diagnostics.HasErrors() || specs.specs.size() != 1) {
      std::fputs(specs.diagnostics.ToString().c_str(), stderr);
      exit_code = kExitUsage;
      return;
    }
    if (st->dry_run) {
      std::fputs(yaml->c_str(), stdout);
      return;
    }

    SignalWatch signals;
    Context ctx(g);
    if (!OpenOrFail(ctx, exit_code)) return;
    TerminalSink sink(g.verbose);
    const std::string name = f.name;
    bool planned = false;  // past the plan: the sandbox is ours to delete (--rm)
    // Deletes the sandbox (--rm) through the engine, as `banger delete` does.
    auto remove = [&] {
      if (!st->rm || !planned) return true;
      Engine engine = ctx.MakeEngine(sink, 0);
      Status s = engine.DeleteSandbox(name);
      if (s.code() == StatusCode::kNotFound) return true;
      if (!s.ok()) {
        std::fprintf(stderr, "✗ %s: delete failed: %s\n", name.c_str(), s.message().c_str());
        return false;
      }
      std::fprintf(stderr, "✓ %s: deleted\n", name.c_str());
      return true;
    };
    auto interrupted = [&] {
      int sig = signals.signal();
      std::fprintf(stderr, "\n%s: interrupted%s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   st->rm && planned ? ", deleting the sandbox" : "");
      remove();
      exit_code = 128 + sig;
    };

    auto plan = MakePlan(ctx, specs, RunOwner(name), false, sink);
    if (!plan) {
      exit_code = Fail(plan.error());
      return;
    }
    for (const auto& err : plan->errors) std::fprintf(stderr, "error: %s\n", err.c_str());
    if (!plan->errors.empty()) {
      exit_code = kExitError;
      return;
    }
    planned = true;
    if (plan->HasChanges()) {
      EngineOptions eo = ctx.host().DefaultEngineOptions(0);
      eo.cancel = signals.cancel();
      Engine engine(ctx.store(), ctx.host().runtime(), ctx.host().artifacts(), ctx.clock(), sink, eo);
      ApplyReport rep = engine.Apply(*plan);
      for (const auto& r : rep.results) std::fprintf(stderr, "%s\n", ResultLine(r).c_str());
      if (signals.signal() != 0) return interrupted();
      if (!rep.ok()) {
        remove();
        exit_code = kExitError;
        return;
      }
    }
    auto rec = ctx.FindSandbox(name);
    if (!rec) {
      exit_code = Fail(rec.error());
      remove();
      return;
    }
    if (rec->phase != SandboxPhase::kReady) {
      exit_code = Fail(FailedPrecondition("sandbox \"" + name + "\" is " + std::string(ToString(rec->phase)) +
                                          (rec->last_error.empty() ? "" : ": " + rec->last_error)));
      remove();
      return;
    }
    if (st->detach) {
      std::printf("%s\n", name.c_str());
      return;
    }

    // The command runs in its own thread so that a signal to banger can
    // delete the sandbox (which ends the command) while it runs.
    std::vector<std::string> argv = st->cmd.empty() ? kShell : st->cmd;
    bool tty = ::isatty(0) == 1;
    std::atomic<bool> finished{false};
    Result<int> code = Internal("not run");
    std::thread runner([&] {
      // With a workspace, the command starts in it.
      const auto& ws = specs.specs.front().spec.workspace;
      code = RunInteractiveExec(*rec, argv, {}, ws ? ws->path : "", true, tty);
      finished = true;
      std::lock_guard<std::mutex> l(signals.mu());
      signals.cv().notify_all();
    });
    if (signals.WaitUnlessSignalled([&] { return finished.load(); })) {
      interrupted();
      // Deleting the sandbox closed the agent connection; without --rm the
      // command is left running in the sandbox and banger does not wait.
      for (int i = 0; i < 50 && !finished; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!finished) {
        std::fflush(nullptr);
        ::_exit(exit_code);
      }
      runner.join();
      return;
    }
    runner.join();
    if (!code) {
      exit_code = Fail(code.error());
    } else {
      exit_code = *code;
    }
    if (!remove() && exit_code == 0) exit_code = kExitError;
  });
}

}  // namespace banger::cli
