#include "host/ssh.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <spdlog/spdlog.h>

#include "base/file_lock.h"
#include "base/files.h"
#include "base/strings.h"
#include "providers/qemu_hypervisor.h"
#include "providers/qmp_client.h"

namespace banger::host {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

std::optional<uint64_t> ParseUint(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

std::string ToLower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

}  // namespace

SshPaths SshPathsFor(const StateLayout& layout) {
  SshPaths p;
  p.dir = layout.root / "ssh";
  p.private_key = p.dir / "id_ed25519";
  p.public_key = p.dir / "id_ed25519.pub";
  p.known_hosts = p.dir / "known_hosts";
  p.config = p.dir / "config";
  return p;
}

std::string ReadSshPublicKey(const StateLayout& layout) {
  SshPaths p = SshPathsFor(layout);
  std::error_code ec;
  if (!fs::exists(p.private_key, ec)) return "";
  auto pub = ReadFile(p.public_key);
  return pub ? std::string(Trim(*pub)) : std::string();
}

Result<std::string> EnsureSshKey(const StateLayout& layout, CommandRunner& runner) {
  SshPaths p = SshPathsFor(layout);
  BANGER_RETURN_IF_ERROR(MakeDirs(p.dir, 0700));
  if (std::string pub = ReadSshPublicKey(layout); !pub.empty()) return pub;
  // Generated aside and renamed in: the private key appears last, whole, so a
  // concurrent first use either sees no key or a complete pair.
  BANGER_ASSIGN_OR_RETURN(fs::path tmp, MakeTempDir("keygen", p.dir));
  fs::path key = tmp / "id_ed25519";
  auto out = RunChecked(runner, {.argv = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banger",
                                          "-f", key.string()},
                                 .timeout = std::chrono::seconds(30)});
  if (!out) {
    (void)RemoveAll(tmp);
    return out.error().WithContext("creating banger's SSH key (is openssh-client installed?)");
  }
  std::error_code ec;
  if (!fs::exists(p.private_key, ec)) {
    fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, ec);
    fs::rename(key.string() + ".pub", p.public_key, ec);
    if (!ec) fs::rename(key, p.private_key, ec);
    if (ec) {
      (void)RemoveAll(tmp);
      return ErrnoStatus(ec.value(), "installing banger's SSH key in " + p.dir.string());
    }
  }
  (void)RemoveAll(tmp);
  std::string pub = ReadSshPublicKey(layout);
  if (pub.empty()) return Internal("banger's SSH key pair in " + p.dir.string() + " is incomplete");
  return pub;
}

std::string SshHostAlias(std::string_view sandbox_name) { return std::string(sandbox_name) + ".banger"; }

std::string RemoveKnownHost(std::string_view text, std::string_view host) {
  std::string out;
  out.reserve(text.size());
  std::string bracketed = "[" + std::string(host) + "]:";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view line = text.substr(pos, end - pos);
    pos = end;
    std::string_view rest = Trim(line);
    if (!rest.empty() && rest[0] == '@') {  // marker: the hosts are the next field
      size_t sp = rest.find_first_of(" \t");
      rest = sp == std::string_view::npos ? std::string_view() : Trim(rest.substr(sp));
    }
    std::string_view hosts = rest.substr(0, rest.find_first_of(" \t"));
    bool match = false;
    for (std::string_view h : Split(hosts, ',')) {
      if (h == host || (h.substr(0, bracketed.size()) == bracketed)) match = true;
    }
    if (!match) out.append(line);
  }
  return out;
}

Status ForgetSshHost(const StateLayout& layout, std::string_view sandbox_name) {
  SshPaths p = SshPathsFor(layout);
  std::error_code ec;
  if (!fs::exists(p.known_hosts, ec)) return OkStatus();
  BANGER_ASSIGN_OR_RETURN(std::string text, ReadFile(p.known_hosts));
  std::string kept = RemoveKnownHost(text, SshHostAlias(sandbox_name));
  if (kept == text) return OkStatus();
  return WriteFileAtomic(p.known_hosts, kept, 0600);
}

// ---- ~/.ssh/config ----

std::string SshConfigBlock(const fs::path& included) {
  return std::string(kSshConfigBegin) + "\nInclude \"" + included.string() + "\"\n" + std::string(kSshConfigEnd) +
         "\n";
}

