// End-to-end tests of templates (docs/snapshots.md): sandboxes restored from
// a saved VM instead of booted, through the real banger binary and QEMU.
// Each sandbox must become itself (hostname, address, MAC, machine-id,
// random state), behave like after a cold boot, never use a template of
// another boot identity, and fall back to a cold boot, saying why, when a
// restore fails.
#include <gtest/gtest.h>

#include <set>

#include "base/strings.h"
#include "state/state_store.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/netns.h"

namespace banger::e2e {
namespace {

// Bridged sandboxes (so each has its own leased address and MAC) in a
// private network namespace.
class TemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/qemu-system-x86_64")) GTEST_SKIP() << "qemu-system-x86_64 is not installed";
    ns_ = std::make_unique<testing::ScopedNetns>("banger-tpl");
    ASSERT_TRUE(ns_->created()) << ns_->error();
    ASSERT_NO_FATAL_FAILURE(
        e_.Init("parallel: 4\nnetwork:\n  netns: " + ns_->name() + "\n", {{"BANGER_NETNS", ns_->name()}}));
  }
  void TearDown() override {
    if (HasFailure()) std::printf("failed test commands:\n%s", e_.Timeline().c_str());
  }

  std::string Spec(const std::string& name, const std::string& memory = "256MiB", const std::string& start = "") {
    SpecOptions o;
    o.memory = memory;
    o.network = "network:\n    mode: bridged\n";
    o.extra = "  files:\n    - path: /etc/who\n      content: \"" + name + "\\n\"\n";
    if (!start.empty()) o.extra += "  start: " + start + "\n";
    e_.guard_.Track(name);
    return e_.WriteSpec(name, o);
  }

  json Templates() {
    CommandOutput out = e_.Banger({"snapshot", "ls", "-o", "json"});
    EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
    json j = json::parse(out.stdout_data, nullptr, false);
    EXPECT_TRUE(j.is_array()) << out.stdout_data;
    return j.is_array() ? j : json::array();
  }

  std::string Out(const std::string& name, const std::string& script) {
    CommandOutput out = e_.Exec(name, {"sh", "-c", script});
    EXPECT_EQ(out.exit_code, 0) << name << ": " << script << ": " << out.stderr_data;
    return std::string(Trim(out.stdout_data));
  }

  std::string Events(const std::string& name) {
    return e_.Banger({"events", name, "-o", "json"}).stdout_data;
  }

  // Destroyed in reverse: the environment (its guard deletes the
  // sandboxes) before the namespace they live in.
  std::unique_ptr<testing::ScopedNetns> ns_;
  BangerEnv e_;
};

