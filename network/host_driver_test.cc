#include "network/host_driver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>

#include "base/files.h"
#include "base/strings.h"
#include "network/nft.h"
#include "network/nft_test_rules.h"
#include "tests/support/test_util.h"

namespace banger::network {
namespace {

namespace fs = std::filesystem;
using banger::testing::ScopedEnv;
using banger::testing::TempDir;
using Lines = std::vector<std::string>;

// Records every command (argv joined by spaces, and the raw argv) and answers
// from a script keyed by the joined argv; unscripted commands succeed silently.
class ScriptedRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    argvs.push_back(spec.argv);
    runs.push_back(Join(spec.argv, " "));
    stdins.push_back(spec.stdin_data);
    auto it = replies.find(runs.back());
    if (it == replies.end()) return CommandOutput{};
    return it->second;
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec&) override {
    return Internal("the network driver starts no long-lived processes");
  }
  void Reply(const std::string& command, std::string out, int exit_code = 0, std::string err = "") {
    replies[command] = CommandOutput{exit_code, std::move(out), std::move(err)};
  }

  std::map<std::string, CommandOutput> replies;
  std::vector<std::vector<std::string>> argvs;
  Lines runs;
  Lines stdins;
};

struct FakeLink {
  std::string name;
  std::string kind;
  std::string master;
  bool up = true;
  bool isolated = false;
  std::vector<std::pair<std::string, int>> addresses;
};

// A minimal `ip -j -d addr show` listing of `links`.
std::string IpJson(const std::vector<FakeLink>& links) {
  std::string out = "[";
  for (const FakeLink& l : links) {
    if (out.size() > 1) out += ",";
    out += R"({"ifname":")" + l.name + R"(","flags":["BROADCAST","MULTICAST")" + (l.up ? R"(,"UP")" : "") + "]";
    if (!l.master.empty()) out += R"(,"master":")" + l.master + R"(")";
    out += R"(,"linkinfo":{"info_kind":")" + l.kind + R"(")";
    if (!l.master.empty()) {
      out += std::string(R"(,"info_slave_kind":"bridge","info_slave_data":{"isolated":)") +
             (l.isolated ? "true" : "false") + "}";
    }
    out += R"(},"addr_info":[)";
    for (size_t i = 0; i < l.addresses.size(); ++i) {
      out += (i ? "," : "") + std::string(R"({"family":"inet","local":")") + l.addresses[i].first +
             R"(","prefixlen":)" + std::to_string(l.addresses[i].second) + "}";
    }
    out += "]}";
  }
  return out + "]";
}

BridgeConfig Bridge(bool nat = true) {
  return {"default", "bgr-a", "10.213.0.0/24", "10.213.0.1", 24, nat, false};
}

FakeLink ReadyBridge() { return {"bgr-a", "bridge", "", true, false, {{"10.213.0.1", 24}}}; }

const char* kObserve = "ip -n ns1 -j -d addr show";
const char* kReadSysctls =
    "ip netns exec ns1 sysctl -n net.ipv4.conf.bgr-a.forwarding net.ipv4.conf.bgr-a.route_localnet "
    "net.ipv4.ip_forward";

class HostDriverTest : public ::testing::Test {
 protected:
  std::unique_ptr<NetworkDriver> Driver(std::string netns = "ns1") {
    return MakeHostNetworkDriver(runner_, std::move(netns), options_);
  }
  ScriptedRunner runner_;
  HostDriverOptions options_;
};

