// The host end of the guest agent channel facing a hostile guest: the input
// is everything the "guest" sends on the socket, after which it closes its
// sending side. Each host operation (WaitHello, Ping, Exec, SetHosts,
// PowerOff, SendIdentity) must return (value or error) without crashing, hanging until its
// deadline or reading past what was sent.
//
// Input: byte 0 picks the operation; the rest is the guest's byte stream.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "providers/agent_client.h"

using namespace banger;
using namespace std::chrono_literals;
using std::chrono::steady_clock;

namespace {

int ListenSocket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  FUZZ_CHECK(path.size() < sizeof(addr.sun_path), "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  FUZZ_CHECK(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0, "bind " + path);
  FUZZ_CHECK(::listen(fd, 4) == 0, "listen");
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::signal(SIGPIPE, SIG_IGN);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Larger streams would block the single-threaded "guest" on a full socket.
  if (size < 1 || size > 128 * 1024) return 0;
  static const std::string path = (fuzz::ScratchDir() / "agent.sock").string();
  static const int listen_fd = ListenSocket(path);

  auto start = steady_clock::now();
  auto conn = ConnectAgent(path, start + 1s);
  FUZZ_CHECK(conn.ok(), conn.status().ToString());
  int guest = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  FUZZ_CHECK(guest >= 0, "accept");
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  while (!stream.empty()) {
    ssize_t n = ::send(guest, stream.data(), stream.size(), MSG_NOSIGNAL);
    FUZZ_CHECK(n > 0, "send to the host side");
    stream.remove_prefix(static_cast<size_t>(n));
  }
  ::shutdown(guest, SHUT_WR);  // the guest says nothing more (and never answers)

  // Generous deadlines: an operation must end when the stream does, not at
  // its deadline; the check below catches one that waits for it.
  const auto deadline = 5s;
  switch (data[0] % 6) {
    case 0: (void)(*conn)->WaitHello(steady_clock::now() + deadline); break;
    case 1: (void)(*conn)->Ping(deadline); break;
    case 2: {
      ExecCommand cmd;
      cmd.argv = {"/bin/true"};
      Result<ExecResult> r = (*conn)->Exec(cmd, "stdin", deadline);
      if (r.ok()) FUZZ_CHECK(r->exit_code >= 0, "negative shell exit code " + std::to_string(r->exit_code));
      break;
    }
    case 3: {
      std::vector<GuestHost> hosts(1);
      hosts[0].address = "10.0.0.2";
      hosts[0].names = {"db", "db.banger"};
      (void)(*conn)->SetHosts(hosts, steady_clock::now() + deadline);
      break;
    }
    case 4: (void)(*conn)->PowerOff(deadline); break;
    case 5: {
      GuestConfig config;
      config.hostname = "sandbox";
      (void)(*conn)->SendIdentity(config, "52:54:00:12:34:56", deadline);
      break;
    }
  }
  FUZZ_CHECK(steady_clock::now() - start < 4s, "an agent operation waited for its deadline on a closed stream");
  conn->reset();
  ::close(guest);
  return 0;
}
