// `banger doctor`: every check probes the host (nothing is assumed).
#pragma once

#include <CLI/CLI.hpp>

#include "cli/common.h"

namespace banger::cli {

/// Registers `doctor` on `app`.
void AddDoctorCommands(CLI::App& app, const Globals& g, int& exit_code);

}  // namespace banger::cli
