// End-to-end tests of `banger watch` with real QEMU guests: following a git
// repository (made with the git CLI, served as file://) through a good
// commit, a change, and a bad commit; one watcher per state dir; SIGTERM
// leaving sandboxes running; and `watch -f DIR --once`.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class WatchTest : public VmFixture {
 protected:
  // Runs git in `cwd` with a fixed identity; fails the test on a non-zero exit.
  std::string Git(const fs::path& cwd, std::vector<std::string> args) {
    CommandSpec spec;
    spec.argv = {"git"};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.cwd = cwd;
    spec.env = {{"GIT_AUTHOR_NAME", "banger test"},   {"GIT_AUTHOR_EMAIL", "test@banger.invalid"},
                {"GIT_COMMITTER_NAME", "banger test"}, {"GIT_COMMITTER_EMAIL", "test@banger.invalid"},
                {"GIT_CONFIG_NOSYSTEM", "1"},          {"GIT_TERMINAL_PROMPT", "0"}};
    spec.timeout = seconds(60);
    auto out = runner_->Run(spec);
    std::string line = "git";
    for (const auto& a : args) line += " " + a;
    EXPECT_TRUE(out.ok()) << line << ": " << out.error().ToString();
    if (!out.ok()) return "";
    EXPECT_EQ(out->exit_code, 0) << line << ":\n" << out->stdout_data << out->stderr_data;
    std::string s = out->stdout_data;
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }

  // Writes specs/web.yaml in the work clone, commits and pushes; returns the
  // new commit's sha as the bare repository has it.
  std::string CommitAndPush(const std::string& content, const std::string& message) {
    EXPECT_TRUE(WriteFileAtomic(work_ / "specs" / "web.yaml", content).ok());
    Git(work_, {"add", "specs/web.yaml"});
    Git(work_, {"commit", "-q", "-m", message});
    Git(work_, {"push", "-q", "origin", "main"});
    return Git(bare_, {"rev-parse", "HEAD"});
  }

  json Status() {
    CommandOutput out = Banger({"status", "-o", "json"});
    EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
    json j = json::parse(out.stdout_data, nullptr, false);
    if (j.is_discarded() || !j.contains("sources") || j["sources"].empty()) return json();
    return j["sources"][0];
  }

  // Polls `ok` every 500 ms until it holds or `limit` passes.
  bool WaitUntil(const std::function<bool()>& ok, seconds limit) {
    auto deadline = steady_clock::now() + limit;
    while (steady_clock::now() < deadline) {
      if (ok()) return true;
      std::this_thread::sleep_for(milliseconds(500));
    }
    return ok();
  }

  fs::path bare_, work_;
};

std::string Tail(const std::string& s, size_t n = 4000) { return s.size() > n ? "..." + s.substr(s.size() - n) : s; }

// 4. -------------------------------------------------------------------------

