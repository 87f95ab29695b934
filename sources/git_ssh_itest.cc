// GitSource over ssh:// against a real OpenSSH server (/usr/sbin/sshd) that
// each test starts on a free loopback port and stops again: host key checks
// against known_hosts, key files, ssh-agent and a rejected key.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <optional>
#include <thread>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "sources/git_source.h"
#include "sources/git_testing.h"
#include "tests/support/oci_registry.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::TempDir;

constexpr char kSshd[] = "/usr/sbin/sshd";

std::string SpecYaml(const std::string& name) {
  return "apiVersion: banger.dev/v1\nkind: Sandbox\nmetadata:\n  name: " + name + "\nspec:\n  image: busybox\n";
}

bool PortAccepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// Stops a process started here: SIGTERM, then SIGKILL, by identity.
void Stop(ProcessIdentity& id) {
  if (id.pid == 0) return;
  (void)SignalProcess(id, SIGTERM);
  for (int i = 0; i < 200 && ProcessAlive(id); ++i) std::this_thread::sleep_for(10ms);
  if (ProcessAlive(id)) (void)SignalProcess(id, SIGKILL);
  id = {};
}

class GitSshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kSshd)) {
      std::printf("skipping: %s does not exist (install openssh-server, see scripts/setup.sh)\n", kSshd);
      GTEST_SKIP() << kSshd << " does not exist (install openssh-server)";
    }
    // Credentials must come only from what each test sets up.
    if (const char* sock = getenv("SSH_AUTH_SOCK")) saved_auth_sock_ = sock;
    unsetenv("SSH_AUTH_SOCK");
    runner_ = MakePosixCommandRunner();
    root_ = fs::weakly_canonical(dir_.path());

    // Keys: the server's host key, the client's key (authorized), a key the
    // server does not know and a second host key for a wrong known_hosts.
    ASSERT_TRUE(MakeDirs(root_ / "server", 0700).ok());
    ASSERT_TRUE(MakeDirs(root_ / "keys", 0700).ok());
    KeyGen(root_ / "server/hostkey");
    KeyGen(root_ / "keys/client");
    KeyGen(root_ / "keys/stranger");
    KeyGen(root_ / "keys/otherhost");
    host_pub_ = PublicKey(root_ / "server/hostkey.pub");
    ASSERT_TRUE(WriteFileAtomic(root_ / "server/authorized_keys",
                                *ReadFile(root_ / "keys/client.pub"), 0600)
                    .ok());

    // sshd, as root, insists on its privilege separation directory, which
    // only the (here absent or stopped) system service would create.
    if (geteuid() == 0 && !fs::exists("/run/sshd")) {
      ASSERT_EQ(::mkdir("/run/sshd", 0755), 0) << "mkdir /run/sshd: " << std::strerror(errno);
    }
    port_ = testing::FreeLoopbackPort();
    ASSERT_NE(port_, 0);
    fs::path config = root_ / "server/sshd_config";
    std::string text = "Port " + std::to_string(port_) +
                       "\n"
                       "ListenAddress 127.0.0.1\n"
                       "HostKey " + (root_ / "server/hostkey").string() +
                       "\n"
                       "AuthorizedKeysFile " + (root_ / "server/authorized_keys").string() +
                       "\n"
                       "PidFile " + (root_ / "server/sshd.pid").string() +
                       "\n"
                       "PermitRootLogin prohibit-password\n"
                       "PubkeyAuthentication yes\n"
                       "PasswordAuthentication no\n"
                       "KbdInteractiveAuthentication no\n"
                       "UsePAM no\n"
                       "StrictModes no\n"
                       "UseDNS no\n"
                       "PrintMotd no\n"
                       "LogLevel VERBOSE\n";
    ASSERT_TRUE(WriteFileAtomic(config, text, 0600).ok());
    CommandSpec spec;
    spec.argv = {kSshd, "-D", "-e", "-f", config.string()};
    spec.log_file = root_ / "server/sshd.log";
    Result<ProcessIdentity> id = runner_->StartDetached(spec);
    ASSERT_TRUE(id.ok()) << id.error().ToString();
    sshd_ = *id;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!PortAccepts(port_)) {
      ASSERT_TRUE(ProcessAlive(sshd_)) << "sshd exited: " << ReadFile(spec.log_file).value_or("");
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "sshd did not listen on " << port_ << ": " << ReadFile(spec.log_file).value_or("");
      std::this_thread::sleep_for(20ms);
    }

    // The repository: a bare remote with one commit pushed from a work tree.
    bare_ = root_ / "remote.git";
    fs::path work = root_ / "work";
    Git({"init", "-q", "--bare", "-b", "main", bare_.string()});
    Git({"init", "-q", "-b", "main", work.string()});
    ASSERT_TRUE(MakeDirs(work / "specs").ok());
    ASSERT_TRUE(WriteFileAtomic(work / "specs/web.yaml", SpecYaml("web")).ok());
    Git({"-C", work.string(), "add", "-A"});
    Git({"-C", work.string(), "commit", "-q", "-m", "web over ssh"});
    Git({"-C", work.string(), "push", "-q", bare_.string(), "HEAD:refs/heads/main"});
    head_ = Git({"-C", bare_.string(), "rev-parse", "HEAD"});
    ASSERT_EQ(head_.size(), 40u);
    url_ = "ssh://root@127.0.0.1:" + std::to_string(port_) + bare_.string();
  }

  void TearDown() override {
    // Also after a failed assertion: nothing started here outlives the test.
    Stop(agent_);
    Stop(sshd_);
    if (saved_auth_sock_) {
      setenv("SSH_AUTH_SOCK", saved_auth_sock_->c_str(), 1);
    } else {
      unsetenv("SSH_AUTH_SOCK");
    }
  }

  std::string Run(const std::vector<std::string>& argv, std::map<std::string, std::string> env = {}) {
    CommandSpec spec;
    spec.argv = argv;
    spec.env = std::move(env);
    spec.timeout = 60s;
    Result<CommandOutput> out = RunChecked(*runner_, spec);
    if (!out.ok()) {
      ADD_FAILURE() << out.error().ToString();
      return "";
    }
    return std::string(Trim(out->stdout_data));
  }

  std::string Git(const std::vector<std::string>& args) { return testing::RunGit(*runner_, root_, args); }

  void KeyGen(const fs::path& file) {
    Run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", file.filename().string(), "-f", file.string()});
  }

  // "ssh-ed25519 AAAA..." (the comment dropped).
  static std::string PublicKey(const fs::path& pub) {
    std::vector<std::string> f = Split(std::string(Trim(ReadFile(pub).value_or(""))), ' ');
    return f.size() >= 2 ? f[0] + " " + f[1] : "";
  }

  std::string KnownHostsLine(const std::string& key) const {
    return "[127.0.0.1]:" + std::to_string(port_) + " " + key + "\n";
  }

  // A fresh client SSH directory with `key` (a file under keys/) as id_ed25519
  // (none if empty) and `known_hosts` as its known_hosts file.
  fs::path SshDir(const std::string& name, const std::string& key, const std::string& known_hosts) {
    fs::path d = root_ / name;
    EXPECT_TRUE(MakeDirs(d, 0700).ok());
    if (!key.empty()) {
      EXPECT_TRUE(WriteFileAtomic(d / "id_ed25519", *ReadFile(root_ / "keys" / key), 0600).ok());
      EXPECT_TRUE(WriteFileAtomic(d / "id_ed25519.pub", *ReadFile(root_ / "keys" / (key + ".pub")), 0644).ok());
    }
    EXPECT_TRUE(WriteFileAtomic(d / "known_hosts", known_hosts, 0644).ok());
    return d;
  }

  GitSourceOptions Options(const fs::path& ssh_dir) const {
    GitSourceOptions o;
    o.url = url_;
    o.ref = "main";
    o.path = "specs";
    o.cache_dir = ssh_dir.parent_path() / (ssh_dir.filename().string() + "-cache");
    o.ssh_dir = ssh_dir;
    return o;
  }

  // Fetches, failing the test if it takes longer than `limit` (a credential
  // loop would never return).
  Result<SourceSnapshot> TimedFetch(const GitSourceOptions& o, std::chrono::seconds limit = 30s) {
    GitSource source(o);
    auto start = std::chrono::steady_clock::now();
    Result<SourceSnapshot> r = source.Fetch();
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, limit) << "Fetch took "
                           << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    return r;
  }

  void ExpectSpecs(const Result<SourceSnapshot>& r) {
    ASSERT_TRUE(r.ok()) << r.error().ToString() << "\nsshd log:\n" << SshdLog();
    EXPECT_EQ(r->revision, head_);
    EXPECT_EQ(r->summary, "web over ssh");
    EXPECT_FALSE(r->specs.diagnostics.HasErrors()) << r->specs.diagnostics.ToString();
    ASSERT_EQ(r->specs.specs.size(), 1u);
    EXPECT_EQ(r->specs.specs[0].spec.name, "web");
    EXPECT_EQ(r->specs.specs[0].location.file, "specs/web.yaml");
    // It really went through this sshd, with a public key.
    EXPECT_TRUE(Has(SshdLog(), "Accepted publickey for root")) << SshdLog();
  }

  // Nothing was fetched into or written out of the mirror.
  void ExpectNothingFetched(const GitSourceOptions& o) {
    EXPECT_FALSE(fs::exists(o.cache_dir / "current"));
    EXPECT_FALSE(fs::exists(o.cache_dir / "repo.git/refs/banger/fetched"));
    std::error_code ec;
    EXPECT_TRUE(!fs::exists(o.cache_dir / "trees", ec) || fs::is_empty(o.cache_dir / "trees", ec));
  }

  std::string SshdLog() const { return ReadFile(root_ / "server/sshd.log").value_or(""); }

  static bool Has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

  TempDir dir_;
  fs::path root_;
  std::unique_ptr<CommandRunner> runner_;
  std::optional<std::string> saved_auth_sock_;
  ProcessIdentity sshd_;
  ProcessIdentity agent_;
  int port_ = 0;
  std::string host_pub_;
  fs::path bare_;
  std::string head_;
  std::string url_;
};

