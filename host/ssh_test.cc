#include "host/ssh.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/files.h"
#include "base/strings.h"
#include "tests/support/test_util.h"

namespace banger::host {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

unsigned ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

TEST(SshKeyTest, CreatesAPrivateKeyPairOnceAndReusesIt) {
  TempDir dir;
  StateLayout layout = LayoutAt(dir.path() / "state");
  auto runner = MakePosixCommandRunner();
  EXPECT_EQ(ReadSshPublicKey(layout), "");
  auto pub = EnsureSshKey(layout, *runner);
  ASSERT_TRUE(pub.ok()) << pub.error().ToString();
  EXPECT_TRUE(StartsWith(*pub, "ssh-ed25519 ")) << *pub;
  SshPaths p = SshPathsFor(layout);
  EXPECT_EQ(ModeOf(p.dir), 0700u);
  EXPECT_EQ(ModeOf(p.private_key), 0600u);
  auto again = EnsureSshKey(layout, *runner);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *pub);
  EXPECT_EQ(ReadSshPublicKey(layout), *pub);
  // No leftovers of the generation.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(p.dir)) ++entries;
  EXPECT_EQ(entries, 2u);
}

TEST(KnownHostsTest, RemovesOnlyTheSandboxesLinesByteForByte) {
  const std::string text =
      "web.banger ssh-ed25519 AAAAweb\n"
      "db.banger ssh-ed25519 AAAAdb\n"
      "other.web.banger,web.banger ecdsa-sha2-nistp256 AAAAboth\n"
      "[web.banger]:2222 ssh-rsa AAAAport\n"
      "@cert-authority web.banger ssh-ed25519 AAAAca\n"
      "# a comment mentioning web.banger\n"
      "\n"
      "webx.banger ssh-ed25519 AAAAwebx";
  EXPECT_EQ(RemoveKnownHost(text, "web.banger"),
            "db.banger ssh-ed25519 AAAAdb\n"
            "# a comment mentioning web.banger\n"
            "\n"
            "webx.banger ssh-ed25519 AAAAwebx");
  EXPECT_EQ(RemoveKnownHost(text, "nothere.banger"), text);
  EXPECT_EQ(RemoveKnownHost("", "web.banger"), "");
}

TEST(KnownHostsTest, ForgetRewritesBangersFilePrivately) {
  TempDir dir;
  StateLayout layout = LayoutAt(dir.path() / "state");
  SshPaths p = SshPathsFor(layout);
  EXPECT_TRUE(ForgetSshHost(layout, "web").ok());  // no file yet: nothing to do
  ASSERT_TRUE(MakeDirs(p.dir, 0700).ok());
  ASSERT_TRUE(WriteFileAtomic(p.known_hosts, "web.banger k1\ndb.banger k2\n", 0600).ok());
  ASSERT_TRUE(ForgetSshHost(layout, "web").ok());
  EXPECT_EQ(*ReadFile(p.known_hosts), "db.banger k2\n");
  EXPECT_EQ(ModeOf(p.known_hosts), 0600u);
}

TEST(SshConfigBlockTest, InstallPutsTheBlockFirstAndUninstallRestoresTheExactBytes) {
  const fs::path inc = "/var/lib/banger/ssh/config";
  const std::string user = "Host github.com\n  User git\n\nHost *\n  ServerAliveInterval 30";  // no final newline
  std::string installed = InstallSshConfigBlock(user, inc);
  EXPECT_EQ(installed, SshConfigBlock(inc) + user);
  EXPECT_TRUE(StartsWith(installed, std::string(kSshConfigBegin) + "\nInclude \"/var/lib/banger/ssh/config\"\n"));
  EXPECT_TRUE(HasSshConfigBlock(installed));
  EXPECT_EQ(InstallSshConfigBlock(installed, inc), installed);  // idempotent
  EXPECT_EQ(UninstallSshConfigBlock(installed), user);
  EXPECT_EQ(UninstallSshConfigBlock(user), user);  // nothing to remove
  // An empty or missing file.
  EXPECT_EQ(UninstallSshConfigBlock(InstallSshConfigBlock("", inc)), "");
  // Installing with another state directory replaces the block in place.
  std::string moved = InstallSshConfigBlock(installed, "/home/u/.local/share/banger/ssh/config");
  EXPECT_EQ(moved, SshConfigBlock("/home/u/.local/share/banger/ssh/config") + user);
  EXPECT_EQ(UninstallSshConfigBlock(moved), user);
}

