// guest-udp-echo PORT: a UDP echo server for end-to-end tests, copied into
// busybox guests (whose `nc` has no UDP mode). Answers every datagram with
// "echo:" followed by its payload. Linked statically so that it runs on any
// guest root file system; libc only.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  int port = std::atoi(argv[1]);
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "%s: bad port %s\n", argv[0], argv[1]);
    return 2;
  }
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) {
    std::perror("socket");
    return 1;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    std::perror("bind");
    return 1;
  }
  char in[1500];
  char out[sizeof(in) + 5];
  std::memcpy(out, "echo:", 5);
  while (true) {
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    ssize_t n = ::recvfrom(s, in, sizeof(in), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) continue;
    std::memcpy(out + 5, in, static_cast<size_t>(n));
    (void)::sendto(s, out, static_cast<size_t>(n) + 5, 0, reinterpret_cast<sockaddr*>(&from), len);
  }
}
