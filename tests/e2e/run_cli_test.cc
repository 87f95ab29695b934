// `banger run` without a VM (--dry-run, flag errors, generated names), shell
// completion, `config show` provenance, unknown commands and the examples in
// every command's --help: what a user types and sees, through the binary.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "spec/loader.h"
#include "state/state_store.h"
#include "sources/git_testing.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

class RunCliTest : public ::testing::Test {
 protected:
  CommandOutput Run(std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
    CommandSpec spec;
    spec.argv = std::move(argv);
    spec.env = std::move(env);
    spec.env["NO_COLOR"] = "1";
    spec.timeout = std::chrono::minutes(1);
    auto out = runner_->Run(spec);
    EXPECT_TRUE(out.ok()) << out.error().ToString();
    return out.ok() ? *out : CommandOutput{-1, "", ""};
  }
  CommandOutput Banger(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {BANGER_EXE, "--state-dir", State(), "--config", Config()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv, std::move(env));
  }
  std::string State() const { return (dir_.path() / "state").string(); }
  std::string Config() const { return (dir_.path() / "config.yaml").string(); }
  std::string Write(const std::string& name, const std::string& content) {
    auto p = dir_.path() / name;
    std::filesystem::create_directories(p.parent_path());
    EXPECT_TRUE(WriteFileAtomic(p, content).ok());
    return p.string();
  }
  void SetUp() override { Write("config.yaml", "parallel: 2\n"); }

  TempDir dir_;
  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
};

