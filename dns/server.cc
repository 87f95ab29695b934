#include "dns/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace banger::dns {
namespace {

// Packets read from one socket before looking at the others, the stop signal
// and the refresh clock again: a flood on one bridge cannot starve the rest.
constexpr int kBurst = 64;
// Queries larger than this are read truncated (and then are FORMERR or
// answered from their question, which comes first); EDNS queries are < 512.
constexpr size_t kMaxQuerySize = 4096;

std::string Endpoint(const std::string& address, uint16_t port) { return address + ":" + std::to_string(port); }

std::string Peer(const sockaddr_in& a) {
  char text[INET_ADDRSTRLEN] = "?";
  ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
  return Endpoint(text, ntohs(a.sin_port));
}

}  // namespace

SnapshotSource StateSnapshots(StateStore& store) {
  return [&store]() -> Result<Snapshot> {
    auto networks = store.ListNetworks();
    if (!networks) return networks.error();
    auto leases = store.ListLeases("");
    if (!leases) return leases.error();
    Snapshot s;
    for (const auto& n : *networks) {
      if (!n.gateway.empty()) s.addresses.push_back(n.gateway);
    }
    s.names = TableFromLeases(*leases);
    return s;
  };
}

struct Server::State {
  struct Socket {
    std::string address;
    uint16_t port = 0;
    int fd = -1;
  };

  SnapshotSource source;
  ServerOptions options;
  int stop_fd = -1;
  std::thread thread;

  mutable std::mutex mu;  // guards bound (read by Bound())
  std::vector<std::string> bound;
  std::atomic<uint64_t> queries{0}, answered{0}, refreshes{0};

  // Owned by the server thread.
  NameTable names;
  std::vector<Socket> sockets;
  std::map<std::string, std::string> bind_errors;  // address -> error last logged
  bool refresh_failing = false;
  std::array<uint8_t, kMaxQuerySize> in{};
  std::array<uint8_t, kMaxResponseSize> out{};

  ~State() {
    for (auto& s : sockets) ::close(s.fd);
    if (stop_fd >= 0) ::close(stop_fd);
  }

  Status EnterNamespace();
  Status CheckPortPermission();
  Result<Socket> Bind(const std::string& address);
  Status Sync(const std::vector<std::string>& addresses, bool first);
  Status Refresh(bool first);
  void Serve(Socket& socket);
  void Loop();
  void PublishBound();
};

Status Server::State::EnterNamespace() {
  if (options.netns.empty()) return OkStatus();
  std::filesystem::path path = options.netns_dir / options.netns;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return FailedPrecondition("network namespace " + options.netns + " does not exist (no " + path.string() +
                                "); create it with `ip netns add " + options.netns + "` or unset BANGER_NETNS");
    }
    return ErrnoStatus(errno, "opening network namespace " + path.string());
  }
  int rc = ::setns(fd, CLONE_NEWNET);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return ErrnoStatus(err, "entering network namespace " + options.netns + " (setns needs root or CAP_SYS_ADMIN)");
  }
  spdlog::debug("dns: serving inside network namespace {}", options.netns);
  return OkStatus();
}

// With no network to bind yet, a missing privilege for a low port would only
// show once the first bridge appears: probe it now. The probe binds a
// loopback address (IP_FREEBIND: whether or not loopback is up) and closes
// it at once; a busy port is not our question and passes.
Status Server::State::CheckPortPermission() {
  if (options.port == 0 || options.port >= 1024) return OkStatus();
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  int one = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(options.port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  int err = errno;
  ::close(fd);
  if (rc != 0 && (err == EACCES || err == EPERM)) {
    return PermissionDenied("port " + std::to_string(options.port) +
                            " needs root or CAP_NET_BIND_SERVICE (try --port above 1023 for a test)");
  }
  return OkStatus();
}

Result<Server::State::Socket> Server::State::Bind(const std::string& address) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(options.port);
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) {
    return InvalidArgument("bridge address \"" + address + "\" is not an IPv4 address");
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  // The address may not be on its bridge yet (or again): bind anyway.
  int one = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int err = errno;
    ::close(fd);
    Status s = ErrnoStatus(err, "binding " + Endpoint(address, options.port));
    std::string port = std::to_string(options.port);
    if (err == EADDRINUSE) return Status(s.code(), s.message() + " (another DNS server has it, or listens on 0.0.0.0:" + port + ")");
    if (err == EACCES) return Status(s.code(), s.message() + " (port " + port + " needs root or CAP_NET_BIND_SERVICE)");
    return s;
  }
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return Socket{address, ntohs(a.sin_port), fd};
}

