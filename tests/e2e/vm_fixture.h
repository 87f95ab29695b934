// Shared fixture for end-to-end tests with real VMs: the `banger` binary boots
// QEMU guests (TCG here) from specs written into a private temp dir, with its
// own state dir (BangerEnv: one per test in VmFixture, or one per suite). A
// guard deletes the sandboxes and SIGKILLs every QEMU process whose command
// line names that state dir, and every background banger process the test
// started, also on failure.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "tests/support/test_util.h"

extern char** environ;

namespace banger::e2e {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using testing::TempDir;

// ---------------------------------------------------------------------------
// Processes on this host that belong to a test (by state dir in argv).

// Plain open/read, not std::ifstream: reading the cmdline of a process that
// exits meanwhile fails with ESRCH, which basic_filebuf turns into a thrown
// std::ios_base::failure.
inline std::string ReadCmdline(int pid) {
  int fd = ::open(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) s.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (n < 0) return "";
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

// Pids of QEMU processes (qemu-system-*, not qemu-img, which banger runs on
// the sandbox's disk just before it starts QEMU) whose command line contains
// `needle` (zombies and exiting processes have an empty cmdline and are not
// counted).
inline std::vector<int> QemuPidsMentioning(const std::string& needle) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    int pid = std::stoi(name);
    std::string cmd = ReadCmdline(pid);
    if (cmd.find(needle) == std::string::npos) continue;
    std::string argv0 = cmd.substr(0, cmd.find(' '));
    if (fs::path(argv0).filename().string().rfind("qemu-system", 0) == 0) out.push_back(pid);
  }
  return out;
}

inline void KillByPid(int pid) {
  auto start = ProcessStartTime(pid);
  if (!start) return;
  ProcessIdentity id{pid, *start};
  (void)SignalProcess(id, SIGKILL);
  for (int i = 0; i < 200 && ProcessAlive(id); ++i) std::this_thread::sleep_for(milliseconds(10));
}

// Deletes the test's sandboxes through banger, then kills whatever QEMU is left
// for the state dir, and any banger child the test started.
class VmGuard {
 public:
  VmGuard() = default;
  VmGuard(const VmGuard&) = delete;
  VmGuard& operator=(const VmGuard&) = delete;
  // `env` is added to the guard's banger commands, as to the test's (so that
  // deleting a bridged sandbox happens in the test's network namespace).
  void Init(std::vector<std::string> banger_prefix, std::string state_dir,
            std::map<std::string, std::string> env = {}) {
    prefix_ = std::move(banger_prefix);
    state_dir_ = std::move(state_dir);
    env_ = std::move(env);
  }
  void Track(const std::string& sandbox) { names_.insert(sandbox); }
  void TrackProcess(ProcessIdentity id) { children_.push_back(id); }

  ~VmGuard() {
    for (const ProcessIdentity& id : children_) {
      (void)SignalProcess(id, SIGKILL);
      for (int i = 0; i < 200 && ProcessAlive(id); ++i) std::this_thread::sleep_for(milliseconds(10));
    }
    if (state_dir_.empty()) return;
    auto runner = MakePosixCommandRunner();
    if (fs::exists(state_dir_)) {
      for (const std::string& n : names_) {
        CommandSpec spec;
        spec.argv = prefix_;
        spec.argv.insert(spec.argv.end(), {"delete", n, "--yes"});
        spec.env = env_;
        spec.env["NO_COLOR"] = "1";
        spec.timeout = std::chrono::minutes(2);
        (void)runner->Run(spec);
      }
    }
    std::vector<int> left = QemuPidsMentioning(state_dir_);
    for (int pid : left) KillByPid(pid);
  }

 private:
  std::vector<std::string> prefix_;
  std::string state_dir_;
  std::map<std::string, std::string> env_;
  std::set<std::string> names_;
  std::vector<ProcessIdentity> children_;
};

