// Private network namespaces for tests that need real interfaces, rules and
// traffic without touching the host's own network: a guard that creates
// `ip netns add PREFIX-<pid>-<n>` and deletes it (with everything in it) when
// it dies, and sockets made inside a namespace so that a test can connect,
// send and listen there from its own process (no `nc` or `socat` needed).
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "base/command_runner.h"

namespace banger::testing {

/// Runs argv (30 s timeout) and returns its stdout; records a test failure
/// naming the command and its stderr (and returns "") unless it exits 0.
std::string MustRun(CommandRunner& runner, const std::vector<std::string>& argv);

/// "" when this process can create namespaces, bridges, taps and nft tables
/// (root, `ip`, `nft`, `sysctl`, /dev/net/tun); otherwise why not, for GTEST_SKIP.
std::string NetnsSkipReason();

/// A namespace "<prefix>-<pid>-<n>", deleted when the guard dies, also when
/// the test fails. Interfaces in it go with it once no process uses it.
class ScopedNetns {
 public:
  explicit ScopedNetns(const std::string& prefix);
  ~ScopedNetns();
  ScopedNetns(const ScopedNetns&) = delete;
  ScopedNetns& operator=(const ScopedNetns&) = delete;

  const std::string& name() const { return name_; }
  bool created() const { return created_; }
  /// Why `ip netns add` failed ("" when it did not).
  const std::string& error() const { return error_; }

 private:
  std::string name_;
  bool created_ = false;
  std::string error_;
};

/// A file descriptor closed when it dies.
struct Fd {
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  Fd(const Fd&) = delete;
  ~Fd();
  int fd;
};

/// An AF_INET socket of `type` made inside network namespace `netns`. A
/// socket belongs to the namespace it was created in, so binding, connecting
/// and sending through it work there from any thread. -1 on failure.
Fd SocketIn(const std::string& netns, int type);

sockaddr_in Address(const std::string& ip, uint16_t port);
std::string AddressText(const sockaddr_in& a);

/// Whether `fd` becomes readable within `timeout`.
bool Readable(int fd, std::chrono::milliseconds timeout);

/// A TCP listener on ip:port inside `netns` (failures are test failures).
Fd Listener(const std::string& netns, const std::string& ip, uint16_t port);

/// Connects from `netns` within `timeout`; the socket, or -1 with errno's text
/// (or "timed out") in *error.
Fd ConnectFrom(const std::string& netns, const std::string& ip, uint16_t port, std::chrono::milliseconds timeout,
               std::string* error);

/// Accepts one connection (within 3 s) and returns the peer address the server sees.
std::string AcceptPeer(int listener, Fd* conn);

/// One recv within 3 s: the bytes, "(nothing)" or "(closed)".
std::string ReadSome(int fd);

/// Connects from `netns` to ip:port, sends `request` and reads until EOF or
/// `timeout`; what was read, or "" with the reason in *error.
std::string TcpExchange(const std::string& netns, const std::string& ip, uint16_t port, const std::string& request,
                        std::chrono::milliseconds timeout, std::string* error);

/// Sends `payload` in one datagram from `netns` to ip:port and waits up to
/// `timeout` for one datagram back; its payload, or "" with the reason in *error.
std::string UdpExchange(const std::string& netns, const std::string& ip, uint16_t port, const std::string& payload,
                        std::chrono::milliseconds timeout, std::string* error);

}  // namespace banger::testing
