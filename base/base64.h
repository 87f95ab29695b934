// Base64 (RFC 4648, standard alphabet, padded) for host-side code. The guest
// agent keeps its own decoder because it links nothing but libc.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace banger {

std::string Base64Encode(std::string_view data);
/// InvalidArgument on characters outside the alphabet or data after padding.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace banger
