// A real guest that floods: its console (the serial port QEMU logs to
// console.log) and its command output. banger must stay responsive, keep the
// console log bounded (rotation) and stream or cap output without holding it
// in memory (docs/testing.md, "Hostile guests").
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "base/files.h"
#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class HostileGuestTest : public VmFixture {};

uint64_t SizeOf(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

TEST_F(HostileGuestTest, ConsoleAndOutputFloodsStayBoundedAndBangerStaysResponsive) {
  std::string f = WriteSpec("flood", SpecOptions{});
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "flood"));
  json item = GetItem("flood");
  ASSERT_TRUE(item.contains("status")) << item.dump();
  // The runtime dir is private to the state dir: find console.log there.
  fs::path console;
  for (const auto& e : fs::recursive_directory_iterator(state_)) {
    if (e.path().filename() == "console.log") console = e.path();
  }
  ASSERT_FALSE(console.empty());

  // 1. The guest floods its console from a process outside the exec's
  //    process group (setsid), so it outlives the exec.
  CommandOutput started = Exec("flood", {"sh", "-c",
                                         "setsid sh -c 'while :; do echo FLOODFLOODFLOODFLOODFLOODFLOODFLOODFLOOD"
                                         "FLOODFLOODFLOODFLOODFLOOD; done > /dev/console 2>&1' </dev/null >/dev/null "
                                         "2>&1 & echo started"});
  ASSERT_EQ(started.exit_code, 0) << started.stderr_data;
  ASSERT_NE(started.stdout_data.find("started"), std::string::npos);

  // 2. Until the console log has passed the 8 MiB cap (or two minutes went
  //    by), banger answers every command promptly.
  auto t0 = steady_clock::now();
  uint64_t peak = 0;
  int rounds = 0;
  while (steady_clock::now() - t0 < std::chrono::minutes(2)) {
    peak = std::max(peak, SizeOf(console));
    if (peak > (8u << 20)) break;
    auto r0 = steady_clock::now();
    CommandOutput hi = Exec("flood", {"echo", "still-here"});
    EXPECT_EQ(hi.exit_code, 0) << hi.stderr_data;
    EXPECT_NE(hi.stdout_data.find("still-here"), std::string::npos);
    EXPECT_LT(steady_clock::now() - r0, std::chrono::seconds(30)) << "exec was slow under a console flood";
    ++rounds;
  }
  double rate = static_cast<double>(SizeOf(console)) /
                std::max(1.0, std::chrono::duration<double>(steady_clock::now() - t0).count());
  ::testing::Test::RecordProperty("console_bytes_per_second", std::to_string(static_cast<uint64_t>(rate)));
  std::printf("guest console flood: %.0f KiB/s into console.log, %d exec rounds\n", rate / 1024, rounds);
  ASSERT_GT(SizeOf(console), 0u);

  // 3. A watch-style pass (reconcile inspects every sandbox) caps the log:
  //    once it passed 8 MiB it is rotated to console.log.1 (1 MiB).
  CommandOutput rec = Banger({"reconcile"}, std::chrono::minutes(2));
  EXPECT_EQ(rec.exit_code, 0) << rec.stdout_data << rec.stderr_data;
  fs::path previous = console;
  previous += ".1";
  if (peak > (8u << 20)) {
    EXPECT_TRUE(fs::exists(previous));
    EXPECT_LE(SizeOf(previous), 1u << 20);
    EXPECT_LT(SizeOf(console), 8u << 20) << "reconcile did not rotate the console log";
  }

  // 4. `banger logs` prints a bounded tail, and returns.
  auto l0 = steady_clock::now();
  CommandOutput logs = Banger({"logs", "flood"}, std::chrono::minutes(1));
  EXPECT_EQ(logs.exit_code, 0) << logs.stderr_data;
  EXPECT_LE(logs.stdout_data.size(), (8u << 20) + (1u << 20));
  EXPECT_NE(logs.stdout_data.find("FLOOD"), std::string::npos);
  EXPECT_LT(steady_clock::now() - l0, std::chrono::seconds(30));

  // 5. 64 MiB of stdout through `banger exec` streams to the caller (here a
  //    file) without banger holding it: its peak RSS stays far below.
  Background big;
  ASSERT_TRUE(StartBanger(big, "big-exec", {"exec", "flood", "--", "sh", "-c", "yes | head -c 67108864"}));
  auto code = big.Wait(std::chrono::minutes(4));
  ASSERT_TRUE(code.has_value()) << "exec of 64 MiB of output did not finish";
  EXPECT_EQ(*code, 0) << big.Stderr();
  EXPECT_EQ(SizeOf(dir_.path() / "big-exec.out"), 64u << 20);
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);  // every banger this test ran and waited for
  EXPECT_LT(static_cast<uint64_t>(ru.ru_maxrss) * 1024, uint64_t{48} << 20)
      << "a banger process held the guest's output in memory";

  // 6. The sandbox is still healthy and deletes cleanly.
  EXPECT_EQ(Phase("flood"), "Ready");
  CommandOutput del = Banger({"delete", "flood", "--yes"}, std::chrono::minutes(2));
  EXPECT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  EXPECT_TRUE(Qemus().empty());
}

}  // namespace
}  // namespace banger
