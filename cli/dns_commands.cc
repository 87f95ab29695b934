#include "cli/dns_commands.h"

#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/output.h"

namespace banger::cli {
namespace {

constexpr int kExitOk = 0;

// Blocks SIGINT and SIGTERM in this thread and every thread started after
// it, so that only sigwait takes them (see RunDns).
sigset_t BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

int RunDns(host::Host& h, uint16_t port) {
  // Blocked before the server thread starts, or the kernel could deliver a
  // signal to it with the default action (ending the process mid-answer).
  sigset_t stop = BlockStopSignals();
  auto served = StartHostDns(h, port, "dns");
  if (!served) return PrintError(served.error());
  spdlog::info("banger dns (pid {}): answering NAME.banger on every bridge address{}; stop with SIGINT or SIGTERM",
               ::getpid(), h.config().netns.empty() ? "" : " in network namespace " + h.config().netns);
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  served->server.reset();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace

Result<HostDns> StartHostDns(host::Host& h, uint16_t port, const std::string& purpose) {
  std::filesystem::path lock_path = h.layout().run_dir / "dns.lock";
  auto lock = FileLock::TryAcquire(lock_path, purpose);
  if (!lock) {
    return FailedPrecondition("another banger DNS responder is already running on state directory " +
                              h.layout().root.string() + " (" + ReadLockHolder(lock_path).Describe() +
                              "); stop it first");
  }
  dns::ServerOptions options;
  options.netns = h.config().netns;
  options.port = port;
  auto server = dns::Server::Start(dns::StateSnapshots(h.store()), options);
  if (!server) return server.error();
  return HostDns{std::move(*lock), std::move(*server)};
}

void AddDnsCommands(CLI::App& app, HostOpener open_host, int& exit_code) {
  auto* dns = app.add_subcommand(
      "dns", "Answer NAME.banger with each sandbox's address, on every bridge address (port 53), until stopped");
  dns->footer("Example:\n  sudo banger dns                # then: dig @10.213.0.1 web.banger");
  auto port = std::make_shared<uint16_t>(53);
  dns->add_option("--port", *port, "UDP port (default 53; another one is for testing)")->check(CLI::Range(1, 65535));
  dns->callback([port, open_host, &exit_code, &app] {
    if (app.get_option("--log-level")->count() == 0 && std::getenv("BANGER_LOG") == nullptr) {
      spdlog::set_level(spdlog::level::info);
    }
    auto h = open_host();
    if (!h) {
      exit_code = PrintError(h.error());
      return;
    }
    exit_code = RunDns(**h, *port);
  });
}

}  // namespace banger::cli