// A banger (or other) process running in the background, our direct child, so
// that its exit status can be collected. stdout and stderr go to two files.
// The destructor SIGKILLs it if it is still running and reaps it.
class Background {
 public:
  Background() = default;
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }

  // Starts argv (argv[0] a path) with `env` added to ours.
  bool Start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const fs::path& out_file, const fs::path& err_file) {
    out_file_ = out_file;
    err_file_ = err_file;
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv = *e;
      if (env.count(kv.substr(0, kv.find('='))) == 0) envs.push_back(kv);
    }
    for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return false;
    pid_ = pid;
    auto start = ProcessStartTime(pid);
    id_ = ProcessIdentity{pid, start.ok() ? *start : 0};
    return true;
  }

  int pid() const { return pid_; }
  const ProcessIdentity& identity() const { return id_; }

  // True while it has not exited (reaps it once it has).
  bool Running() {
    Poll();
    return pid_ > 0 && !status_;
  }

  // Waits up to `timeout` for the exit; returns the exit code (128+signal when
  // killed), or nullopt if it is still running.
  std::optional<int> Wait(milliseconds timeout) {
    auto deadline = steady_clock::now() + timeout;
    while (Running() && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
    if (!status_) return std::nullopt;
    return ExitCode();
  }

  // Sends `sig` unless it has already exited.
  void Signal(int sig) {
    if (Running()) ::kill(pid_, sig);
  }

  std::optional<int> ExitCode() const {
    if (!status_) return std::nullopt;
    if (WIFEXITED(*status_)) return WEXITSTATUS(*status_);
    if (WIFSIGNALED(*status_)) return 128 + WTERMSIG(*status_);
    return -1;
  }

  std::string Stdout() const { return ReadFile(out_file_).value_or(""); }
  std::string Stderr() const { return ReadFile(err_file_).value_or(""); }
  std::string Output() const { return "stdout:\n" + Stdout() + "stderr:\n" + Stderr(); }

 private:
  void Poll() {
    if (pid_ <= 0 || status_) return;
    int st = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == pid_) status_ = st;
  }

  pid_t pid_ = 0;
  ProcessIdentity id_;
  std::optional<int> status_;  // raw wait status once reaped
  fs::path out_file_, err_file_;
};

// ---------------------------------------------------------------------------

struct SpecOptions {
  std::string image = "busybox";
  int cpus = 1;
  std::string memory = "256MiB";
  std::string network = "network:\n    mode: none\n";
  std::string restart_policy = "Never";
  std::string readiness = R"(["cat", "/etc/hostname"])";
  std::string extra;  // more lines under spec:, indented by two spaces
};

inline std::string SpecYaml(const std::string& name, const SpecOptions& o) {
  return "apiVersion: banger.dev/v1\n"
         "kind: Sandbox\n"
         "metadata:\n"
         "  name: " + name + "\n"
         "spec:\n"
         "  image: \"" + o.image + "\"\n"
         "  cpus: " + std::to_string(o.cpus) + "\n"
         "  memory: " + o.memory + "\n"
         "  " + o.network +
         "  readiness:\n"
         "    command: " + o.readiness + "\n"
         "    timeout: 120s\n"
         "  restartPolicy: " + o.restart_policy + "\n" + o.extra;
}

// One banger set-up: a private temp dir with a state dir and a config file,
// banger commands run against them (with `env_` added to their environment),
// and a guard that deletes the sandboxes they made and kills what is left,
// also on failure. VmFixture gives each test its own; a suite that shares
// booted sandboxes between its tests keeps one from SetUpTestSuite to
// TearDownTestSuite (tests/e2e/network_test.cc).
class BangerEnv {
 public:
  BangerEnv() = default;
  BangerEnv(const BangerEnv&) = delete;
  BangerEnv& operator=(const BangerEnv&) = delete;

