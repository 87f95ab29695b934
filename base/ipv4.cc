#include "base/ipv4.h"

#include <charconv>

namespace banger {

Result<Ipv4> ParseIpv4(std::string_view text) {
  auto bad = [&]() { return InvalidArgument("\"" + std::string(text) + "\" is not an IPv4 address (want a.b.c.d)"); };
  uint32_t value = 0;
  size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    size_t end = text.find('.', pos);
    if (part == 3) {
      if (end != std::string_view::npos) return bad();
      end = text.size();
    } else if (end == std::string_view::npos) {
      return bad();
    }
    std::string_view digits = text.substr(pos, end - pos);
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) return bad();
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || v > 255) return bad();
    value = (value << 8) | v;
    pos = end + 1;
  }
  return Ipv4{value};
}

std::string ToString(Ipv4 a) {
  return std::to_string(a.value >> 24) + "." + std::to_string((a.value >> 16) & 0xff) + "." +
         std::to_string((a.value >> 8) & 0xff) + "." + std::to_string(a.value & 0xff);
}

bool Ipv4Prefix::Overlaps(const Ipv4Prefix& other) const {
  int shorter = std::min(length, other.length);
  uint32_t mask = shorter == 0 ? 0u : ~0u << (32 - shorter);
  return (network.value & mask) == (other.network.value & mask);
}

Result<Ipv4Prefix> ParseIpv4Prefix(std::string_view text, bool strict) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return InvalidArgument("\"" + std::string(text) + "\" is not an IPv4 prefix (want a.b.c.d/N, e.g. 10.213.0.0/24)");
  }
  BANGER_ASSIGN_OR_RETURN(Ipv4 addr, ParseIpv4(text.substr(0, slash)));
  std::string_view len = text.substr(slash + 1);
  int n = -1;
  auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), n);
  if (len.empty() || ec != std::errc() || ptr != len.data() + len.size() || n < 0 || n > 32) {
    return InvalidArgument("\"" + std::string(text) + "\": the prefix length must be 0..32");
  }
  Ipv4Prefix p{addr, n};
  if ((addr.value & p.Mask()) != addr.value) {
    Ipv4Prefix meant{Ipv4{addr.value & p.Mask()}, n};
    if (strict) {
      return InvalidArgument("\"" + std::string(text) + "\" has host bits set (did you mean " + ToString(meant) + "?)");
    }
    p = meant;
  }
  return p;
}

std::string ToString(const Ipv4Prefix& p) { return ToString(p.network) + "/" + std::to_string(p.length); }

std::optional<Ipv4Prefix> FirstFreePrefix(const Ipv4Prefix& pool, int length, const std::vector<Ipv4Prefix>& taken) {
  if (length < pool.length || length > 32) return std::nullopt;
  uint64_t count = uint64_t{1} << (length - pool.length);
  uint64_t step = uint64_t{1} << (32 - length);
  for (uint64_t i = 0; i < count; ++i) {
    Ipv4Prefix candidate{Ipv4{pool.network.value + static_cast<uint32_t>(i * step)}, length};
    bool free = true;
    for (const auto& t : taken) {
      if (candidate.Overlaps(t)) {
        free = false;
        break;
      }
    }
    if (free) return candidate;
  }
  return std::nullopt;
}

}  // namespace banger
