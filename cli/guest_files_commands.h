// `banger cp` (files and directories into and out of a running sandbox) and
// `banger workspace export|sync|show` (docs/workspaces.md). Both move tar
// streams through the guest agent's @banger/tar and @banger/untar builtins.
#pragma once

#include "cli/artifact_commands.h"

namespace banger::cli {

/// Registers `cp` and `workspace` with its subcommands on `app`.
void AddGuestFilesCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
