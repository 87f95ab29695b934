// End-to-end tests of the `banger` binary: what a user types and sees.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/oci_registry.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::TempDir;

class CliTest : public ::testing::Test {
 protected:
  CommandOutput Banger(std::vector<std::string> args, std::string stdin_data = "") {
    CommandSpec spec;
    spec.argv = {BANGER_EXE, "--state-dir", (dir_.path() / "state").string(), "--config",
                 (dir_.path() / "config.yaml").string()};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.stdin_data = std::move(stdin_data);
    spec.env["NO_COLOR"] = "1";
    spec.timeout = std::chrono::minutes(5);
    auto out = runner_->Run(spec);
    EXPECT_TRUE(out.ok()) << out.error().ToString();
    return out.ok() ? *out : CommandOutput{};
  }

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

const char kGood[] = R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
  labels: {team: payments}
spec:
  image: busybox
  memory: 256MiB
)";

TEST_F(CliTest, ValidateReportsEveryProblemWithLineAndColumnAndExitsOne) {
  std::string f = Write("specs/bad.yaml", R"(apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: Bad_Name
spec:
  image: busybox
  cpus: 0
  memroy: 1GiB
)");
  CommandOutput out = Banger({"validate", "-f", f});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.stderr_data.find("bad.yaml:4:9: error: metadata.name"), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("bad.yaml:7:9: error: spec.cpus"), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("bad.yaml:8:3: error: spec.memroy"), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("did you mean \"memory\""), std::string::npos) << out.stderr_data;
}

TEST_F(CliTest, ValidateAcceptsTheShippedExamples) {
  CommandOutput out = Banger({"validate", "-f", std::string(BANGER_SOURCE_DIR) + "/examples/sandboxes"});
  EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_NE(out.stdout_data.find("valid"), std::string::npos);
}

