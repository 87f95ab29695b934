// `banger dns`: the host-side DNS responder (NAME.banger -> the sandbox's
// leased address) in the foreground, and the same responder for
// `banger watch --dns`. docs/networking.md, "Names from the host".
#pragma once

#include <cstdint>
#include <memory>

#include "base/file_lock.h"
#include "base/status.h"
#include "cli/artifact_commands.h"
#include "dns/server.h"

namespace CLI {
class App;
}

namespace banger::cli {

/// The responder of one state directory: it holds <state>/run/dns.lock (one
/// responder per state directory) and serves until destroyed.
struct HostDns {
  FileLock lock;
  std::unique_ptr<dns::Server> server;  // destroyed before the lock is released
};

/// Starts the responder over `h`'s state database, in its configured network
/// namespace (config network.netns / BANGER_NETNS). `purpose` is recorded in
/// the lock ("dns", "watch --dns"). Errors: another responder on this state
/// directory, a namespace that cannot be entered, port 53 without privileges.
Result<HostDns> StartHostDns(host::Host& h, uint16_t port, const std::string& purpose);

/// Registers `dns` on `app`; it sets `exit_code`.
void AddDnsCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
