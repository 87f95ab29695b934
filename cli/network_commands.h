// `banger network ls`: the networks banger manages, their bridges and leases.
#pragma once

#include "cli/artifact_commands.h"

namespace banger::cli {

/// Registers `network` with its subcommands on `app`.
void AddNetworkCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