TEST_F(HostDriverTest, EnsureBridgeInNamespaceCreatesWhatIsMissing) {
  // Given an empty namespace, EnsureBridge creates, addresses and raises the
  // bridge and turns on the sysctls, every command aimed at ns1.
  runner_.Reply(kObserve, "[]");
  runner_.Reply(kReadSysctls, "0\n0\n0\n");
  ASSERT_TRUE(Driver()->EnsureBridge(Bridge()).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, "ip -n ns1 link add bgr-a type bridge",
                                 "ip -n ns1 addr add 10.213.0.1/24 dev bgr-a", "ip -n ns1 link set dev bgr-a up",
                                 kReadSysctls,
                                 "ip netns exec ns1 sysctl -q -w net.ipv4.conf.bgr-a.forwarding=1 "
                                 "net.ipv4.conf.bgr-a.route_localnet=1 net.ipv4.ip_forward=1"}));
  EXPECT_EQ(runner_.argvs[1], (Lines{"ip", "-n", "ns1", "link", "add", "bgr-a", "type", "bridge"}));
  EXPECT_EQ(runner_.argvs[4][4], "sysctl") << "one argv element per word, no shell";
}

TEST_F(HostDriverTest, HostNamespaceRunsProgramsDirectly) {
  runner_.Reply("ip -j -d addr show", "[]");
  runner_.Reply("sysctl -n net.ipv4.conf.bgr-a.forwarding net.ipv4.conf.bgr-a.route_localnet net.ipv4.ip_forward",
                "1\n1\n1\n");
  ASSERT_TRUE(Driver("")->EnsureBridge(Bridge()).ok());
  EXPECT_EQ(runner_.runs,
            (Lines{"ip -j -d addr show", "ip link add bgr-a type bridge", "ip addr add 10.213.0.1/24 dev bgr-a",
                   "ip link set dev bgr-a up",
                   "sysctl -n net.ipv4.conf.bgr-a.forwarding net.ipv4.conf.bgr-a.route_localnet "
                   "net.ipv4.ip_forward"}));
}

TEST_F(HostDriverTest, EnsureBridgeDoesNothingWhenObservationMatches) {
  runner_.Reply(kObserve, IpJson({ReadyBridge()}));
  runner_.Reply(kReadSysctls, "1\n1\n1\n");
  ASSERT_TRUE(Driver()->EnsureBridge(Bridge()).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, kReadSysctls}));
}

TEST_F(HostDriverTest, EnsureBridgeRepairsOnlyWhatDrifted) {
  // Someone took the bridge down and its address away; ip_forward is off.
  FakeLink down = ReadyBridge();
  down.up = false;
  down.addresses = {{"192.168.9.1", 24}};
  runner_.Reply(kObserve, IpJson({down}));
  runner_.Reply(kReadSysctls, "1\n1\n0\n");
  ASSERT_TRUE(Driver()->EnsureBridge(Bridge()).ok());
  EXPECT_EQ(runner_.runs,
            (Lines{kObserve, "ip -n ns1 addr add 10.213.0.1/24 dev bgr-a", "ip -n ns1 link set dev bgr-a up",
                   kReadSysctls, "ip netns exec ns1 sysctl -q -w net.ipv4.ip_forward=1"}));
}

TEST_F(HostDriverTest, EnsureBridgeBringsUpLoopbackForLoopbackPorts) {
  // A fresh `ip netns add` namespace has lo down.
  runner_.Reply(kObserve, IpJson({{"lo", "", "", false, false, {}}, ReadyBridge()}));
  runner_.Reply(kReadSysctls, "1\n1\n1\n");
  ASSERT_TRUE(Driver()->EnsureBridge(Bridge()).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, "ip -n ns1 link set dev lo up", kReadSysctls}));
}

TEST_F(HostDriverTest, EnsureBridgeWithoutNatLeavesIpForwardAlone) {
  runner_.Reply(kObserve, IpJson({ReadyBridge()}));
  ASSERT_TRUE(Driver()->EnsureBridge(Bridge(/*nat=*/false)).ok());
  ASSERT_EQ(runner_.runs.size(), 3u);
  EXPECT_EQ(runner_.runs[1],
            "ip netns exec ns1 sysctl -n net.ipv4.conf.bgr-a.forwarding net.ipv4.conf.bgr-a.route_localnet");
}

