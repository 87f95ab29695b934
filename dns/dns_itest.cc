// The responder against a real resolver: a private network namespace with a
// bridge holding 10.213.0.1/24, a state database with a network and leases,
// the server bound inside the namespace, and `dig` run there. Never touches
// the host's own network; the namespace is deleted also when a test fails.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <sstream>
#include <thread>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "dns/server.h"
#include "tests/support/netns.h"

namespace banger::dns {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string SkipReason() {
  if (::geteuid() != 0) return "needs root to create a network namespace and bind port 53";
  for (const char* program : {"ip", "dig", "ss"}) {
    if (!FindProgram(program)) {
      return std::string("needs `") + program + "` on PATH (scripts/setup.sh installs iproute2 and bind9-dnsutils)";
    }
  }
  return "";
}

// What dig printed: the status word and the A records of the answer section.
struct DigAnswer {
  std::string status;  // NOERROR, NXDOMAIN, REFUSED, ... ("" when dig got no answer)
  std::vector<std::string> a;
  std::string raw;
};

class DnsItest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
    netns_ = std::make_unique<testing::ScopedNetns>("banger-dns");
    ASSERT_TRUE(netns_->created());
    Ip({"link", "set", "lo", "up"});
    AddBridge("bgr-default", "10.213.0.1/24");
    auto dir = MakeTempDir("banger-dns-itest-");
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    dir_ = std::make_unique<ScopedRemove>(*dir);
    auto store = StateStore::Open(*dir / "state");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    PutNetwork("default", "10.213.0.0/24", "10.213.0.1", "bgr-default");
    Lease("default", "web", "10.213.0.2");
    Lease("default", "db", "10.213.0.3");
  }

  void Ip(std::vector<std::string> args) {
    args.insert(args.begin(), {"ip", "-n", netns_->name()});
    testing::MustRun(*runner_, args);
  }
  void AddBridge(const std::string& name, const std::string& cidr) {
    Ip({"link", "add", name, "type", "bridge"});
    Ip({"addr", "add", cidr, "dev", name});
    Ip({"link", "set", name, "up"});
  }
  void PutNetwork(const std::string& name, const std::string& subnet, const std::string& gateway,
                  const std::string& bridge) {
    NetworkRecord n;
    n.name = name;
    n.spec_json = "{}";
    n.spec_hash = "test";
    n.subnet = subnet;
    n.gateway = gateway;
    n.bridge = bridge;
    ASSERT_TRUE(store_->PutNetwork(n).ok());
  }
  void Lease(const std::string& network, const std::string& sandbox, const std::string& address) {
    LeaseRequest r;
    r.network = network;
    r.sandbox = sandbox;
    r.mac = "02:00:00:00:00:01";
    r.fixed_address = address;
    auto lease = store_->AcquireLease(r);
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  }

  Result<std::unique_ptr<Server>> Serve() {
    ServerOptions o;
    o.netns = netns_->name();
    o.port = 53;
    return Server::Start(StateSnapshots(*store_), o);
  }

  // `dig @server name type` inside the namespace (one try, 1 s).
  DigAnswer Dig(const std::string& server, const std::string& name, const std::string& type = "A") {
    CommandSpec spec;
    spec.argv = {"ip", "netns", "exec", netns_->name(), "dig", "+time=1", "+tries=1", "@" + server, name, type};
    spec.timeout = std::chrono::seconds(10);
    DigAnswer d;
    auto out = runner_->Run(spec);
    if (!out.ok()) return d;
    d.raw = out->stdout_data + out->stderr_data;
    std::smatch m;
    if (std::regex_search(out->stdout_data, m, std::regex("status: ([A-Z]+)"))) d.status = m[1];
    bool in_answer = false;
    for (const auto& line : Split(out->stdout_data, '\n')) {
      if (line.rfind(";; ANSWER SECTION:", 0) == 0) {
        in_answer = true;
        continue;
      }
      if (line.empty()) in_answer = false;
      if (!in_answer || line[0] == ';') continue;
      std::istringstream fields(line);
      std::string owner, ttl, klass, rtype, data;
      fields >> owner >> ttl >> klass >> rtype >> data;
      if (rtype == "A") d.a.push_back(data);
    }
    return d;
  }

  // Polls dig until `ok` holds or `limit` passes; returns the time it took.
  std::optional<milliseconds> Until(const std::function<bool(const DigAnswer&)>& ok, const std::string& server,
                                    const std::string& name, milliseconds limit) {
    auto start = steady_clock::now();
    while (steady_clock::now() - start < limit) {
      if (ok(Dig(server, name))) return std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
      std::this_thread::sleep_for(milliseconds(100));
    }
    return std::nullopt;
  }

  std::unique_ptr<CommandRunner> runner_ = MakePosixCommandRunner();
  std::unique_ptr<testing::ScopedNetns> netns_;
  std::unique_ptr<ScopedRemove> dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(DnsItest, DigGetsAnswersNxDomainAndRefusalsFromTheBridgeAddress) {
  auto server = Serve();
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  EXPECT_EQ((*server)->Bound(), std::vector<std::string>{"10.213.0.1:53"});

  DigAnswer web = Dig("10.213.0.1", "web.banger");
  EXPECT_EQ(web.status, "NOERROR") << web.raw;
  EXPECT_EQ(web.a, std::vector<std::string>{"10.213.0.2"}) << web.raw;
  EXPECT_NE(web.raw.find("flags: qr aa rd;"), std::string::npos) << web.raw;  // authoritative, no recursion

  DigAnswer db = Dig("10.213.0.1", "DB.Banger.");
  EXPECT_EQ(db.a, std::vector<std::string>{"10.213.0.3"}) << db.raw;
  DigAnswer bare = Dig("10.213.0.1", "web");
  EXPECT_EQ(bare.a, std::vector<std::string>{"10.213.0.2"}) << bare.raw;

  DigAnswer nobody = Dig("10.213.0.1", "nobody.banger");
  EXPECT_EQ(nobody.status, "NXDOMAIN") << nobody.raw;
  EXPECT_TRUE(nobody.a.empty()) << nobody.raw;
  DigAnswer aaaa = Dig("10.213.0.1", "web.banger", "AAAA");
  EXPECT_EQ(aaaa.status, "NOERROR") << aaaa.raw;
  EXPECT_TRUE(aaaa.a.empty()) << aaaa.raw;
  EXPECT_NE(aaaa.raw.find("ANSWER: 0, AUTHORITY: 1"), std::string::npos) << aaaa.raw;  // NODATA with the SOA
  DigAnswer outside = Dig("10.213.0.1", "example.com");
  EXPECT_EQ(outside.status, "REFUSED") << outside.raw;

  // +short, as a user would type it.
  CommandSpec s;
  s.argv = {"ip", "netns", "exec", netns_->name(), "dig", "+short", "+time=1", "+tries=1", "@10.213.0.1", "web.banger"};
  auto short_out = runner_->Run(s);
  ASSERT_TRUE(short_out.ok());
  EXPECT_EQ(short_out->stdout_data, "10.213.0.2\n");
}