TEST_F(TemplateTest, TwoSandboxesFromOneTemplateEachBecomeThemselves) {
  // start: snapshot builds the template and restores from it; a sandbox of
  // the same boot identity with start: auto (the default) then only
  // restores (the plan says which).
  std::string s1 = Spec("tpl-one", "256MiB", "snapshot"), s2 = Spec("tpl-two");
  CommandOutput plan = e_.Banger({"plan", "-f", s1});
  // Image and kernel not pulled yet: the plan cannot name the template.
  EXPECT_NE(plan.stdout_data.find("start: restore from a template of its boot identity (saved first"),
            std::string::npos)
      << plan.stdout_data;
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s1, "tpl-one"));
  plan = e_.Banger({"plan", "-f", s2});
  EXPECT_NE(plan.stdout_data.find("start: restore from template"), std::string::npos) << plan.stdout_data;
  CommandOutput json_plan = e_.Banger({"plan", "-f", s2, "-o", "json"});
  EXPECT_NE(json_plan.stdout_data.find("\"start\": \"restore from template"), std::string::npos)
      << json_plan.stdout_data;
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s2, "tpl-two"));

  json templates = Templates();
  ASSERT_EQ(templates.size(), 1u) << templates.dump();
  EXPECT_EQ(templates[0]["usedBy"].size(), 2u) << templates.dump();
  EXPECT_GT(templates[0].value("stateBytes", 0), 0);
  for (const char* name : {"tpl-one", "tpl-two"}) {
    EXPECT_NE(Events(name).find("restored from template"), std::string::npos) << Events(name);
    EXPECT_EQ(Events(name).find("TemplateNotUsed"), std::string::npos) << Events(name);
  }

  // Identity: each its own, as `get` and the lease say.
  struct Seen {
    std::string hostname, address, mac, random, who, hosts;
  };
  std::map<std::string, Seen> seen;
  for (const char* name : {"tpl-one", "tpl-two"}) {
    Seen s;
    s.hostname = Out(name, "hostname");
    s.address = Out(name, "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1");
    s.mac = Out(name, "cat /sys/class/net/eth0/address");
    s.random = Out(name, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    s.who = Out(name, "cat /etc/who");
    seen[name] = s;
    EXPECT_EQ(s.hostname, name);
    EXPECT_EQ(s.who, name) << "the sandbox's own files";
    json item = e_.GetItem(name);
    EXPECT_EQ(s.address, item["status"].value("address", "")) << item.dump();
    EXPECT_EQ(item["status"].value("template", ""), templates[0].value("id", "x")) << item.dump();
    EXPECT_EQ(s.random.size(), 64u);
  }
  json leases = json::parse(e_.Banger({"network", "ls", "-o", "json"}).stdout_data, nullptr, false);
  std::set<std::string> lease_macs;
  if (leases.is_array()) {
    for (const auto& n : leases) {
      for (const auto& l : n["leases"]) lease_macs.insert(l.value("mac", ""));
    }
  }
  const Seen& a = seen["tpl-one"];
  const Seen& b = seen["tpl-two"];
  EXPECT_NE(a.address, b.address);
  EXPECT_NE(a.mac, b.mac);
  EXPECT_TRUE(lease_macs.count(a.mac) && lease_macs.count(b.mac)) << "MACs are the leased ones: " << leases.dump();
  // (The busybox image has no /etc/machine-id; the agent renews one only
  // where the image carries it: IdentityTest covers that.) Two guests
  // restored from one memory image would read the same bytes from the same
  // CRNG state unless each was re-seeded.
  EXPECT_NE(a.random, b.random) << "the restored entropy pools were re-seeded";
  // The clock was stepped: the guest's time is the host's, not the save time.
  long guest = std::stol(Out("tpl-two", "date +%s"));
  long host = static_cast<long>(::time(nullptr));
  EXPECT_LT(std::labs(guest - host), 30) << "guest clock " << guest << " vs host " << host;
  // They reach each other by name, like cold-booted peers.
  EXPECT_EQ(e_.Exec("tpl-one", {"ping", "-c", "1", "-W", "5", "tpl-two"}).exit_code, 0);

  // A template in use is kept; once its sandboxes are gone prune removes it.
  CommandOutput rm = e_.Banger({"snapshot", "rm", templates[0].value("id", "")});
  EXPECT_NE(rm.exit_code, 0);
  EXPECT_NE(rm.stderr_data.find("delete them first"), std::string::npos) << rm.stderr_data;
  ASSERT_EQ(e_.Banger({"delete", "tpl-one", "--yes"}).exit_code, 0);
  ASSERT_EQ(e_.Banger({"delete", "tpl-two", "--yes"}).exit_code, 0);
  CommandOutput pruned = e_.Banger({"snapshot", "prune"});
  EXPECT_EQ(pruned.exit_code, 0) << pruned.stderr_data;
  EXPECT_EQ(Templates().size(), 0u);
}

TEST_F(TemplateTest, AChangedKernelOrMachineShapeGetsANewTemplate) {
  std::string s = Spec("tpl-id", "256MiB", "snapshot");
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s, "tpl-id"));
  ASSERT_EQ(Templates().size(), 1u);
  std::string first = Templates()[0].value("hash", "");
  ASSERT_EQ(e_.Banger({"delete", "tpl-id", "--yes"}).exit_code, 0);

  // Another memory size is another boot identity: start: auto does not use
  // the template of 256 MiB, it boots (and saves nothing).
  s = Spec("tpl-id", "288MiB");
  CommandOutput plan = e_.Banger({"plan", "-f", s});
  EXPECT_NE(plan.stdout_data.find("start: boot (no template"), std::string::npos) << plan.stdout_data;
  s = Spec("tpl-id", "288MiB", "snapshot");
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s, "tpl-id"));
  json t = Templates();
  ASSERT_EQ(t.size(), 2u) << t.dump();
  ASSERT_EQ(e_.Banger({"delete", "tpl-id", "--yes"}).exit_code, 0);

  // The kernel file changes (one byte appended to each of the kernel's
  // files; trailing bytes do not stop it booting): the old templates are
  // never used, a third is built.
  {
    auto store = StateStore::Open(e_.state_);
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    auto kernels = (*store)->ListKernels();
    ASSERT_TRUE(kernels.ok() && kernels->size() == 1u);
    for (const std::string& p : {(*kernels)[0].kernel_path, (*kernels)[0].vmlinux_path}) {
      if (p.empty()) continue;
      std::FILE* f = std::fopen(p.c_str(), "ab");
      ASSERT_NE(f, nullptr) << p;
      std::fputc(0, f);
      std::fclose(f);
    }
  }
  s = Spec("tpl-id", "288MiB", "snapshot");
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s, "tpl-id"));
  t = Templates();
  ASSERT_EQ(t.size(), 3u) << t.dump();
  int used = 0;
  for (const auto& x : t) {
    if (!x["usedBy"].empty()) {
      ++used;
      EXPECT_NE(x.value("hash", ""), first);
    }
  }
  EXPECT_EQ(used, 1);
  EXPECT_EQ(Out("tpl-id", "cat /etc/who"), "tpl-id");
}