TEST_F(HostDriverTest, EnsureBridgeErrorNamesTheBridgeAndTheCommand) {
  runner_.Reply(kObserve, "[]");
  runner_.Reply("ip -n ns1 link add bgr-a type bridge", "", 2, "RTNETLINK answers: Operation not permitted\n");
  Status s = Driver()->EnsureBridge(Bridge());
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("bridge bgr-a of network default"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("`ip -n ns1 link add bgr-a type bridge` exited with status 2: RTNETLINK answers: "
                             "Operation not permitted"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(runner_.runs.size(), 2u) << "stops at the first failure";
}

TEST_F(HostDriverTest, EnsureBridgeLeavesAnInterfaceOfAnotherKindAlone) {
  runner_.Reply(kObserve, IpJson({{"bgr-a", "veth", "", true, false, {}}}));
  Status s = Driver()->EnsureBridge(Bridge());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("interface bgr-a in network namespace ns1 exists but is a veth"), std::string::npos)
      << s.message();
  EXPECT_EQ(runner_.runs, Lines{kObserve});
}

TEST_F(HostDriverTest, EnsureBridgeRejectsAGatewayOutsideItsSubnet) {
  BridgeConfig b = Bridge();
  b.gateway = "10.9.0.1";
  Status s = Driver()->EnsureBridge(b);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("10.9.0.1/24 is not an address of subnet 10.213.0.0/24"), std::string::npos)
      << s.message();
  EXPECT_TRUE(runner_.runs.empty());
}

TEST_F(HostDriverTest, EnsureTapCreatesEnslavesIsolatesAndRaises) {
  runner_.Reply(kObserve, IpJson({ReadyBridge()}));
  ASSERT_TRUE(Driver()->EnsureTap({"bgt-1", "bgr-a", /*isolated=*/true}).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, "ip -n ns1 tuntap add dev bgt-1 mode tap",
                                 "ip -n ns1 link set dev bgt-1 master bgr-a",
                                 "ip -n ns1 link set dev bgt-1 type bridge_slave isolated on",
                                 "ip -n ns1 link set dev bgt-1 up"}));
}

TEST_F(HostDriverTest, EnsureTapDoesNothingWhenObservationMatches) {
  runner_.Reply(kObserve, IpJson({ReadyBridge(), {"bgt-1", "tun", "bgr-a", true, true, {}}}));
  ASSERT_TRUE(Driver()->EnsureTap({"bgt-1", "bgr-a", true}).ok());
  EXPECT_EQ(runner_.runs, Lines{kObserve});
}

TEST_F(HostDriverTest, EnsureTapRepairsALostMasterAndItsIsolation) {
  // The bridge was deleted and recreated: the tap is up but has no master,
  // and enslaving it again resets its isolation flag.
  runner_.Reply(kObserve, IpJson({ReadyBridge(), {"bgt-1", "tun", "", true, false, {}}}));
  ASSERT_TRUE(Driver()->EnsureTap({"bgt-1", "bgr-a", true}).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, "ip -n ns1 link set dev bgt-1 master bgr-a",
                                 "ip -n ns1 link set dev bgt-1 type bridge_slave isolated on"}));
}

TEST_F(HostDriverTest, EnsureTapTurnsIsolationOff) {
  runner_.Reply(kObserve, IpJson({ReadyBridge(), {"bgt-1", "tun", "bgr-a", true, true, {}}}));
  ASSERT_TRUE(Driver()->EnsureTap({"bgt-1", "bgr-a", false}).ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, "ip -n ns1 link set dev bgt-1 type bridge_slave isolated off"}));
}

