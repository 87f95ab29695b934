// End-to-end tests with real VMs: the `banger` binary boots QEMU guests (TCG
// here) from specs written into a private temp dir, each test with its own
// state dir. A guard deletes the test's sandboxes and SIGKILLs every QEMU
// process whose command line names the test's state dir, also on failure
// (fixture and guard: tests/e2e/vm_fixture.h).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/files.h"
#include "oci/test_layers.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/oci_registry.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class VmTest : public VmFixture {
 protected:
  void InterruptedApplyConverges(const std::string& name, milliseconds delay);
};

// 1. -------------------------------------------------------------------------

TEST_F(VmTest, ApplyBootsBusyboxSandboxAndExecSeesImageFilesAndExitCodes) {
  SpecOptions o;
  o.extra = "  files:\n"
            "    - path: /etc/greeting\n"
            "      content: |\n"
            "        hello from the spec\n"
            "      mode: \"0600\"\n"
            "    - path: /opt/app/run.sh\n"
            "      content: |\n"
            "        #!/bin/sh\n"
            "        echo app-ran\n"
            "      mode: \"0755\"\n";
  std::string f = WriteSpec("one", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "one"));

  json it = GetItem("one");
  EXPECT_GT(it["status"].value("pid", 0), 0) << it.dump(2);
  EXPECT_EQ(it["status"].value("hypervisor", ""), "qemu");
  EXPECT_EQ(Qemus().size(), 1u);

  CommandOutput osr = Exec("one", {"cat", "/etc/os-release"});
  EXPECT_EQ(osr.exit_code, 0) << osr.stderr_data;
  EXPECT_NE(osr.stdout_data.find("NAME=\"banger busybox\"\n"), std::string::npos) << osr.stdout_data;

  EXPECT_EQ(Exec("one", {"sh", "-c", "exit 7"}).exit_code, 7);
  EXPECT_EQ(Exec("one", {"false"}).exit_code, 1);
  CommandOutput err = Exec("one", {"sh", "-c", "echo out; echo err >&2"});
  EXPECT_EQ(err.stdout_data, "out\n");
  EXPECT_NE(err.stderr_data.find("err\n"), std::string::npos) << err.stderr_data;

  CommandOutput greeting = Exec("one", {"cat", "/etc/greeting"});
  EXPECT_EQ(greeting.exit_code, 0) << greeting.stderr_data;
  EXPECT_EQ(greeting.stdout_data, "hello from the spec\n");
  EXPECT_EQ(Exec("one", {"stat", "-c", "%a", "/etc/greeting"}).stdout_data, "600\n");
  CommandOutput script = Exec("one", {"/opt/app/run.sh"});
  EXPECT_EQ(script.exit_code, 0) << script.stderr_data;
  EXPECT_EQ(script.stdout_data, "app-ran\n");

  CommandOutput logs = Banger({"logs", "one"});
  EXPECT_EQ(logs.exit_code, 0) << logs.stderr_data;
  EXPECT_NE(logs.stdout_data.find("Linux version"), std::string::npos) << "serial console has the kernel's boot log";
  // The image's init mounts nothing over the agent's /proc, /sys and /run
  // (its sysinit ran long ago: the console shows its errors, if any).
  EXPECT_EQ(logs.stdout_data.find("not found"), std::string::npos) << logs.stdout_data;
  CommandOutput mounts = Exec("one", {"sh", "-c", "grep -c ' /run ' /proc/mounts; grep -c ' /proc ' /proc/mounts"});
  EXPECT_EQ(mounts.stdout_data, "1\n1\n") << Exec("one", {"cat", "/proc/mounts"}).stdout_data;
  EXPECT_EQ(Exec("one", {"test", "-x", "/run/banger/agent"}).exit_code, 0) << "the agent's /run is not hidden";

  // A second apply of the same spec changes nothing.
  CommandOutput plan = Banger({"plan", "-f", f, "--detailed-exitcode"});
  EXPECT_EQ(plan.exit_code, 0) << plan.stdout_data << plan.stderr_data;
}

