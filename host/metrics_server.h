// MetricsServer: a very small HTTP/1.0 server for `banger watch --listen`
// (GET /healthz and /metrics). One request per connection, GET only,
// requests bounded to 8 KiB and 2 s; off unless asked for.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "base/status.h"

namespace banger::host {

class MetricsServer {
 public:
  /// Answers a GET of `path` with (HTTP status, text body).
  using Handler = std::function<std::pair<int, std::string>(const std::string& path)>;

  /// Listens on `address` ("127.0.0.1:9464", "[::1]:9464" is not supported;
  /// "localhost:PORT" means 127.0.0.1; port 0 picks a free one) and serves
  /// requests from a thread until destroyed. InvalidArgument for a bad
  /// address, the errno for one that cannot be bound.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address, Handler handler);

  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// The port actually bound.
  uint16_t port() const { return port_; }

 private:
  MetricsServer() = default;
  void Serve();
  void Answer(int fd);

  int listen_fd_ = -1;
  int stop_fd_ = -1;
  uint16_t port_ = 0;
  Handler handler_;
  struct Thread;
  std::unique_ptr<Thread> thread_;
};

}  // namespace banger::host