TEST_F(HostDriverTest, EnsureTapRemovesTheTapItCreatedWhenSetupFails) {
  runner_.Reply(kObserve, IpJson({ReadyBridge()}));
  runner_.Reply("ip -n ns1 link set dev bgt-1 master bgr-a", "", 2, "Error: Device does not allow enslaving");
  Status s = Driver()->EnsureTap({"bgt-1", "bgr-a", false});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("tap bgt-1 on bridge bgr-a: `ip -n ns1 link set dev bgt-1 master bgr-a`"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(runner_.runs.back(), "ip -n ns1 link del dev bgt-1");
}

TEST_F(HostDriverTest, EnsureTapKeepsATapItDidNotCreate) {
  runner_.Reply(kObserve, IpJson({ReadyBridge(), {"bgt-1", "tun", "", false, false, {}}}));
  runner_.Reply("ip -n ns1 link set dev bgt-1 master bgr-a", "", 2, "Error: busy");
  EXPECT_FALSE(Driver()->EnsureTap({"bgt-1", "bgr-a", false}).ok());
  EXPECT_EQ(runner_.runs.back(), "ip -n ns1 link set dev bgt-1 master bgr-a");
}

TEST_F(HostDriverTest, EnsureTapNeedsItsBridge) {
  runner_.Reply(kObserve, "[]");
  Status s = Driver()->EnsureTap({"bgt-1", "bgr-a", false});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("bridge bgr-a does not exist"), std::string::npos) << s.message();
  EXPECT_EQ(runner_.runs, Lines{kObserve});
}

TEST_F(HostDriverTest, DeletesAreIdempotentAndCheckTheKind) {
  runner_.Reply(kObserve, "[]");
  EXPECT_TRUE(Driver()->DeleteTap("bgt-1").ok());
  EXPECT_TRUE(Driver()->DeleteBridge("bgr-a").ok());
  EXPECT_EQ(runner_.runs, (Lines{kObserve, kObserve}));

  runner_.runs.clear();
  runner_.Reply(kObserve, IpJson({ReadyBridge(), {"bgt-1", "tun", "bgr-a", true, false, {}}}));
  EXPECT_TRUE(Driver()->DeleteTap("bgt-1").ok());
  EXPECT_TRUE(Driver()->DeleteBridge("bgr-a").ok());
  EXPECT_EQ(runner_.runs,
            (Lines{kObserve, "ip -n ns1 link del dev bgt-1", kObserve, "ip -n ns1 link del dev bgr-a"}));

  Status wrong = Driver()->DeleteBridge("bgt-1");
  EXPECT_EQ(wrong.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong.message().find("deleting bridge bgt-1: interface bgt-1"), std::string::npos) << wrong.message();
}

TEST_F(HostDriverTest, ApplyRulesLoadsTheWholeTableOnStdinInOneRun) {
  runner_.Reply("ip netns exec ns1 sysctl -n net.ipv4.ip_forward", "1\n");
  ASSERT_TRUE(Driver()->ApplyRules(TypicalRules()).ok());
  EXPECT_EQ(runner_.runs, (Lines{"ip netns exec ns1 nft -f -", "ip netns exec ns1 sysctl -n net.ipv4.ip_forward"}));
  EXPECT_EQ(runner_.stdins[0], RenderNftTable(TypicalRules()));
}

TEST_F(HostDriverTest, PortsPublishedBeyondLoopbackNeedIpForward) {
  // Even when no network masquerades: outside clients are forwarded in.
  runner_.Reply("ip netns exec ns1 sysctl -n net.ipv4.ip_forward", "0\n");
  ASSERT_TRUE(Driver()->ApplyRules(TypicalRules()).ok());
  EXPECT_EQ(runner_.runs.back(), "ip netns exec ns1 sysctl -q -w net.ipv4.ip_forward=1");

  runner_.runs.clear();
  NetworkRules loopback_only = TypicalRules();
  loopback_only.ports = {loopback_only.ports[2], loopback_only.ports[3]};
  ASSERT_TRUE(Driver()->ApplyRules(loopback_only).ok());
  EXPECT_EQ(runner_.runs, Lines{"ip netns exec ns1 nft -f -"});
}

