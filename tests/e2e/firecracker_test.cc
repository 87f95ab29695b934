// The real-KVM end-to-end test of the Firecracker provider (issue 12): the
// banger binary boots a real Firecracker microVM from a spec that says
// `hypervisor: firecracker`, execs in it over the vsock agent channel, and
// deletes it. It needs the `firecracker` binary on PATH and a KVM that
// actually runs guests (banger's own probe, as `banger doctor` reports it);
// elsewhere it skips and prints why. It is the one test allowed to skip under
// BANGER_REQUIRE_ALL, and only with the reason kFirecrackerSkipPrefix
// (tests/support/test_main.cc, docs/testing.md).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

// Must match the allow-list entry's reason prefix in tests/support/test_main.cc.
constexpr const char* kFirecrackerSkipPrefix = "needs firecracker on PATH and a working KVM: ";

class FirecrackerTest : public ::testing::Test, public BangerEnv {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Init()); }

  void TearDown() override {
    if (HasFailure()) std::printf("failed test commands:\n%s", Timeline().c_str());
  }

  // Empty when this host can boot Firecracker sandboxes, else what it lacks:
  // the binary, and what banger's KVM probe says (`banger doctor -o json`).
  std::string WhatIsMissing() {
    std::string missing;
    if (!FindProgram("firecracker")) missing = "firecracker is not on PATH";
    CommandOutput doctor = Banger({"doctor", "-o", "json"}, std::chrono::minutes(2));
    json checks = json::parse(doctor.stdout_data, nullptr, false);
    std::string kvm = "banger doctor reported no KVM check for firecracker";
    if (checks.is_array()) {
      for (const json& c : checks) {
        if (c.value("provider", "") == "firecracker" && c.value("check", "").rfind("KVM for Firecracker", 0) == 0) {
          kvm = c.value("result", "") == "ok" ? "" : "KVM " + c.value("detail", "");
        }
      }
    }
    if (!kvm.empty()) missing += (missing.empty() ? "" : "; ") + kvm;
    return missing;
  }
};

TEST_F(FirecrackerTest, BootsExecsAndDeletesARealMicroVm) {
  if (std::string missing = WhatIsMissing(); !missing.empty()) {
    GTEST_SKIP() << kFirecrackerSkipPrefix << missing;
  }
  SpecOptions o;
  o.extra = "  hypervisor: firecracker\n";
  std::string f = WriteSpec("fc", o);

  // The plan says Firecracker boots it.
  CommandOutput plan = Banger({"plan", "-f", f, "-o", "json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.stdout_data << plan.stderr_data;
  json p = json::parse(plan.stdout_data, nullptr, false);
  ASSERT_FALSE(p.is_discarded()) << plan.stdout_data;
  EXPECT_EQ(p["changes"][0].value("provider", ""), "firecracker") << plan.stdout_data;

  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "fc"));
  json it = GetItem("fc");
  EXPECT_EQ(it["status"].value("hypervisor", ""), "firecracker") << it.dump(2);
  int pid = it["status"].value("pid", 0);
  ASSERT_GT(pid, 0) << it.dump(2);
  ProcessIdentity vmm{pid, ProcessStartTime(pid).value_or(0)};
  guard_.TrackProcess(vmm);  // killed at the end if delete did not end it
  std::string cmdline = ReadCmdline(pid);
  EXPECT_NE(cmdline.find("firecracker"), std::string::npos) << cmdline;
  EXPECT_TRUE(Qemus().empty()) << "a firecracker sandbox must not start QEMU";

  // Exec over the vsock channel: output, stderr and exit codes.
  CommandOutput osr = Exec("fc", {"cat", "/etc/os-release"});
  EXPECT_EQ(osr.exit_code, 0) << osr.stderr_data;
  EXPECT_NE(osr.stdout_data.find("NAME=\"banger busybox\"\n"), std::string::npos) << osr.stdout_data;
  CommandOutput both = Exec("fc", {"sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(both.exit_code, 7);
  EXPECT_EQ(both.stdout_data, "out\n");
  EXPECT_NE(both.stderr_data.find("err\n"), std::string::npos) << both.stderr_data;
  CommandOutput host = Exec("fc", {"cat", "/etc/hostname"});
  EXPECT_EQ(host.stdout_data, "fc\n");

  // Delete: the record, the VMM process and its runtime directory are gone.
  CommandOutput del = Banger({"delete", "fc", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  EXPECT_EQ(Phase("fc"), "<absent>");
  EXPECT_FALSE(ProcessAlive(vmm)) << "firecracker pid " << pid << " survived delete";
  std::error_code ec;
  fs::path sandboxes = fs::path(state_) / "sandboxes";
  EXPECT_TRUE(!fs::exists(sandboxes, ec) || fs::is_empty(sandboxes, ec)) << "runtime dir left behind";
}

}  // namespace
}  // namespace banger
