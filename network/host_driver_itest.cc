// The host network driver against the real kernel: bridges, taps, sysctls
// and nft tables, each test inside private network namespaces it creates and
// deletes (with everything in them), never the host's own network.
#include "network/host_driver.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "base/files.h"
#include "base/strings.h"
#include "network/nft_test_rules.h"
#include "tests/support/netns.h"

namespace banger::network {
namespace {

using std::chrono::milliseconds;
using Lines = std::vector<std::string>;

// Passes every command to the real runner and records it; a command whose
// text holds `fail_containing` fails instead of running (fault injection).
class RecordingRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    runs.push_back(Join(spec.argv, " "));
    if (!fail_containing.empty() && runs.back().find(fail_containing) != std::string::npos) {
      return CommandOutput{2, "", "injected failure"};
    }
    return real_->Run(spec);
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override { return real_->StartDetached(spec); }
  Lines runs;
  std::string fail_containing;

 private:
  std::unique_ptr<CommandRunner> real_ = MakePosixCommandRunner();
};

using testing::MustRun;

using testing::AcceptPeer;
using testing::Address;
using testing::AddressText;
using testing::ConnectFrom;
using testing::Fd;
using testing::Listener;
using testing::Readable;
using testing::ReadSome;
using testing::ScopedNetns;
using testing::SocketIn;

// --- fixture -----------------------------------------------------------------

BridgeConfig DefaultBridge(bool nat = true) {
  return {"default", "bgr-default", "10.213.0.0/24", "10.213.0.1", 24, nat, false};
}

class HostDriverIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = testing::NetnsSkipReason(); !why.empty()) GTEST_SKIP() << why;
    ns_ = std::make_unique<ScopedNetns>("banger-it");
    ASSERT_TRUE(ns_->created()) << ns_->error();
    driver_ = MakeHostNetworkDriver(runner_, ns_->name());
    Status available = driver_->CheckAvailable();
    ASSERT_TRUE(available.ok()) << available.ToString();
  }

  std::string Ip(Lines args) {
    Lines argv = {"ip", "-n", ns_->name()};
    argv.insert(argv.end(), args.begin(), args.end());
    return MustRun(runner_, argv);
  }
  std::string InNs(Lines args) {
    Lines argv = {"ip", "netns", "exec", ns_->name()};
    argv.insert(argv.end(), args.begin(), args.end());
    return MustRun(runner_, argv);
  }
  LinkObservation Link(const std::string& name) {
    auto links = driver_->ObserveLinks();
    EXPECT_TRUE(links.ok()) << links.error().ToString();
    if (!links.ok() || !links->count(name)) return {};
    return links->at(name);
  }
  bool RulesCurrent(const NetworkRules& rules) {
    auto current = driver_->RulesCurrent(rules);
    EXPECT_TRUE(current.ok()) << current.error().ToString();
    return current.value_or(false);
  }

  RecordingRunner runner_;
  std::unique_ptr<ScopedNetns> ns_;
  std::unique_ptr<NetworkDriver> driver_;
};

TEST_F(HostDriverIntegrationTest, EnsureBridgeCreatesAnAddressedBridgeAndIsIdempotent) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  LinkObservation bridge = Link("bgr-default");
  EXPECT_EQ(bridge.kind, "bridge");
  EXPECT_TRUE(bridge.up);
  EXPECT_EQ(bridge.addresses, Lines{"10.213.0.1/24"});
  EXPECT_TRUE(Link("lo").up);
  EXPECT_EQ(InNs({"sysctl", "-n", "net.ipv4.conf.bgr-default.forwarding", "net.ipv4.conf.bgr-default.route_localnet",
                  "net.ipv4.ip_forward"}),
            "1\n1\n1\n");

  // A second call only looks: one listing, one sysctl read.
  runner_.runs.clear();
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  ASSERT_EQ(runner_.runs.size(), 2u) << Join(runner_.runs, "\n");
  EXPECT_TRUE(StartsWith(runner_.runs[0], "ip -n " + ns_->name() + " -j -d addr show"));
}

