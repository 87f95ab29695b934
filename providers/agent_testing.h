// Test helper: the real banger-agent binary run on the host in --serve-unix
// mode (the same server code as in a VM; only the transport differs), in a
// private temp dir that is removed with it. Used by the tests of every module
// that talks to the agent (providers, workspace). The including test target
// defines BANGER_AGENT_PATH.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/command_runner.h"
#include "base/files.h"
#include "providers/agent_client.h"

namespace banger::testing {

struct HostAgentOptions {
  std::string tag = "host-agent";      // temp dir name prefix
  std::vector<std::string> env;        // "K=V" given to every exec (--env)
  bool hosts_file = false;             // SET_HOSTS writes dir()/hosts (else it has none)
  bool hold = false;                   // --hold: held until IDENTITY (whose config's env it adopts)
};

class HostAgent {
 public:
  explicit HostAgent(HostAgentOptions options = {}) {
    auto dir = MakeTempDir(options.tag);
    EXPECT_TRUE(dir.ok());
    if (!dir.ok()) return;
    dir_ = *dir;
    socket_ = dir_ / "agent.sock";
    runner_ = MakePosixCommandRunner();
    std::vector<std::string> argv = {BANGER_AGENT_PATH, "--serve-unix", socket_.string()};
    for (const auto& e : options.env) argv.insert(argv.end(), {"--env", e});
    if (options.hosts_file) argv.insert(argv.end(), {"--hosts-file", (dir_ / "hosts").string()});
    if (options.hold) argv.push_back("--hold");
    auto id = runner_->StartDetached({.argv = argv, .log_file = dir_ / "agent.log"});
    EXPECT_TRUE(id.ok()) << id.error().ToString();
    if (id) id_ = *id;
  }
  ~HostAgent() {
    conn_.reset();
    if (ProcessAlive(id_)) (void)SignalProcess(id_, SIGKILL);
    for (int i = 0; i < 200 && ProcessAlive(id_); ++i) ::usleep(10000);
    if (!dir_.empty()) (void)RemoveAll(dir_);
  }
  HostAgent(const HostAgent&) = delete;
  HostAgent& operator=(const HostAgent&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& socket() const { return socket_; }
  const ProcessIdentity& id() const { return id_; }

  /// A new connection, after the agent's HELLO (null on failure, reported).
  std::unique_ptr<AgentConnection> Connect() {
    using std::chrono::milliseconds;
    using std::chrono::steady_clock;
    auto c = ConnectAgent(socket_, steady_clock::now() + milliseconds(5000));
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    if (!c) return nullptr;
    auto hello = (*c)->WaitHello(steady_clock::now() + milliseconds(5000));
    EXPECT_TRUE(hello.ok()) << hello.error().ToString();
    return std::move(*c);
  }

  /// One connection kept for the helper's lifetime (the agent serves one
  /// client at a time, like QEMU's chardev).
  AgentConnection& conn() {
    if (!conn_) conn_ = Connect();
    return *conn_;
  }

 private:
  std::filesystem::path dir_, socket_;
  std::unique_ptr<CommandRunner> runner_;
  ProcessIdentity id_;
  std::unique_ptr<AgentConnection> conn_;
};

}  // namespace banger::testing
