// The main() of every banger test binary, in place of gtest_main (the
// banger_test_main library; CMakeLists.txt links it into every unit,
// integration and e2e test binary).
//
// It runs the tests as gtest_main does, and lists every skipped test with the
// reason it gave. With BANGER_REQUIRE_ALL=1 (what CI sets, in .ci/run) a
// skipped test fails the binary: a host that lacks a tool must not turn a
// green run into an empty one. docs/testing.md, "Skipped tests and
// BANGER_REQUIRE_ALL".
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct AllowedSkip {
  const char* test;    // full name: "Suite.Test"
  const char* reason;  // the skip is allowed only when its reason starts with this
  const char* why;     // why it may skip even in CI
};

// The tests that may skip under BANGER_REQUIRE_ALL=1, and only for the one
// reason each names. Keep it at most one entry: the Firecracker end-to-end
// test of issue 12 (tests/e2e/firecracker_test.cc), which needs the
// firecracker binary and a KVM that runs guests, which CI runners and the
// development hosts (nested PVM) do not have. It skipping for any other
// reason (a broken fixture, no qemu) still fails the run. Nothing else
// belongs here: a test that needs a tool gets it from scripts/setup.sh.
constexpr std::array<AllowedSkip, 1> kAllowedSkips{{
    {"FirecrackerTest.BootsExecsAndDeletesARealMicroVm", "needs firecracker on PATH and a working KVM: ",
     "Firecracker has no software emulation; CI runners have no KVM that runs stock guest kernels"},
}};

const char* AllowedWhy(std::string_view name, std::string_view reason) {
  for (const auto& a : kAllowedSkips) {
    if (name == a.test && reason.rfind(a.reason, 0) == 0) return a.why;
  }
  return nullptr;
}

std::string SkipMessage(const testing::TestResult& r) {
  std::string out;
  for (int i = 0; i < r.total_part_count(); ++i) {
    const testing::TestPartResult& p = r.GetTestPartResult(i);
    if (!p.skipped()) continue;
    std::string msg = p.message();
    // gtest prefixes the streamed reason with "Skipped\n".
    if (msg.rfind("Skipped\n", 0) == 0) msg = msg.substr(8);
    if (msg == "Skipped") msg.clear();
    if (!out.empty() && !msg.empty()) out += "; ";
    out += msg;
    if (p.file_name() != nullptr && msg.empty()) {
      out += std::string("(no reason given, ") + p.file_name() + ":" + std::to_string(p.line_number()) + ")";
    }
  }
  return out.empty() ? "(no reason given)" : out;
}

// Records what was skipped: tests, and whole suites or the environment when
// their set-up skipped (gtest 1.12 still runs the tests of a suite whose
// SetUpTestSuite called GTEST_SKIP, so both are looked at).
class SkipRecorder : public testing::EmptyTestEventListener {
 public:
  struct Skip {
    std::string name;
    std::string reason;
  };

  void OnTestEnd(const testing::TestInfo& info) override {
    const testing::TestResult* r = info.result();
    if (r == nullptr || !r->Skipped()) return;
    skips_.push_back({std::string(info.test_suite_name()) + "." + info.name(), SkipMessage(*r)});
  }
  void OnTestSuiteEnd(const testing::TestSuite& suite) override {
    const testing::TestResult& r = suite.ad_hoc_test_result();
    if (r.Skipped()) skips_.push_back({std::string(suite.name()) + ".*", SkipMessage(r)});
  }
  void OnTestProgramEnd(const testing::UnitTest& unit) override {
    const testing::TestResult& r = unit.ad_hoc_test_result();
    if (r.Skipped()) skips_.push_back({"(global environment)", SkipMessage(r)});
  }

  const std::vector<Skip>& skips() const { return skips_; }

 private:
  std::vector<Skip> skips_;
};

bool RequireAll() {
  const char* v = std::getenv("BANGER_REQUIRE_ALL");
  return v != nullptr && std::string_view(v) == "1";
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleMock(&argc, argv);
  auto* recorder = new SkipRecorder;  // owned by gtest's listener list
  testing::UnitTest::GetInstance()->listeners().Append(recorder);
  int rc = RUN_ALL_TESTS();

  const bool require_all = RequireAll();
  int refused = 0;
  for (const auto& s : recorder->skips()) {
    const char* allowed = AllowedWhy(s.name, s.reason);
    const char* verdict = allowed != nullptr ? "skipped (allowed)" : require_all ? "SKIPPED, not allowed" : "skipped";
    std::fprintf(stderr, "[banger] %s %s: %s%s%s\n", verdict, s.name.c_str(), s.reason.c_str(),
                 allowed != nullptr ? "; allowed because: " : "", allowed != nullptr ? allowed : "");
    if (allowed == nullptr) ++refused;
  }
  if (require_all && refused > 0) {
    std::fprintf(stderr,
                 "[banger] BANGER_REQUIRE_ALL=1: %d skipped test%s fail%s this run; install what %s "
                 "(scripts/setup.sh) or run as root (docs/testing.md, \"Skipped tests and BANGER_REQUIRE_ALL\")\n",
                 refused, refused == 1 ? "" : "s", refused == 1 ? "s" : "", refused == 1 ? "it needs" : "they need");
    return rc != 0 ? rc : 1;
  }
  return rc;
}