TEST_F(HostDriverIntegrationTest, EnsureTapEnslavesAndIsRepairedAfterTheBridgeIsRecreated) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  TapConfig tap{"bgt-it1", "bgr-default", /*isolated=*/true};
  ASSERT_TRUE(driver_->EnsureTap(tap).ok());
  LinkObservation t = Link("bgt-it1");
  EXPECT_EQ(t.kind, "tun");
  EXPECT_EQ(t.master, "bgr-default");
  EXPECT_TRUE(t.up);
  EXPECT_TRUE(t.isolated);

  // Deleting the bridge frees the tap; recreating both puts it back.
  Ip({"link", "del", "bgr-default"});
  EXPECT_EQ(Link("bgt-it1").master, "");
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  ASSERT_TRUE(driver_->EnsureTap(tap).ok());
  t = Link("bgt-it1");
  EXPECT_EQ(t.master, "bgr-default");
  EXPECT_TRUE(t.isolated);
  EXPECT_NE(Ip({"-d", "link", "show", "dev", "bgt-it1"}).find("isolated on"), std::string::npos);

  tap.isolated = false;
  ASSERT_TRUE(driver_->EnsureTap(tap).ok());
  EXPECT_FALSE(Link("bgt-it1").isolated);
}

TEST_F(HostDriverIntegrationTest, EnsureTapFailingHalfwayRemovesTheTapItMade) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  runner_.fail_containing = " master ";  // the tap is made, enslaving it fails
  Status s = driver_->EnsureTap({"bgt-it2", "bgr-default", false});
  EXPECT_NE(s.message().find("injected failure"), std::string::npos) << s.ToString();
  EXPECT_EQ(Ip({"link"}).find("bgt-it2"), std::string::npos) << "the half-made tap is gone";
  runner_.fail_containing.clear();
  EXPECT_TRUE(driver_->EnsureTap({"bgt-it2", "bgr-default", false}).ok());
}

TEST_F(HostDriverIntegrationTest, EnsureTapLeavesAnInterfaceOfAnotherKindAlone) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  // (No dummy module on every kernel; a veth will do.)
  Ip({"link", "add", "bgt-it2", "type", "veth", "peer", "name", "bgt-it2p"});
  ASSERT_EQ(Link("bgt-it2").kind, "veth");
  Status s = driver_->EnsureTap({"bgt-it2", "bgr-default", false});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(Link("bgt-it2").master, "");
  EXPECT_EQ(driver_->DeleteTap("bgt-it2").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Link("bgt-it2").kind, "veth");
}

TEST_F(HostDriverIntegrationTest, ApplyRulesReplacesTheTableAndRulesCurrentSeesDrift) {
  // Someone else's table must survive every apply.
  InNs({"nft", "add", "table", "ip", "other"});
  InNs({"nft", "add", "chain", "ip", "other", "input", "{ type filter hook input priority 0; }"});

  ASSERT_TRUE(driver_->ApplyRules(TypicalRules()).ok());
  std::string listing = InNs({"nft", "list", "table", "inet", "banger"});
  EXPECT_NE(listing.find("comment \"managed by banger; regenerated on every apply\""), std::string::npos) << listing;
  EXPECT_NE(listing.find("ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.213.0.2:80 comment \"port web "
                         "127.0.0.1:8080/tcp to 10.213.0.2:80\""),
            std::string::npos)
      << listing;
  EXPECT_TRUE(RulesCurrent(TypicalRules()));

  // A flushed table keeps its chains and comment but loses its rules.
  InNs({"nft", "flush", "table", "inet", "banger"});
  EXPECT_NE(InNs({"nft", "list", "table", "inet", "banger"}).find("managed by banger"), std::string::npos);
  EXPECT_FALSE(RulesCurrent(TypicalRules()));
  ASSERT_TRUE(driver_->ApplyRules(TypicalRules()).ok());
  EXPECT_TRUE(RulesCurrent(TypicalRules()));

  // Applying again swaps the table in one transaction; still current.
  ASSERT_TRUE(driver_->ApplyRules(TypicalRules()).ok());
  EXPECT_TRUE(RulesCurrent(TypicalRules()));

  NetworkRules changed = TypicalRules();
  changed.ports[2].guest_port = 8081;
  EXPECT_FALSE(RulesCurrent(changed));

  InNs({"nft", "delete", "table", "inet", "banger"});
  EXPECT_FALSE(RulesCurrent(TypicalRules()));
  EXPECT_NE(InNs({"nft", "list", "tables"}).find("table ip other"), std::string::npos);
}

TEST_F(HostDriverIntegrationTest, ApplyRulesWithNoRulesRemovesTheTable) {
  ASSERT_TRUE(driver_->ApplyRules(TypicalRules()).ok());
  ASSERT_TRUE(driver_->ApplyRules(NetworkRules{}).ok());
  EXPECT_EQ(InNs({"nft", "list", "tables"}).find("banger"), std::string::npos);
  EXPECT_TRUE(RulesCurrent(NetworkRules{}));
  EXPECT_TRUE(driver_->ApplyRules(NetworkRules{}).ok()) << "no table is fine";
}

