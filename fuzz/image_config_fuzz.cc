// An image's config blob (untrusted, from a registry): ParseImageRunConfig
// never throws or crashes, whatever the JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "images/image_config.h"

using namespace banger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    images::ImageRunConfig c = images::ParseImageRunConfig(json);
    for (const auto& [k, v] : c.env) {
      FUZZ_CHECK(k.find('=') == std::string::npos, "env key with '=': " + k);
    }
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("ParseImageRunConfig threw: ") + e.what());
  }
  return 0;
}