TEST_F(HostDriverTest, ApplyRulesRejectsInvalidRulesBeforeRunningAnything) {
  NetworkRules rules = TypicalRules();
  rules.ports[0].protocol = "icmp";
  EXPECT_EQ(Driver()->ApplyRules(rules).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(runner_.runs.empty());
}

TEST_F(HostDriverTest, ApplyRulesErrorQuotesNft) {
  runner_.Reply("ip netns exec ns1 nft -f -", "", 1, "/dev/stdin:9:5-10: Error: syntax error");
  Status s = Driver()->ApplyRules(TypicalRules());
  EXPECT_NE(s.message().find("loading nft table inet banger: `ip netns exec ns1 nft -f -` exited with status 1: "
                             "/dev/stdin:9:5-10: Error: syntax error"),
            std::string::npos)
      << s.message();
}

const char* kListTable = "ip netns exec ns1 nft -j list table inet banger";
const char* kListTables = "ip netns exec ns1 nft -j list tables";

TEST_F(HostDriverTest, RulesCurrentComparesTheLiveTable) {
  auto live = ReadFile(fs::path(BANGER_SOURCE_DIR) / "network/testdata/nft_typical.json");
  ASSERT_TRUE(live.ok());
  runner_.Reply(kListTable, *live);
  auto current = Driver()->RulesCurrent(TypicalRules());
  ASSERT_TRUE(current.ok()) << current.error().ToString();
  EXPECT_TRUE(*current);
  NetworkRules fewer = TypicalRules();
  fewer.ports.pop_back();
  EXPECT_FALSE(*Driver()->RulesCurrent(fewer));
  EXPECT_FALSE(*Driver()->RulesCurrent(NetworkRules{})) << "a table exists but none is wanted";
}

TEST_F(HostDriverTest, RulesCurrentTellsAMissingTableFromAFailure) {
  runner_.Reply(kListTable, "", 1, "Error: No such file or directory");
  runner_.Reply(kListTables, R"({"nftables": [{"table": {"family": "ip", "name": "nat", "handle": 1}}]})");
  EXPECT_FALSE(*Driver()->RulesCurrent(TypicalRules()));
  EXPECT_TRUE(*Driver()->RulesCurrent(NetworkRules{})) << "no table is what empty rules want";

  runner_.Reply(kListTables, R"({"nftables": [{"table": {"family": "inet", "name": "banger", "handle": 1}}]})");
  auto failed = Driver()->RulesCurrent(TypicalRules());
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message().find(kListTable), std::string::npos) << failed.error().message();
}

TEST_F(HostDriverTest, ObservationsRunInTheNamespace) {
  runner_.Reply(kObserve, IpJson({ReadyBridge()}));
  runner_.Reply("ip -n ns1 -j -4 route show table all", R"([{"dst":"default"},{"dst":"10.213.0.0/24"}])");
  auto links = Driver()->ObserveLinks();
  ASSERT_TRUE(links.ok());
  EXPECT_EQ(links->at("bgr-a").addresses, Lines{"10.213.0.1/24"});
  auto routes = Driver()->RoutedPrefixes();
  ASSERT_TRUE(routes.ok());
  EXPECT_EQ(*routes, Lines{"10.213.0.0/24"});
  EXPECT_EQ(Driver()->Namespace(), "ns1");
}

TEST_F(HostDriverTest, GuestResolversPreferTheNamespacesResolvConf) {
  TempDir etc;
  options_.etc_dir = etc.path();
  ASSERT_TRUE(WriteFileAtomic(etc.path() / "resolv.conf", "nameserver 127.0.0.53\nnameserver 192.0.2.1\n").ok());
  EXPECT_EQ(Driver()->GuestResolvers(), Lines{"192.0.2.1"});
  ASSERT_TRUE(MakeDirs(etc.path() / "netns/ns1").ok());
  ASSERT_TRUE(WriteFileAtomic(etc.path() / "netns/ns1/resolv.conf", "nameserver 198.51.100.1\n").ok());
  EXPECT_EQ(Driver()->GuestResolvers(), Lines{"198.51.100.1"});
  EXPECT_EQ(Driver("")->GuestResolvers(), Lines{"192.0.2.1"});
  options_.etc_dir = etc.path() / "missing";
  EXPECT_TRUE(Driver()->GuestResolvers().empty());
}