TEST_F(HostDriverIntegrationTest, DeleteTapAndDeleteBridgeLeaveNothing) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  ASSERT_TRUE(driver_->EnsureTap({"bgt-it3", "bgr-default", false}).ok());
  ASSERT_TRUE(driver_->DeleteTap("bgt-it3").ok());
  ASSERT_TRUE(driver_->DeleteBridge("bgr-default").ok());
  std::string links = Ip({"link"});
  EXPECT_EQ(links.find("bgt-it3"), std::string::npos) << links;
  EXPECT_EQ(links.find("bgr-default"), std::string::npos) << links;
  EXPECT_TRUE(driver_->DeleteTap("bgt-it3").ok());
  EXPECT_TRUE(driver_->DeleteBridge("bgr-default").ok());
}

TEST_F(HostDriverIntegrationTest, RoutedPrefixesSeesRoutesOfTheNamespace) {
  ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
  Ip({"route", "add", "198.51.100.0/24", "dev", "bgr-default"});
  Ip({"route", "add", "203.0.113.9", "dev", "bgr-default"});
  Ip({"route", "add", "default", "via", "10.213.0.254"});
  auto prefixes = driver_->RoutedPrefixes();
  ASSERT_TRUE(prefixes.ok()) << prefixes.error().ToString();
  EXPECT_EQ(*prefixes, (Lines{"10.213.0.0/24", "198.51.100.0/24", "203.0.113.9/32"}));
}

// A "guest" namespace on the bridge (a veth stands in for the tap QEMU would
// use) and an "outside" namespace on an uplink, to pass real traffic through
// the published ports, the masquerade and the forward rules.
class TrafficTest : public HostDriverIntegrationTest {
 protected:
  void SetUp() override {
    HostDriverIntegrationTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    guest_ = std::make_unique<ScopedNetns>("banger-it");
    outside_ = std::make_unique<ScopedNetns>("banger-it");
    ASSERT_TRUE(guest_->created() && outside_->created());
    ASSERT_TRUE(driver_->EnsureBridge(DefaultBridge()).ok());
    Ip({"link", "add", "bgv-guest", "type", "veth", "peer", "name", "eth0", "netns", guest_->name()});
    Ip({"link", "set", "dev", "bgv-guest", "master", "bgr-default", "up"});
    Peer(*guest_, {"addr", "add", "10.213.0.2/24", "dev", "eth0"});
    Peer(*guest_, {"link", "set", "dev", "eth0", "up"});
    Peer(*guest_, {"route", "add", "default", "via", "10.213.0.1"});
    Ip({"link", "add", "bgv-uplink", "type", "veth", "peer", "name", "eth0", "netns", outside_->name()});
    Ip({"addr", "add", "192.0.2.1/24", "dev", "bgv-uplink"});
    Ip({"link", "set", "dev", "bgv-uplink", "up"});
    Peer(*outside_, {"addr", "add", "192.0.2.2/24", "dev", "eth0"});
    Peer(*outside_, {"link", "set", "dev", "eth0", "up"});
  }
  void Peer(const ScopedNetns& ns, Lines args) {
    Lines argv = {"ip", "-n", ns.name()};
    argv.insert(argv.end(), args.begin(), args.end());
    (void)MustRun(runner_, argv);
  }
  NetworkRules Published(bool nat) {
    NetworkRules rules;
    rules.bridges = {DefaultBridge(nat)};
    rules.ports = {{"web", "tcp", "0.0.0.0", 18443, "10.213.0.2", 443, "bgr-default"},
                   {"web", "tcp", "127.0.0.1", 18080, "10.213.0.2", 80, "bgr-default"},
                   {"web", "udp", "127.0.0.1", 15353, "10.213.0.2", 53, "bgr-default"}};
    return rules;
  }
  // Connects from `from` to ip:port and returns the peer address the guest's
  // listener on guest_port saw, after a byte went back to the client.
  std::string TcpThroughTo(const std::string& from, const std::string& ip, uint16_t port, uint16_t guest_port) {
    Fd listener = Listener(guest_->name(), "10.213.0.2", guest_port);
    std::string error;
    Fd client = ConnectFrom(from, ip, port, milliseconds(3000), &error);
    if (client.fd < 0) return "(connect: " + error + ")";
    Fd conn;
    std::string peer = AcceptPeer(listener.fd, &conn);
    if (conn.fd >= 0) {
      EXPECT_EQ(::send(conn.fd, "hi", 2, MSG_NOSIGNAL), 2);
      EXPECT_EQ(ReadSome(client.fd), "hi");
    }
    return peer;
  }

