#include "tests/support/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"

namespace banger::testing {

std::string MustRun(CommandRunner& runner, const std::vector<std::string>& argv) {
  CommandSpec spec;
  spec.argv = argv;
  spec.timeout = std::chrono::seconds(30);
  auto out = RunChecked(runner, spec);
  if (!out.ok()) {
    ADD_FAILURE() << Join(argv, " ") << ": " << out.error().ToString();
    return "";
  }
  return out->stdout_data;
}

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string NetnsSkipReason() {
  if (::geteuid() != 0) return "needs root to create network namespaces, bridges and taps";
  for (const char* program : {"ip", "nft", "sysctl"}) {
    if (!FindProgram(program)) {
      return std::string("needs `") + program + "` on PATH (scripts/setup.sh installs iproute2, nftables, procps)";
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists("/dev/net/tun", ec)) return "needs /dev/net/tun for taps";
  return "";
}

namespace {

Result<CommandOutput> RunIp(const std::vector<std::string>& argv) {
  auto runner = MakePosixCommandRunner();
  CommandSpec spec;
  spec.argv = argv;
  spec.timeout = std::chrono::seconds(30);
  return RunChecked(*runner, spec);
}

}  // namespace

ScopedNetns::ScopedNetns(const std::string& prefix) {
  static std::atomic<int> counter{0};
  name_ = prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  auto out = RunIp({"ip", "netns", "add", name_});
  created_ = out.ok();
  if (!created_) error_ = "ip netns add " + name_ + ": " + out.status().ToString();
}

ScopedNetns::~ScopedNetns() {
  if (!created_) return;
  auto out = RunIp({"ip", "netns", "del", name_});
  EXPECT_TRUE(out.ok()) << "ip netns del " << name_ << ": " << out.status().ToString();
}

Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

// Made on a helper thread because setns switches only the calling thread.
Fd SocketIn(const std::string& netns, int type) {
  int made = -1;
  int err = 0;
  std::thread t([&] {
    int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      err = errno;
      return;
    }
    if (::setns(ns, CLONE_NEWNET) == 0) made = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (made < 0) err = errno;
    ::close(ns);
  });
  t.join();
  EXPECT_GE(made, 0) << "socket in " << netns << ": " << std::strerror(err);
  return Fd(made);
}

sockaddr_in Address(const std::string& ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

std::string AddressText(const sockaddr_in& a) {
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
  return buf;
}

bool Readable(int fd, milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

Fd Listener(const std::string& netns, const std::string& ip, uint16_t port) {
  Fd s = SocketIn(netns, SOCK_STREAM);
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a = Address(ip, port);
  EXPECT_EQ(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << ip << ":" << port << " "
                                                                          << std::strerror(errno);
  EXPECT_EQ(::listen(s.fd, 4), 0);
  return s;
}

Fd ConnectFrom(const std::string& netns, const std::string& ip, uint16_t port, milliseconds timeout,
               std::string* error) {
  Fd s = SocketIn(netns, SOCK_STREAM);
  if (s.fd < 0) {
    *error = "no socket";
    return Fd();
  }
  ::fcntl(s.fd, F_SETFL, O_NONBLOCK);
  sockaddr_in a = Address(ip, port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno != EINPROGRESS) {
    *error = std::strerror(errno);
    return Fd();
  }
  pollfd p{s.fd, POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    *error = "timed out";
    return Fd();
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    *error = std::strerror(err);
    return Fd();
  }
  return s;
}

std::string AcceptPeer(int listener, Fd* conn) {
  if (!Readable(listener, milliseconds(3000))) return "(no connection)";
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  *conn = Fd(::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
  return conn->fd < 0 ? "(accept failed)" : AddressText(peer);
}

std::string ReadSome(int fd) {
  if (!Readable(fd, milliseconds(3000))) return "(nothing)";
  char buf[256];
  ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "(closed)";
}

std::string TcpExchange(const std::string& netns, const std::string& ip, uint16_t port, const std::string& request,
                        milliseconds timeout, std::string* error) {
  auto deadline = steady_clock::now() + timeout;
  Fd s = ConnectFrom(netns, ip, port, timeout, error);
  if (s.fd < 0) return "";
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(s.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      pollfd p{s.fd, POLLOUT, 0};
      (void)::poll(&p, 1, 100);
      continue;
    }
    if (n <= 0) {
      *error = std::string("send: ") + std::strerror(errno);
      return "";
    }
    sent += static_cast<size_t>(n);
  }
  std::string out;
  while (true) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) {
      *error = "timed out reading (got " + std::to_string(out.size()) + " bytes)";
      return out;
    }
    if (!Readable(s.fd, left)) continue;
    char buf[4096];
    ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      *error = std::string("recv: ") + std::strerror(errno);
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string UdpExchange(const std::string& netns, const std::string& ip, uint16_t port, const std::string& payload,
                        milliseconds timeout, std::string* error) {
  Fd s = SocketIn(netns, SOCK_DGRAM);
  if (s.fd < 0) {
    *error = "no socket";
    return "";
  }
  // connect() makes the kernel drop datagrams from anyone else and report
  // ICMP port unreachable as ECONNREFUSED.
  sockaddr_in to = Address(ip, port);
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    *error = std::string("connect: ") + std::strerror(errno);
    return "";
  }
  if (::send(s.fd, payload.data(), payload.size(), 0) != static_cast<ssize_t>(payload.size())) {
    *error = std::string("send: ") + std::strerror(errno);
    return "";
  }
  if (!Readable(s.fd, timeout)) {
    *error = "no answer within " + std::to_string(timeout.count()) + " ms";
    return "";
  }
  char buf[2048];
  ssize_t n = ::recv(s.fd, buf, sizeof(buf), 0);
  if (n < 0) {
    *error = std::string("recv: ") + std::strerror(errno);
    return "";
  }
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace banger::testing