TEST(SshConfigBlockTest, ABlockTheUserMovedIsRemovedWhereItIs) {
  const fs::path inc = "/s/ssh/config";
  std::string text = "Host a\n  User x\n" + SshConfigBlock(inc) + "Host b\n";
  EXPECT_EQ(UninstallSshConfigBlock(text), "Host a\n  User x\nHost b\n");
  EXPECT_EQ(InstallSshConfigBlock(text, inc), text);
  // A begin marker without an end marker is not banger's block: left alone.
  std::string broken = std::string(kSshConfigBegin) + "\nHost a\n";
  EXPECT_EQ(UninstallSshConfigBlock(broken), broken);
}

TEST(SshIncludeTest, RendersAProxyCommandThroughBangerAndRefusesUnsafePaths) {
  StateLayout layout = LayoutAt("/var/lib/banger");
  auto text = RenderSshInclude("/usr/local/bin/banger", layout, "");
  ASSERT_TRUE(text.ok()) << text.error().ToString();
  EXPECT_NE(text->find("Host *.banger\n"), std::string::npos);
  EXPECT_NE(text->find("  ProxyCommand \"/usr/local/bin/banger\" --state-dir \"/var/lib/banger\" ssh-proxy %h %p\n"),
            std::string::npos);
  EXPECT_NE(text->find("  IdentityFile \"/var/lib/banger/ssh/id_ed25519\"\n"), std::string::npos);
  EXPECT_NE(text->find("  UserKnownHostsFile \"/var/lib/banger/ssh/known_hosts\"\n"), std::string::npos);
  EXPECT_NE(text->find("  StrictHostKeyChecking accept-new\n"), std::string::npos);
  auto with_config = RenderSshInclude("/b/banger", layout, "/etc/banger/config.yaml");
  ASSERT_TRUE(with_config.ok());
  EXPECT_NE(with_config->find("--config \"/etc/banger/config.yaml\" ssh-proxy"), std::string::npos);
  for (const char* bad : {"/tmp/a$(x)", "/tmp/a\"b", "/tmp/100%", "/tmp/a\nb", "/tmp/`x`"}) {
    auto r = RenderSshInclude(bad, layout, "");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
  }
}

TEST(SshHostTest, MapsNameDotBangerToTheSandboxName) {
  EXPECT_EQ(*SandboxNameFromSshHost("web.banger"), "web");
  EXPECT_EQ(*SandboxNameFromSshHost("Web.BANGER"), "web");
  EXPECT_FALSE(SandboxNameFromSshHost("web").ok());
  EXPECT_FALSE(SandboxNameFromSshHost(".banger").ok());
  EXPECT_FALSE(SandboxNameFromSshHost("a.b.banger").ok());
  EXPECT_FALSE(SandboxNameFromSshHost("../x.banger").ok());
  EXPECT_EQ(SshHostAlias("web"), "web.banger");
}

TEST(UsernetTest, FindsHostForwardsToAGuestPort) {
  const std::string info =
      "Hub -1 (net0):\n"
      "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\n"
      "  TCP[HOST_FORWARD]  13       127.0.0.1  2222       10.0.2.15    22     0     0\n"
      "  TCP[HOST_FORWARD]  12       127.0.0.1 41234       10.0.2.15    22     0     0\n"
      "  TCP[HOST_FORWARD]  11       127.0.0.1  8080       10.0.2.15    80     0     0\n"
      "  UDP[HOST_FORWARD]  10       127.0.0.1  5353       10.0.2.15    22     0     0\n"
      "  TCP[ESTABLISHED]   24       127.0.0.1 41234       10.0.2.15    22     0     0\n";
  EXPECT_EQ(ParseUsernetForwards(info, 22), (std::vector<uint16_t>{2222, 41234}));
  EXPECT_EQ(ParseUsernetForwards(info, 80), (std::vector<uint16_t>{8080}));
  EXPECT_TRUE(ParseUsernetForwards("", 22).empty());
  EXPECT_TRUE(ParseUsernetForwards("  TCP[HOST_FORWARD] 1 127.0.0.1 99999 10.0.2.15 22\n", 22).empty());
}

TEST(GuestEndpointTest, ExplainsWhyNothingReachesTheGuest) {
  SandboxRecord rec;
  rec.name = "offline";
  rec.phase = SandboxPhase::kReady;
  SandboxSpec spec;
  spec.network.mode = NetworkMode::kNone;
  auto none = ResolveGuestEndpoint(rec, spec, 22, "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(none.error().message().find("network.mode: none"), std::string::npos) << none.error().message();
  spec.network.mode = NetworkMode::kUser;
  rec.phase = SandboxPhase::kStopped;
  auto stopped = ResolveGuestEndpoint(rec, spec, 22, "");
  ASSERT_FALSE(stopped.ok());
  EXPECT_NE(stopped.error().message().find("Stopped"), std::string::npos) << stopped.error().message();
}

}  // namespace
}  // namespace banger::host