TEST_F(HostDriverTest, GuestResolversLookPastALoopbackStubToItsUpstreams) {
  TempDir etc;
  options_.etc_dir = etc.path();
  options_.systemd_resolv_conf = etc.path() / "upstream.conf";
  ASSERT_TRUE(WriteFileAtomic(etc.path() / "resolv.conf", "nameserver 127.0.0.53\noptions edns0\n").ok());
  EXPECT_TRUE(Driver("")->GuestResolvers().empty());  // no upstream file yet
  ASSERT_TRUE(WriteFileAtomic(options_.systemd_resolv_conf, "nameserver 192.0.2.7\nnameserver ::1\n").ok());
  EXPECT_EQ(Driver("")->GuestResolvers(), Lines{"192.0.2.7"});
}


class CheckAvailableTest : public HostDriverTest {
 protected:
  void SetUp() override {
    options_.proc_status = dir_.path() / "status";
    options_.tun_device = dir_.path() / "tun";
    options_.netns_dir = dir_.path() / "netns";
    ASSERT_TRUE(MakeDirs(options_.netns_dir).ok());
    ASSERT_TRUE(MakeDirs(dir_.path() / "bin").ok());
    ASSERT_TRUE(WriteFileAtomic(options_.proc_status, "Name:\tbanger\nCapEff:\t000001ffffffffff\n").ok());
    ASSERT_TRUE(WriteFileAtomic(options_.tun_device, "").ok());
    ASSERT_TRUE(WriteFileAtomic(options_.netns_dir / "ns1", "").ok());
    // Fake ip, nft and sysctl: CheckAvailable only looks them up on PATH.
    for (const char* program : {"ip", "nft", "sysctl"}) {
      ASSERT_TRUE(WriteFileAtomic(dir_.path() / "bin" / program, "", 0755).ok());
    }
  }
  Status Check(const std::string& netns = "ns1") {
    ScopedEnv path("PATH", (dir_.path() / "bin").string());
    return Driver(netns)->CheckAvailable();
  }
  TempDir dir_;
};

TEST_F(CheckAvailableTest, PassesWhenEverythingIsThere) {
  EXPECT_TRUE(Check().ok()) << Check().ToString();
  EXPECT_TRUE(Check("").ok());
  EXPECT_TRUE(runner_.runs.empty()) << "CheckAvailable only looks";
}

TEST_F(CheckAvailableTest, SaysWhatToDo) {
  ASSERT_TRUE(WriteFileAtomic(options_.proc_status, "CapEff:\t0000000000000000\n").ok());
  Status s = Check();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("CAP_NET_ADMIN"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("root"), std::string::npos) << s.message();
  ASSERT_TRUE(WriteFileAtomic(options_.proc_status, "CapEff:\t0000000000001000\n").ok());

  ASSERT_TRUE(RemoveAll(dir_.path() / "bin" / "nft").ok());
  s = Check();
  if (FindProgram("nft")) {
    // Programs are also looked for in /usr/sbin and /sbin (an ordinary user's
    // PATH lacks them), where this host has the real nft: found, not missing.
    EXPECT_TRUE(s.ok()) << s.ToString();
  } else {
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(s.message().find("`nft`"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("scripts/setup.sh installs iproute2, nftables"), std::string::npos) << s.message();
  }
  ASSERT_TRUE(WriteFileAtomic(dir_.path() / "bin" / "nft", "", 0755).ok());

  ASSERT_TRUE(RemoveAll(options_.tun_device).ok());
  s = Check();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find(options_.tun_device.string() + " is missing"), std::string::npos) << s.message();
  ASSERT_TRUE(WriteFileAtomic(options_.tun_device, "").ok());

  s = Check("ns2");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("network namespace ns2 does not exist"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("ip netns add ns2"), std::string::npos) << s.message();
  EXPECT_EQ(Check("../x").code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace banger::network