// Closes the sockets of addresses that went away and binds the new ones.
Status Server::State::Sync(const std::vector<std::string>& wanted_list, bool first) {
  std::set<std::string> wanted(wanted_list.begin(), wanted_list.end());
  std::erase_if(sockets, [&](const Socket& s) {
    if (wanted.count(s.address)) return false;
    spdlog::info("dns: no longer answering on {} (its network is gone)", Endpoint(s.address, s.port));
    ::close(s.fd);
    return true;
  });
  std::erase_if(bind_errors, [&](const auto& e) { return wanted.count(e.first) == 0; });
  for (const auto& address : wanted) {
    bool have = std::any_of(sockets.begin(), sockets.end(), [&](const Socket& s) { return s.address == address; });
    if (have) continue;
    auto socket = Bind(address);
    if (!socket) {
      if (first && socket.error().code() == StatusCode::kPermissionDenied) return socket.error();
      std::string& last = bind_errors[address];
      if (last != socket.error().message()) {
        spdlog::warn("dns: {}; retrying every {} ms", socket.error().message(), options.refresh.count());
        last = socket.error().message();
      }
      continue;
    }
    bind_errors.erase(address);
    spdlog::info("dns: answering on {}", Endpoint(socket->address, socket->port));
    sockets.push_back(*socket);
  }
  PublishBound();
  return OkStatus();
}

void Server::State::PublishBound() {
  std::vector<std::string> view;
  for (const auto& s : sockets) view.push_back(Endpoint(s.address, s.port));
  std::sort(view.begin(), view.end());
  std::lock_guard<std::mutex> l(mu);
  bound = std::move(view);
}

Status Server::State::Refresh(bool first) {
  auto snapshot = source();
  if (!snapshot) {
    if (first) return snapshot.error().WithContext("dns: reading networks and leases");
    if (!refresh_failing) {
      spdlog::warn("dns: reading networks and leases: {}; answering from the last snapshot",
                   snapshot.error().message());
    }
    refresh_failing = true;
    return OkStatus();
  }
  if (refresh_failing) spdlog::info("dns: reading networks and leases works again");
  refresh_failing = false;
  if (first && snapshot->addresses.empty()) {
    BANGER_RETURN_IF_ERROR(CheckPortPermission());
    spdlog::info("dns: no banger networks yet; answering on each bridge address once one exists");
  }
  names = std::move(snapshot->names);
  ++refreshes;
  return Sync(snapshot->addresses, first);
}

// Answers up to kBurst queries waiting on `socket`.
void Server::State::Serve(Socket& socket) {
  for (int i = 0; i < kBurst; ++i) {
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    ssize_t n = ::recvfrom(socket.fd, in.data(), in.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
                           &from_len);
    if (n < 0) return;  // EAGAIN: drained (other errors: the next poll says)
    ++queries;
    std::span<const uint8_t> packet(in.data(), static_cast<size_t>(n));
    Rcode rcode = Rcode::kNoError;
    size_t size = Respond(packet, names, options.ttl, out, &rcode);
    if (spdlog::should_log(spdlog::level::debug)) {
      ParseResult p = ParseQuery(packet);
      spdlog::debug("dns: {} asked {} type {} on {}: {}", Peer(from),
                    p.status == ParseStatus::kOk ? ToText(p.query.name) : "(malformed)", p.query.qtype,
                    socket.address, size == 0 ? "ignored" : ToString(rcode));
    }
    if (size == 0) continue;
    if (::sendto(socket.fd, out.data(), size, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), from_len) >= 0) {
      ++answered;
    }
  }
}

void Server::State::Loop() {
  using Clock = std::chrono::steady_clock;
  auto next_refresh = Clock::now() + options.refresh;
  std::vector<pollfd> fds;
  while (true) {
    fds.assign(1, pollfd{stop_fd, POLLIN, 0});
    for (const auto& s : sockets) fds.push_back(pollfd{s.fd, POLLIN, 0});
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_refresh - Clock::now());
    int rc = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait.count())));
    if (rc < 0 && errno != EINTR) {
      spdlog::error("dns: poll: {}; the responder stops", ErrnoStatus(errno, "poll").message());
      return;
    }
    if (rc > 0 && fds[0].revents != 0) return;
    for (size_t i = 1; rc > 0 && i < fds.size(); ++i) {
      if (fds[i].revents & POLLIN) Serve(sockets[i - 1]);
    }
    if (Clock::now() >= next_refresh) {
      (void)Refresh(false);
      next_refresh = Clock::now() + options.refresh;
    }
  }
}

Result<std::unique_ptr<Server>> Server::Start(SnapshotSource source, ServerOptions options) {
  std::unique_ptr<Server> server(new Server());
  server->state_ = std::make_unique<State>();
  State& st = *server->state_;
  st.source = std::move(source);
  st.options = std::move(options);
  st.stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (st.stop_fd < 0) return ErrnoStatus(errno, "eventfd");
  std::promise<Status> started;
  std::future<Status> result = started.get_future();
  st.thread = std::thread([&st, &started] {
    Status s = st.EnterNamespace();
    if (s.ok()) s = st.Refresh(true);
    bool ok = s.ok();
    started.set_value(std::move(s));  // `started` is not touched after this
    if (ok) st.Loop();
  });
  Status s = result.get();
  if (!s.ok()) {
    st.thread.join();
    return s;
  }
  return server;
}

Server::~Server() {
  if (!state_) return;
  uint64_t one = 1;
  ssize_t n = ::write(state_->stop_fd, &one, sizeof(one));
  (void)n;
  if (state_->thread.joinable()) state_->thread.join();
}

std::vector<std::string> Server::Bound() const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->bound;
}

ServerStats Server::Stats() const {
  return {state_->queries.load(), state_->answered.load(), state_->refreshes.load()};
}

}  // namespace banger::dns
