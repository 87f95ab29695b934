#include "base/failpoint.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>
#include <set>

namespace banger::failpoint {
namespace {

class FailpointTest : public ::testing::Test {
 protected:
  void TearDown() override { DisarmAll(); }
};

TEST_F(FailpointTest, EveryPointIsNamedOnceDescribedAndInASweep) {
  std::set<std::string_view> seen;
  std::regex form("[a-z_]+(\\.[a-z_]+)+");
  ASSERT_GE(All().size(), 40u);
  for (const Point& p : All()) {
    EXPECT_TRUE(seen.insert(p.name).second) << "duplicate " << p.name;
    EXPECT_TRUE(std::regex_match(std::string(p.name), form)) << p.name << " is not <area>.<step>";
    EXPECT_FALSE(p.meaning.empty()) << p.name;
    EXPECT_NE(p.sweeps & (kEngineSweep | kVmSweep | kArtifactSweep | kFirecrackerSweep), 0u) << p.name << " is in no sweep";
  }
}

TEST_F(FailpointTest, UnarmedPointsAreOk) {
  for (const Point& p : All()) EXPECT_TRUE(Hit(p.name).ok()) << p.name;
}

TEST_F(FailpointTest, ErrorModeNamesThePointAndFiresOnceAtTheNthHit) {
  ASSERT_TRUE(Configure("state.tx.before_commit=error@2, image.publish.before_rename=error").ok());
  EXPECT_TRUE(Hit("state.tx.before_commit").ok());
  Status s = Hit("state.tx.before_commit");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("failpoint state.tx.before_commit"), std::string::npos) << s.ToString();
  EXPECT_TRUE(Hit("state.tx.before_commit").ok()) << "fires once";
  EXPECT_TRUE(Fired("state.tx.before_commit"));
  EXPECT_FALSE(Fired("engine.delete.before"));
  EXPECT_FALSE(Hit("image.publish.before_rename").ok());
  EXPECT_TRUE(Hit("engine.delete.before").ok()) << "other points stay inert";
}

TEST_F(FailpointTest, UnknownNamesAndModesAreErrorsThatArmNothing) {
  Status s = Configure("engine.boot_vm.before=crash,image.publish.before_renme=crash");
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown failpoint \"image.publish.before_renme\""), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("did you mean \"image.publish.before_rename\""), std::string::npos) << s.ToString();
  EXPECT_TRUE(Hit("engine.boot_vm.before").ok()) << "nothing armed by a rejected spec";
  EXPECT_EQ(Configure("engine.boot_vm.before=explode").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Configure("engine.boot_vm.before").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Configure("engine.boot_vm.before=crash@0").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Configure("engine.boot_vm.before=crash@x").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Configure("").ok());
  EXPECT_TRUE(Configure(" , ").ok());
}

TEST_F(FailpointTest, CrashModeExitsAt86WithOneLineNamingThePoint) {
  EXPECT_EXIT(
      {
        (void)Arm("kernel.publish.after_rename", Mode::kCrash);
        (void)Hit("kernel.publish.after_rename");
        std::exit(0);
      },
      ::testing::ExitedWithCode(kCrashExitCode), "failpoint kernel.publish.after_rename: crashing");
}

TEST_F(FailpointTest, ConfiguredFromTheEnvironment) {
  ::setenv("BANGER_FAILPOINTS", "watch.pass.after_fetch=error", 1);
  Status s = ConfigureFromEnvironment();
  ::unsetenv("BANGER_FAILPOINTS");
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(Hit("watch.pass.after_fetch").ok());
}

}  // namespace
}  // namespace banger::failpoint
