// Logging setup: spdlog to stderr, level from --log-level / BANGER_LOG.
#pragma once

#include <string_view>

namespace banger {

/// Configures the default spdlog logger. `level` is trace|debug|info|warn|error|off.
void InitLogging(std::string_view level);

}  // namespace banger
