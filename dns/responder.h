// What banger's DNS responder answers, decided from a snapshot of the leases
// (pure: no sockets, no database). It serves the `banger.` zone and the bare
// names of sandboxes, and nothing else: it is not a recursive resolver.
//
//   NAME.banger. A     -> the sandbox's leased address (AA, short TTL)
//   NAME.        A     -> the same, when NAME is a sandbox (for search-less use)
//   NAME.banger. AAAA  -> NOERROR, no answers (NODATA), SOA in authority
//   other.banger.      -> NXDOMAIN, SOA in authority
//   banger. SOA        -> the zone's SOA
//   anything else      -> REFUSED
//   malformed          -> FORMERR; an opcode other than QUERY -> NOTIMP
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dns/message.h"
#include "state/state_store.h"

namespace banger::dns {

/// Sandbox names and their addresses. Lookups are case-insensitive and do not
/// allocate.
class NameTable {
 public:
  /// Adds or replaces `name` (a DNS label: at most 63 bytes; longer ones
  /// could never be asked for and are skipped). `address` in host order.
  void Add(std::string_view name, uint32_t address);
  std::optional<uint32_t> Find(std::string_view label) const;
  size_t size() const { return by_name_.size(); }

 private:
  std::map<std::string, uint32_t, std::less<>> by_name_;  // lower-case keys
};

/// The table of every lease (sandbox -> address); leases whose address does
/// not parse are skipped.
NameTable TableFromLeases(const std::vector<LeaseRecord>& leases);

/// The answer to a parsed query (ParseStatus::kOk).
Reply Decide(const Query& query, const NameTable& table, uint32_t ttl);

/// Parses `packet`, decides and writes the response into `out` (at least
/// kMaxResponseSize bytes). Returns its size; 0 means send nothing. The
/// rcode is reported through `rcode` when not null (for logs and tests).
size_t Respond(std::span<const uint8_t> packet, const NameTable& table, uint32_t ttl, std::span<uint8_t> out,
               Rcode* rcode = nullptr);

}  // namespace banger::dns
