// End-to-end tests of bridged networking (issue 8, docs/networking.md) with
// real QEMU guests, all inside a private network namespace: every banger
// command runs with BANGER_NETNS=<ns> (and the config key network.netns, so
// that no command of the test can reach the host's own network), which puts
// banger's bridges, taps, nft table and QEMU in there. "The host side" is the
// namespace itself: sockets this process makes inside it (tests/support/
// netns.h) and `ip netns exec NS ...`.
//
// Boots are the cost under TCG, so each suite boots its sandboxes once in
// SetUpTestSuite and its tests share them; a test that changes a sandbox
// leaves it as it found it (or as good: Ready, same address). Teardown, also
// on failure: the guard deletes the sandboxes through banger and kills QEMUs
// left for the state dir, then the namespace is deleted with whatever banger
// left in it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/command_runner.h"
#include "base/strings.h"
#include "images/recipes.h"
#include "tests/e2e/vm_fixture.h"
#include "tests/support/netns.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

double SecondsSince(steady_clock::time_point t0) {
  return std::chrono::duration<double>(steady_clock::now() - t0).count();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string Output(const CommandOutput& out) {
  return "exit " + std::to_string(out.exit_code) + "\nstdout:\n" + out.stdout_data + "stderr:\n" + out.stderr_data;
}

// --- specs -----------------------------------------------------------------

// A bridged sandbox of the tests. Every guest with `server` runs busybox
// httpd on port 80 serving "hello-from-NAME\n" (readiness waits for it), and
// with `udp_echo` a UDP echo on port 5353 (tests/e2e/guest_udp_echo.cc). Both
// are respawned by busybox init, so they are back after any reboot.
struct Box {
  std::string name;
  std::string network = "default";
  std::vector<std::string> ports;  // YAML flow maps, e.g. "{host: 18080, guest: 80}"
  bool server = true;
  bool udp_echo = false;
  std::string memory = "160MiB";
};

constexpr uint16_t kUdpEchoPort = 5353;

std::string BoxYaml(const Box& b) {
  SpecOptions o;
  o.memory = b.memory;
  o.restart_policy = "Always";
  o.network = "network:\n    mode: bridged\n    name: " + b.network + "\n";
  if (!b.ports.empty()) {
    o.network += "    ports:\n";
    for (const std::string& p : b.ports) o.network += "      - " + p + "\n";
  }
  if (!b.server) return SpecYaml(b.name, o);
  o.readiness = R"(["sh", "-c", "wget -q -O - http://127.0.0.1/ | grep -q hello-from-)" + b.name + R"("])";
  // The busybox recipe's inittab (images/recipes.h) plus the servers.
  std::string inittab =
      "        " + std::string(images::kBusyboxSysinit) +
      "        ::respawn:/bin/busybox httpd -f -p 80 -h /www\n";
  if (b.udp_echo) inittab += "        ::respawn:/usr/local/bin/udp-echo " + std::to_string(kUdpEchoPort) + "\n";
  inittab +=
      "        ::ctrlaltdel:/sbin/reboot\n"
      "        ::shutdown:/bin/umount -a -r\n";
  o.extra = "  files:\n"
            "    - path: /www/index.html\n"
            "      content: |\n"
            "        hello-from-" + b.name + "\n"
            "    - path: /etc/inittab\n"
            "      content: |\n" + inittab;
  if (b.udp_echo) {
    o.extra += "    - path: /usr/local/bin/udp-echo\n"
               "      source: " GUEST_UDP_ECHO "\n"
               "      mode: \"0755\"\n";
  }
  return SpecYaml(b.name, o);
}

std::string NetworkYaml(const std::string& name, bool isolated) {
  return "apiVersion: banger.dev/v1\n"
         "kind: Network\n"
         "metadata:\n"
         "  name: " + name + "\n"
         "spec:\n"
         "  isolated: " + (isolated ? "true" : "false") + "\n";
}

// --- the shared set-up -------------------------------------------------------

// What a suite shares: the namespace and one banger set-up whose commands run
// in it. Members go in reverse order: `env` first (its guard deletes the
// sandboxes through banger and kills leftover QEMUs), then the namespace.
struct NetworkSuite {
  std::unique_ptr<testing::ScopedNetns> ns;
  BangerEnv env;
  std::vector<std::string> networks;  // YAML documents of kind Network
  std::vector<Box> boxes;
  std::string spec_file;
  std::string error;  // set when the suite could not be set up
};

// Why these tests cannot run here, or "".
std::string SkipReason() {
  if (!fs::exists("/usr/bin/qemu-system-x86_64")) return "qemu-system-x86_64 is not installed";
  return testing::NetnsSkipReason();
}

class NetworkFixture : public ::testing::Test {
 protected:
  // Makes the namespace and the banger set-up of a suite; "" or what failed.
  static std::string MakeSuite(std::unique_ptr<NetworkSuite>& s, int parallel) {
    s = std::make_unique<NetworkSuite>();
    s->ns = std::make_unique<testing::ScopedNetns>("banger-e2e");
    if (!s->ns->created()) return s->ns->error();
    const std::string& ns = s->ns->name();
    s->env.Init("parallel: " + std::to_string(parallel) + "\nnetwork:\n  netns: " + ns + "\n",
                {{"BANGER_NETNS", ns}});
    s->spec_file = (s->env.dir_.path() / "specs" / "net.yaml").string();
    return "";
  }

  // Writes the suite's spec file from its networks and boxes.
  static std::string WriteSpecFile(NetworkSuite& s) {
    std::string all;
    for (const std::string& n : s.networks) all += (all.empty() ? "" : "---\n") + n;
    for (const Box& b : s.boxes) {
      s.env.guard_.Track(b.name);
      all += (all.empty() ? "" : "---\n") + BoxYaml(b);
    }
    return s.env.Write("specs/net.yaml", all);
  }

  // Applies the suite's spec file; "" or the failure with banger's output and
  // the console of every sandbox that is not Ready.
  static std::string ApplySuite(NetworkSuite& s) {
    WriteSpecFile(s);
    CommandOutput out = s.env.Apply(s.spec_file);
    std::string problems;
    if (out.exit_code != 0) problems += "apply failed:\n" + Output(out);
    for (const Box& b : s.boxes) {
      std::string phase = s.env.Phase(b.name);
      if (phase != "Ready") {
        problems += "\n" + b.name + " is " + phase + "; console:\n" + s.env.Logs(b.name);
      }
    }
    return problems;
  }

  static void TearDownSuite(std::unique_ptr<NetworkSuite>& s) { s.reset(); }

  void SetUpWith(NetworkSuite* s) {
    suite_ = s;
    if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->error.empty()) << "the suite's set-up failed:\n" << s->error << "\ncommands:\n"
                                  << s->env.Timeline() << Diagnostics();
    mark_ = s->env.timeline_.size();
  }

  // On failure: the banger commands of this test, then the namespace's links,
  // addresses, nft table and what banger thinks of it all.
  void TearDown() override {
    if (suite_ == nullptr || !HasFailure()) return;
    std::printf("commands of the failed test:\n%s%s", suite_->env.Timeline(mark_).c_str(), Diagnostics().c_str());
  }

  std::string Diagnostics() {
    if (suite_ == nullptr || suite_->ns == nullptr || !suite_->ns->created()) return "";
    std::string out = "\n--- in network namespace " + Ns() + " ---\n";
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"ip", "-br", "addr"}, {"ip", "-d", "link", "show"},
          {"nft", "list", "table", "inet", "banger"}}) {
      CommandOutput r = InNs(argv);
      out += "$ " + Join(argv, " ") + "\n" + r.stdout_data + r.stderr_data;
    }
    CommandOutput nets = env().Banger({"network", "ls"});
    out += "$ banger network ls\n" + nets.stdout_data + nets.stderr_data;
    CommandOutput wide = env().Banger({"get", "-o", "wide"});
    out += "$ banger get -o wide\n" + wide.stdout_data + wide.stderr_data;
    return out;
  }

  BangerEnv& env() { return suite_->env; }
  const std::string& Ns() const { return suite_->ns->name(); }

  // `ip netns exec NS argv...`: a command on the host side of the namespace.
  CommandOutput InNs(const std::vector<std::string>& argv) {
    CommandSpec spec;
    spec.argv = {"ip", "netns", "exec", Ns()};
    spec.argv.insert(spec.argv.end(), argv.begin(), argv.end());
    spec.timeout = seconds(30);
    auto out = env().runner_->Run(spec);
    EXPECT_TRUE(out.ok()) << Join(spec.argv, " ") << ": " << out.error().ToString();
    return out.ok() ? *out : CommandOutput{-1, "", ""};
  }

  std::string Address(const std::string& name) { return env().GetItem(name)["status"].value("address", ""); }
  int Pid(const std::string& name) { return env().GetItem(name)["status"].value("pid", 0); }

  // `wget URL` in guest `from`, killed after `limit` seconds (busybox's own
  // `wget -T` crashes with SIGSEGV in Debian's busybox 1.35); the output.
  CommandOutput GuestGet(const std::string& from, const std::string& url, int limit = 20) {
    return env().Exec(from, {"timeout", std::to_string(limit), "wget", "-q", "-O", "-", url});
  }

  // Expects `wget` of GuestGet to have failed to connect (exit 1) or to have
  // been stopped by `timeout` (143), and not to have got `body`.
  static void ExpectUnreachable(const CommandOutput& out, const std::string& body, const std::string& what) {
    EXPECT_TRUE(out.exit_code == 1 || out.exit_code == 143) << what << " should fail to connect: " << Output(out);
    EXPECT_FALSE(Contains(out.stdout_data, body)) << what << ": " << Output(out);
  }

  // GETs / from ip:port from the host side of the namespace; the body (with
  // the headers), or "" and the reason in *error.
  std::string HostGet(const std::string& ip, uint16_t port, std::string* error) {
    return testing::TcpExchange(Ns(), ip, port, "GET / HTTP/1.0\r\nHost: test\r\n\r\n", seconds(10), error);
  }

  // The links of the namespace as `ip -j -d link show` describes them, by name.
  std::map<std::string, json> Links() {
    std::map<std::string, json> out;
    CommandOutput r = InNs({"ip", "-j", "-d", "link", "show"});
    json j = json::parse(r.stdout_data, nullptr, false);
    if (!j.is_array()) return out;
    for (const json& l : j) out[l.value("ifname", "")] = l;
    return out;
  }

  // Names of the namespace's links that start with `prefix`.
  std::vector<std::string> LinksStartingWith(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& [name, l] : Links()) {
      if (StartsWith(name, prefix)) out.push_back(name);
    }
    return out;
  }

  // The tap of a sandbox: "bt-" and the first 12 hex digits of its id
  // (docs/networking.md).
  std::string TapOf(const std::string& name) {
    std::string id = env().GetItem(name).value("id", "");
    if (StartsWith(id, "sb-")) id = id.substr(3);
    return "bt-" + id.substr(0, 12);
  }

  json NetworkList() {
    CommandOutput out = env().Banger({"network", "ls", "-o", "json"});
    EXPECT_EQ(out.exit_code, 0) << Output(out);
    json j = json::parse(out.stdout_data, nullptr, false);
    EXPECT_TRUE(j.is_array()) << out.stdout_data;
    return j.is_array() ? j : json::array();
  }

  NetworkSuite* suite_ = nullptr;
  size_t mark_ = 0;
};

