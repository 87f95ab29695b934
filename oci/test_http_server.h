// Test support: a tiny HTTP/1.1 server on 127.0.0.1 running in a thread, for
// registries that misbehave on purpose. One request per connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace banger::oci::testing {

struct TestRequest {
  std::string method;
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct TestResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Declares the full Content-Length but closes after this many body bytes.
  size_t cut_after = std::string::npos;
  /// Sends this many body bytes, then nothing more while keeping the
  /// connection open until the client gives up (a stalled registry).
  size_t stall_after = std::string::npos;
  /// > 0: the body goes out in pieces of this many bytes, one every
  /// trickle_interval (a slow but moving registry).
  size_t trickle_bytes = 0;
  std::chrono::milliseconds trickle_interval{0};
};

class TestHttpServer {
 public:
  using Handler = std::function<TestResponse(const TestRequest&)>;

  explicit TestHttpServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 64) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }

  ~TestHttpServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  bool ok() const { return fd_ >= 0; }
  int port() const { return port_; }
  std::string HostPort() const { return "127.0.0.1:" + std::to_string(port_); }

  std::vector<TestRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      Serve(c);
      ::close(c);
    }
  }

  static bool ReadSome(int c, std::string& buf) {
    pollfd p{c, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    char tmp[65536];
    ssize_t n = ::read(c, tmp, sizeof(tmp));
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }

  static void WriteAll(int c, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(c, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  void Serve(int c) {
    std::string buf;
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadSome(c, buf)) return;
    }
    TestRequest req;
    std::string head = buf.substr(0, end);
    std::string rest = buf.substr(end + 4);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    size_t sp1 = first.find(' '), sp2 = first.rfind(' ');
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      std::string line = head.substr(pos, e - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        size_t v = line.find_first_not_of(' ', colon + 1);
        req.headers[name] = v == std::string::npos ? "" : line.substr(v);
      }
      pos = e + 2;
    }
    size_t want = req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
    while (rest.size() < want) {
      if (!ReadSome(c, rest)) return;
    }
    req.body = rest.substr(0, want);
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(req);
    }
    TestResponse resp = handler_(req);
    std::string out = "HTTP/1.1 " + std::to_string(resp.status) + " X\r\n";
    bool has_length = false;
    for (const auto& [k, v] : resp.headers) {
      out += k + ": " + v + "\r\n";
      std::string lower = k;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (lower == "content-length") has_length = true;
    }
    if (!has_length) out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n";
    out += "Connection: close\r\n\r\n";
    std::string body;
    if (req.method != "HEAD") body = resp.body.substr(0, std::min(resp.cut_after, resp.body.size()));
    if (resp.stall_after < body.size()) {
      WriteAll(c, out + body.substr(0, resp.stall_after));
      // Stall: keep the connection open, send nothing, until the client
      // closes it (its stall timeout) or the server stops.
      while (!stop_) {
        pollfd p{c, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        char tmp[4096];
        if (::read(c, tmp, sizeof(tmp)) <= 0) break;
      }
      return;
    }
    if (resp.trickle_bytes > 0) {
      WriteAll(c, out);
      for (size_t off = 0; off < body.size() && !stop_; off += resp.trickle_bytes) {
        WriteAll(c, std::string_view(body).substr(off, resp.trickle_bytes));
        std::this_thread::sleep_for(resp.trickle_interval);
      }
      return;
    }
    WriteAll(c, out + body);
  }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<TestRequest> requests_;
};

}  // namespace banger::oci::testing