// 2. -------------------------------------------------------------------------

TEST_F(VmTest, CpuChangeRestartsTheVmAndKeepsTheDisk) {
  SpecOptions o;
  std::string f = WriteSpec("cpu", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "cpu"));
  EXPECT_EQ(Exec("cpu", {"grep", "-c", "^processor", "/proc/cpuinfo"}).stdout_data, "1\n");
  int old_pid = GetItem("cpu")["status"].value("pid", 0);

  CommandOutput w = Exec("cpu", {"sh", "-c", "mkdir -p /root && echo x > /root/keep"});
  ASSERT_EQ(w.exit_code, 0) << w.stderr_data;

  o.cpus = 2;
  WriteSpec("cpu", o);  // same file: same apply set
  CommandOutput plan = Banger({"plan", "-f", f, "-o", "json"});
  ASSERT_EQ(plan.exit_code, 0) << plan.stderr_data;
  json p = json::parse(plan.stdout_data, nullptr, false);
  ASSERT_FALSE(p.is_discarded()) << plan.stdout_data;
  ASSERT_EQ(p["changes"].size(), 1u) << p.dump(2);
  const json& change = p["changes"][0];
  EXPECT_EQ(change.value("name", ""), "cpu");
  EXPECT_EQ(change.value("action", ""), "restart") << p.dump(2);
  bool cpu_diff = false;
  for (const json& d : change["diffs"]) {
    if (d.value("path", "").find("cpus") != std::string::npos) {
      cpu_diff = true;
      EXPECT_EQ(d["before"].dump(), "1") << d.dump();
      EXPECT_EQ(d["after"].dump(), "2") << d.dump();
    }
  }
  EXPECT_TRUE(cpu_diff) << "no diff on cpus: " << p.dump(2);
  EXPECT_EQ(p["summary"].value("restart", -1), 1) << p.dump(2);

  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "cpu"));
  EXPECT_NE(GetItem("cpu")["status"].value("pid", 0), old_pid) << "a restart starts a new VM process";
  CommandOutput n = Exec("cpu", {"grep", "-c", "^processor", "/proc/cpuinfo"});
  EXPECT_EQ(n.stdout_data, "2\n") << n.stderr_data;
  CommandOutput keep = Exec("cpu", {"cat", "/root/keep"});
  EXPECT_EQ(keep.exit_code, 0) << "file written before the restart is gone: " << keep.stderr_data;
  EXPECT_EQ(keep.stdout_data, "x\n");
  EXPECT_EQ(Qemus().size(), 1u);
}

// 3. -------------------------------------------------------------------------

TEST_F(VmTest, KilledVmShowsFailedAndReconcileRestartsIt) {
  SpecOptions o;
  o.restart_policy = "Always";
  std::string f = WriteSpec("crashy", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "crashy"));
  int pid = GetItem("crashy")["status"].value("pid", 0);
  ASSERT_GT(pid, 0);
  std::vector<int> q = Qemus();
  ASSERT_EQ(q, std::vector<int>{pid}) << "status.pid is the QEMU process of this sandbox";

  auto start = ProcessStartTime(pid);
  ASSERT_TRUE(start.ok());
  ProcessIdentity vm{pid, *start};
  KillByPid(pid);
  ASSERT_FALSE(ProcessAlive(vm)) << "QEMU survived SIGKILL";

  json it = GetItem("crashy");
  EXPECT_EQ(it["status"].value("phase", ""), "Failed") << "a dead VM must not show as Ready: " << it.dump(2);
  EXPECT_FALSE(it["status"].value("error", "").empty()) << it.dump(2);

  CommandOutput rec = Banger({"reconcile"});
  EXPECT_EQ(rec.exit_code, 0) << rec.stdout_data << rec.stderr_data;
  json after = GetItem("crashy");
  EXPECT_EQ(after["status"].value("phase", ""), "Ready") << rec.stdout_data << rec.stderr_data << after.dump(2);
  int new_pid = after["status"].value("pid", 0);
  EXPECT_GT(new_pid, 0);
  EXPECT_NE(new_pid, pid);
  EXPECT_EQ(Qemus(), std::vector<int>{new_pid});
  CommandOutput e = Exec("crashy", {"cat", "/etc/hostname"});
  EXPECT_EQ(e.exit_code, 0) << e.stderr_data;
  EXPECT_EQ(e.stdout_data, "crashy\n");
}