  // Writes config.yaml with `config`; `env` goes to every banger command,
  // the guard's included.
  void Init(const std::string& config = "parallel: 2\n", std::map<std::string, std::string> env = {}) {
    ASSERT_FALSE(dir_.path().empty());
    // As root, each QEMU runs as its own uid and must be able to search the
    // path to the state dir (docs/qemu.md, "Confinement"): search, no listing.
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0711), 0);
    state_ = (dir_.path() / "state").string();
    config_ = Write("config.yaml", config);
    env_ = std::move(env);
    env_["NO_COLOR"] = "1";
    guard_.Init(Prefix(), state_, env_);
  }

  std::vector<std::string> Prefix() const {
    return {BANGER_EXE, "--state-dir", state_, "--config", config_};
  }

  CommandOutput Banger(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
    CommandSpec spec;
    spec.argv = Prefix();
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = env_;
    spec.timeout = timeout;
    auto t0 = steady_clock::now();
    auto out = runner_->Run(spec);
    double secs = std::chrono::duration<double>(steady_clock::now() - t0).count();
    std::string line = "banger";
    for (const std::string& a : args) line += " " + a;
    char took[64];
    std::snprintf(took, sizeof(took), " -> exit %d in %.1f s", out.ok() ? out->exit_code : -1, secs);
    timeline_.push_back(line + took);
    if (secs > 20) slow_ = true;
    EXPECT_TRUE(out.ok()) << "banger " << args[0] << ": " << out.error().ToString();
    return out.ok() ? *out : CommandOutput{-1, "", ""};
  }

  // Starts `banger ARGS` in the background (output in <tmp>/<label>.out/.err);
  // the guard SIGKILLs it at the end of the test if it is still running.
  bool StartBanger(Background& bg, const std::string& label, std::vector<std::string> args) {
    std::vector<std::string> argv = Prefix();
    argv.insert(argv.end(), args.begin(), args.end());
    std::string line = "banger";
    for (const std::string& a : args) line += " " + a;
    timeline_.push_back(line + " (background, " + label + ")");
    if (!bg.Start(argv, env_, dir_.path() / (label + ".out"), dir_.path() / (label + ".err"))) {
      return false;
    }
    guard_.TrackProcess(bg.identity());
    return true;
  }

  std::string Write(const std::string& name, const std::string& content) {
    fs::path p = dir_.path() / name;
    fs::create_directories(p.parent_path());
    EXPECT_TRUE(WriteFileAtomic(p, content).ok());
    return p.string();
  }

  // Writes specs/<name>.yaml and remembers the sandbox for the guard.
  std::string WriteSpec(const std::string& name, const SpecOptions& o) {
    guard_.Track(name);
    return Write("specs/" + name + ".yaml", SpecYaml(name, o));
  }

  CommandOutput Apply(const std::string& spec_file) {
    return Banger({"apply", "-f", spec_file, "--yes"}, std::chrono::minutes(5));
  }

  json GetItems() {
    CommandOutput out = Banger({"get", "-o", "json"});
    EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
    json j = json::parse(out.stdout_data, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "get -o json printed: " << out.stdout_data;
    if (j.is_discarded() || !j.contains("items")) return json::array();
    return j["items"];
  }

  json GetItem(const std::string& name) {
    for (const json& it : GetItems()) {
      if (it.value("name", "") == name) return it;
    }
    return json();
  }

  std::string Phase(const std::string& name) {
    json it = GetItem(name);
    if (it.is_null()) return "<absent>";
    return it["status"].value("phase", "<none>");
  }

  CommandOutput Exec(const std::string& name, std::vector<std::string> argv) {
    std::vector<std::string> args = {"exec", name, "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    return Banger(args, std::chrono::minutes(2));
  }

  // The sandboxes' (and template builds') QEMUs: their runtime dirs are under
  // <state>/sandboxes/. Not the accelerator probe's short-lived QEMU, which
  // boots the state's kernel while an apply resolves KVM vs TCG.
  std::vector<int> Qemus() const { return QemuPidsMentioning(state_ + "/sandboxes/"); }

  std::string Logs(const std::string& name) {
    CommandOutput out = Banger({"logs", name});
    std::string s = out.stdout_data;
    if (s.size() > 3000) s = "..." + s.substr(s.size() - 3000);
    return s;
  }

  // Applies and asserts Ready; returns the apply output for diagnostics.
  void ApplyReady(const std::string& spec_file, const std::string& name) {
    auto t0 = steady_clock::now();
    CommandOutput out = Apply(spec_file);
    double secs = std::chrono::duration<double>(steady_clock::now() - t0).count();
    ::testing::Test::RecordProperty("apply_seconds_" + name, std::to_string(secs));
    ASSERT_EQ(out.exit_code, 0) << "apply failed:\n" << out.stdout_data << out.stderr_data
                                << "\nconsole:\n" << Logs(name);
    ASSERT_EQ(Phase(name), "Ready") << out.stdout_data << out.stderr_data;
  }

  // The banger commands run from entry `from` of the timeline on, one a line.
  std::string Timeline(size_t from = 0) const {
    std::string all;
    for (size_t i = from; i < timeline_.size(); ++i) all += "  " + timeline_[i] + "\n";
    return all;
  }

  std::vector<std::string> timeline_;
  bool slow_ = false;
  TempDir dir_;
  std::string state_;
  std::string config_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  VmGuard guard_;  // declared after dir_: runs before the temp dir is removed
};

// Each test with its own BangerEnv (state dir, config, guard).
class VmFixture : public ::testing::Test, public BangerEnv {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/qemu-system-x86_64")) GTEST_SKIP() << "qemu-system-x86_64 is not installed";
    ASSERT_NO_FATAL_FAILURE(Init());
  }

  // On failure, or when a command was unusually slow, prints every banger
  // command the test ran with its exit code and duration.
  void TearDown() override {
    if (!HasFailure() && !slow_) return;
    std::printf("%s commands:\n%s", HasFailure() ? "failed test" : "slow test", Timeline().c_str());
  }
};

}  // namespace banger::e2e
