// End-to-end tests of several banger processes working on one state dir at
// once, with real QEMU guests: concurrent applies of one spec, read-only and
// reconciling commands while a boot is in progress, and delete after an apply
// was SIGKILLed at any moment of a boot.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class ConcurrencyTest : public VmFixture {
 protected:
  // Runs a read-only query on the state database with the sqlite3 CLI; the
  // trimmed output, or "" if the database does not exist yet.
  std::string Sql(const std::string& query) {
    fs::path db = fs::path(state_) / "state.db";
    if (!fs::exists(db)) return "";
    CommandSpec spec;
    spec.argv = {"sqlite3", "-readonly", "-cmd", ".timeout 5000", db.string(), query};
    spec.timeout = seconds(30);
    auto out = runner_->Run(spec);
    if (!out.ok() || out->exit_code != 0) return "";
    std::string s = out->stdout_data;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  // Waits (deadline 180 s) until a QEMU names the state dir or `bg` exits.
  std::vector<int> WaitForQemu(Background& bg) {
    auto deadline = steady_clock::now() + seconds(180);
    std::vector<int> q;
    while ((q = Qemus()).empty() && bg.Running() && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    return q;
  }

  std::vector<std::string> Entries(const fs::path& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().string());
    return out;
  }

  std::vector<std::string> Sockets() {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(state_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_socket(ec)) out.push_back(it->path().string());
    }
    return out;
  }

  // One round of DeleteAfterApplyKilledAtAnyMomentOfABootLeavesNoQemu: starts
  // an apply of `name`, SIGKILLs it `delay` after its QEMU appears (or, with
  // before_qemu, as soon as the sandbox record exists), then deletes.
  void KillApplyThenDelete(const std::string& name, milliseconds delay, bool before_qemu);
};

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n  " + x;
  return s;
}

// 1. -------------------------------------------------------------------------

TEST_F(ConcurrencyTest, TwoAppliesOfOneSpecAtOnceLeaveExactlyOneVm) {
  std::string f = WriteSpec("twice", SpecOptions{});
  Background a, b;
  ASSERT_TRUE(StartBanger(a, "apply-a", {"apply", "-f", f, "--yes"}));
  ASSERT_TRUE(StartBanger(b, "apply-b", {"apply", "-f", f, "--yes"}));

  std::optional<int> ea = a.Wait(std::chrono::minutes(5));
  std::optional<int> eb = b.Wait(std::chrono::minutes(5));
  ASSERT_TRUE(ea.has_value()) << "first apply still running after 5 minutes:\n" << a.Output();
  ASSERT_TRUE(eb.has_value()) << "second apply still running after 5 minutes:\n" << b.Output();
  EXPECT_EQ(*ea, 0) << a.Output();
  EXPECT_EQ(*eb, 0) << b.Output();

  std::vector<int> q = Qemus();
  ASSERT_EQ(q.size(), 1u) << "one spec applied twice at once must boot exactly one VM\nA:\n"
                          << a.Output() << "\nB:\n" << b.Output();
  json it = GetItem("twice");
  EXPECT_EQ(it["status"].value("phase", ""), "Ready") << it.dump(2);
  EXPECT_EQ(it["status"].value("pid", 0), q[0]) << "status.pid is the one live QEMU: " << it.dump(2);

  const std::string note = "already up to date";
  bool a_noted = a.Stdout().find(note) != std::string::npos;
  bool b_noted = b.Stdout().find(note) != std::string::npos;
  EXPECT_TRUE(a_noted != b_noted) << "exactly one of the two applies reports that the other did the work\nA:\n"
                                  << a.Output() << "\nB:\n" << b.Output();
  const Background& creator = a_noted ? b : a;
  EXPECT_NE(creator.Stdout().find("twice: created, Ready"), std::string::npos) << creator.Output();
  EXPECT_EQ(Exec("twice", {"cat", "/etc/hostname"}).stdout_data, "twice\n");
}

// 2. -------------------------------------------------------------------------

