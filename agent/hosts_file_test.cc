#include "agent/hosts_file.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace banger::agent {
namespace {

namespace fs = std::filesystem;
using agent_protocol::HostsEntry;

const std::vector<HostsEntry> kPeers = {{"10.99.0.7", {"peer", "peer.banger"}}, {"10.99.0.8", {"db"}}};
const std::string kBlock =
    "# banger: peers (managed by banger, do not edit)\n"
    "10.99.0.7\tpeer peer.banger\n"
    "10.99.0.8\tdb\n"
    "# banger: end\n";
const std::string kImage =
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "# a comment the image keeps\n"
    "192.168.1.5   printer   # trailing comment\n";

TEST(RewriteHostsBlockTest, AppendsABlockWhenThereIsNone) {
  EXPECT_EQ(RewriteHostsBlock(kImage, kPeers), kImage + kBlock);
  EXPECT_EQ(RewriteHostsBlock("", kPeers), kBlock);
}

TEST(RewriteHostsBlockTest, ReplacesAnExistingBlockInPlace) {
  std::string old_block =
      "# banger: peers (managed by banger, do not edit)\n"
      "10.99.0.3\tgone gone.banger\n"
      "# banger: end\n";
  std::string before = "127.0.0.1\tlocalhost\n";
  std::string after = "10.1.1.1\tafter-the-block\n";
  EXPECT_EQ(RewriteHostsBlock(before + old_block + after, kPeers), before + kBlock + after);
}

TEST(RewriteHostsBlockTest, FileWithoutTrailingNewlineGetsOneBeforeTheBlock) {
  EXPECT_EQ(RewriteHostsBlock("127.0.0.1 localhost", kPeers), "127.0.0.1 localhost\n" + kBlock);
  // Without hosts the image's bytes stay exactly as they were.
  EXPECT_EQ(RewriteHostsBlock("127.0.0.1 localhost", {}), "127.0.0.1 localhost");
}

TEST(RewriteHostsBlockTest, OtherLinesAreKeptByteForByte) {
  std::string odd = "  10.0.0.1 spaced\t\tname  \r\n\n#\n" + kBlock + "\t\n# tail";
  std::string out = RewriteHostsBlock(odd, {{"10.99.0.9", {"x"}}});
  EXPECT_EQ(out, "  10.0.0.1 spaced\t\tname  \r\n\n#\n"
                 "# banger: peers (managed by banger, do not edit)\n10.99.0.9\tx\n# banger: end\n"
                 "\t\n# tail");
}

TEST(RewriteHostsBlockTest, NoHostsRemovesTheBlock) {
  EXPECT_EQ(RewriteHostsBlock(kImage + kBlock, {}), kImage);
  EXPECT_EQ(RewriteHostsBlock(kImage, {}), kImage);
}

TEST(RewriteHostsBlockTest, IsIdempotent) {
  for (const std::string& start : {std::string(), kImage, std::string("no newline"), kImage + kBlock}) {
    std::string once = RewriteHostsBlock(start, kPeers);
    EXPECT_EQ(RewriteHostsBlock(once, kPeers), once) << start;
    std::string removed = RewriteHostsBlock(once, {});
    EXPECT_EQ(RewriteHostsBlock(removed, {}), removed) << start;
  }
}

TEST(RewriteHostsBlockTest, ABeginMarkerWithoutEndDropsOnlyTheMarker) {
  std::string broken = "127.0.0.1 localhost\n# banger: peers (managed by banger, do not edit)\n10.5.5.5 mine\n";
  EXPECT_EQ(RewriteHostsBlock(broken, kPeers), "127.0.0.1 localhost\n" + kBlock + "10.5.5.5 mine\n");
  // Two blocks (a hand-made copy): both go, the new one takes the first's place.
  std::string twice = kBlock + "1.2.3.4 keep\n" + kBlock;
  EXPECT_EQ(RewriteHostsBlock(twice, {{"10.0.0.1", {"a"}}}),
            "# banger: peers (managed by banger, do not edit)\n10.0.0.1\ta\n# banger: end\n1.2.3.4 keep\n");
}

TEST(RewriteHostsBlockTest, MarkersWithCarriageReturnsAreRecognised) {
  std::string crlf =
      "127.0.0.1 localhost\r\n# banger: peers (managed by banger, do not edit)\r\n10.9.9.9\told\r\n# banger: end\r\n";
  EXPECT_EQ(RewriteHostsBlock(crlf, kPeers), "127.0.0.1 localhost\r\n" + kBlock);
}

TEST(EnsureHostnameLineTest, AddsTheHostnameOnceAndBeforeTheBlock) {
  std::string with_block = kImage + kBlock;
  std::string out = EnsureHostnameLine(with_block, "web");
  EXPECT_EQ(out, kImage + "127.0.1.1\tweb\n" + kBlock);
  EXPECT_EQ(EnsureHostnameLine(out, "web"), out) << "a second boot of the same disk adds nothing";
  EXPECT_EQ(EnsureHostnameLine("127.0.0.1 localhost", "web"), "127.0.0.1 localhost\n127.0.1.1\tweb\n");
}

TEST(EnsureHostnameLineTest, MatchesWholeNamesOutsideTheBlockOnly) {
  // "web" is a prefix of a peer's name in the block, and mapped nowhere else.
  std::string text = "127.0.0.1 localhost\n# web is mentioned in a comment\n"
                     "# banger: peers (managed by banger, do not edit)\n10.99.0.2\tweb web.banger\n"
                     "# banger: end\n";
  EXPECT_NE(EnsureHostnameLine(text, "web").find("127.0.1.1\tweb\n# banger: peers"), std::string::npos);
  EXPECT_EQ(EnsureHostnameLine("127.0.0.1 localhost\n127.0.1.1 WEB.local Web\n", "web"),
            "127.0.0.1 localhost\n127.0.1.1 WEB.local Web\n");
  EXPECT_NE(EnsureHostnameLine("127.0.1.1 web-2\n", "web"), "127.0.1.1 web-2\n");
}

TEST(EnsureHostnameLineTest, AnEmptyFileGetsLocalhostLines) {
  EXPECT_EQ(EnsureHostnameLine("", "web"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb\n");
  EXPECT_EQ(EnsureHostnameLine("x", ""), "x");
}

class HostsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/banger-hosts-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
  size_t Entries() const {
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) n += e.exists() ? 1 : 0;
    return n;
  }
  fs::path dir_;
};

TEST_F(HostsFileTest, ReplacesTheFileWithMode0644AndLeavesNoTemporaryFile) {
  fs::path hosts = dir_ / "hosts";
  Write(hosts, "old\n");
  ASSERT_EQ(::chmod(hosts.c_str(), 0600), 0);
  ASSERT_EQ(WriteHostsFile(hosts, "new\n"), "");
  EXPECT_EQ(Read(hosts), "new\n");
  EXPECT_EQ(fs::status(hosts).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  EXPECT_EQ(Entries(), 1u);
  std::string content;
  ASSERT_EQ(ReadHostsFile(hosts, &content), "");
  EXPECT_EQ(content, "new\n");
  ASSERT_EQ(ReadHostsFile(dir_ / "missing", &content), "");
  EXPECT_EQ(content, "");
}

TEST_F(HostsFileTest, FollowsASymlinkAndReplacesADanglingOne) {
  fs::create_directory(dir_ / "real");
  Write(dir_ / "real/hosts", "old\n");
  fs::create_symlink("real/hosts", dir_ / "hosts");
  ASSERT_EQ(WriteHostsFile(dir_ / "hosts", "via link\n"), "");
  EXPECT_TRUE(fs::is_symlink(dir_ / "hosts")) << "the image's link stays";
  EXPECT_EQ(Read(dir_ / "real/hosts"), "via link\n");

  fs::create_symlink("nowhere/hosts", dir_ / "dangling");
  ASSERT_EQ(WriteHostsFile(dir_ / "dangling", "file now\n"), "");
  EXPECT_FALSE(fs::is_symlink(dir_ / "dangling"));
  EXPECT_EQ(Read(dir_ / "dangling"), "file now\n");
}

TEST_F(HostsFileTest, ErrorsNameThePath) {
  std::string err = WriteHostsFile(dir_ / "no/such/dir/hosts", "x");
  EXPECT_NE(err.find(dir_.string() + "/no/such/dir"), std::string::npos) << err;
}

// A bind-mounted file cannot be renamed over (EBUSY): it is rewritten in
// place. Needs root and a private mount namespace (in a child process).
TEST_F(HostsFileTest, BindMountedFileIsRewrittenInPlace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to bind-mount";
  fs::path src = dir_ / "outside";
  fs::path target = dir_ / "hosts";
  Write(src, "old outside\n");
  Write(target, "covered\n");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(77);
    if (::mount(src.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) ::_exit(77);
    std::string err = WriteHostsFile(target, "new through the mount\n");
    ::_exit(err.empty() ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) GTEST_SKIP() << "cannot create a private mount namespace here";
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_EQ(Read(src), "new through the mount\n") << "the mounted file itself was rewritten";
  EXPECT_EQ(Read(target), "covered\n") << "the file under the mount point is untouched";
  EXPECT_EQ(Entries(), 2u) << "no temporary file left behind";
}

}  // namespace
}  // namespace banger::agent
