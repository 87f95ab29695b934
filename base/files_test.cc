#include "base/files.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

namespace banger {
namespace {

class FindProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* p = std::getenv("PATH");
    saved_ = p ? p : "";
    auto dir = MakeTempDir("find-program");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
  }
  void TearDown() override {
    ::setenv("PATH", saved_.c_str(), 1);
    (void)RemoveAll(dir_);
  }
  std::string saved_;
  std::filesystem::path dir_;
};

TEST_F(FindProgramTest, FindsTheFirstExecutableOnPath) {
  auto bin = dir_ / "bin";
  ASSERT_TRUE(MakeDirs(bin).ok());
  ASSERT_TRUE(WriteFileAtomic(bin / "tool", "#!/bin/sh\n", 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ / "tool", "not executable\n", 0644).ok());
  ::setenv("PATH", (dir_.string() + "::" + bin.string()).c_str(), 1);
  auto found = FindProgram("tool");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, bin / "tool");
}

TEST_F(FindProgramTest, SkipsDirectoriesAndMissingNames) {
  ASSERT_TRUE(MakeDirs(dir_ / "tool").ok());
  ::setenv("PATH", dir_.c_str(), 1);
  EXPECT_FALSE(FindProgram("tool").has_value());
  EXPECT_FALSE(FindProgram("no-such-program").has_value());
  EXPECT_FALSE(FindProgram("").has_value());
}

TEST_F(FindProgramTest, APathIsCheckedAsIs) {
  ASSERT_TRUE(WriteFileAtomic(dir_ / "tool", "#!/bin/sh\n", 0755).ok());
  EXPECT_EQ(FindProgram((dir_ / "tool").string()), dir_ / "tool");
  EXPECT_FALSE(FindProgram((dir_ / "absent").string()).has_value());
}

}  // namespace
}  // namespace banger
