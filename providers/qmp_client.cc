#include "providers/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace banger {

namespace {

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : static_cast<int>(ms);
}

// Reads one '\n'-terminated JSON line.
Result<nlohmann::json> ReadMessage(int fd, std::string& buf, Clock::time_point deadline) {
  while (true) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      try {
        return nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        return DataLoss(std::string("malformed QMP message: ") + e.what());
      }
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, MsLeft(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return DeadlineExceeded("QMP: no reply in time");
    char tmp[4096];
    ssize_t n = ::read(fd, tmp, sizeof(tmp));
    if (n <= 0) return Unavailable("QMP connection closed");
    buf.append(tmp, static_cast<size_t>(n));
  }
}

// Skips asynchronous events; returns the next reply.
Result<nlohmann::json> ReadReply(int fd, std::string& buf, Clock::time_point deadline) {
  while (true) {
    BANGER_ASSIGN_OR_RETURN(nlohmann::json msg, ReadMessage(fd, buf, deadline));
    if (msg.contains("return")) return msg["return"];
    if (msg.contains("error")) {
      return FailedPrecondition("QMP error: " + msg["error"].value("desc", msg["error"].dump()));
    }
  }
}

Status Send(int fd, const std::string& text) {
  std::string line = text + "\n";
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return ErrnoStatus(errno, "QMP send");
  }
  return OkStatus();
}

}  // namespace

Result<std::string> QmpExecute(const std::filesystem::path& socket, const std::string& command,
                               std::chrono::milliseconds timeout) {
  return QmpExecute(socket, command, "", timeout);
}

Result<std::string> QmpExecute(const std::filesystem::path& socket, const std::string& command,
                               const std::string& arguments_json, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket.string();
  if (path.size() >= sizeof(addr.sun_path)) return InvalidArgument("QMP socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoStatus(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Unavailable("QMP connect " + path + ": " + std::strerror(errno));
  }
  std::string buf;
  auto ctx = [&](const Status& s) { return s.WithContext("QMP " + command + " on " + path); };
  auto greeting = ReadMessage(fd.get(), buf, deadline);
  if (!greeting.ok()) return ctx(greeting.error());
  if (Status s = Send(fd.get(), R"({"execute":"qmp_capabilities"})"); !s.ok()) return ctx(s);
  if (auto r = ReadReply(fd.get(), buf, deadline); !r.ok()) return ctx(r.error());
  nlohmann::json cmd = {{"execute", command}};
  if (!arguments_json.empty()) {
    try {
      cmd["arguments"] = nlohmann::json::parse(arguments_json);
    } catch (const nlohmann::json::exception& e) {
      return InvalidArgument(std::string("QMP arguments: ") + e.what());
    }
  }
  if (Status s = Send(fd.get(), cmd.dump()); !s.ok()) return ctx(s);
  auto reply = ReadReply(fd.get(), buf, deadline);
  if (!reply.ok()) return ctx(reply.error());
  return reply->dump();
}

Result<std::unique_ptr<QmpSession>> QmpSession::Connect(const std::filesystem::path& socket,
                                                       Clock::time_point deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket.string();
  if (path.size() >= sizeof(addr.sun_path)) return InvalidArgument("QMP socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (true) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus(errno, "socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      std::unique_ptr<QmpSession> s(new QmpSession(fd, path));
      auto greeting = ReadMessage(fd, s->buf_, deadline);
      if (!greeting.ok()) return greeting.error().WithContext("QMP greeting on " + path);
      BANGER_ASSIGN_OR_RETURN(std::string caps, s->Execute("qmp_capabilities", "",
                                                           std::chrono::duration_cast<std::chrono::milliseconds>(
                                                               deadline - Clock::now())));
      (void)caps;
      return s;
    }
    int err = errno;
    ::close(fd);
    if (Clock::now() >= deadline) return Unavailable("QMP connect " + path + ": " + std::strerror(err));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

QmpSession::~QmpSession() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::string> QmpSession::Execute(const std::string& command, const std::string& arguments_json,
                                        std::chrono::milliseconds timeout, int pass_fd) {
  auto deadline = Clock::now() + timeout;
  auto ctx = [&](const Status& s) { return s.WithContext("QMP " + command + " on " + path_); };
  nlohmann::json cmd = {{"execute", command}};
  if (!arguments_json.empty()) {
    try {
      cmd["arguments"] = nlohmann::json::parse(arguments_json);
    } catch (const nlohmann::json::exception& e) {
      return InvalidArgument(std::string("QMP arguments: ") + e.what());
    }
  }
  std::string line = cmd.dump() + "\n";
  if (pass_fd >= 0) {
    iovec iov{line.data(), line.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    if (::sendmsg(fd_, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
      return ctx(ErrnoStatus(errno, "QMP sendmsg"));
    }
  } else if (Status s = Send(fd_, cmd.dump()); !s.ok()) {
    return ctx(s);
  }
  auto reply = ReadReply(fd_, buf_, deadline);
  if (!reply.ok()) return ctx(reply.error());
  return reply->dump();
}

Result<std::string> QmpHumanMonitorCommand(const std::filesystem::path& socket, const std::string& command_line,
                                           std::chrono::milliseconds timeout) {
  nlohmann::json args = {{"command-line", command_line}};
  BANGER_ASSIGN_OR_RETURN(std::string text, QmpExecute(socket, "human-monitor-command", args.dump(), timeout));
  try {
    auto j = nlohmann::json::parse(text);
    return j.is_string() ? j.get<std::string>() : std::string();
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("QMP human-monitor-command: ") + e.what());
  }
}

Result<std::string> QmpQueryStatus(const std::filesystem::path& socket, std::chrono::milliseconds timeout) {
  BANGER_ASSIGN_OR_RETURN(std::string text, QmpExecute(socket, "query-status", timeout));
  try {
    auto j = nlohmann::json::parse(text);
    return j.value("status", std::string("unknown"));
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("QMP query-status: ") + e.what());
  }
}

}  // namespace banger