TEST_F(CliTest, ValidateJsonIsMachineReadable) {
  std::string f = Write("specs/web.yaml", kGood);
  CommandOutput out = Banger({"validate", "-f", f, "-o", "json"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  auto j = nlohmann::json::parse(out.stdout_data);
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["sandboxes"][0], "web");
}

TEST_F(CliTest, SchemaIsJson) {
  CommandOutput out = Banger({"schema"});
  ASSERT_EQ(out.exit_code, 0);
  auto j = nlohmann::json::parse(out.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_TRUE(j.contains("oneOf"));  // a file holds Sandbox and Network documents
  EXPECT_EQ(j["oneOf"][0]["properties"]["kind"]["const"], "Sandbox");
  EXPECT_EQ(j["oneOf"][1]["properties"]["kind"]["const"], "Network");
}

TEST_F(CliTest, PlanOnEmptyHostShowsCreateAndDetailedExitCodeTwo) {
  std::string f = Write("specs/web.yaml", kGood);
  CommandOutput out = Banger({"plan", "-f", f, "--detailed-exitcode"});
  EXPECT_EQ(out.exit_code, 2) << out.stderr_data;
  EXPECT_NE(out.stdout_data.find("+   sandbox/web"), std::string::npos) << out.stdout_data;
  EXPECT_NE(out.stdout_data.find("Plan: 1 to create, 0 to update, 0 to restart, 0 to replace, 0 to delete."),
            std::string::npos)
      << out.stdout_data;
  CommandOutput js = Banger({"plan", "-f", f, "-o", "json"});
  ASSERT_EQ(js.exit_code, 0);
  auto j = nlohmann::json::parse(js.stdout_data);
  EXPECT_EQ(j["summary"]["create"], 1);
  EXPECT_EQ(j["changes"][0]["action"], "create");
}

TEST_F(CliTest, PlanSaysWhichProviderBootsEachSandboxAndWhyForAuto) {
  std::string f = Write("specs/web.yaml", kGood);
  CommandOutput out = Banger({"plan", "-f", f});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  // No firecracker binary here (Debian has none), whatever KVM the probe finds.
  const std::string why = "qemu (auto: firecracker lacks the firecracker binary (not on PATH)";
  EXPECT_NE(out.stdout_data.find("      provider: " + why), std::string::npos) << out.stdout_data;
  CommandOutput js = Banger({"plan", "-f", f, "-o", "json"});
  ASSERT_EQ(js.exit_code, 0) << js.stderr_data;
  auto j = nlohmann::json::parse(js.stdout_data);
  EXPECT_EQ(j["changes"][0]["provider"].get<std::string>().rfind(why, 0), 0u) << j["changes"][0]["provider"];
  std::string q = Write("specs/q.yaml", std::string(kGood) + "  hypervisor: qemu\n");
  auto jq = nlohmann::json::parse(Banger({"plan", "-f", q, "-o", "json"}).stdout_data);
  EXPECT_EQ(jq["changes"][0]["provider"], "qemu");
}

TEST_F(CliTest, FirecrackerSpecIsAPlanErrorNamingFileLineFieldAndWhatIsMissing) {
  // Accepted and silently booted with QEMU before: now refused before anything happens.
  std::string f = Write("specs/fc.yaml", std::string(kGood) + "  hypervisor: firecracker\n");
  for (const char* cmd : {"plan", "apply"}) {
    std::vector<std::string> args = {cmd, "-f", f};
    if (std::string(cmd) == "apply") args.push_back("--yes");
    CommandOutput out = Banger(args);
    EXPECT_EQ(out.exit_code, 1) << cmd << ": " << out.stdout_data << out.stderr_data;
    std::string all = out.stdout_data + out.stderr_data;
    EXPECT_NE(all.find(f + ":9: sandbox \"web\": spec.hypervisor: firecracker is not available on this host: "
                       "missing the firecracker binary (not on PATH)"),
              std::string::npos) << cmd << ": " << all;
    EXPECT_NE(all.find("use hypervisor: qemu or auto"), std::string::npos) << all;
  }
  // Nothing was recorded or pulled.
  CommandOutput get = Banger({"get", "-o", "json"});
  EXPECT_EQ(nlohmann::json::parse(get.stdout_data)["items"].size(), 0u) << get.stdout_data;
  std::error_code ec;
  EXPECT_TRUE(!std::filesystem::exists(dir_.path() / "state/images") ||
              std::filesystem::is_empty(dir_.path() / "state/images", ec));
}

TEST_F(CliTest, UnknownFlagIsAUsageError) {
  CommandOutput out = Banger({"plan", "--frobnicate"});
  EXPECT_EQ(out.exit_code, 64);
}

TEST_F(CliTest, UnknownCommandIsNamedAndAUsageError) {
  CommandOutput out = Banger({"frobnicate"});
  EXPECT_EQ(out.exit_code, 64);
  EXPECT_NE(out.stderr_data.find("error: unknown command \"frobnicate\""), std::string::npos) << out.stderr_data;
  EXPECT_NE(out.stderr_data.find("apply"), std::string::npos) << out.stderr_data;
  CommandOutput typo = Banger({"aply"});
  EXPECT_EQ(typo.exit_code, 64);
  EXPECT_NE(typo.stderr_data.find("did you mean \"apply\"?"), std::string::npos) << typo.stderr_data;
  CommandOutput nested = Banger({"image", "frobnicate"});
  EXPECT_EQ(nested.exit_code, 64);
  EXPECT_NE(nested.stderr_data.find("unknown command \"image frobnicate\""), std::string::npos)
      << nested.stderr_data;
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "state"));
}

TEST_F(CliTest, CommandsThatNeedNoHostCreateNoStateDirectory) {
  std::string f = Write("specs/web.yaml", kGood);
  EXPECT_EQ(Banger({"validate", "-f", f}).exit_code, 0);
  EXPECT_EQ(Banger({"schema"}).exit_code, 0);
  EXPECT_EQ(Banger({"config", "show"}).exit_code, 0);
  EXPECT_EQ(Banger({"version"}).exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "state"));
}

