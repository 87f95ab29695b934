#include "sources/known_hosts.h"

#include <gtest/gtest.h>

#include "base/base64.h"
#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// Host keys made with ssh-keygen; the blob is what an SSH server sends.
class KnownHostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runner_ = MakePosixCommandRunner();
    if (!fs::exists("/usr/bin/ssh-keygen")) GTEST_SKIP() << "ssh-keygen not installed";
    key_line_ = NewKey("a");
    other_line_ = NewKey("b");
    known_hosts_ = dir_.path() / "known_hosts";
  }

  // Returns "ssh-ed25519 <base64>" of a new key.
  std::string NewKey(const std::string& name) {
    fs::path key = dir_.path() / name;
    CommandSpec spec;
    spec.argv = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key.string()};
    Result<CommandOutput> out = RunChecked(*runner_, spec);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    std::vector<std::string> f = Split(std::string(Trim(ReadFile(key.string() + ".pub").value_or(""))), ' ');
    return f.size() >= 2 ? f[0] + " " + f[1] : "";
  }

  static std::string Blob(const std::string& line) {
    return Base64Decode(Split(line, ' ').at(1)).value_or("");
  }

  void HashFile() {
    CommandSpec spec;
    spec.argv = {"ssh-keygen", "-H", "-f", known_hosts_.string()};
    ASSERT_TRUE(RunChecked(*runner_, spec).ok());
    std::string text = ReadFile(known_hosts_).value_or("");
    ASSERT_EQ(text.find("example.com"), std::string::npos) << text;
  }

  TempDir dir_;
  std::unique_ptr<CommandRunner> runner_;
  std::string key_line_, other_line_;
  fs::path known_hosts_;
};

TEST_F(KnownHostsTest, PlainAndPortEntriesMatch) {
  ASSERT_TRUE(WriteFileAtomic(known_hosts_, "# comment\n\nexample.com,10.0.0.1 " + key_line_ +
                                                "\n[git.example.org]:2222 " + key_line_ + " c\n")
                  .ok());
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "example.com", 22, Blob(key_line_)).ok());
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "10.0.0.1", 22, Blob(key_line_)).ok());
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "git.example.org", 2222, Blob(key_line_)).ok());
  Status wrong_port = CheckKnownHost(known_hosts_, "git.example.org", 22, Blob(key_line_));
  EXPECT_EQ(wrong_port.code(), StatusCode::kPermissionDenied);
  // `[` is literal, not a glob bracket expression.
  EXPECT_FALSE(CheckKnownHost(known_hosts_, "g", 2222, Blob(key_line_)).ok());
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "EXAMPLE.com", 22, Blob(key_line_)).ok());
}

TEST_F(KnownHostsTest, UnknownHostIsRefusedNamingHostAndFile) {
  ASSERT_TRUE(WriteFileAtomic(known_hosts_, "example.com " + key_line_ + "\n").ok());
  Status s = CheckKnownHost(known_hosts_, "evil.example", 22, Blob(key_line_));
  ASSERT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("unknown SSH host evil.example"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(known_hosts_.string()), std::string::npos) << s.message();
}

TEST_F(KnownHostsTest, MismatchingKeyIsRefused) {
  ASSERT_TRUE(WriteFileAtomic(known_hosts_, "example.com " + key_line_ + "\n").ok());
  Status s = CheckKnownHost(known_hosts_, "example.com", 22, Blob(other_line_));
  ASSERT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("does not match"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("example.com"), std::string::npos) << s.message();
}

TEST_F(KnownHostsTest, HashedEntriesMatch) {
  // Given a file hashed by ssh-keygen -H, hosts are still recognised.
  ASSERT_TRUE(WriteFileAtomic(known_hosts_, "example.com " + key_line_ + "\n[git.example.org]:2222 " +
                                                key_line_ + "\n")
                  .ok());
  HashFile();
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "example.com", 22, Blob(key_line_)).ok());
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "git.example.org", 2222, Blob(key_line_)).ok());
  EXPECT_FALSE(CheckKnownHost(known_hosts_, "example.com", 22, Blob(other_line_)).ok());
  EXPECT_FALSE(CheckKnownHost(known_hosts_, "other.example", 22, Blob(key_line_)).ok());
}

TEST_F(KnownHostsTest, RevokedKeyAndNegatedPatternAreRefused) {
  ASSERT_TRUE(WriteFileAtomic(known_hosts_, "@revoked * " + key_line_ + "\n*.example.com,!bad.example.com " +
                                                other_line_ + "\nexample.com " + key_line_ + "\n")
                  .ok());
  EXPECT_EQ(CheckKnownHost(known_hosts_, "example.com", 22, Blob(key_line_)).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(CheckKnownHost(known_hosts_, "git.example.com", 22, Blob(other_line_)).ok());
  EXPECT_FALSE(CheckKnownHost(known_hosts_, "bad.example.com", 22, Blob(other_line_)).ok());
}

TEST_F(KnownHostsTest, MissingFileIsAnError) {
  Status s = CheckKnownHost(dir_.path() / "absent", "example.com", 22, Blob(key_line_));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("example.com"), std::string::npos);
}

}  // namespace
}  // namespace banger