TEST_F(GitSshTest, FetchesWithAKeyFileAndAKnownHost) {
  fs::path ssh = SshDir("ssh", "client", KnownHostsLine(host_pub_));
  GitSourceOptions o = Options(ssh);
  ExpectSpecs(TimedFetch(o));
  EXPECT_EQ(fs::read_symlink(o.cache_dir / "current"), fs::path("trees") / head_);
  // The source never wrote to the client's SSH directory.
  EXPECT_EQ(*ReadFile(ssh / "known_hosts"), KnownHostsLine(host_pub_));
}

TEST_F(GitSshTest, UnknownHostIsRefused) {
  fs::path ssh = SshDir("ssh", "client", "");
  GitSourceOptions o = Options(ssh);
  Result<SourceSnapshot> r = TimedFetch(o);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().message();
  EXPECT_EQ(r.error().code(), StatusCode::kPermissionDenied) << r.error().ToString();
  EXPECT_TRUE(Has(msg, "unknown SSH host [127.0.0.1]:" + std::to_string(port_))) << msg;
  EXPECT_TRUE(Has(msg, (ssh / "known_hosts").string())) << msg;
  ExpectNothingFetched(o);
  EXPECT_EQ(*ReadFile(ssh / "known_hosts"), "");  // never added by banger
}

