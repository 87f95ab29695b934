// `banger ssh`, `banger ssh-config`, `banger ssh-proxy` (docs/ssh.md) and the
// look-inside commands `banger ports` and `banger stats`.
#pragma once

#include "cli/artifact_commands.h"

namespace banger::cli {

/// Registers ssh, ssh-config, ssh-proxy (hidden), ports and stats on `app`.
void AddSshCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
