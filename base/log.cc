#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace banger {

void InitLogging(std::string_view level) {
  auto logger = spdlog::stderr_color_mt("banger");
  logger->set_pattern("%^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(std::string(level)));
}

}  // namespace banger