namespace {

// [begin, end) of banger's block in `config` (end includes the end marker's
// newline), or npos.
std::pair<size_t, size_t> FindBlock(std::string_view config) {
  size_t b = 0;
  while (true) {
    b = config.find(kSshConfigBegin, b);
    if (b == std::string_view::npos) return {b, b};
    if (b == 0 || config[b - 1] == '\n') break;
    ++b;
  }
  size_t e = config.find(kSshConfigEnd, b);
  if (e == std::string_view::npos) return {std::string_view::npos, std::string_view::npos};
  e += kSshConfigEnd.size();
  if (e < config.size() && config[e] == '\n') ++e;
  return {b, e};
}

bool SafeConfigPath(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\'' || c == '\\' || c == '$' || c == '`' || c == '%') return false;
  }
  return true;
}

}  // namespace

bool HasSshConfigBlock(std::string_view config) { return FindBlock(config).first != std::string_view::npos; }

std::string InstallSshConfigBlock(std::string_view config, const fs::path& included) {
  std::string block = SshConfigBlock(included);
  auto [b, e] = FindBlock(config);
  if (b != std::string_view::npos) {
    return std::string(config.substr(0, b)) + block + std::string(config.substr(e));
  }
  return block + std::string(config);
}

std::string UninstallSshConfigBlock(std::string_view config) {
  auto [b, e] = FindBlock(config);
  if (b == std::string_view::npos) return std::string(config);
  return std::string(config.substr(0, b)) + std::string(config.substr(e));
}

Result<std::string> RenderSshInclude(const fs::path& banger_path, const StateLayout& layout,
                                     const std::string& config_path) {
  SshPaths p = SshPathsFor(layout);
  std::vector<std::string> paths = {banger_path.string(), layout.root.string(), p.private_key.string(),
                                    p.known_hosts.string()};
  if (!config_path.empty()) paths.push_back(config_path);
  for (const auto& s : paths) {
    if (!SafeConfigPath(s)) {
      return InvalidArgument("path \"" + s + "\" holds a character ssh_config or a shell would interpret "
                             "(quote, $, %, `, backslash or a control character); use another path");
    }
  }
  std::string proxy = "\"" + banger_path.string() + "\" --state-dir \"" + layout.root.string() + "\"";
  if (!config_path.empty()) proxy += " --config \"" + config_path + "\"";
  proxy += " ssh-proxy %h %p";
  return "# Written by `banger ssh-config --install`; included from ~/.ssh/config.\n"
         "# `ssh NAME.banger` reaches sandbox NAME of state directory " + layout.root.string() + ".\n"
         "Host *.banger\n"
         "  ProxyCommand " + proxy + "\n"
         "  User root\n"
         "  IdentityFile \"" + p.private_key.string() + "\"\n"
         "  IdentitiesOnly yes\n"
         "  UserKnownHostsFile \"" + p.known_hosts.string() + "\"\n"
         "  StrictHostKeyChecking accept-new\n"
         "  HashKnownHosts no\n"
         "  CheckHostIP no\n"
         "  LogLevel ERROR\n";
}

Result<std::string> SandboxNameFromSshHost(std::string_view host) {
  constexpr std::string_view kSuffix = ".banger";
  if (host.size() > kSuffix.size()) {
    std::string tail = ToLower(std::string(host.substr(host.size() - kSuffix.size())));
    std::string name = ToLower(std::string(host.substr(0, host.size() - kSuffix.size())));
    if (tail == kSuffix && IsDnsLabel(name)) return name;
  }
  return InvalidArgument("host \"" + std::string(host) + "\" is not NAME.banger");
}

// ---- reaching a guest port ----

std::vector<uint16_t> ParseUsernetForwards(std::string_view text, uint16_t guest_port) {
  std::vector<uint16_t> out;
  for (std::string_view line : Split(text, '\n')) {
    std::vector<std::string> f;
    for (const std::string& w : Split(Trim(line), ' ')) {
      if (!w.empty()) f.push_back(w);
    }
    // TCP[HOST_FORWARD]  FD  src-addr  src-port  dst-addr  dst-port ...
    if (f.size() < 6 || f[0] != "TCP[HOST_FORWARD]") continue;
    auto sport = ParseUint(f[3]);
    auto dport = ParseUint(f[5]);
    if (sport && dport && *sport > 0 && *sport <= 65535 && *dport == guest_port) {
      out.push_back(static_cast<uint16_t>(*sport));
    }
  }
  return out;
}

namespace {

fs::path ForwardFile(const SandboxRecord& rec) { return fs::path(rec.runtime_dir) / "ssh-forward"; }

// A loopback TCP port nothing listens on right now (the kernel's choice).
Result<uint16_t> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoStatus(e, "choosing a free loopback port");
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(a.sin_port));
}