// 4. -------------------------------------------------------------------------

TEST_F(VmTest, PlainOciImageWithoutInitRunsEntrypointUnderTheAgent) {
  if (!testing::RegistryProcess::Available()) GTEST_SKIP() << "docker-registry is not installed";
  auto busybox = ReadFile("/bin/busybox");
  if (!busybox.ok()) GTEST_SKIP() << "no /bin/busybox on the host";

  fs::path reg_root = dir_.path() / "registry";
  fs::create_directories(reg_root);
  testing::RegistryProcess registry;
  ASSERT_TRUE(registry.Start(reg_root).ok());

  oci::testing::TarBuilder layer;
  layer.Dir("bin").Dir("dev").Dir("proc").Dir("sys").Dir("etc").Dir("root", 0700).Dir("run");
  layer.Dir("tmp", 01777);
  layer.File("bin/busybox", *busybox, 0755);
  for (const char* applet : {"sh", "cat", "sleep", "echo", "ls", "ps", "mkdir"}) {
    layer.Symlink(std::string("bin/") + applet, "busybox");
  }
  std::string tar;
  try {
    tar = layer.Build();
  } catch (const std::exception& e) {
    FAIL() << "building the layer: " << e.what();
  }
  json cfg = {{"Entrypoint", {"/bin/sh", "-c", "echo started > /tmp/entry; exec sleep 100000"}},
              {"Env", {"PATH=/bin"}}};
  auto image = testing::OciTestImage::Make({tar}, cfg.dump());
  testing::OciPusher pusher(registry.HostPort());
  Status pushed = pusher.PushImage("plain/app", "1", image);
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();

  SpecOptions o;
  o.image = registry.HostPort() + "/plain/app:1";
  o.readiness = R"(["cat", "/tmp/entry"])";
  std::string f = WriteSpec("plain", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "plain"));

  CommandOutput entry = Exec("plain", {"cat", "/tmp/entry"});
  EXPECT_EQ(entry.exit_code, 0) << entry.stderr_data;
  EXPECT_EQ(entry.stdout_data, "started\n");
  EXPECT_EQ(Exec("plain", {"test", "-e", "/sbin/init"}).exit_code, 1) << "the image has no init";

  CommandOutput comm = Exec("plain", {"cat", "/proc/1/cmdline"});
  ASSERT_EQ(comm.exit_code, 0) << comm.stderr_data;
  std::string pid1 = comm.stdout_data;
  std::replace(pid1.begin(), pid1.end(), '\0', ' ');
  EXPECT_EQ(pid1.find("sleep"), std::string::npos) << "PID 1 is the entrypoint, not the agent: " << pid1;
  EXPECT_EQ(pid1.find("/bin/sh"), std::string::npos) << "PID 1 is the entrypoint, not the agent: " << pid1;
  EXPECT_EQ(pid1, "/init ") << "PID 1 is the agent (the initramfs /init)";
  // The entrypoint (exec'd into sleep) is a child of PID 1.
  CommandOutput ppid = Exec("plain", {"sh", "-c",
                                      "for p in /proc/[0-9]*; do if grep -q '^sleep' $p/cmdline 2>/dev/null; "
                                      "then awk '/^PPid/{print $2}' $p/status; fi; done"});
  EXPECT_EQ(ppid.stdout_data, "1\n") << ppid.stderr_data;
}

// 5. -------------------------------------------------------------------------