TEST_F(WatchTest, WatchGitBootsCommittedSandboxAndSurvivesSigterm) {
  bare_ = dir_.path() / "repo.git";
  work_ = dir_.path() / "work";
  fs::create_directories(bare_);
  fs::create_directories(work_ / "specs");
  Git(bare_, {"init", "-q", "--bare", "-b", "main"});
  Git(work_, {"init", "-q", "-b", "main"});
  Git(work_, {"remote", "add", "origin", bare_.string()});
  guard_.Track("web");

  SpecOptions o;
  o.restart_policy = "Always";
  std::string first_sha = CommitAndPush(SpecYaml("web", o), "web: one cpu");
  ASSERT_EQ(first_sha.size(), 40u) << first_sha;

  const std::string url = "file://" + bare_.string();
  Background watch;
  ASSERT_TRUE(StartBanger(watch, "watch", {"watch", "--git", url, "--path", "specs", "--interval", "2s"}));

  // The committed sandbox boots.
  ASSERT_TRUE(WaitUntil([&] { return !watch.Running() || Phase("web") == "Ready"; }, seconds(180)))
      << "web not Ready within 180 s (phase " << Phase("web") << ")\nwatch log:\n" << Tail(watch.Output());
  ASSERT_TRUE(watch.Running()) << "watch exited (" << watch.ExitCode().value_or(-1) << "):\n" << watch.Output();
  ASSERT_EQ(Phase("web"), "Ready");
  json st;
  ASSERT_TRUE(WaitUntil([&] { st = Status(); return st.is_object() && st["applied"].value("revision", "") == first_sha; },
                        seconds(30)))
      << "status does not show the pushed commit as applied:\n" << st.dump(2);
  EXPECT_TRUE(st["watcher"].value("running", false)) << st.dump(2);
  EXPECT_EQ(st["watcher"].value("pid", 0), watch.pid()) << st.dump(2);
  EXPECT_EQ(st.value("url", ""), url) << st.dump(2);
  std::vector<int> q1 = Qemus();
  ASSERT_EQ(q1.size(), 1u);
  int pid1 = GetItem("web")["status"].value("pid", 0);
  EXPECT_EQ(pid1, q1[0]);

  // A pushed change (cpus: 2) restarts web with two CPUs.
  o.cpus = 2;
  std::string second_sha = CommitAndPush(SpecYaml("web", o), "web: two cpus");
  std::string cpus;
  ASSERT_TRUE(WaitUntil(
      [&] {
        if (!watch.Running()) return true;
        json it = GetItem("web");
        if (it.is_null() || it["status"].value("phase", "") != "Ready" || it["status"].value("pid", 0) == pid1) {
          return false;
        }
        cpus = Exec("web", {"grep", "-c", "^processor", "/proc/cpuinfo"}).stdout_data;
        return cpus == "2\n";
      },
      seconds(180)))
      << "web not Ready with 2 CPUs within 180 s (last: " << cpus << ")\nstatus:\n" << Status().dump(2)
      << "\nwatch log:\n" << Tail(watch.Output());
  ASSERT_TRUE(watch.Running()) << watch.Output();
  ASSERT_TRUE(WaitUntil([&] { st = Status(); return st.is_object() && st["applied"].value("revision", "") == second_sha; },
                        seconds(30)))
      << st.dump(2);
  std::vector<int> q2 = Qemus();
  ASSERT_EQ(q2.size(), 1u) << "the old VM was not stopped";
  int pid2 = GetItem("web")["status"].value("pid", 0);
  EXPECT_EQ(q2[0], pid2);

  // A bad commit changes nothing and is reported with its file and revision.
  std::string bad = SpecYaml("web", o);
  bad.replace(bad.find("cpus: 2"), 7, "cpus: 0");
  std::string bad_sha = CommitAndPush(bad, "web: zero cpus (invalid)");
  ASSERT_TRUE(WaitUntil(
      [&] {
        st = Status();
        return !watch.Running() ||
               (st.is_object() && st["lastAttempt"].value("result", "") == "error" &&
                st["lastAttempt"].value("revision", "") == bad_sha);
      },
      seconds(60)))
      << "status never reported the bad commit " << bad_sha << ":\n" << st.dump(2) << "\nwatch log:\n"
      << Tail(watch.Output());
  ASSERT_TRUE(watch.Running()) << watch.Output();
  EXPECT_NE(st["lastAttempt"].value("error", "").find("specs/web.yaml:"), std::string::npos) << st.dump(2);
  EXPECT_EQ(st["applied"].value("revision", ""), second_sha) << "the last good commit stays applied: " << st.dump(2);
  EXPECT_EQ(Qemus(), std::vector<int>{pid2}) << "a bad commit must not touch the running VM";
  json it = GetItem("web");
  EXPECT_EQ(it["status"].value("phase", ""), "Ready") << it.dump(2);
  EXPECT_EQ(it["status"].value("pid", 0), pid2) << it.dump(2);

  // A second watcher on the same state dir refuses to start and names the first.
  auto t_second = steady_clock::now();
  CommandOutput second = Banger({"watch", "--git", url, "--path", "specs", "--interval", "2s"}, seconds(60));
  EXPECT_LT(steady_clock::now() - t_second, seconds(10)) << "the second watcher must refuse at once";
  EXPECT_EQ(second.exit_code, 1) << second.stdout_data << second.stderr_data;
  EXPECT_NE(second.stderr_data.find("pid " + std::to_string(watch.pid())), std::string::npos) << second.stderr_data;
  EXPECT_NE(second.stderr_data.find("another banger watch is already running"), std::string::npos)
      << second.stderr_data;

  // SIGTERM stops the watcher promptly and leaves the sandbox running.
  auto t0 = steady_clock::now();
  watch.Signal(SIGTERM);
  std::optional<int> code = watch.Wait(seconds(10));
  double took = std::chrono::duration<double>(steady_clock::now() - t0).count();
  RecordProperty("sigterm_exit_seconds", std::to_string(took));
  ASSERT_TRUE(code.has_value()) << "watch still running 10 s after SIGTERM:\n" << Tail(watch.Output());
  EXPECT_EQ(*code, 0) << Tail(watch.Output());
  EXPECT_EQ(Qemus(), std::vector<int>{pid2}) << "SIGTERM to the watcher must leave the sandbox's VM running";
  EXPECT_EQ(Phase("web"), "Ready");
  st = Status();
  EXPECT_FALSE(st["watcher"].value("running", true)) << st.dump(2);
}

// 5. -------------------------------------------------------------------------

TEST_F(WatchTest, WatchDirectoryOnceConvergesAndExitsZero) {
  std::string f = WriteSpec("once", SpecOptions{});
  std::string dir = fs::path(f).parent_path().string();
  CommandOutput good = Banger({"watch", "-f", dir, "--once"});
  EXPECT_EQ(good.exit_code, 0) << good.stdout_data << good.stderr_data;
  EXPECT_EQ(Phase("once"), "Ready") << good.stdout_data << good.stderr_data;
  EXPECT_EQ(Qemus().size(), 1u);

  // An invalid file in the directory: the pass does not converge, exit 1, and
  // the output points at the file, line and column.
  Write("specs/broken.yaml", "apiVersion: banger.dev/v1\n"
                             "kind: Sandbox\n"
                             "metadata:\n"
                             "  name: broken\n"
                             "spec:\n"
                             "  image: \"busybox\"\n"
                             "  cpus: 0\n");
  CommandOutput bad = Banger({"watch", "-f", dir, "--once"});
  EXPECT_EQ(bad.exit_code, 1) << bad.stdout_data << bad.stderr_data;
  std::string all = bad.stdout_data + bad.stderr_data;
  EXPECT_TRUE(std::regex_search(all, std::regex("broken\\.yaml:7:[0-9]+"))) << all;
  EXPECT_EQ(Phase("once"), "Ready") << "an invalid file must not touch the running sandbox";
  EXPECT_EQ(Qemus().size(), 1u);
}

}  // namespace
}  // namespace banger