// ---------------------------------------------------------------------------
// Two sandboxes on the default network (a publishes a tcp and a udp port),
// two on an isolated network. Booted once for the suite.

class BridgedNetworkTest : public NetworkFixture {
 protected:
  static void SetUpTestSuite() {
    if (!SkipReason().empty()) return;
    auto t0 = steady_clock::now();
    if (std::string e = MakeSuite(s_, 4); !e.empty()) {
      s_->error = e;
      return;
    }
    s_->networks = {NetworkYaml("iso", /*isolated=*/true)};
    Box a{.name = "a"};
    a.ports = {"{host: 18080, guest: 80}",
               "{host: 15353, guest: " + std::to_string(kUdpEchoPort) + ", protocol: udp}"};
    a.udp_echo = true;
    s_->boxes = {a, Box{.name = "b"}, Box{.name = "i1", .network = "iso"}, Box{.name = "i2", .network = "iso"}};
    s_->error = ApplySuite(*s_);
    std::printf("[ suite    ] BridgedNetworkTest: 4 sandboxes Ready in %.1f s\n", SecondsSince(t0));
  }
  static void TearDownTestSuite() { TearDownSuite(s_); }
  void SetUp() override { SetUpWith(s_.get()); }

  Box& BoxNamed(const std::string& name) {
    for (Box& b : s_->boxes) {
      if (b.name == name) return b;
    }
    ADD_FAILURE() << "no box " << name;
    return s_->boxes.front();
  }

