#include "providers/kvm_probe.h"

#include <gtest/gtest.h>

#include "base/files.h"

namespace banger {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(KvmProbeTest, CacheRoundTripsForTheSameBootOnly) {
  KvmVerdict v{.works = false, .reason = "a probe VM did not run: KVM_RUN failed: Invalid argument"};
  std::string text = FormatKvmCache("b1", v);
  KvmVerdict back;
  ASSERT_TRUE(ParseKvmCache(text, "b1", &back));
  EXPECT_FALSE(back.works);
  EXPECT_EQ(back.reason, v.reason);
  EXPECT_TRUE(back.cached);
  KvmVerdict other;
  EXPECT_FALSE(ParseKvmCache(text, "b2", &other)) << "a verdict of another boot is not reused";
  EXPECT_FALSE(ParseKvmCache("boot_id b1\nmaybe\nx\n", "b1", &other));
  EXPECT_FALSE(ParseKvmCache("boot_id b1\nworks\n", "b1", &other)) << "no reason";
  EXPECT_FALSE(ParseKvmCache("", "b1", &other));
  KvmVerdict works{.works = true, .reason = "ran"};
  ASSERT_TRUE(ParseKvmCache(FormatKvmCache("b1", works), "b1", &back));
  EXPECT_TRUE(back.works);
}

// The real probe on this machine: a definite answer with a reason, within
// its deadline. On the development hosts KVM is nested PVM (HOST-NOTES.md):
// the answer must be "does not work" and say so.
TEST(KvmProbeTest, RealProbeGivesADefiniteAnswerWithAReason) {
  auto start = steady_clock::now();
  KvmVerdict v = ProbeKvmNow(milliseconds(3000));
  EXPECT_LT(steady_clock::now() - start, milliseconds(10000));
  EXPECT_FALSE(v.reason.empty());
  EXPECT_FALSE(v.cached);
  std::printf("[kvm probe] %s: %s\n", v.works ? "works" : "does not work", v.reason.c_str());
  std::error_code ec;
  if (fs::exists("/sys/module/kvm_pvm", ec)) {
    EXPECT_FALSE(v.works) << v.reason;
    EXPECT_NE(v.reason.find("PVM"), std::string::npos) << v.reason;
  }
  if (!fs::exists("/dev/kvm", ec)) {
    EXPECT_FALSE(v.works);
    EXPECT_NE(v.reason.find("/dev/kvm does not exist"), std::string::npos) << v.reason;
  }
  if (!fs::exists("/sys/module/kvm", ec)) {
    EXPECT_FALSE(v.works) << "no KVM module, yet the probe says it works: " << v.reason;
  }
}

TEST(KvmProbeTest, CachedVerdictIsReusedWithinTheBoot) {
  auto dir = MakeTempDir("kvm-probe-test");
  ASSERT_TRUE(dir.ok());
  fs::path cache = *dir / "kvm-verdict";
  KvmVerdict first = ProbeKvmCached(cache);
  EXPECT_FALSE(first.cached);
  std::error_code ec;
  if (fs::exists(cache, ec)) {
    EXPECT_EQ(fs::status(cache).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    KvmVerdict second = ProbeKvmCached(cache);
    EXPECT_TRUE(second.cached);
    EXPECT_EQ(second.works, first.works);
    EXPECT_EQ(second.reason, first.reason);
  } else {
    // Only a verdict the probe reached is cached (not "no /dev/kvm" or a
    // permission problem, which can be fixed without a reboot).
    EXPECT_NE(first.reason.find("/dev/kvm"), std::string::npos) << first.reason;
  }
  // A cache of another boot is ignored and replaced.
  ASSERT_TRUE(WriteFileAtomic(cache, FormatKvmCache("not-this-boot", {.works = true, .reason = "stale"})).ok());
  KvmVerdict third = ProbeKvmCached(cache);
  EXPECT_FALSE(third.cached);
  EXPECT_NE(third.reason, "stale");
  (void)RemoveAll(*dir);
}

}  // namespace
}  // namespace banger
