// IPv4 addresses and prefixes as plain integers: parsing, formatting and the
// subnet arithmetic bridged networking needs (address leases, choosing a
// subnet that avoids the host's routes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger {

/// An IPv4 address in host byte order.
struct Ipv4 {
  uint32_t value = 0;
  bool operator==(const Ipv4&) const = default;
  auto operator<=>(const Ipv4&) const = default;
};

/// Parses dotted-quad "10.1.2.3" (exactly four decimal parts, no leading
/// zeros beyond "0"). InvalidArgument naming the text otherwise.
Result<Ipv4> ParseIpv4(std::string_view text);
std::string ToString(Ipv4 a);

/// A prefix "10.213.0.0/24". The address is the network address (host bits zero).
struct Ipv4Prefix {
  Ipv4 network;
  int length = 0;  // 0..32
  bool operator==(const Ipv4Prefix&) const = default;

  uint32_t Mask() const { return length == 0 ? 0u : ~0u << (32 - length); }
  bool Contains(Ipv4 a) const { return (a.value & Mask()) == network.value; }
  bool Overlaps(const Ipv4Prefix& other) const;
  /// Number of addresses, including network and broadcast.
  uint64_t Size() const { return uint64_t{1} << (32 - length); }
  /// The n-th address of the prefix (0 = network address). REQUIRES n < Size().
  Ipv4 At(uint64_t n) const { return Ipv4{network.value + static_cast<uint32_t>(n)}; }
  Ipv4 Broadcast() const { return Ipv4{network.value | ~Mask()}; }
};

/// Parses "10.213.0.0/24". With `strict`, host bits must be zero
/// ("10.213.0.1/24" is an error that says which network was meant).
Result<Ipv4Prefix> ParseIpv4Prefix(std::string_view text, bool strict = true);
std::string ToString(const Ipv4Prefix& p);

/// The first prefix of `length` inside `pool` that overlaps none of `taken`.
std::optional<Ipv4Prefix> FirstFreePrefix(const Ipv4Prefix& pool, int length,
                                          const std::vector<Ipv4Prefix>& taken);

}  // namespace banger
