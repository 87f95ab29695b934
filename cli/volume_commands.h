// `banger volume ls|rm`: the persistent volumes (spec.volumes) banger keeps,
// also those whose sandbox is gone (docs/volumes.md).
#pragma once

#include "cli/artifact_commands.h"

namespace banger::cli {

/// Registers `volume` with its subcommands on `app`.
void AddVolumeCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