Result<uint16_t> EnsureSshForward(const SandboxRecord& rec) {
  fs::path qmp = RuntimeFilesFor(rec.runtime_dir).qmp_socket;
  auto clock = MakeSystemClock();
  BANGER_ASSIGN_OR_RETURN(FileLock lock,
                          FileLock::Acquire(fs::path(rec.runtime_dir) / "ssh-forward.lock", "ssh forward", *clock,
                                            std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  BANGER_ASSIGN_OR_RETURN(std::string usernet, QmpHumanMonitorCommand(qmp, "info usernet", milliseconds(3000)));
  std::vector<uint16_t> existing = ParseUsernetForwards(usernet, 22);
  uint16_t recorded = RecordedSshForward(rec);
  for (uint16_t port : existing) {
    if (port == recorded) return port;
  }
  // The recorded port is reused when this QEMU (restarted since) lacks it;
  // else a fresh one. Two tries: a port can be taken between choice and use.
  std::string last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    uint16_t port = recorded;
    if (attempt > 0 || port == 0) {
      BANGER_ASSIGN_OR_RETURN(port, FreeLoopbackPort());
    }
    std::string cmd = "hostfwd_add net0 tcp:127.0.0.1:" + std::to_string(port) + "-:22";
    BANGER_ASSIGN_OR_RETURN(std::string reply, QmpHumanMonitorCommand(qmp, cmd, milliseconds(3000)));
    if (Trim(reply).empty()) {
      BANGER_RETURN_IF_ERROR(WriteFileAtomic(ForwardFile(rec), std::to_string(port) + "\n", 0600));
      spdlog::debug("sandbox {}: ssh forward 127.0.0.1:{} -> guest 22", rec.name, port);
      return port;
    }
    last = std::string(Trim(reply));
  }
  return Unavailable("could not add a loopback forward to guest port 22 of sandbox " + rec.name + ": " + last);
}

}  // namespace

uint16_t RecordedSshForward(const SandboxRecord& rec) {
  if (rec.runtime_dir.empty()) return 0;
  auto text = ReadFile(ForwardFile(rec));
  if (!text) return 0;
  auto v = ParseUint(Trim(*text));
  return v && *v > 0 && *v <= 65535 ? static_cast<uint16_t>(*v) : 0;
}

Result<GuestEndpoint> ResolveGuestEndpoint(const SandboxRecord& rec, const SandboxSpec& spec, uint16_t guest_port,
                                           const std::string& netns) {
  if (spec.network.mode == NetworkMode::kNone) {
    return FailedPrecondition("sandbox \"" + rec.name + "\" has network.mode: none, so nothing on the host can "
                              "reach it; use `banger exec " + rec.name + " -- ...`, or give it network.mode: user");
  }
  if (rec.phase != SandboxPhase::kReady && rec.phase != SandboxPhase::kBooting) {
    return FailedPrecondition("sandbox \"" + rec.name + "\" is " + std::string(ToString(rec.phase)) +
                              (rec.last_error.empty() ? "" : ": " + rec.last_error));
  }
  if (rec.pid == 0 || !ProcessAlive({rec.pid, rec.pid_start_time})) {
    return FailedPrecondition("sandbox \"" + rec.name + "\" is not running");
  }
  if (spec.network.mode == NetworkMode::kBridged) {
    if (rec.address.empty()) return FailedPrecondition("sandbox \"" + rec.name + "\" has no address yet");
    if (netns.empty()) return GuestEndpoint{rec.address, guest_port, "bridged address"};
  }
  for (const auto& p : spec.network.ports) {
    if (p.guest != guest_port || p.protocol != Protocol::kTcp) continue;
    std::string addr = spec.network.mode == NetworkMode::kBridged ? p.address : std::string(kDefaultPortAddress);
    if (addr == "0.0.0.0") addr = "127.0.0.1";
    return GuestEndpoint{addr, p.host, "published port"};
  }
  if (spec.network.mode == NetworkMode::kBridged) {
    return FailedPrecondition("sandbox \"" + rec.name + "\" is bridged inside network namespace " + netns +
                              ", which this host cannot reach directly; publish guest port " +
                              std::to_string(guest_port) + " in network.ports");
  }
  if (guest_port != 22) {
    return FailedPrecondition("nothing on the host reaches guest port " + std::to_string(guest_port) +
                              " of sandbox \"" + rec.name + "\" (user-mode networking); publish it in network.ports");
  }
  BANGER_ASSIGN_OR_RETURN(uint16_t port, EnsureSshForward(rec));
  return GuestEndpoint{"127.0.0.1", port, "ssh forward"};
}

}  // namespace banger::host