  static std::unique_ptr<NetworkSuite> s_;
};

std::unique_ptr<NetworkSuite> BridgedNetworkTest::s_;

TEST_F(BridgedNetworkTest, SandboxesOnOneNetworkReachEachOtherByName) {
  std::string a = Address("a"), b = Address("b");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_NE(a, b);

  CommandOutput by_name = GuestGet("b", "http://a/");
  EXPECT_EQ(by_name.exit_code, 0) << Output(by_name);
  EXPECT_EQ(by_name.stdout_data, "hello-from-a\n");
  CommandOutput by_fqdn = GuestGet("b", "http://a.banger/");
  EXPECT_EQ(by_fqdn.exit_code, 0) << Output(by_fqdn);
  EXPECT_EQ(by_fqdn.stdout_data, "hello-from-a\n");
  CommandOutput back = GuestGet("a", "http://b.banger/");
  EXPECT_EQ(back.stdout_data, "hello-from-b\n") << Output(back);

  CommandOutput hosts_b = env().Exec("b", {"cat", "/etc/hosts"});
  EXPECT_TRUE(Contains(hosts_b.stdout_data, a + "\ta a.banger\n")) << hosts_b.stdout_data;
  EXPECT_FALSE(Contains(hosts_b.stdout_data, "i1")) << "another network's sandbox is no peer:\n" << hosts_b.stdout_data;
  CommandOutput hosts_a = env().Exec("a", {"cat", "/etc/hosts"});
  EXPECT_TRUE(Contains(hosts_a.stdout_data, b + "\tb b.banger\n")) << hosts_a.stdout_data;
}