TEST_F(VmTest, DeleteRemovesVmRecordFilesAndSockets) {
  std::string f = WriteSpec("gone", SpecOptions{});
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "gone"));
  ASSERT_EQ(Qemus().size(), 1u);

  CommandOutput del = Banger({"delete", "gone", "--yes"});
  EXPECT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  EXPECT_TRUE(GetItems().empty());
  EXPECT_TRUE(Qemus().empty()) << "a QEMU process still names the state dir";

  fs::path sandboxes = fs::path(state_) / "sandboxes";
  std::vector<std::string> left;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(sandboxes, ec)) left.push_back(e.path().string());
  EXPECT_TRUE(left.empty()) << "left in sandboxes/: " << left.front();

  std::vector<std::string> sockets;
  for (auto it = fs::recursive_directory_iterator(state_, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_socket(ec)) sockets.push_back(it->path().string());
  }
  EXPECT_TRUE(sockets.empty()) << "socket left: " << sockets.front();
  EXPECT_EQ(Banger({"describe", "gone"}).exit_code, 1);
}

// 6. -------------------------------------------------------------------------

// Starts `apply` in the background, SIGKILLs it `delay` after its QEMU
// appears, then checks that the next apply converges to exactly one VM and
// that delete leaves nothing behind.
void VmTest::InterruptedApplyConverges(const std::string& name, milliseconds delay) {
  std::string f = WriteSpec(name, SpecOptions{});
  CommandSpec spec;
  spec.argv = Prefix();
  spec.argv.insert(spec.argv.end(), {"apply", "-f", f, "--yes"});
  spec.env["NO_COLOR"] = "1";
  spec.log_file = dir_.path() / "first-apply.log";
  auto child = runner_->StartDetached(spec);
  ASSERT_TRUE(child.ok()) << child.error().ToString();
  guard_.TrackProcess(*child);

  auto deadline = steady_clock::now() + seconds(180);
  while (Qemus().empty() && ProcessAlive(*child) && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::vector<int> first = Qemus();
  ASSERT_EQ(first.size(), 1u) << "no QEMU for the state dir appeared; apply log:\n"
                              << ReadFile(spec.log_file).value_or("");
  std::this_thread::sleep_for(delay);
  ASSERT_TRUE(ProcessAlive(*child)) << "apply finished before it could be interrupted:\n"
                                    << ReadFile(spec.log_file).value_or("");
  ASSERT_TRUE(SignalProcess(*child, SIGKILL).ok());
  for (int i = 0; i < 500 && ProcessAlive(*child); ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_FALSE(ProcessAlive(*child));
  EXPECT_NE(Phase(name), "Ready") << "the interrupted apply never confirmed readiness";

  CommandOutput again = Apply(f);
  EXPECT_EQ(again.exit_code, 0) << again.stdout_data << again.stderr_data;
  EXPECT_EQ(Phase(name), "Ready") << again.stdout_data << again.stderr_data;
  std::vector<int> q = Qemus();
  EXPECT_EQ(q.size(), 1u) << "exactly one QEMU per sandbox after the re-apply";
  RecordProperty("first_vm", q == first ? "adopted" : "replaced");
  EXPECT_EQ(GetItem(name)["status"].value("pid", 0), q.empty() ? -1 : q[0]) << "status.pid is the live VM";
  EXPECT_EQ(Exec(name, {"cat", "/etc/hostname"}).stdout_data, name + "\n");

  CommandOutput del = Banger({"delete", name, "--yes"});
  EXPECT_EQ(del.exit_code, 0) << del.stdout_data << del.stderr_data;
  EXPECT_TRUE(Qemus().empty()) << "a QEMU process survived delete";
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(fs::path(state_) / "sandboxes", ec)) << "sandboxes/ not empty after delete";
}

TEST_F(VmTest, ApplyKilledRightAfterVmLaunchIsConvergedByTheNextApplyWithOneVm) {
  InterruptedApplyConverges("interrupted", milliseconds(0));
}

TEST_F(VmTest, ApplyKilledWhileGuestBootsIsConvergedByTheNextApplyWithOneVm) {
  InterruptedApplyConverges("midboot", milliseconds(2500));
}

// Stop/start ------------------------------------------------------------------

TEST_F(VmTest, StoppedSandboxStaysDownUntilStartedAndKeepsItsDisk) {
  SpecOptions o;
  o.restart_policy = "Always";
  std::string f = WriteSpec("pause", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "pause"));
  ASSERT_EQ(Exec("pause", {"sh", "-c", "echo kept > /etc/kept"}).exit_code, 0);

  CommandOutput stop = Banger({"stop", "pause"});
  EXPECT_EQ(stop.exit_code, 0) << stop.stdout_data << stop.stderr_data;
  EXPECT_EQ(Phase("pause"), "Stopped");
  EXPECT_TRUE(Qemus().empty()) << "stop left the VM running";
  EXPECT_NE(Exec("pause", {"true"}).exit_code, 0) << "exec into a stopped sandbox must fail";

  // Neither reconcile (restartPolicy Always) nor apply brings it back.
  EXPECT_EQ(Banger({"reconcile"}).exit_code, 0);
  EXPECT_EQ(Phase("pause"), "Stopped") << "reconcile restarted a sandbox the user stopped";
  CommandOutput re = Apply(f);
  EXPECT_EQ(re.exit_code, 0) << re.stdout_data << re.stderr_data;
  EXPECT_EQ(Phase("pause"), "Stopped") << "apply restarted a sandbox the user stopped";
  EXPECT_TRUE(Qemus().empty());

  CommandOutput start = Banger({"start", "pause"});
  EXPECT_EQ(start.exit_code, 0) << start.stdout_data << start.stderr_data;
  EXPECT_EQ(Phase("pause"), "Ready");
  EXPECT_EQ(Qemus().size(), 1u);
  EXPECT_EQ(Exec("pause", {"cat", "/etc/kept"}).stdout_data, "kept\n");
}