TEST_F(CliTest, DoctorChecksTheStateDirectoryAndFindsToolsOnPath) {
  // A PATH with only a stand-in qemu-img: doctor looks programs up itself (no shell).
  auto bin = dir_.path() / "bin";
  std::filesystem::create_directories(bin);
  ASSERT_TRUE(WriteFileAtomic(bin / "qemu-img", "#!/bin/sh\necho 'qemu-img version 0.0-test'\n", 0755).ok());
  CommandSpec spec;
  spec.argv = {BANGER_EXE, "--state-dir", (dir_.path() / "state").string(), "--config",
               (dir_.path() / "config.yaml").string(), "doctor"};
  spec.env["NO_COLOR"] = "1";
  spec.env["PATH"] = bin.string();
  auto out = runner_->Run(spec);
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(out->exit_code, 1) << out->stdout_data;  // qemu-system-x86_64, at least, is missing
  EXPECT_NE(out->stdout_data.find("✓ state directory " + (dir_.path() / "state").string() + ": "),
            std::string::npos) << out->stdout_data;
  // The tool was run for its version, not just found.
  EXPECT_NE(out->stdout_data.find("✓ qemu-img (" + (bin / "qemu-img").string() + "): qemu-img version 0.0-test\n"),
            std::string::npos) << out->stdout_data;
  EXPECT_NE(out->stdout_data.find("✗ [qemu] qemu-system-x86_64: not installed"), std::string::npos)
      << out->stdout_data;
  EXPECT_NE(out->stdout_data.find("    fix: apt-get install qemu-system-x86"), std::string::npos) << out->stdout_data;
  // System tools are also looked for in /usr/sbin and /sbin (not on an
  // ordinary user's PATH): mkfs.ext4 is found there.
  EXPECT_NE(out->stdout_data.find("✓ mkfs.ext4 (/usr/sbin/mkfs.ext4): mke2fs"), std::string::npos)
      << out->stdout_data;
}

TEST_F(CliTest, DoctorProbesTheStateDirectoryDatabaseAndTools) {
  // A healthy state directory: every check reports what it found.
  CommandOutput out = Banger({"doctor", "-o", "json"});
  auto j = nlohmann::json::parse(out.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out.stdout_data << out.stderr_data;
  std::map<std::string, nlohmann::json> by_check;
  for (const auto& c : j) {
    std::string name = c["check"];
    by_check[name.substr(0, name.find(' '))] = c;  // "state", "free", "qemu-system-x86_64", ...
  }
  EXPECT_EQ(by_check["free"]["result"] == "fail", false) << by_check["free"];
  EXPECT_NE(by_check["free"]["detail"].get<std::string>().find("free on the state directory's file system"),
            std::string::npos);
  bool saw_db = false;
  for (const auto& c : j) {
    std::string name = c["check"];
    if (name.rfind("state database ", 0) == 0 && name.find("state.db") != std::string::npos) {
      saw_db = true;
      EXPECT_EQ(c["result"], "ok") << c;
      EXPECT_NE(c["detail"].get<std::string>().find("integrity_check ok"), std::string::npos) << c;
    }
  }
  EXPECT_TRUE(saw_db) << out.stdout_data;
  EXPECT_NE(by_check["qemu-system-x86_64"]["detail"].get<std::string>().find("QEMU emulator version"),
            std::string::npos) << by_check["qemu-system-x86_64"];
  EXPECT_NE(by_check["mkfs.ext4"]["detail"].get<std::string>().find("mke2fs"), std::string::npos)
      << by_check["mkfs.ext4"];

  // A state directory opened to others: the check really looks.
  std::filesystem::permissions(dir_.path() / "state", std::filesystem::perms::group_read |
                                                          std::filesystem::perms::group_exec,
                               std::filesystem::perm_options::add);
  out = Banger({"doctor"});
  EXPECT_EQ(out.exit_code, 1) << out.stdout_data;
  EXPECT_NE(out.stdout_data.find("✗ state directory " + (dir_.path() / "state").string() +
                                 ": mode 0750, expected 0700 (private)"),  // (or 0710 for the QEMUs' group)
            std::string::npos) << out.stdout_data;
  std::filesystem::permissions(dir_.path() / "state", std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace);

  // A database that is not one: reported, not assumed.
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "state/state.db", std::string(8192, 'x'), 0600).ok());
  std::filesystem::remove(dir_.path() / "state/state.db-wal");
  std::filesystem::remove(dir_.path() / "state/state.db-shm");
  out = Banger({"doctor"});
  EXPECT_EQ(out.exit_code, 1) << out.stdout_data;
  EXPECT_NE(out.stdout_data.find("✗ state database"), std::string::npos) << out.stdout_data;
}

