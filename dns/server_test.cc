// The server on loopback (no privileges needed: port 0 picks a free port per
// address, 127.0.0.2 stands in for a second bridge): answering over real UDP,
// picking up new leases and addresses from refreshes, surviving hostile
// packets, and failing clearly at start.
#include "dns/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mutex>
#include <random>
#include <thread>

#include "base/files.h"
#include "dns/test_packets.h"

namespace banger::dns {
namespace {

using namespace banger::dns::testing;  // NOLINT: packet builders
using std::chrono::milliseconds;

// A lease list and address list the test edits while the server runs.
class FakeState {
 public:
  void Set(std::vector<std::string> addresses, std::vector<LeaseRecord> leases) {
    std::lock_guard<std::mutex> l(mu_);
    addresses_ = std::move(addresses);
    leases_ = std::move(leases);
  }
  void Fail(bool fail) {
    std::lock_guard<std::mutex> l(mu_);
    fail_ = fail;
  }
  SnapshotSource Source() {
    return [this]() -> Result<Snapshot> {
      std::lock_guard<std::mutex> l(mu_);
      if (fail_) return Unavailable("database is locked");
      return Snapshot{addresses_, TableFromLeases(leases_)};
    };
  }

 private:
  std::mutex mu_;
  std::vector<std::string> addresses_;
  std::vector<LeaseRecord> leases_;
  bool fail_ = false;
};

LeaseRecord Lease(const std::string& sandbox, const std::string& address) {
  return {"default", address, sandbox, "02:00:00:00:00:00", 0};
}

ServerOptions Loopback() {
  ServerOptions o;
  o.port = 0;
  o.refresh = milliseconds(50);
  return o;
}

// "127.0.0.1:5353" -> port.
uint16_t PortOf(const std::string& endpoint) {
  return static_cast<uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
}

// Sends `query` to address:port over UDP and returns the decoded reply, or
// nothing after 300 ms (callers retry: UDP may drop).
std::optional<Decoded> Exchange(const std::string& address, uint16_t port, const Bytes& query) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{0, 300000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  ::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  Bytes buf(2048);
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  return Decode(buf);
}

// Polls `ok` every 20 ms for up to `limit`.
template <typename F>
bool Eventually(F ok, milliseconds limit = milliseconds(3000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ok()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return ok();
}

TEST(DnsServer, AnswersOverUdpOnEachAddress) {
  FakeState state;
  state.Set({"127.0.0.1"}, {Lease("web", "10.213.0.2")});
  auto server = Server::Start(state.Source(), Loopback());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  auto bound = (*server)->Bound();
  ASSERT_EQ(bound.size(), 1u);
  EXPECT_EQ(bound[0].rfind("127.0.0.1:", 0), 0u) << bound[0];
  uint16_t port = PortOf(bound[0]);

  std::optional<Decoded> a;
  ASSERT_TRUE(Eventually([&] { return (a = Exchange("127.0.0.1", port, QueryFor("web.banger", kTypeA, 0x0101))).has_value(); }));
  EXPECT_EQ(a->id, 0x0101);
  EXPECT_EQ(a->A(), "10.213.0.2");
  std::optional<Decoded> nx;
  ASSERT_TRUE(Eventually([&] { return (nx = Exchange("127.0.0.1", port, QueryFor("db.banger"))).has_value(); }));
  EXPECT_EQ(nx->rcode, 3);
  std::optional<Decoded> refused;
  ASSERT_TRUE(Eventually([&] { return (refused = Exchange("127.0.0.1", port, QueryFor("example.com"))).has_value(); }));
  EXPECT_EQ(refused->rcode, 5);
  EXPECT_TRUE(Eventually([&] { return (*server)->Stats().answered >= 3; }));  // counted after sending
}

TEST(DnsServer, NewLeasesAndNetworksArePickedUpAndGoneNetworksAreDropped) {
  FakeState state;
  state.Set({"127.0.0.1"}, {Lease("web", "10.213.0.2")});
  auto server = Server::Start(state.Source(), Loopback());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  uint16_t port = PortOf((*server)->Bound().at(0));

  state.Set({"127.0.0.1", "127.0.0.2"}, {Lease("web", "10.213.0.2"), Lease("db", "10.213.1.2")});
  EXPECT_TRUE(Eventually([&] {
    auto r = Exchange("127.0.0.1", port, QueryFor("db.banger"));
    return r && r->A() == "10.213.1.2";
  }));
  ASSERT_TRUE(Eventually([&] { return (*server)->Bound().size() == 2; }));
  std::string second = (*server)->Bound()[1];
  ASSERT_EQ(second.rfind("127.0.0.2:", 0), 0u) << second;
  std::optional<Decoded> r;
  ASSERT_TRUE(Eventually([&] { return (r = Exchange("127.0.0.2", PortOf(second), QueryFor("web.banger"))).has_value(); }));
  EXPECT_EQ(r->A(), "10.213.0.2");

  state.Set({"127.0.0.2"}, {Lease("db", "10.213.1.2")});
  EXPECT_TRUE(Eventually([&] { return (*server)->Bound() == std::vector<std::string>{second}; }));
  EXPECT_TRUE(Eventually([&] {
    auto gone = Exchange("127.0.0.2", PortOf(second), QueryFor("web.banger"));
    return gone && gone->rcode == 3;
  }));
}

TEST(DnsServer, KeepsTheLastSnapshotWhileTheDatabaseFails) {
  FakeState state;
  state.Set({"127.0.0.1"}, {Lease("web", "10.213.0.2")});
  auto server = Server::Start(state.Source(), Loopback());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  uint16_t port = PortOf((*server)->Bound().at(0));
  state.Fail(true);
  std::this_thread::sleep_for(milliseconds(150));
  std::optional<Decoded> r;
  ASSERT_TRUE(Eventually([&] { return (r = Exchange("127.0.0.1", port, QueryFor("web.banger"))).has_value(); }));
  EXPECT_EQ(r->A(), "10.213.0.2");
  EXPECT_EQ((*server)->Bound().size(), 1u);
}

TEST(DnsServer, SurvivesHostilePacketsAndAnswersAfterwards) {
  FakeState state;
  state.Set({"127.0.0.1"}, {Lease("web", "10.213.0.2")});
  auto server = Server::Start(state.Source(), Loopback());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  uint16_t port = PortOf((*server)->Bound().at(0));

  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {  // bounded: 2000 packets to our own loopback port
    Bytes p(rng() % 1500);
    for (auto& b : p) b = static_cast<uint8_t>(rng());
    if (i % 3 == 0 && p.size() >= 14) {  // a query header with a pointer loop for a name
      Bytes h = HeaderBytes(static_cast<uint16_t>(i), 0x0100, 1);
      std::copy(h.begin(), h.end(), p.begin());
      p[12] = 0xC0;
      p[13] = 12;
    }
    ::sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  Bytes huge(9000, 0);  // larger than the read buffer: read truncated, no overrun
  Bytes q = QueryFor("web.banger");
  std::copy(q.begin(), q.end(), huge.begin());
  ::sendto(fd, huge.data(), huge.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::close(fd);

  EXPECT_TRUE(Eventually([&] {
    auto r = Exchange("127.0.0.1", port, QueryFor("web.banger"));
    return r && r->A() == "10.213.0.2";
  }));
  EXPECT_GT((*server)->Stats().queries, 100u);
}

TEST(DnsServer, ABusyAddressIsRetriedNotFatal) {
  int holder = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  ::getsockname(holder, reinterpret_cast<sockaddr*>(&a), &len);

  FakeState state;
  state.Set({"127.0.0.1"}, {});
  ServerOptions o = Loopback();
  o.port = ntohs(a.sin_port);
  auto server = Server::Start(state.Source(), o);
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  EXPECT_TRUE((*server)->Bound().empty());
  ::close(holder);
  EXPECT_TRUE(Eventually([&] { return (*server)->Bound().size() == 1; }));
}

TEST(DnsServer, StartFailsClearlyForAMissingNamespaceOrADeadDatabase) {
  auto dir = MakeTempDir("banger-dns-test-");
  ASSERT_TRUE(dir.ok());
  ScopedRemove cleanup(*dir);
  FakeState state;
  ServerOptions o = Loopback();
  o.netns = "no-such-ns";
  o.netns_dir = *dir;
  auto missing = Server::Start(state.Source(), o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.error().message().find("ip netns add no-such-ns"), std::string::npos)
      << missing.error().message();

  state.Fail(true);
  auto dead = Server::Start(state.Source(), Loopback());
  ASSERT_FALSE(dead.ok());
  EXPECT_NE(dead.error().message().find("database is locked"), std::string::npos) << dead.error().message();
}

TEST(DnsServer, NoNetworksYetIsFine) {
  FakeState state;
  auto server = Server::Start(state.Source(), Loopback());
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  EXPECT_TRUE((*server)->Bound().empty());
  state.Set({"127.0.0.1"}, {});
  EXPECT_TRUE(Eventually([&] { return (*server)->Bound().size() == 1; }));
}

}  // namespace
}  // namespace banger::dns