TEST_F(ConcurrencyTest, ObserversDuringABootAbandonNothingAndStartNoSecondVm) {
  std::string f = WriteSpec("watched", SpecOptions{});
  Background apply;
  ASSERT_TRUE(StartBanger(apply, "apply", {"apply", "-f", f, "--yes"}));
  std::vector<int> first = WaitForQemu(apply);
  ASSERT_EQ(first.size(), 1u) << "no QEMU appeared for the apply:\n" << apply.Output();
  bool booting = apply.Running();

  // While the guest boots (the apply holds the sandbox's lock), a user looks
  // at the sandbox, plans the same spec and runs a reconcile pass.
  CommandOutput get = Banger({"get", "-o", "json"});
  EXPECT_EQ(get.exit_code, 0) << get.stdout_data << get.stderr_data;
  json items = json::parse(get.stdout_data, nullptr, false);
  ASSERT_FALSE(items.is_discarded()) << get.stdout_data;
  std::string phase_during = "<absent>";
  for (const json& i : items.value("items", json::array())) {
    if (i.value("name", "") == "watched") phase_during = i["status"].value("phase", "<none>");
  }
  CommandOutput plan = Banger({"plan", "-f", f});
  EXPECT_EQ(plan.exit_code, 0) << plan.stdout_data << plan.stderr_data;
  CommandOutput rec = Banger({"reconcile"});
  EXPECT_EQ(rec.exit_code, 0) << rec.stdout_data << rec.stderr_data;
  bool still_booting = apply.Running();
  std::vector<int> during = Qemus();

  std::optional<int> code = apply.Wait(std::chrono::minutes(5));
  ASSERT_TRUE(code.has_value()) << "apply still running after 5 minutes:\n" << apply.Output();
  EXPECT_EQ(*code, 0) << apply.Output();
  RecordProperty("observers_ran_while_booting", booting && still_booting ? "yes" : "partly");
  if (booting) {
    EXPECT_NE(phase_during, "Failed") << "get during a boot showed it as Failed:\n" << get.stdout_data;
  }
  EXPECT_EQ(during, first) << "an observer started or killed a VM while the apply was booting it\nreconcile:\n"
                           << rec.stdout_data << rec.stderr_data << "\napply:\n" << apply.Output();

  json it = GetItem("watched");
  EXPECT_EQ(it["status"].value("phase", ""), "Ready") << it.dump(2) << "\n" << apply.Output();
  std::vector<int> q = Qemus();
  EXPECT_EQ(q, first) << "exactly one QEMU, the one the apply booted";
  EXPECT_EQ(it["status"].value("pid", 0), first[0]);

  EXPECT_EQ(Sql("select count(*) from operations"), Sql("select count(*) from operations where state = 'done'"))
      << "every journal step of the apply finished:\n"
      << Sql("select id, sandbox, step, state, error from operations");
  EXPECT_EQ(Sql("select count(*) from operations where error like 'interrupted%'"), "0")
      << "an observer abandoned the apply's steps:\n"
      << Sql("select id, sandbox, step, state, error from operations");
}

// 3. -------------------------------------------------------------------------

void ConcurrencyTest::KillApplyThenDelete(const std::string& name, milliseconds delay, bool before_qemu) {
  SCOPED_TRACE("round " + name);
  std::string f = WriteSpec(name, SpecOptions{});
  Background apply;
  ASSERT_TRUE(StartBanger(apply, "apply-" + name, {"apply", "-f", f, "--yes"}));
  const std::string has_record = "select count(*) from sandboxes where name = '" + name + "'";
  bool qemu_at_kill = false;
  if (before_qemu) {
    auto deadline = steady_clock::now() + seconds(180);
    while (apply.Running() && Qemus().empty() && Sql(has_record) != "1" && steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    ASSERT_TRUE(apply.Running()) << "apply ended before its sandbox record appeared:\n" << apply.Output();
    ASSERT_EQ(Sql(has_record), "1") << "the sandbox record never appeared:\n" << apply.Output();
    apply.Signal(SIGKILL);
    qemu_at_kill = !Qemus().empty();
    RecordProperty("killed_before_qemu", qemu_at_kill ? "missed (QEMU was already up)" : "yes");
  } else {
    std::vector<int> q = WaitForQemu(apply);
    ASSERT_EQ(q.size(), 1u) << "no QEMU appeared for the apply:\n" << apply.Output();
    if (delay.count() > 0) std::this_thread::sleep_for(delay);  // the moment under test, not synchronisation
    // On a fast host the boot may be over by now: then this round only checks
    // delete after a complete apply (recorded, not a failure).
    RecordProperty("killed_mid_boot_" + name, apply.Running() ? "yes" : "no (apply had finished)");
    apply.Signal(SIGKILL);
  }
  std::optional<int> code = apply.Wait(seconds(10));
  ASSERT_TRUE(code.has_value()) << "apply survived SIGKILL";
  if (*code != 0) {
    EXPECT_EQ(*code, 128 + SIGKILL) << apply.Output();
  }

  CommandOutput del = Banger({"delete", name, "--yes"});
  EXPECT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  std::vector<int> left = Qemus();
  EXPECT_TRUE(left.empty()) << "a QEMU survived delete (pid " << (left.empty() ? 0 : left[0]) << ")\n"
                            << del.stdout_data << del.stderr_data;
  EXPECT_TRUE(GetItem(name).is_null()) << "delete left the record";
  std::vector<std::string> files = Entries(fs::path(state_) / "sandboxes");
  EXPECT_TRUE(files.empty()) << "left in sandboxes/:" << Joined(files);
  std::vector<std::string> socks = Sockets();
  EXPECT_TRUE(socks.empty()) << "sockets left:" << Joined(socks);
  for (int pid : left) KillByPid(pid);  // the next round starts clean even if this one failed
}

TEST_F(ConcurrencyTest, DeleteAfterApplyKilledAtAnyMomentOfABootLeavesNoQemu) {
  struct Round {
    std::string name;
    milliseconds delay;
    bool before_qemu;
  };
  const std::vector<Round> rounds = {
      {"prelaunch", milliseconds(0), true},
      {"at0ms", milliseconds(0), false},
      {"at300ms", milliseconds(300), false},
      {"at1500ms", milliseconds(1500), false},
  };
  for (const Round& r : rounds) {
    auto t0 = steady_clock::now();
    KillApplyThenDelete(r.name, r.delay, r.before_qemu);
    RecordProperty("round_seconds_" + r.name,
                   std::to_string(std::chrono::duration<double>(steady_clock::now() - t0).count()));
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace banger
