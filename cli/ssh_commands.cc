#include "cli/ssh_commands.h"

#include <CLI/CLI.hpp>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/files.h"
#include "base/strings.h"
#include "cli/output.h"
#include "host/guest_info.h"
#include "host/ssh.h"
#include "host/vm_runtime.h"
#include "reconciler/engine.h"

namespace banger::cli {
namespace {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

// The global --config value (the ProxyCommand passes it on).
std::string GlobalConfigPath(CLI::App& app) {
  CLI::App* root = &app;
  while (root->get_parent() != nullptr) root = root->get_parent();
  auto* opt = root->get_option_no_throw("--config");
  return opt != nullptr && opt->count() > 0 ? opt->as<std::string>() : std::string();
}

struct Target {
  std::unique_ptr<host::Host> host;
  SandboxRecord record;
  SandboxSpec spec;
};

Result<Target> OpenTarget(const HostOpener& open_host, const std::string& name) {
  Target t;
  BANGER_ASSIGN_OR_RETURN(t.host, open_host());
  BANGER_ASSIGN_OR_RETURN(t.record, t.host->FindSandbox(name));
  BANGER_ASSIGN_OR_RETURN(t.spec, RecordSpec(t.record));
  return t;
}

// Runs a builtin through the agent; its stdout, or an error with its stderr.
Result<std::string> RunBuiltin(host::Host& h, const SandboxRecord& rec, const std::string& builtin) {
  if (rec.phase != SandboxPhase::kReady || rec.pid == 0) {
    return FailedPrecondition("sandbox \"" + rec.name + "\" is " + std::string(ToString(rec.phase)));
  }
  SandboxRuntime* rt = h.runtime();
  if (rt == nullptr) return FailedPrecondition("no hypervisor on this host");
  BANGER_ASSIGN_OR_RETURN(CommandOutput out, rt->Exec(rec, {builtin}, std::chrono::seconds(20)));
  if (out.exit_code != 0) {
    std::string err(Trim(out.stderr_data.substr(0, 500)));
    return FailedPrecondition(builtin + " failed in sandbox " + rec.name + " (exit " +
                              std::to_string(out.exit_code) + ")" + (err.empty() ? "" : ": " + err) +
                              (out.exit_code == 127 ? " (the sandbox's agent predates it: restart the sandbox)" : ""));
  }
  return std::move(out.stdout_data);
}

fs::path HomeDir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return {};
}

fs::path SelfPath() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path("banger") : p;
}

// Connects to host:port (TCP) within `timeout`.
Result<int> Dial(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return InvalidArgument("address " + host + ": " + ::gai_strerror(rc));
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int err = 0;
  if (fd < 0 || ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) err = errno;
  ::freeaddrinfo(res);
  if (err != 0) {
    if (fd >= 0) ::close(fd);
    return Unavailable("connecting to " + host + ":" + service + ": " + std::strerror(err));
  }
  return fd;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Copies stdin to the socket and the socket to stdout until the socket ends.
void Relay(int sock) {
  bool in_open = true;
  char buf[65536];
  while (true) {
    pollfd p[2] = {{sock, POLLIN, 0}, {0, POLLIN, 0}};
    int r = ::poll(p, in_open ? 2 : 1, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return;
    if (p[0].revents != 0) {
      ssize_t n = ::read(sock, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !WriteAll(1, buf, static_cast<size_t>(n))) return;
    }
    if (in_open && p[1].revents != 0) {
      ssize_t n = ::read(0, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        in_open = false;
        ::shutdown(sock, SHUT_WR);
      } else if (!WriteAll(sock, buf, static_cast<size_t>(n))) {
        return;
      }
    }
  }
}

// ~/.ssh (0700) and its config file, created when missing.
Status EditUserSshConfig(const std::function<std::string(const std::string&)>& edit, bool create) {
  fs::path home = HomeDir();
  if (home.empty()) return FailedPrecondition("HOME is not set");
  fs::path dir = home / ".ssh";
  fs::path config = dir / "config";
  std::error_code ec;
  if (!fs::exists(config, ec) && !create) return OkStatus();
  if (!fs::exists(dir, ec)) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(errno, "creating " + dir.string());
  }
  // A symlinked config (dotfile managers) is edited where it points.
  fs::path target = config;
  if (fs::is_symlink(config, ec)) {
    target = fs::weakly_canonical(config, ec);
    if (ec) return ErrnoStatus(ec.value(), "resolving " + config.string());
  }
  std::string text;
  unsigned mode = 0600;
  if (fs::exists(target, ec)) {
    BANGER_ASSIGN_OR_RETURN(text, ReadFile(target));
    struct stat st {};
    if (::stat(target.c_str(), &st) == 0) mode = st.st_mode & 07777;
  }
  std::string edited = edit(text);
  if (edited == text && fs::exists(target, ec)) return OkStatus();
  return WriteFileAtomic(target, edited, mode);
}

std::string FormatCpu(double seconds) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1fs", seconds);
  return b;
}

}  // namespace

void AddSshCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  // ---- ssh ----
  auto* ssh = app.add_subcommand("ssh", "Open an SSH session to a sandbox with banger's key (the image needs sshd)");
  ssh->footer(
      "Examples:\n  banger ssh web\n  banger ssh web -- uname -a\n  banger ssh web -l app -- -L 8080:localhost:80\n"
      "Reaches the sandbox's address (bridged), a published port for guest 22, or a loopback forward banger adds\n"
      "to a user-mode sandbox. The exit code is ssh's.");
  auto* s_name = new std::string;
  auto* s_user = new std::string("root");
  auto* s_args = new std::vector<std::string>;
  ssh->add_option("name", *s_name, "Sandbox name")->required();
  ssh->add_option("-l,--user", *s_user, "User to log in as (default root)");
  ssh->add_option("args", *s_args, "ssh arguments after the destination, e.g. a command (after --)");
  ssh->callback([=, &exit_code] {
    auto t = OpenTarget(open_host, *s_name);
    if (!t) {
      exit_code = PrintError(t.error());
      return;
    }
    auto key = host::EnsureSshKey(t->host->layout(), t->host->runner());
    if (!key) {
      exit_code = PrintError(key.error());
      return;
    }
    auto ep = host::ResolveGuestEndpoint(t->record, t->spec, 22, t->host->config().netns);
    if (!ep) {
      exit_code = PrintError(ep.error());
      return;
    }
    host::SshPaths paths = host::SshPathsFor(t->host->layout());
    std::vector<std::string> argv = {"ssh",
                                     "-i", paths.private_key.string(),
                                     "-o", "IdentitiesOnly=yes",
                                     "-o", "UserKnownHostsFile=" + paths.known_hosts.string(),
                                     "-o", "StrictHostKeyChecking=accept-new",
                                     "-o", "HostKeyAlias=" + host::SshHostAlias(t->record.name),
                                     "-o", "HashKnownHosts=no",
                                     "-o", "CheckHostIP=no",
                                     "-o", "LogLevel=ERROR",
                                     "-p", std::to_string(ep->port),
                                     "-l", *s_user,
                                     ep->host};
    argv.insert(argv.end(), s_args->begin(), s_args->end());
    t->host.reset();  // close the state database before ssh replaces this process
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp("ssh", cargv.data());
    exit_code = PrintError(ErrnoStatus(errno, "running ssh (is openssh-client installed?)"));
  });

  // ---- ssh-proxy (the ProxyCommand of ssh NAME.banger) ----
  auto* proxy = app.add_subcommand("ssh-proxy", "");  // empty description: hidden from the help
  proxy->group("");
  auto* p_host = new std::string;
  auto* p_port = new uint16_t(22);
  proxy->add_option("host", *p_host, "NAME.banger")->required();
  proxy->add_option("port", *p_port, "Guest port")->required();
  proxy->callback([=, &exit_code] {
    auto name = host::SandboxNameFromSshHost(*p_host);
    if (!name) {
      exit_code = PrintError(name.error());
      return;
    }
    auto t = OpenTarget(open_host, *name);
    if (!t) {
      exit_code = PrintError(t.error());
      return;
    }
    auto ep = host::ResolveGuestEndpoint(t->record, t->spec, *p_port, t->host->config().netns);
    if (!ep) {
      exit_code = PrintError(ep.error());
      return;
    }
    t->host.reset();
    auto fd = Dial(ep->host, ep->port);
    if (!fd) {
      exit_code = PrintError(fd.error());
      return;
    }
    Relay(*fd);
    ::close(*fd);
    exit_code = 0;
  });

  // ---- ssh-config ----
  auto* sc = app.add_subcommand("ssh-config", "Let plain ssh, scp and editors reach sandboxes as NAME.banger");
  sc->footer(
      "Examples:\n  banger ssh-config --install     # then: ssh web.banger, scp f web.banger:/tmp/\n"
      "  banger ssh-config --print\n  banger ssh-config --uninstall\n"
      "--install puts a marked Include block at the top of ~/.ssh/config (created 0600 if missing);\n"
      "--uninstall removes exactly that block.");
  auto* install = new bool(false);
  auto* uninstall = new bool(false);
  auto* print = new bool(false);
  auto* action = sc->add_option_group("action")->require_option(1);
  action->add_flag("--install", *install, "Add the Include block to ~/.ssh/config");
  action->add_flag("--uninstall", *uninstall, "Remove it");
  action->add_flag("--print", *print, "Print the ssh configuration banger would include");
  sc->callback([=, &exit_code, &app] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    host::SshPaths paths = host::SshPathsFor((*h)->layout());
    if (*uninstall) {
      Status s = EditUserSshConfig([](const std::string& text) { return host::UninstallSshConfigBlock(text); },
                                   /*create=*/false);
      if (s.ok()) s = RemoveAll(paths.config);
      if (!s.ok()) {
        exit_code = PrintError(s);
        return;
      }
      std::printf("Removed banger's block from %s\n", (HomeDir() / ".ssh/config").c_str());
      exit_code = 0;
      return;
    }
    auto text = host::RenderSshInclude(SelfPath(), (*h)->layout(), GlobalConfigPath(app));
    if (!text) {
      exit_code = PrintError(text.error());
      return;
    }
    if (*print) {
      std::printf("# %s (included from ~/.ssh/config by --install):\n%s", paths.config.c_str(), text->c_str());
      exit_code = 0;
      return;
    }
    auto key = host::EnsureSshKey((*h)->layout(), (*h)->runner());
    Status s = key.ok() ? WriteFileAtomic(paths.config, *text, 0600) : key.error();
    if (s.ok()) {
      s = EditUserSshConfig(
          [&](const std::string& cfg) { return host::InstallSshConfigBlock(cfg, paths.config); }, /*create=*/true);
    }
    if (!s.ok()) {
      exit_code = PrintError(s);
      return;
    }
    std::printf("Installed: %s includes %s\nTry: ssh NAME.banger\n", (HomeDir() / ".ssh/config").c_str(),
                paths.config.c_str());
    exit_code = 0;
  });

  // ---- ports ----
  auto* ports = app.add_subcommand("ports", "List a sandbox's listening TCP/UDP sockets and how the host reaches them");
  ports->footer("Examples:\n  banger ports web\n  banger ports web -o json");
  auto* pt_name = new std::string;
  auto* pt_output = new std::string("table");
  ports->add_option("name", *pt_name, "Sandbox name")->required();
  ports->add_option("-o,--output", *pt_output, "table|json")->check(CLI::IsMember({"table", "json"}));
  ports->callback([=, &exit_code] {
    auto t = OpenTarget(open_host, *pt_name);
    if (!t) {
      exit_code = PrintError(t.error());
      return;
    }
    auto out = RunBuiltin(*t->host, t->record, "@banger/ports");
    auto socks = out ? host::ParseGuestPorts(*out) : Result<std::vector<host::GuestSocket>>(out.error());
    if (!socks) {
      exit_code = PrintError(socks.error());
      return;
    }
    uint16_t fw = host::RecordedSshForward(t->record);
    std::sort(socks->begin(), socks->end(), [](const host::GuestSocket& a, const host::GuestSocket& b) {
      return std::tie(a.proto, a.port, a.address) < std::tie(b.proto, b.port, b.address);
    });
    if (*pt_output == "json") {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& s : *socks) {
        std::string ep = host::HostEndpointFor(s, t->record, t->spec, fw);
        nlohmann::json j = {{"protocol", s.proto}, {"address", s.address}, {"port", s.port},
                            {"hostEndpoint", ep.empty() ? nlohmann::json(nullptr) : nlohmann::json(ep)}};
        j["pid"] = s.pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(s.pid);
        j["process"] = s.process.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.process);
        arr.push_back(j);
      }
      std::printf("%s\n", arr.dump(2).c_str());
    } else {
      std::vector<std::vector<std::string>> rows = {{"PROTO", "ADDRESS", "PORT", "PROCESS", "HOST ENDPOINT"}};
      for (const auto& s : *socks) {
        std::string ep = host::HostEndpointFor(s, t->record, t->spec, fw);
        rows.push_back({s.proto, s.address, std::to_string(s.port),
                        s.pid == 0 ? "-" : s.process + " (" + std::to_string(s.pid) + ")",
                        ep.empty() ? (host::IsLoopbackAddress(s.address) ? "- (guest loopback)" : "-") : ep});
      }
      std::fputs(RenderTable(rows).c_str(), stdout);
    }
    exit_code = 0;
  });

  // ---- stats ----
  auto* stats = app.add_subcommand("stats", "CPU, memory and disk use of sandboxes (host and guest view)");
  stats->footer("Examples:\n  banger stats\n  banger stats web -o json");
  auto* st_name = new std::string;
  auto* st_output = new std::string("table");
  stats->add_option("name", *st_name, "Sandbox name (default: all)");
  stats->add_option("-o,--output", *st_output, "table|json")->check(CLI::IsMember({"table", "json"}));
  stats->callback([=, &exit_code] {
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    std::vector<SandboxRecord> recs;
    if (!st_name->empty()) {
      auto r = (*h)->FindSandbox(*st_name);
      if (!r) {
        exit_code = PrintError(r.error());
        return;
      }
      recs.push_back(*r);
    } else {
      auto all = (*h)->store().ListSandboxes();
      if (!all) {
        exit_code = PrintError(all.error());
        return;
      }
      recs = *all;
    }
    struct Row {
      const SandboxRecord* rec;
      bool running = false;
      std::optional<uint64_t> ticks0, ticks1, rss, disk;
      std::optional<host::GuestStats> guest;
      std::string guest_error;
    };
    std::vector<Row> rows;
    auto cpu_ticks = [](int pid) -> std::optional<uint64_t> {
      auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
      if (!text) return std::nullopt;
      auto t = host::ParseProcPidStatCpuTicks(*text);
      return t ? std::optional<uint64_t>(*t) : std::nullopt;
    };
    for (const auto& r : recs) {
      Row row{&r};
      row.running = r.pid != 0 && ProcessAlive({r.pid, r.pid_start_time});
      if (row.running) row.ticks0 = cpu_ticks(r.pid);
      rows.push_back(row);
    }
    auto t0 = std::chrono::steady_clock::now();
    for (auto& row : rows) {
      const SandboxRecord& r = *row.rec;
      struct stat st {};
      if (!r.disk_path.empty() && ::stat(r.disk_path.c_str(), &st) == 0) {
        row.disk = static_cast<uint64_t>(st.st_blocks) * 512;
      }
      if (!row.running) continue;
      if (auto status = ReadFile("/proc/" + std::to_string(r.pid) + "/status")) {
        if (auto rss = host::ParseVmRssBytes(*status)) row.rss = *rss;
      }
      auto out = RunBuiltin(**h, r, "@banger/stats");
      auto g = out ? host::ParseGuestStats(*out) : Result<host::GuestStats>(out.error());
      if (g) {
        row.guest = *g;
      } else {
        row.guest_error = g.error().message();
      }
    }
    // At least half a second between the two CPU samples.
    auto elapsed = std::chrono::steady_clock::now() - t0;
    if (elapsed < milliseconds(500)) std::this_thread::sleep_for(milliseconds(500) - elapsed);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& row : rows) {
      if (row.running) row.ticks1 = cpu_ticks(row.rec->pid);
    }
    double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    auto opt = [](const std::optional<uint64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    if (*st_output == "json") {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& row : rows) {
        nlohmann::json j = {{"name", row.rec->name}, {"running", row.running}};
        nlohmann::json cpu = {{"hostSeconds", nullptr}, {"utilisationPercent", nullptr}};
        if (row.ticks1) cpu["hostSeconds"] = static_cast<double>(*row.ticks1) / hz;
        if (row.ticks0 && row.ticks1 && *row.ticks1 >= *row.ticks0) {
          cpu["utilisationPercent"] = static_cast<double>(*row.ticks1 - *row.ticks0) / hz / seconds * 100.0;
        }
        std::optional<uint64_t> gused, gtotal, fsu, fst, up;
        if (row.guest) {
          gtotal = row.guest->mem_total_bytes;
          if (row.guest->mem_total_bytes && row.guest->mem_available_bytes) {
            gused = *row.guest->mem_total_bytes - *row.guest->mem_available_bytes;
          }
          fsu = row.guest->fs_used_bytes;
          fst = row.guest->fs_total_bytes;
          up = row.guest->uptime_seconds;
          if (row.guest->cpu_busy_ticks && row.guest->ticks_per_second) {
            cpu["guestBusySeconds"] =
                static_cast<double>(*row.guest->cpu_busy_ticks) / static_cast<double>(*row.guest->ticks_per_second);
          }
          cpu["guestCpus"] = opt(row.guest->cpus);
        }
        j["cpu"] = cpu;
        j["memory"] = {{"guestUsedBytes", opt(gused)}, {"guestTotalBytes", opt(gtotal)}, {"hostRssBytes", opt(row.rss)}};
        j["disk"] = {{"hostBytes", opt(row.disk)}, {"guestUsedBytes", opt(fsu)}, {"guestTotalBytes", opt(fst)}};
        j["uptimeSeconds"] = opt(up);
        if (!row.guest_error.empty()) j["guestError"] = row.guest_error;
        arr.push_back(j);
      }
      std::printf("%s\n", (st_name->empty() ? arr : arr.at(0)).dump(2).c_str());
      exit_code = 0;
      return;
    }
    std::vector<std::vector<std::string>> table = {
        {"NAME", "CPU%", "CPU TIME", "MEM (GUEST)", "RSS (HOST)", "DISK (HOST)", "FS (GUEST)"}};
    auto bytes = [](const std::optional<uint64_t>& v) { return v ? HumanBytes(*v) : std::string("-"); };
    for (const auto& row : rows) {
      std::string pct = "-", cpu = "-", mem = "-", fs_use = "-";
      if (row.ticks0 && row.ticks1 && *row.ticks1 >= *row.ticks0) {
        char b[32];
        std::snprintf(b, sizeof(b), "%.1f", static_cast<double>(*row.ticks1 - *row.ticks0) / hz / seconds * 100.0);
        pct = b;
      }
      if (row.ticks1) cpu = FormatCpu(static_cast<double>(*row.ticks1) / hz);
      if (row.guest && row.guest->mem_total_bytes && row.guest->mem_available_bytes) {
        mem = HumanBytes(*row.guest->mem_total_bytes - *row.guest->mem_available_bytes) + " / " +
              HumanBytes(*row.guest->mem_total_bytes);
      }
      if (row.guest && row.guest->fs_used_bytes && row.guest->fs_total_bytes) {
        fs_use = HumanBytes(*row.guest->fs_used_bytes) + " / " + HumanBytes(*row.guest->fs_total_bytes);
      }
      table.push_back({row.rec->name, row.running ? pct : "stopped", cpu, mem, bytes(row.rss), bytes(row.disk), fs_use});
    }
    std::fputs(RenderTable(table).c_str(), stdout);
    for (const auto& row : rows) {
      if (!row.guest_error.empty()) std::fprintf(stderr, "warning: %s: %s\n", row.rec->name.c_str(), row.guest_error.c_str());
    }
    exit_code = 0;
  });
}

}  // namespace banger::cli
