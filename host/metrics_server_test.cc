#include "host/metrics_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace banger::host {
namespace {

std::string Get(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

TEST(MetricsServerTest, ServesTheHandlersAnswersOnLoopback) {
  auto s = MetricsServer::Start("127.0.0.1:0", [](const std::string& path) -> std::pair<int, std::string> {
    if (path == "/healthz") return {200, "ok\n"};
    if (path == "/metrics") return {200, "banger_watch_passes_total{source=\"x\"} 3\n"};
    return {404, "not found\n"};
  });
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  uint16_t port = (*s)->port();
  ASSERT_NE(port, 0);
  std::string health = Get(port, "GET /healthz HTTP/1.0\r\n\r\n");
  EXPECT_EQ(health.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << health;
  EXPECT_NE(health.find("\r\n\r\nok\n"), std::string::npos) << health;
  std::string metrics = Get(port, "GET /metrics?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_NE(metrics.find("banger_watch_passes_total{source=\"x\"} 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("Content-Length: 40\r\n"), std::string::npos) << metrics;
  EXPECT_EQ(Get(port, "GET /nope HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 404", 0), 0u);
  EXPECT_EQ(Get(port, "POST /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 405", 0), 0u);
  EXPECT_EQ(Get(port, "garbage\r\n\r\n").rfind("HTTP/1.0 400", 0), 0u);
}

TEST(MetricsServerTest, BadAddressesAreRefusedClearly) {
  auto h = [](const std::string&) -> std::pair<int, std::string> { return {200, ""}; };
  for (const char* bad : {"9464", "127.0.0.1", "example.com:80", "127.0.0.1:99999", "127.0.0.1:x"}) {
    auto s = MetricsServer::Start(bad, h);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.error().message().find("--listen"), std::string::npos) << s.error().message();
  }
}

}  // namespace
}  // namespace banger::host