// The "quick test" of docs/networking.md: the C library's stub resolver
// (getent, as ssh and curl resolve) pointed at the bridge address by the
// namespace's own resolv.conf (`ip netns exec` mounts /etc/netns/NS/resolv.conf
// over /etc/resolv.conf).
TEST_F(DnsItest, TheStubResolverOfTheCLibraryFindsSandboxesThroughIt) {
  if (!FindProgram("getent")) GTEST_SKIP() << "needs getent (libc-bin)";
  auto server = Serve();
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  std::filesystem::path etc = std::filesystem::path("/etc/netns") / netns_->name();
  ScopedRemove remove_parent(std::filesystem::exists("/etc/netns") ? "" : "/etc/netns");  // only if we make it
  ScopedRemove remove_etc(etc);
  std::filesystem::create_directories(etc);
  ASSERT_TRUE(WriteFileAtomic(etc / "resolv.conf", "nameserver 10.213.0.1\noptions timeout:1 attempts:1\n").ok());
  std::string line = testing::MustRun(*runner_, {"ip", "netns", "exec", netns_->name(), "getent", "hosts", "web.banger"});
  EXPECT_EQ(line.substr(0, line.find_first_of(" \t")), "10.213.0.2") << line;
  CommandSpec unknown;
  unknown.argv = {"ip", "netns", "exec", netns_->name(), "getent", "hosts", "nobody.banger"};
  auto out = runner_->Run(unknown);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 2) << out->stdout_data;  // getent: key not found
}

TEST_F(DnsItest, TheSocketsLiveInTheNamespaceNotOnTheHost) {
  auto server = Serve();
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  std::string inside = testing::MustRun(*runner_, {"ip", "netns", "exec", netns_->name(), "ss", "-Hlun"});
  EXPECT_NE(inside.find("10.213.0.1:53"), std::string::npos) << inside;
  std::string host = testing::MustRun(*runner_, {"ss", "-Hlun"});
  EXPECT_EQ(host.find("10.213.0.1:53"), std::string::npos) << host;
}

TEST_F(DnsItest, ALeaseAddedLaterIsAnsweredWithinTwoSeconds) {
  auto server = Serve();
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  EXPECT_EQ(Dig("10.213.0.1", "api.banger").status, "NXDOMAIN");
  Lease("default", "api", "10.213.0.9");
  auto took = Until([](const DigAnswer& d) { return d.a == std::vector<std::string>{"10.213.0.9"}; }, "10.213.0.1",
                    "api.banger", milliseconds(2500));
  ASSERT_TRUE(took.has_value()) << "api.banger not answered 2.5 s after its lease";
  EXPECT_LE(took->count(), 2000);
  ASSERT_TRUE(store_->ReleaseLease("api").ok());
  EXPECT_TRUE(Until([](const DigAnswer& d) { return d.status == "NXDOMAIN"; }, "10.213.0.1", "api.banger",
                    milliseconds(2500)));
}

TEST_F(DnsItest, ANewNetworkIsServedOnItsBridgeEvenIfTheBridgeComesAfterTheRecord) {
  auto server = Serve();
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  // The record first (as NetworkController writes it), the bridge a moment
  // later: the socket is bound before the address exists (IP_FREEBIND).
  PutNetwork("backend", "10.213.50.0/24", "10.213.50.1", "bgr-backend");
  Lease("backend", "cache", "10.213.50.10");
  auto deadline = steady_clock::now() + std::chrono::seconds(3);
  while ((*server)->Bound().size() < 2 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ((*server)->Bound(), (std::vector<std::string>{"10.213.0.1:53", "10.213.50.1:53"}));
  AddBridge("bgr-backend", "10.213.50.1/24");
  auto took = Until([](const DigAnswer& d) { return d.a == std::vector<std::string>{"10.213.50.10"}; },
                    "10.213.50.1", "cache.banger", milliseconds(3000));
  EXPECT_TRUE(took.has_value()) << Dig("10.213.50.1", "cache.banger").raw;

  // The network goes: its socket is closed within a refresh.
  ASSERT_TRUE(store_->ReleaseLease("cache").ok());
  ASSERT_TRUE(store_->DeleteNetwork("backend").ok());
  deadline = steady_clock::now() + std::chrono::seconds(3);
  while ((*server)->Bound().size() > 1 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ((*server)->Bound(), std::vector<std::string>{"10.213.0.1:53"});
}

}  // namespace
}  // namespace banger::dns
