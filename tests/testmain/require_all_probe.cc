// A test binary for banger_testmain_tests (require_all_test.cc): its tests
// pass, skip or fail as the environment asks, so the test main's handling of
// BANGER_REQUIRE_ALL can be checked from outside. Not registered with ctest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>

namespace {

bool Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string_view(v) == "1";
}

TEST(Probe, Passes) { EXPECT_EQ(1 + 1, 2); }

TEST(Probe, MaySkip) {
  if (Env("PROBE_SKIP")) GTEST_SKIP() << "the probe was asked to skip";
  SUCCEED();
}

TEST(Probe, MayFail) {
  EXPECT_FALSE(Env("PROBE_FAIL")) << "the probe was asked to fail";
}

class ProbeSuite : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (Env("PROBE_SUITE_SKIP")) GTEST_SKIP() << "the probe suite was asked to skip";
  }
};

TEST_F(ProbeSuite, Runs) { SUCCEED(); }

// Named like the one allow-listed test (tests/e2e/firecracker_test.cc); skips
// with the reason in PROBE_FC_SKIP when set.
TEST(FirecrackerTest, BootsExecsAndDeletesARealMicroVm) {
  const char* why = std::getenv("PROBE_FC_SKIP");
  if (why != nullptr && *why != '\0') GTEST_SKIP() << why;
  SUCCEED();
}

}  // namespace