TEST_F(CliTest, DoctorSaysPerProviderWhatFirecrackerNeedsAndHowToGetIt) {
  // A stand-in firecracker on PATH: found and run for its version; no jailer.
  auto bin = dir_.path() / "bin";
  std::filesystem::create_directories(bin);
  ASSERT_TRUE(WriteFileAtomic(bin / "firecracker", "#!/bin/sh\necho 'Firecracker v1.7.0'\n", 0755).ok());
  auto doctor = [&](const std::string& config) {
    EXPECT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", config).ok());
    CommandSpec spec;
    spec.argv = {BANGER_EXE, "--state-dir", (dir_.path() / "state").string(), "--config",
                 (dir_.path() / "config.yaml").string(), "doctor", "-o", "json"};
    spec.env["NO_COLOR"] = "1";
    spec.env["PATH"] = bin.string() + ":/usr/local/bin:/usr/bin:/bin";
    auto out = runner_->Run(spec);
    EXPECT_TRUE(out.ok());
    return out.ok() ? *out : CommandOutput{-1, "", ""};
  };
  CommandOutput out = doctor("parallel: 2\n");
  auto j = nlohmann::json::parse(out.stdout_data, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out.stdout_data << out.stderr_data;
  std::map<std::string, nlohmann::json> fc;  // firecracker's checks by name
  for (const auto& c : j) {
    if (c.value("provider", "") == "firecracker") fc[c["check"].get<std::string>()] = c;
    if (c["check"] == "qemu-system-x86_64 (/usr/bin/qemu-system-x86_64)") {
      EXPECT_EQ(c.value("provider", ""), "qemu");
    }
  }
  const std::string fc_name = "firecracker (" + (bin / "firecracker").string() + ")";
  ASSERT_TRUE(fc.count(fc_name)) << out.stdout_data;
  EXPECT_EQ(fc[fc_name]["result"], "ok");
  EXPECT_EQ(fc[fc_name]["detail"], "Firecracker v1.7.0");
  ASSERT_TRUE(fc.count("jailer")) << out.stdout_data;
  EXPECT_EQ(fc["jailer"]["result"], "warning");
  EXPECT_NE(fc["jailer"].value("fix", "").find("/usr/local/bin/jailer"), std::string::npos) << fc["jailer"];
  const std::string kvm = "KVM for Firecracker (/dev/kvm and a probe VM)";
  ASSERT_TRUE(fc.count(kvm)) << out.stdout_data;
  if (fc[kvm]["result"] != "ok") {
    EXPECT_EQ(fc[kvm]["result"], "warning") << fc[kvm];  // QEMU still runs sandboxes
    EXPECT_NE(fc[kvm]["detail"].get<std::string>().find("does not work: "), std::string::npos) << fc[kvm];
    EXPECT_FALSE(fc[kvm].value("fix", "").empty()) << fc[kvm];
  }
  ASSERT_TRUE(fc.count("cgroup v2 for the jailer")) << out.stdout_data;
  ASSERT_TRUE(fc.count("Firecracker provider in this banger")) << out.stdout_data;
  EXPECT_EQ(out.exit_code == 0 || out.exit_code == 1, true);

  // With the host config making Firecracker the default, what it lacks fails
  // doctor (the optional jailer and its cgroups stay warnings).
  out = doctor("hypervisor: firecracker\n");
  j = nlohmann::json::parse(out.stdout_data, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out.stdout_data << out.stderr_data;
  int fails = 0;
  for (const auto& c : j) {
    if (c.value("provider", "") != "firecracker") continue;
    std::string name = c["check"];
    ASSERT_TRUE(fc.count(name)) << name;
    std::string before = fc[name]["result"];
    if (name == "jailer" || name == "cgroup v2 for the jailer" || before == "ok") {
      EXPECT_EQ(c["result"], before) << c;
    } else {
      EXPECT_EQ(c["result"], "fail") << c;
      ++fails;
    }
  }
  if (fails > 0) {
    EXPECT_EQ(out.exit_code, 1) << out.stdout_data;
  }
}

TEST_F(CliTest, GetOnEmptyHostPrintsEmptyJsonList) {
  CommandOutput out = Banger({"get", "-o", "json"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  auto j = nlohmann::json::parse(out.stdout_data);
  EXPECT_TRUE(j["items"].empty());
  CommandOutput missing = Banger({"describe", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_data.find("sandbox \"nope\" not found"), std::string::npos);
}

TEST_F(CliTest, StateDirectoryIsPrivate) {
  std::string f = Write("specs/web.yaml", kGood);
  ASSERT_EQ(Banger({"plan", "-f", f}).exit_code, 0);
  auto st = std::filesystem::status(dir_.path() / "state");
  EXPECT_EQ(st.permissions() & std::filesystem::perms::all, std::filesystem::perms::owner_all);
}

TEST_F(CliTest, BadConfigNamesFileLineAndKey) {
  Write("config.yaml", "parallel: 2\naccell: kvm\n");
  CommandOutput out = Banger({"get"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.stderr_data.find("config.yaml:2:1: unknown key \"accell\" (did you mean \"accel\"?)"),
            std::string::npos)
      << out.stderr_data;
}

TEST_F(CliTest, BadCatalogEntryInConfigNamesItsOwnLine) {
  Write("config.yaml", "parallel: 2\nimages:\n  alpine:\n    ocii: \"x\"\n");
  CommandOutput out = Banger({"image", "catalog"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.stderr_data.find("config.yaml:4:5: image catalog entry \"alpine\": unknown field \"ocii\""),
            std::string::npos)
      << out.stderr_data;
}

TEST_F(CliTest, UserCatalogEntriesAreListed) {
  Write("config.yaml", "images:\n  alpine: {oci: \"127.0.0.1:5000/library/alpine:3.19\"}\n");
  CommandOutput out = Banger({"image", "catalog"});
  ASSERT_EQ(out.exit_code, 0) << out.stderr_data;
  EXPECT_NE(out.stdout_data.find("alpine"), std::string::npos);
  EXPECT_NE(out.stdout_data.find("busybox"), std::string::npos) << "built-in entries stay";
}

}  // namespace
}  // namespace banger

namespace banger {
namespace {

// GET http://127.0.0.1:port/path; the whole response ("" when unreachable).
std::string LoopbackGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST_F(CliTest, WatchServesHealthAndMetricsAndStopsOnSigtermWithExitZero) {
  // Given a watcher over an empty spec directory with --listen; then /healthz
  // and /metrics answer on loopback, status shows the source with this
  // watcher running, and SIGTERM ends it with exit code 0.
  std::filesystem::create_directories(dir_.path() / "specs");
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  std::vector<std::string> argv = {BANGER_EXE, "--state-dir", (dir_.path() / "state").string(), "--config",
                                   (dir_.path() / "config.yaml").string(), "watch", "-f",
                                   (dir_.path() / "specs").string(), "--interval", "500ms", "--listen",
                                   "127.0.0.1:" + std::to_string(port)};
  e2e::Background watcher;  // our own child: its exit status is ours to read; killed if still running
  ASSERT_TRUE(watcher.Start(argv, {{"NO_COLOR", "1"}}, dir_.path() / "watch.out", dir_.path() / "watch.err"));

  std::string metrics;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    metrics = LoopbackGet(port, "/metrics");
    if (metrics.find("banger_watch_passes_total{") != std::string::npos &&
        metrics.find("} 0\r\n") == std::string::npos && metrics.find("passes_total{source=\"path:") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(metrics.rfind("HTTP/1.0 200 OK", 0), 0u) << metrics << watcher.Output();
  EXPECT_NE(metrics.find("# TYPE banger_watch_passes_total counter"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("banger_watch_last_success_timestamp_seconds{"), std::string::npos) << metrics;
  std::string health = LoopbackGet(port, "/healthz");
  EXPECT_EQ(health.rfind("HTTP/1.0 200 OK", 0), 0u) << health;
  EXPECT_NE(health.find("\r\n\r\nok\n"), std::string::npos) << health;

  CommandOutput status = Banger({"status", "-o", "json"});
  ASSERT_EQ(status.exit_code, 0) << status.stderr_data;
  auto j = nlohmann::json::parse(status.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << status.stdout_data;
  ASSERT_EQ(j["sources"].size(), 1u) << status.stdout_data;
  EXPECT_EQ(j["sources"][0]["watcher"].value("pid", 0), watcher.pid()) << status.stdout_data;
  EXPECT_TRUE(j["sources"][0]["watcher"].value("running", false)) << status.stdout_data;

  // A second watcher on the same state directory is refused, naming the first.
  CommandOutput second = Banger({"watch", "-f", (dir_.path() / "specs").string(), "--once"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.stderr_data.find("pid " + std::to_string(watcher.pid())), std::string::npos) << second.stderr_data;

  watcher.Signal(SIGTERM);
  std::optional<int> code = watcher.Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << "banger watch did not exit within 10 s of SIGTERM";
  EXPECT_EQ(*code, 0) << watcher.Output();
  EXPECT_NE(watcher.Stderr().find("stopped"), std::string::npos) << watcher.Output();
}

}  // namespace
}  // namespace banger