// 7. -------------------------------------------------------------------------

// Connects to 127.0.0.1:port, sends `request`, returns everything read until
// EOF (empty on failure).
std::string HttpGetLoopback(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST_F(VmTest, NatPortForwardReachesHttpServerInTheGuest) {
  int port = testing::FreeLoopbackPort();
  ASSERT_GT(port, 0);
  SpecOptions o;
  o.network = "network:\n    mode: nat\n    ports:\n      - host: " + std::to_string(port) +
              "\n        guest: 8080\n";
  o.readiness = R"(["sh", "-c", "wget -q -O - http://127.0.0.1:8080/index.html | grep -q served"])";
  o.extra = "  files:\n"
            "    - path: /www/index.html\n"
            "      content: |\n"
            "        served by banger guest\n"
            "  provision:\n"
            "    - busybox httpd -p 8080 -h /www\n";
  std::string f = WriteSpec("web", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "web"));

  std::string resp;
  auto deadline = steady_clock::now() + seconds(30);
  while (steady_clock::now() < deadline) {
    resp = HttpGetLoopback(port, "GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
    if (resp.find("served by banger guest") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_NE(resp.find(" 200 "), std::string::npos) << resp;
  // The forward listens on loopback only, never on all interfaces.
  std::string tcp = ReadFile("/proc/net/tcp").value_or("");
  char hexport[8];
  std::snprintf(hexport, sizeof(hexport), "%04X", port);
  EXPECT_NE(tcp.find("0100007F:" + std::string(hexport) + " 00000000:0000 0A"), std::string::npos)
      << "no listener on 127.0.0.1:" << port;
  EXPECT_EQ(tcp.find("00000000:" + std::string(hexport) + " 00000000:0000 0A"), std::string::npos)
      << "port " << port << " is published on all interfaces";
  EXPECT_NE(resp.find("served by banger guest\n"), std::string::npos)
      << "host 127.0.0.1:" << port << " -> guest 8080; got: " << resp;
}

}  // namespace
}  // namespace banger