TEST_F(GitSshTest, ChangedHostKeyIsRefused) {
  // known_hosts lists another key for [127.0.0.1]:PORT (and the right key for
  // the same address on port 22, which must not count).
  fs::path ssh = SshDir("ssh", "client",
                        KnownHostsLine(PublicKey(root_ / "keys/otherhost.pub")) + "127.0.0.1 " + host_pub_ + "\n");
  GitSourceOptions o = Options(ssh);
  Result<SourceSnapshot> r = TimedFetch(o);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().message();
  EXPECT_EQ(r.error().code(), StatusCode::kPermissionDenied) << r.error().ToString();
  EXPECT_TRUE(Has(msg, "[127.0.0.1]:" + std::to_string(port_))) << msg;
  EXPECT_TRUE(Has(msg, "does not match")) << msg;
  EXPECT_TRUE(Has(msg, (ssh / "known_hosts").string())) << msg;
  ExpectNothingFetched(o);
}

TEST_F(GitSshTest, UnauthorizedKeyFailsAuthenticationInBoundedTime) {
  fs::path ssh = SshDir("ssh", "stranger", KnownHostsLine(host_pub_));
  GitSourceOptions o = Options(ssh);
  Result<SourceSnapshot> r = TimedFetch(o, 30s);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().message();
  EXPECT_EQ(r.error().code(), StatusCode::kPermissionDenied) << r.error().ToString();
  EXPECT_TRUE(Has(msg, "SSH authentication as root failed (tried " + (ssh / "id_ed25519").string() + ")"))
      << msg;
  ExpectNothingFetched(o);
  EXPECT_FALSE(Has(SshdLog(), "Accepted publickey")) << SshdLog();
}

