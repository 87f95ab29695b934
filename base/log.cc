#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace banger {

void InitLogging(std::string_view level) {
  auto logger = spdlog::stderr_color_mt("banger");
  const auto lvl = spdlog::level::from_str(std::string(level));
  // Debug and trace lines carry the time to the millisecond (where time goes).
  logger->set_pattern(lvl <= spdlog::level::debug ? "%H:%M:%S.%e %^%l%$ %v" : "%^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
}

}  // namespace banger