TEST_F(RunCliTest, DryRunPrintsTheSpecAsYamlThatApplyAccepts) {
  CommandOutput out = Banger({"run", "--dry-run", "--name", "web", "--image", "debian-bookworm", "--cpus", "2",
                              "--memory", "1GiB", "--disk", "4GiB", "-p", "8080:80", "--port", "5353:53/udp",
                              "-e", "GREETING=hello world", "--env", "COUNT=3", "--network", "user"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  // The loader reads it as exactly the spec a user would have written by hand.
  LoadResult printed = ParseSpecText(out.stdout_data, "dry-run.yaml");
  ASSERT_FALSE(printed.diagnostics.HasErrors()) << printed.diagnostics.ToString() << out.stdout_data;
  ASSERT_EQ(printed.specs.size(), 1u) << out.stdout_data;
  LoadResult by_hand = ParseSpecText(R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: debian-bookworm
  cpus: 2
  memory: 1GiB
  disk: 4GiB
  network:
    mode: user
    ports:
      - {host: 8080, guest: 80}
      - {host: 5353, guest: 53, protocol: udp}
  env:
    GREETING: hello world
    COUNT: "3"
)",
                                     "by-hand.yaml");
  ASSERT_FALSE(by_hand.diagnostics.HasErrors()) << by_hand.diagnostics.ToString();
  EXPECT_EQ(printed.specs[0].spec, by_hand.specs[0].spec) << out.stdout_data;
  // And `banger validate -f` (apply's loader) accepts the file unchanged.
  std::string file = Write("web.yaml", out.stdout_data);
  CommandOutput v = Banger({"validate", "-f", file});
  EXPECT_EQ(v.exit_code, 0) << v.stdout_data << v.stderr_data;
  // A dry run touches nothing: no state directory appears.
  EXPECT_FALSE(std::filesystem::exists(State()));
}

TEST_F(RunCliTest, DryRunTakesItsDefaultsFromTheConfigFile) {
  Write("config.yaml", "run:\n  image: debian-bookworm\n  cpus: 3\n  memory: 768MiB\n  network: none\n");
  CommandOutput out = Banger({"run", "--dry-run", "--name", "box"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  LoadResult r = ParseSpecText(out.stdout_data, "dry-run.yaml");
  ASSERT_EQ(r.specs.size(), 1u) << r.diagnostics.ToString() << out.stdout_data;
  EXPECT_EQ(r.specs[0].spec.image, "debian-bookworm");
  EXPECT_EQ(r.specs[0].spec.cpus, 3u);
  EXPECT_EQ(r.specs[0].spec.memory_bytes, 768ull << 20);
  EXPECT_EQ(r.specs[0].spec.network.mode, NetworkMode::kNone);
  // A flag wins over the file.
  out = Banger({"run", "--dry-run", "--name", "box", "--cpus", "1", "--image", "busybox"});
  r = ParseSpecText(out.stdout_data, "dry-run.yaml");
  ASSERT_EQ(r.specs.size(), 1u) << out.stdout_data << out.stderr_data;
  EXPECT_EQ(r.specs[0].spec.cpus, 1u);
  EXPECT_EQ(r.specs[0].spec.image, "busybox");
}

TEST_F(RunCliTest, WithoutANameAReadableDnsLabelIsGenerated) {
  std::regex readable("[a-z]+-[a-z]+(-[0-9]+)?");
  for (int i = 0; i < 5; ++i) {
    CommandOutput out = Banger({"run", "--dry-run"});
    ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
    LoadResult r = ParseSpecText(out.stdout_data, "dry-run.yaml");
    ASSERT_EQ(r.specs.size(), 1u) << out.stdout_data;
    const std::string& name = r.specs[0].spec.name;
    EXPECT_TRUE(std::regex_match(name, readable)) << name;
    EXPECT_TRUE(IsDnsLabel(name)) << name;
  }
}

TEST_F(RunCliTest, BadFlagsAreNamedAndExitSixtyFour) {
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  } cases[] = {
      {{"run", "--dry-run", "--port", "80"}, "--port 80: expected HOST:GUEST"},
      {{"run", "--dry-run", "--port", "80:70000"}, "--port 80:70000"},
      {{"run", "--dry-run", "--env", "1X=2"}, "--env 1X=2: expected KEY=VALUE"},
      {{"run", "--dry-run", "--memory", "lots"}, "--memory lots"},
      {{"run", "--dry-run", "--name", "Not_A_Label"}, "--name Not_A_Label: must be a DNS label"},
      {{"run", "--dry-run", "--image", "Bad Image"}, "--image Bad Image"},
      {{"run", "--rm", "-d", "--dry-run"}, "excludes"},
      {{"run", "-d", "--dry-run", "--", "true"}, "banger exec"},
      {{"run", "--dry-run", "a", "b", "--", "true"}, "true"},
      {{"run", "--dry-run", "a", "b"}, "one PATH"},
  };
  for (const auto& c : cases) {
    CommandOutput out = Banger(c.args);
    EXPECT_EQ(out.exit_code, 64) << Join(c.args, " ") << "\n" << out.stderr_data;
    EXPECT_NE(out.stderr_data.find(c.expect), std::string::npos) << Join(c.args, " ") << "\n" << out.stderr_data;
  }
}

TEST_F(RunCliTest, AWorkspacePathBecomesSpecWorkspaceAndANonRepositoryIsRefused) {
  fs::path repo = dir_.path() / "repo";
  fs::create_directories(repo);
  testing::RunGit(*runner_, dir_.path(), {"init", "-q", repo.string()});
  CommandOutput out = Banger({"run", "--dry-run", "--name", "ws", repo.string(), "--", "ls"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  LoadResult parsed = ParseSpecText(out.stdout_data, "printed.yaml");
  ASSERT_FALSE(parsed.diagnostics.HasErrors()) << parsed.diagnostics.ToString() << out.stdout_data;
  ASSERT_EQ(parsed.specs.size(), 1u);
  const auto& ws = parsed.specs[0].spec.workspace;
  ASSERT_TRUE(ws.has_value()) << out.stdout_data;
  EXPECT_EQ(fs::path(ws->source), fs::weakly_canonical(repo)) << out.stdout_data;
  EXPECT_EQ(ws->path, "/root/work");
  EXPECT_EQ(ws->mode, WorkspaceMode::kTracked);

  CommandOutput full = Banger({"run", "--dry-run", "--workspace-mode", "full", repo.string()});
  ASSERT_EQ(full.exit_code, 0) << full.stderr_data;
  EXPECT_NE(full.stdout_data.find("mode: full"), std::string::npos) << full.stdout_data;

  fs::path plain = dir_.path() / "plain";
  fs::create_directories(plain);
  CommandOutput refused = Banger({"run", "--dry-run", plain.string(), "--", "ls"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.stderr_data.find("PATH " + plain.string()), std::string::npos) << refused.stderr_data;
  EXPECT_NE(refused.stderr_data.find("git"), std::string::npos) << refused.stderr_data;

  CommandOutput no_path = Banger({"run", "--dry-run", "--include-untracked"});
  EXPECT_EQ(no_path.exit_code, 64) << no_path.stderr_data;
  EXPECT_NE(no_path.stderr_data.find("need a PATH"), std::string::npos) << no_path.stderr_data;
}

TEST_F(RunCliTest, BashCompletionLoadsAndCompletesCommandsFlagsAndLiveSandboxNames) {
  {
    // A recorded sandbox is all completion needs (it reads names, nothing more).
    auto store = StateStore::Open(State());
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    SandboxRecord rec;
    rec.name = "lively-otter";
    rec.id = "sb-test0001";
    rec.owner = "run:lively-otter";
    rec.spec_json = "{}";
    rec.spec_hash = "x";
    ASSERT_TRUE((*store)->PutSandbox(rec).ok());
  }
  CommandOutput script = Banger({"completion", "bash"});
  ASSERT_EQ(script.exit_code, 0) << script.stderr_data;
  std::string file = Write("banger.bash", script.stdout_data);
  // Completes the words in `line` (the last one being completed) the way
  // bash does on TAB, and prints the candidates one a line.
  auto complete = [&](const std::vector<std::string>& words) {
    std::string arr;
    for (const auto& w : words) arr += " '" + w + "'";
    std::string prog = "source '" + file + "'\ncomplete -p banger\nCOMP_WORDS=(" + arr + ")\nCOMP_CWORD=" +
                       std::to_string(words.size() - 1) + "\n_banger\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
    return Run({"bash", "--norc", "--noprofile", "-c", prog});
  };
  std::vector<std::string> base = {BANGER_EXE, "--state-dir", State(), "--config", Config()};
  auto with = [&](std::vector<std::string> tail) {
    std::vector<std::string> w = base;
    w.insert(w.end(), tail.begin(), tail.end());
    return w;
  };
  CommandOutput out = complete(with({"exec", ""}));
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_NE(out.stdout_data.find("-F _banger banger"), std::string::npos) << out.stdout_data;
  EXPECT_NE(out.stdout_data.find("\nlively-otter\n"), std::string::npos) << out.stdout_data << out.stderr_data;
  out = complete(with({"exec", "liv"}));
  EXPECT_NE(out.stdout_data.find("\nlively-otter\n"), std::string::npos) << out.stdout_data;
  out = complete(with({"net"}));
  EXPECT_NE(out.stdout_data.find("\nnetwork\n"), std::string::npos) << out.stdout_data;
  out = complete(with({"network", ""}));
  EXPECT_NE(out.stdout_data.find("\nls\n"), std::string::npos) << out.stdout_data;
  out = complete(with({"run", "--r"}));
  EXPECT_NE(out.stdout_data.find("\n--rm\n"), std::string::npos) << out.stdout_data;
  out = complete(with({"completion", ""}));  // no sandbox names where none belong
  EXPECT_EQ(out.stdout_data.find("lively-otter"), std::string::npos) << out.stdout_data;

  // The fish and zsh scripts are generated from the same tree.
  CommandOutput fish = Banger({"completion", "fish"});
  EXPECT_EQ(fish.exit_code, 0);
  EXPECT_NE(fish.stdout_data.find("__complete sandboxes"), std::string::npos) << fish.stdout_data;
  CommandOutput zsh = Banger({"completion", "zsh"});
  EXPECT_EQ(zsh.exit_code, 0);
  EXPECT_NE(zsh.stdout_data.find("bashcompinit"), std::string::npos);
}

TEST_F(RunCliTest, CompletingNamesCreatesNoStateDirectory) {
  CommandOutput out = Banger({"__complete", "sandboxes"});
  EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_EQ(out.stdout_data, "");
  out = Banger({"__complete", "images"});
  EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_FALSE(std::filesystem::exists(State()));
}

TEST_F(RunCliTest, ConfigShowSaysWhereEachValueCameFrom) {
  Write("config.yaml", "# host settings\naccel: tcg\nrun:\n  image: debian-bookworm\n");
  CommandOutput out = Banger({"config", "show"}, {{"BANGER_NETNS", "banger-test"}});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  auto line_of = [&](const std::string& key) {
    for (const auto& l : Split(out.stdout_data, '\n')) {
      if (StartsWith(std::string(Trim(l)), key + ":")) return std::string(l);
    }
    return std::string("<no line for " + key + ">");
  };
  EXPECT_NE(line_of("accel").find("tcg"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("accel").find("# " + Config() + ":2"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("image").find("# " + Config() + ":4"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("machine").find("# default"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("netns").find("# env BANGER_NETNS"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("stateDir").find("# flag --state-dir"), std::string::npos) << out.stdout_data;
  EXPECT_NE(line_of("configFile").find("# flag --config"), std::string::npos) << out.stdout_data;

  CommandOutput js = Banger({"config", "show", "-o", "json"});
  ASSERT_EQ(js.exit_code, 0) << js.stderr_data;
  auto j = nlohmann::json::parse(js.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << js.stdout_data;
  EXPECT_EQ(j["accel"]["value"], "tcg");
  EXPECT_EQ(j["accel"]["source"], Config() + ":2");
  EXPECT_EQ(j["run.image"]["value"], "debian-bookworm");
  EXPECT_EQ(j["parallel"]["source"], "default");
  EXPECT_EQ(j["stateDir"]["value"], State());
  EXPECT_EQ(j["stateDir"]["source"], "flag --state-dir");
  // Without the flag, $BANGER_HOME decides the state directory.
  CommandOutput env = Run({BANGER_EXE, "--config", Config(), "config", "show", "-o", "json"},
                          {{"BANGER_HOME", State()}});
  auto je = nlohmann::json::parse(env.stdout_data, nullptr, false);
  ASSERT_FALSE(je.is_discarded()) << env.stdout_data << env.stderr_data;
  EXPECT_EQ(je["stateDir"]["source"], "env BANGER_HOME");
  EXPECT_FALSE(std::filesystem::exists(State()));  // config show creates nothing
}

TEST_F(RunCliTest, AnUnknownCommandIsNamedWithTheClosestRealOne) {
  CommandOutput out = Banger({"frobnicate"});
  EXPECT_EQ(out.exit_code, 64);
  EXPECT_NE(out.stderr_data.find("unknown command \"frobnicate\""), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("Commands: "), std::string::npos) << out.stderr_data;
  out = Banger({"aply", "-f", "x.yaml"});
  EXPECT_EQ(out.exit_code, 64);
  EXPECT_NE(out.stderr_data.find("did you mean \"apply\""), std::string::npos) << out.stderr_data;
  out = Banger({"network", "frobnicate"});
  EXPECT_EQ(out.exit_code, 64);
  EXPECT_NE(out.stderr_data.find("unknown command \"network frobnicate\""), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("banger network --help"), std::string::npos) << out.stderr_data;
  out = Banger({"network", "lss"});
  EXPECT_NE(out.stderr_data.find("did you mean \"network ls\""), std::string::npos) << out.stderr_data;
}

// Every command, those added later included, shows at least one example in
// its --help (CLI11 footer); the list comes from the binary's own tree.
TEST_F(RunCliTest, EveryCommandsHelpHasAnExample) {
  CommandOutput list = Banger({"__complete", "commands"});
  ASSERT_EQ(list.exit_code, 0) << list.stderr_data;
  std::vector<std::string> commands = {""};
  for (const auto& l : Split(list.stdout_data, '\n')) {
    if (!l.empty()) commands.push_back(std::string(l));
  }
  ASSERT_GT(commands.size(), 20u) << list.stdout_data;
  EXPECT_NE(std::find(commands.begin(), commands.end(), "network ls"), commands.end()) << list.stdout_data;
  for (const auto& c : commands) {
    std::vector<std::string> args;
    for (const auto& w : Split(c, ' ')) {
      if (!w.empty()) args.push_back(std::string(w));
    }
    args.push_back("--help");
    CommandOutput help = Banger(args);
    EXPECT_EQ(help.exit_code, 0) << "banger " << c << " --help: " << help.stderr_data;
    EXPECT_NE(help.stdout_data.find("Example"), std::string::npos)
        << "`banger " << c << " --help` shows no example; add one with ->footer(\"Example:\\n  banger " << c
        << " ...\") where the command is registered. Its help:\n"
        << help.stdout_data;
  }
}

}  // namespace
}  // namespace banger