TEST_F(BridgedNetworkTest, PeersOfRunningSandboxesFollowCreateAndDelete) {
  // c is created after a and b are running: banger pushes it into their
  // /etc/hosts.
  s_->boxes.push_back(Box{.name = "c", .server = false, .memory = "128MiB"});
  WriteSpecFile(*s_);
  ASSERT_NO_FATAL_FAILURE(env().ApplyReady(s_->spec_file, "c"));
  std::string c = Address("c");
  ASSERT_FALSE(c.empty());
  for (const char* peer : {"a", "b"}) {
    CommandOutput hosts = env().Exec(peer, {"cat", "/etc/hosts"});
    EXPECT_TRUE(Contains(hosts.stdout_data, c + "\tc c.banger\n")) << peer << "'s /etc/hosts:\n" << hosts.stdout_data;
  }
  CommandOutput from_c = GuestGet("c", "http://a/");
  EXPECT_EQ(from_c.stdout_data, "hello-from-a\n") << Output(from_c);

  // Deleting c takes it out of them again.
  s_->boxes.pop_back();
  WriteSpecFile(*s_);
  CommandOutput del = env().Banger({"delete", "c", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << Output(del);
  CommandOutput hosts = env().Exec("a", {"cat", "/etc/hosts"});
  EXPECT_FALSE(Contains(hosts.stdout_data, "c.banger")) << hosts.stdout_data;
  EXPECT_TRUE(Contains(hosts.stdout_data, "b.banger")) << hosts.stdout_data;
}

TEST_F(BridgedNetworkTest, IsolatedNetworkAndOtherNetworksCannotReachTheSandboxes) {
  std::string a = Address("a"), i1 = Address("i1"), i2 = Address("i2");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(i1.empty());
  ASSERT_FALSE(i2.empty());
  json nets = NetworkList();
  std::string iso_gateway;
  for (const json& n : nets) {
    if (n.value("name", "") == "iso") iso_gateway = n.value("gateway", "");
  }
  ASSERT_FALSE(iso_gateway.empty()) << nets.dump(2);

  // The servers are up and i1's network works: the host side reaches both
  // isolated guests, and i1 reaches its gateway.
  std::string error;
  EXPECT_TRUE(Contains(HostGet(i2, 80, &error), "hello-from-i2")) << error;
  EXPECT_TRUE(Contains(HostGet(i1, 80, &error), "hello-from-i1")) << error;
  CommandOutput ping = env().Exec("i1", {"ping", "-c", "1", "-W", "3", iso_gateway});
  EXPECT_EQ(ping.exit_code, 0) << Output(ping);

  // Isolated: i1 cannot reach i2, and gets no peers in /etc/hosts.
  auto t0 = steady_clock::now();
  ExpectUnreachable(GuestGet("i1", "http://" + i2 + "/", 5), "hello-from-i2", "i1 -> i2 on isolated network iso");
  RecordProperty("isolated_refusal_seconds", std::to_string(SecondsSince(t0)));
  CommandOutput hosts = env().Exec("i1", {"cat", "/etc/hosts"});
  EXPECT_FALSE(Contains(hosts.stdout_data, "i2")) << "no peers on an isolated network:\n" << hosts.stdout_data;

  // Another network: i1 cannot reach a, nor a reach i1 (by address).
  ExpectUnreachable(GuestGet("i1", "http://" + a + "/", 5), "hello-from-a", "i1 (network iso) -> a (network default)");
  ExpectUnreachable(GuestGet("a", "http://" + i1 + "/", 5), "hello-from-i1", "a (network default) -> i1 (network iso)");
  // While a still reaches its own network.
  CommandOutput to_b = GuestGet("a", "http://b/");
  EXPECT_EQ(to_b.stdout_data, "hello-from-b\n") << Output(to_b);
}

TEST_F(BridgedNetworkTest, PublishedTcpAndUdpPortsAnswerFromTheHostSide) {
  std::string error;
  std::string resp = HostGet("127.0.0.1", 18080, &error);
  EXPECT_TRUE(Contains(resp, " 200 ")) << error << "\n" << resp;
  EXPECT_TRUE(Contains(resp, "hello-from-a\n")) << "127.0.0.1:18080/tcp -> a:80: " << error << "\n" << resp;

  // UDP: a datagram to 127.0.0.1:15353 reaches a's echo on 5353 and the
  // answer comes back. Datagrams may be lost; three tries.
  std::string reply;
  for (int i = 0; i < 3 && reply.empty(); ++i) {
    reply = testing::UdpExchange(Ns(), "127.0.0.1", 15353, "ping-" + std::to_string(i), seconds(3), &error);
    if (!reply.empty()) {
      EXPECT_EQ(reply, "echo:ping-" + std::to_string(i));
    }
  }
  EXPECT_FALSE(reply.empty()) << "127.0.0.1:15353/udp -> a:" << kUdpEchoPort << ": " << error;

  // The guests' own addresses are reachable from the host side as well.
  EXPECT_TRUE(Contains(HostGet(Address("b"), 80, &error), "hello-from-b")) << error;
}

TEST_F(BridgedNetworkTest, AddingAPortToARunningSandboxIsAnInPlaceUpdate) {
  int pid = Pid("a");
  ASSERT_GT(pid, 0);
  std::string error;
  EXPECT_TRUE(HostGet("127.0.0.1", 18081, &error).empty()) << "nothing is published on 18081 yet";

  Box& a = BoxNamed("a");
  a.ports.push_back("{host: 18081, guest: 80}");
  WriteSpecFile(*s_);
  CommandOutput plan = env().Banger({"plan", "-f", s_->spec_file, "-o", "json"});
  ASSERT_EQ(plan.exit_code, 0) << Output(plan);
  json p = json::parse(plan.stdout_data, nullptr, false);
  ASSERT_FALSE(p.is_discarded()) << plan.stdout_data;
  std::map<std::string, std::string> actions;
  for (const json& c : p["changes"]) actions[c.value("name", "")] = c.value("action", "");
  EXPECT_EQ(actions["a"], "update") << p.dump(2);
  for (const auto& [name, action] : actions) {
    if (name != "a") {
      EXPECT_EQ(action, "no-op") << name << "\n" << p.dump(2);
    }
  }
  for (const json& n : p["networks"]) EXPECT_EQ(n.value("action", ""), "no-op") << p.dump(2);
  EXPECT_EQ(p["summary"].value("update", -1), 1) << p.dump(2);

  CommandOutput apply = env().Apply(s_->spec_file);
  ASSERT_EQ(apply.exit_code, 0) << Output(apply);
  EXPECT_EQ(env().Phase("a"), "Ready");
  EXPECT_EQ(Pid("a"), pid) << "an added port must not reboot the VM";
  std::string resp = HostGet("127.0.0.1", 18081, &error);
  EXPECT_TRUE(Contains(resp, "hello-from-a\n")) << "127.0.0.1:18081/tcp -> a:80: " << error << "\n" << resp;
  EXPECT_TRUE(Contains(HostGet("127.0.0.1", 18080, &error), "hello-from-a\n")) << "the old port still works";

  // And removing it again: also in place, and the port is gone.
  a.ports.pop_back();
  WriteSpecFile(*s_);
  apply = env().Apply(s_->spec_file);
  ASSERT_EQ(apply.exit_code, 0) << Output(apply);
  EXPECT_EQ(Pid("a"), pid);
  error.clear();
  EXPECT_TRUE(HostGet("127.0.0.1", 18081, &error).empty()) << "18081 is still published";
}

TEST_F(BridgedNetworkTest, RestartKeepsTheAddress) {
  std::string before = Address("b");
  int pid = Pid("b");
  ASSERT_FALSE(before.empty());
  CommandOutput restart = env().Banger({"restart", "b"});
  ASSERT_EQ(restart.exit_code, 0) << Output(restart);
  EXPECT_EQ(env().Phase("b"), "Ready");
  EXPECT_NE(Pid("b"), pid) << "restart runs a new VM";
  EXPECT_EQ(Address("b"), before);
  // Its peers still find it under its name, and it finds them.
  CommandOutput get = GuestGet("a", "http://b/");
  EXPECT_EQ(get.stdout_data, "hello-from-b\n") << Output(get);
  CommandOutput hosts = env().Exec("b", {"cat", "/etc/hosts"});
  EXPECT_TRUE(Contains(hosts.stdout_data, Address("a") + "\ta a.banger\n")) << hosts.stdout_data;
}

TEST_F(BridgedNetworkTest, ReconcileRestoresADeletedTapAndAFlushedTable) {
  std::string tap = TapOf("a");
  std::string address = Address("a");
  int pid = Pid("a");
  auto links = Links();
  ASSERT_TRUE(links.count(tap)) << "no tap " << tap << " for a";
  EXPECT_EQ(links[tap].value("master", ""), "bgr-default");
  std::string rules = InNs({"nft", "list", "table", "inet", "banger"}).stdout_data;
  ASSERT_TRUE(Contains(rules, "dnat ip to " + address + ":80")) << rules;

  CommandOutput del = InNs({"ip", "link", "del", tap});
  ASSERT_EQ(del.exit_code, 0) << Output(del);
  CommandOutput flush = InNs({"nft", "flush", "table", "inet", "banger"});
  ASSERT_EQ(flush.exit_code, 0) << Output(flush);
  std::string error;
  EXPECT_TRUE(HostGet("127.0.0.1", 18080, &error).empty()) << "the port answers with a flushed table";

  auto t0 = steady_clock::now();
  CommandOutput rec = env().Banger({"reconcile"});
  RecordProperty("reconcile_seconds", std::to_string(SecondsSince(t0)));
  EXPECT_EQ(rec.exit_code, 0) << Output(rec);

  links = Links();
  ASSERT_TRUE(links.count(tap)) << "reconcile did not bring tap " << tap << " back\n" << Output(rec);
  EXPECT_EQ(links[tap].value("master", ""), "bgr-default") << links[tap].dump(2);
  rules = InNs({"nft", "list", "table", "inet", "banger"}).stdout_data;
  EXPECT_TRUE(Contains(rules, "tcp dport 18080 dnat ip to " + address + ":80")) << rules;
  EXPECT_TRUE(Contains(rules, "udp dport 15353 dnat ip to " + address + ":" + std::to_string(kUdpEchoPort)))
      << rules;
  EXPECT_TRUE(Contains(rules, "masquerade")) << rules;

  // a lost its NIC with the tap: it was restarted, with the same address.
  EXPECT_EQ(env().Phase("a"), "Ready") << Output(rec);
  EXPECT_NE(Pid("a"), pid);
  EXPECT_EQ(Address("a"), address);
  EXPECT_EQ(env().Qemus().size(), s_->boxes.size()) << "one QEMU per sandbox (the old one of a is gone)";

  // Traffic flows again: between the guests, and through the published port.
  CommandOutput get = GuestGet("b", "http://a/");
  EXPECT_EQ(get.stdout_data, "hello-from-a\n") << Output(get);
  std::string resp = HostGet("127.0.0.1", 18080, &error);
  EXPECT_TRUE(Contains(resp, "hello-from-a\n")) << error << "\n" << resp;

  // And a second pass finds nothing to repair.
  CommandOutput again = env().Banger({"reconcile"});
  EXPECT_EQ(again.exit_code, 0) << Output(again);
  EXPECT_TRUE(Contains(again.stdout_data, "All sandboxes are as they should be")) << Output(again);
}

// ---------------------------------------------------------------------------
// Many sandboxes at once, and what delete leaves behind.

class BridgedNetworkScaleTest : public NetworkFixture {
 protected:
  static void SetUpTestSuite() {
    if (!SkipReason().empty()) return;
    if (std::string e = MakeSuite(s_, 8); !e.empty()) s_->error = e;
  }
  static void TearDownTestSuite() { TearDownSuite(s_); }
  void SetUp() override { SetUpWith(s_.get()); }

  static std::unique_ptr<NetworkSuite> s_;
};

std::unique_ptr<NetworkSuite> BridgedNetworkScaleTest::s_;

TEST_F(BridgedNetworkScaleTest, EightConcurrentCreatesGetEightDistinctAddresses) {
  s_->boxes.clear();
  for (int i = 1; i <= 8; ++i) {
    s_->boxes.push_back(Box{.name = "n" + std::to_string(i), .server = false, .memory = "128MiB"});
  }
  auto t0 = steady_clock::now();
  std::string problems = ApplySuite(*s_);
  double took = SecondsSince(t0);
  RecordProperty("apply_8_seconds", std::to_string(took));
  std::printf("[          ] 8 bridged sandboxes applied at once (parallel 8) in %.1f s\n", took);
  ASSERT_TRUE(problems.empty()) << problems;

  json nets = NetworkList();
  ASSERT_EQ(nets.size(), 1u) << nets.dump(2);
  EXPECT_EQ(nets[0].value("name", ""), "default");
  EXPECT_EQ(nets[0]["leases"].size(), 8u) << nets.dump(2);
  std::string subnet = nets[0].value("subnet", "");
  std::string prefix = subnet.substr(0, subnet.rfind('.') + 1);  // "10.213.0." of a /24
  ASSERT_TRUE(StartsWith(subnet, "10.213.") && subnet.size() > 3 && subnet.substr(subnet.size() - 3) == "/24")
      << subnet;

  std::set<std::string> addresses;
  for (const Box& b : s_->boxes) {
    std::string addr = Address(b.name);
    EXPECT_TRUE(StartsWith(addr, prefix)) << b.name << " has " << addr << ", outside " << subnet;
    EXPECT_NE(addr, nets[0].value("gateway", "")) << b.name;
    addresses.insert(addr);
    // The guest has it on its NIC.
    CommandOutput ip = env().Exec(b.name, {"ip", "-4", "-o", "addr", "show"});
    EXPECT_TRUE(Contains(ip.stdout_data, "inet " + addr + "/24")) << b.name << ":\n" << Output(ip);
  }
  EXPECT_EQ(addresses.size(), 8u) << "addresses handed out twice";
  EXPECT_EQ(LinksStartingWith("bt-").size(), 8u);
  EXPECT_EQ(env().Qemus().size(), 8u);
  // The last one reaches the first by name.
  CommandOutput ping = env().Exec("n8", {"ping", "-c", "1", "-W", "3", "n1"});
  EXPECT_EQ(ping.exit_code, 0) << Output(ping);
}

TEST_F(BridgedNetworkScaleTest, DeleteLeavesNoTapBridgeRuleOrLease) {
  if (s_->boxes.empty()) {
    // Run alone: one sandbox is enough.
    s_->boxes = {Box{.name = "n1", .server = false, .memory = "128MiB"}};
    std::string problems = ApplySuite(*s_);
    ASSERT_TRUE(problems.empty()) << problems;
  }
  ASSERT_FALSE(LinksStartingWith("bt-").empty());
  ASSERT_EQ(LinksStartingWith("bgr-"), std::vector<std::string>{"bgr-default"});
  ASSERT_EQ(InNs({"nft", "list", "table", "inet", "banger"}).exit_code, 0);

  auto t0 = steady_clock::now();
  CommandOutput del = env().Banger({"delete", "-f", s_->spec_file, "--yes"});
  RecordProperty("delete_seconds", std::to_string(SecondsSince(t0)));
  ASSERT_EQ(del.exit_code, 0) << Output(del);
  s_->boxes.clear();

  EXPECT_TRUE(env().GetItems().empty());
  EXPECT_TRUE(env().Qemus().empty()) << "a QEMU survived delete";
  EXPECT_TRUE(LinksStartingWith("bt-").empty()) << "taps left: " << Join(LinksStartingWith("bt-"), " ");
  EXPECT_TRUE(LinksStartingWith("bgr-").empty()) << "bridges left: " << Join(LinksStartingWith("bgr-"), " ");
  CommandOutput tables = InNs({"nft", "list", "tables"});
  EXPECT_EQ(tables.exit_code, 0) << Output(tables);
  EXPECT_FALSE(Contains(tables.stdout_data, "banger")) << tables.stdout_data;
  EXPECT_EQ(NetworkList(), json::array()) << "networks or leases left";
}

}  // namespace
}  // namespace banger
