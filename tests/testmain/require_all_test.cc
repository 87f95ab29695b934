// The project test main (tests/support/test_main.cc): with BANGER_REQUIRE_ALL=1
// a skipped test fails the binary and is named with its reason; without it a
// skip is reported but passes. Runs require_all_probe, built with that main.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "base/command_runner.h"

namespace banger {
namespace {

struct ProbeRun {
  int exit_code = -1;
  std::string output;
};

ProbeRun RunProbe(std::map<std::string, std::string> env) {
  if (!env.count("BANGER_REQUIRE_ALL")) env["BANGER_REQUIRE_ALL"] = "0";  // CI sets it for this binary too
  for (const char* k : {"PROBE_SKIP", "PROBE_FAIL", "PROBE_SUITE_SKIP"}) {
    if (!env.count(k)) env[k] = "0";
  }
  if (!env.count("PROBE_FC_SKIP")) env["PROBE_FC_SKIP"] = "";
  auto runner = MakePosixCommandRunner();
  CommandSpec spec;
  spec.argv = {REQUIRE_ALL_PROBE};
  spec.env = std::move(env);
  auto out = runner->Run(spec);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return {};
  return {out->exit_code, out->stdout_data + out->stderr_data};
}

TEST(RequireAll, NoSkipPassesEitherWay) {
  EXPECT_EQ(RunProbe({}).exit_code, 0);
  EXPECT_EQ(RunProbe({{"BANGER_REQUIRE_ALL", "1"}}).exit_code, 0);
}

TEST(RequireAll, ASkipIsReportedButPassesByDefault) {
  ProbeRun r = RunProbe({{"PROBE_SKIP", "1"}});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped Probe.MaySkip: the probe was asked to skip"), std::string::npos) << r.output;
}

TEST(RequireAll, ASkipFailsTheBinaryAndIsNamedWithItsReason) {
  ProbeRun r = RunProbe({{"PROBE_SKIP", "1"}, {"BANGER_REQUIRE_ALL", "1"}});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SKIPPED, not allowed Probe.MaySkip: the probe was asked to skip"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("BANGER_REQUIRE_ALL=1: 1 skipped test fails this run"), std::string::npos) << r.output;
}

TEST(RequireAll, ASuiteSkippedInItsSetUpFailsTheBinary) {
  ProbeRun r = RunProbe({{"PROBE_SUITE_SKIP", "1"}, {"BANGER_REQUIRE_ALL", "1"}});
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ProbeSuite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the probe suite was asked to skip"), std::string::npos) << r.output;
}

TEST(RequireAll, OnlyTheFilteredTestsCount) {
  // ctest runs one test per process: a skip elsewhere in the binary is not this run's.
  ProbeRun r = RunProbe({{"PROBE_SKIP", "1"}, {"BANGER_REQUIRE_ALL", "1"}});
  EXPECT_NE(r.exit_code, 0);
  auto runner = MakePosixCommandRunner();
  CommandSpec spec;
  spec.argv = {REQUIRE_ALL_PROBE, "--gtest_filter=Probe.Passes"};
  spec.env = {{"PROBE_SKIP", "1"}, {"BANGER_REQUIRE_ALL", "1"}, {"PROBE_FAIL", "0"}, {"PROBE_SUITE_SKIP", "0"}};
  auto out = runner->Run(spec);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 0) << out->stderr_data;
}

TEST(RequireAll, TheFirecrackerTestMaySkipOnlyForItsOneReason) {
  ProbeRun ok = RunProbe({{"PROBE_FC_SKIP", "needs firecracker on PATH and a working KVM: firecracker is not on PATH"},
                          {"BANGER_REQUIRE_ALL", "1"}});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("skipped (allowed) FirecrackerTest.BootsExecsAndDeletesARealMicroVm: needs firecracker "
                           "on PATH and a working KVM: firecracker is not on PATH; allowed because: "),
            std::string::npos)
      << ok.output;
  // The same test skipping for anything else fails the run.
  ProbeRun other = RunProbe({{"PROBE_FC_SKIP", "qemu-system-x86_64 is not installed"}, {"BANGER_REQUIRE_ALL", "1"}});
  EXPECT_NE(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("SKIPPED, not allowed FirecrackerTest.BootsExecsAndDeletesARealMicroVm: "
                              "qemu-system-x86_64 is not installed"),
            std::string::npos)
      << other.output;
}

TEST(RequireAll, AFailureStillFails) {
  EXPECT_NE(RunProbe({{"PROBE_FAIL", "1"}}).exit_code, 0);
}

}  // namespace
}  // namespace banger