TEST_F(TemplateTest, TwoConcurrentFirstStartsBuildOneTemplate) {
  std::string s1 = Spec("tpl-c1", "256MiB", "snapshot"), s2 = Spec("tpl-c2", "256MiB", "snapshot");
  Background a, b;
  ASSERT_TRUE(e_.StartBanger(a, "apply c1", {"apply", "-f", s1, "--yes"}));
  ASSERT_TRUE(e_.StartBanger(b, "apply c2", {"apply", "-f", s2, "--yes"}));
  auto ra = a.Wait(std::chrono::minutes(6));
  auto rb = b.Wait(std::chrono::minutes(6));
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(*ra, 0) << a.Output();
  EXPECT_EQ(*rb, 0) << b.Output();
  EXPECT_EQ(e_.Phase("tpl-c1"), "Ready");
  EXPECT_EQ(e_.Phase("tpl-c2"), "Ready");
  json t = Templates();
  ASSERT_EQ(t.size(), 1u) << "one winner builds, the other waits and uses it: " << t.dump();
  EXPECT_EQ(t[0]["usedBy"].size(), 2u) << t.dump() << Events("tpl-c1") << Events("tpl-c2");
  std::set<std::string> entries;
  for (const auto& e : fs::directory_iterator(fs::path(e_.state_) / "templates")) {
    entries.insert(e.path().filename().string());
  }
  EXPECT_EQ(entries.size(), 1u) << "no staging or build dir left";
}

TEST_F(TemplateTest, ABrokenRestoreBootsColdAndSaysWhy) {
  std::string s1 = Spec("tpl-ok", "256MiB", "snapshot");
  ASSERT_NO_FATAL_FAILURE(e_.ApplyReady(s1, "tpl-ok"));
  json t = Templates();
  ASSERT_EQ(t.size(), 1u);
  // The state file is cut short: the restoring QEMU fails while loading it.
  fs::path state = fs::path(e_.state_) / "templates" / t[0].value("hash", "") / "state.bin";
  ASSERT_TRUE(fs::exists(state));
  fs::resize_file(state, fs::file_size(state) / 2);

  std::string s2 = Spec("tpl-cold");
  CommandOutput out = e_.Apply(s2);
  ASSERT_EQ(out.exit_code, 0) << out.stdout_data << out.stderr_data;
  EXPECT_EQ(e_.Phase("tpl-cold"), "Ready");
  std::string ev = Events("tpl-cold");
  EXPECT_NE(ev.find("TemplateNotUsed"), std::string::npos) << ev;
  EXPECT_NE(ev.find("booted instead of restoring"), std::string::npos) << ev;
  EXPECT_NE(ev.find("template"), std::string::npos) << ev;
  EXPECT_EQ(e_.GetItem("tpl-cold")["status"].value("template", "x"), "") << "booted, not restored";
  EXPECT_EQ(Out("tpl-cold", "hostname"), "tpl-cold");
  EXPECT_EQ(Out("tpl-cold", "cat /etc/who"), "tpl-cold");
  EXPECT_EQ(e_.Qemus().size(), 2u) << "the failed restore's QEMU is gone";

  // With start: snapshot the same failure is the apply's error.
  std::string s3 = Spec("tpl-must", "256MiB", "snapshot");
  CommandOutput must = e_.Apply(s3);
  EXPECT_NE(must.exit_code, 0);
  EXPECT_NE((must.stdout_data + must.stderr_data).find("spec.start is snapshot"), std::string::npos)
      << must.stdout_data << must.stderr_data;
  EXPECT_EQ(e_.Qemus().size(), 2u);
}

}  // namespace
}  // namespace banger::e2e
