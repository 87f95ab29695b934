// `banger watch` (the long-running reconciler over spec paths or a git
// repository) and `banger status` (what each watched source last did).
#pragma once

#include "cli/artifact_commands.h"

namespace CLI {
class App;
}

namespace banger::cli {

/// Registers `watch` and `status` on `app`; each sets `exit_code`.
void AddWatchCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
