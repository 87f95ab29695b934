// The commands that manage artifacts directly: `image ...` and `kernel ...`.
#pragma once

#include <functional>
#include <memory>

#include "base/status.h"
#include "host/host.h"

namespace CLI {
class App;
}

namespace banger::cli {

/// Opens the host when a command runs (commands that need none never call it).
using HostOpener = std::function<Result<std::unique_ptr<host::Host>>()>;

/// Registers `image` and `kernel` with their subcommands on `app`; each sets
/// `exit_code` (which must outlive `app`'s parse).
void AddArtifactCommands(CLI::App& app, HostOpener open_host, int& exit_code);

}  // namespace banger::cli