TEST_F(GitSshTest, NoKeyAtAllFailsAuthentication) {
  fs::path ssh = SshDir("ssh", "", KnownHostsLine(host_pub_));
  GitSourceOptions o = Options(ssh);
  Result<SourceSnapshot> r = TimedFetch(o, 30s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kPermissionDenied) << r.error().ToString();
  EXPECT_TRUE(Has(r.error().message(), "SSH authentication as root failed: no ssh-agent (SSH_AUTH_SOCK is unset) "
                                       "and no key file (id_ed25519, id_ecdsa, id_rsa) in " + ssh.string()))
      << r.error().ToString();
  ExpectNothingFetched(o);
}

TEST_F(GitSshTest, FetchesThroughSshAgent) {
  // The key lives only in the agent: ssh_dir holds nothing but known_hosts.
  fs::path sock = root_ / "agent.sock";
  CommandSpec spec;
  spec.argv = {"ssh-agent", "-D", "-a", sock.string()};
  spec.log_file = root_ / "agent.log";
  Result<ProcessIdentity> id = runner_->StartDetached(spec);
  ASSERT_TRUE(id.ok()) << id.error().ToString();
  agent_ = *id;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(sock)) {
    ASSERT_TRUE(ProcessAlive(agent_)) << "ssh-agent exited: " << ReadFile(spec.log_file).value_or("");
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no agent socket " << sock;
    std::this_thread::sleep_for(20ms);
  }
  Run({"ssh-add", "-q", (root_ / "keys/client").string()}, {{"SSH_AUTH_SOCK", sock.string()}});
  setenv("SSH_AUTH_SOCK", sock.c_str(), 1);

  fs::path ssh = SshDir("ssh", "", KnownHostsLine(host_pub_));
  ExpectSpecs(TimedFetch(Options(ssh)));

  // An agent without the authorized key: authentication fails, and the error
  // says the agent was tried.
  Run({"ssh-add", "-q", "-D"}, {{"SSH_AUTH_SOCK", sock.string()}});
  Run({"ssh-add", "-q", (root_ / "keys/stranger").string()}, {{"SSH_AUTH_SOCK", sock.string()}});
  GitSourceOptions o = Options(SshDir("ssh2", "", KnownHostsLine(host_pub_)));
  Result<SourceSnapshot> r = TimedFetch(o, 30s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kPermissionDenied) << r.error().ToString();
  EXPECT_TRUE(Has(r.error().message(), "SSH authentication as root failed (tried ssh-agent)")) << r.error().ToString();
  ExpectNothingFetched(o);
}

}  // namespace
}  // namespace banger
