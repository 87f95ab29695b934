#include "host/host.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/files.h"
#include "tests/support/test_util.h"

namespace banger::host {
namespace {

using testing::TempDir;

class HostTest : public ::testing::Test {
 protected:
  HostOptions Options() {
    return {(dir_.path() / "state").string(), (dir_.path() / "config.yaml").string()};
  }
  void SetUp() override {
    ASSERT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", "parallel: 3\ndefaultKernel: mine\n").ok());
  }
  TempDir dir_;
};

TEST_F(HostTest, OpensEverythingOnceWithAPrivateStateDirectory) {
  auto h = Host::Open(Options());
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  Host& host = **h;
  EXPECT_EQ(host.config().parallel, 3);
  EXPECT_EQ(host.layout().root, dir_.path() / "state");
  EXPECT_EQ(std::filesystem::status(host.layout().root).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
  EXPECT_TRUE(std::filesystem::exists(host.layout().db_path));
  EXPECT_EQ(host.artifacts().DefaultKernel(), "mine");
  EXPECT_FALSE(host.artifacts().KernelPresent("mine"));
  EXPECT_NE(host.runtime(), nullptr);
  auto list = host.store().ListSandboxes();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  EXPECT_TRUE(host.CheckStateDirectory().ok());
}

TEST_F(HostTest, FindSandboxNamesTheMissingSandbox) {
  auto h = Host::Open(Options());
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  auto r = (*h)->FindSandbox("nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.error().message(), "sandbox \"nope\" not found");
}

TEST_F(HostTest, ConfigErrorsComeBeforeAnythingIsCreated) {
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "config.yaml", "parallell: 3\n").ok());
  auto h = Host::Open(Options());
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message().find("unknown key \"parallell\""), std::string::npos) << h.error().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "state"));
}

TEST_F(HostTest, CheckStateDirectoryReportsALooseMode) {
  auto h = Host::Open(Options());
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  ASSERT_EQ(::chmod((*h)->layout().root.c_str(), 0755), 0);
  Status s = (*h)->CheckStateDirectory();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("mode 0755, expected 0700"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace banger::host
