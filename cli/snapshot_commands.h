// `banger snapshot ls|rm|prune`: the templates banger saved to start
// sandboxes by restoring instead of booting (docs/snapshots.md).
#pragma once

#include "cli/artifact_commands.h"

namespace banger::cli {

/// Registers `snapshot` with its subcommands on `app`.
void AddSnapshotCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