  std::unique_ptr<ScopedNetns> guest_;
  std::unique_ptr<ScopedNetns> outside_;
};

TEST_F(TrafficTest, LoopbackPublishedTcpPortReachesTheGuestFromTheBridgeAddress) {
  ASSERT_TRUE(driver_->ApplyRules(Published(true)).ok());
  // route_localnet lets the DNATed 127.0.0.1 packet leave through the
  // bridge; the masquerade makes the guest see (and answer) the gateway.
  EXPECT_EQ(TcpThroughTo(ns_->name(), "127.0.0.1", 18080, 80), "10.213.0.1");
  // 0.0.0.0 covers loopback too.
  EXPECT_EQ(TcpThroughTo(ns_->name(), "127.0.0.1", 18443, 443), "10.213.0.1");
}

TEST_F(TrafficTest, LoopbackPublishedUdpPortReachesTheGuest) {
  ASSERT_TRUE(driver_->ApplyRules(Published(true)).ok());
  Fd server = SocketIn(guest_->name(), SOCK_DGRAM);
  sockaddr_in bind_to = Address("10.213.0.2", 53);
  ASSERT_EQ(::bind(server.fd, reinterpret_cast<sockaddr*>(&bind_to), sizeof(bind_to)), 0);
  Fd client = SocketIn(ns_->name(), SOCK_DGRAM);
  sockaddr_in to = Address("127.0.0.1", 15353);
  ASSERT_EQ(::sendto(client.fd, "ping", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 4);
  ASSERT_TRUE(Readable(server.fd, milliseconds(3000))) << "no datagram reached the guest";
  char buf[16];
  sockaddr_in from{};
  socklen_t len = sizeof(from);
  ssize_t n = ::recvfrom(server.fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "ping");
  EXPECT_EQ(AddressText(from), "10.213.0.1");
  ASSERT_EQ(::sendto(server.fd, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), len), 4);
  EXPECT_EQ(ReadSome(client.fd), "pong");
}

TEST_F(TrafficTest, PortPublishedOnEveryAddressIsReachableFromOutside) {
  ASSERT_TRUE(driver_->ApplyRules(Published(true)).ok());
  // No SNAT for outside clients: the guest sees the real source.
  EXPECT_EQ(TcpThroughTo(outside_->name(), "192.0.2.1", 18443, 443), "192.0.2.2");
  // Also into a network without nat, whose bridge leaves ip_forward alone:
  // ApplyRules turns it on for ports published beyond loopback.
  InNs({"sysctl", "-q", "-w", "net.ipv4.ip_forward=0"});
  ASSERT_TRUE(driver_->ApplyRules(Published(false)).ok());
  EXPECT_EQ(InNs({"sysctl", "-n", "net.ipv4.ip_forward"}), "1\n");
  EXPECT_EQ(TcpThroughTo(outside_->name(), "192.0.2.1", 18443, 443), "192.0.2.2");
  // A loopback-only port is not published outside.
  std::string error;
  Fd refused = ConnectFrom(outside_->name(), "192.0.2.1", 18080, milliseconds(1000), &error);
  EXPECT_LT(refused.fd, 0);
}

TEST_F(TrafficTest, NatMasqueradesGuestTrafficAndNatOffKeepsItIn) {
  ASSERT_TRUE(driver_->ApplyRules(Published(true)).ok());
  Fd listener = Listener(outside_->name(), "192.0.2.2", 9000);
  std::string error;
  {
    Fd client = ConnectFrom(guest_->name(), "192.0.2.2", 9000, milliseconds(3000), &error);
    ASSERT_GE(client.fd, 0) << error;
    Fd conn;
    EXPECT_EQ(AcceptPeer(listener.fd, &conn), "192.0.2.1") << "masqueraded to the uplink's address";
  }
  // With nat off, new traffic from the bridge stops at the forward chain...
  ASSERT_TRUE(driver_->ApplyRules(Published(false)).ok());
  Fd blocked = ConnectFrom(guest_->name(), "192.0.2.2", 9000, milliseconds(1000), &error);
  EXPECT_LT(blocked.fd, 0);
  EXPECT_EQ(error, "timed out");
  // ...while published ports still reach the guest.
  EXPECT_EQ(TcpThroughTo(ns_->name(), "127.0.0.1", 18080, 80), "10.213.0.1");
}

}  // namespace
}  // namespace banger::network
