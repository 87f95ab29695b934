#include "dns/responder.h"

#include <array>

#include "base/ipv4.h"

namespace banger::dns {
namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool InZone(const Name& name) { return name.count >= 1 && EqualsIgnoreCase(name.FromRight(0), kZone); }

Reply Negative(Rcode rcode, uint32_t ttl) {
  Reply r;
  r.rcode = rcode;
  r.authoritative = true;
  r.soa_authority = true;
  r.ttl = ttl;
  return r;
}

// The answer for a sandbox's name that exists: its A record, or NODATA.
Reply ForSandbox(uint16_t qtype, uint32_t address, bool in_zone, uint32_t ttl) {
  Reply r;
  r.authoritative = true;
  r.ttl = ttl;
  if (qtype == kTypeA || qtype == kTypeANY) {
    r.address = address;
  } else {
    r.soa_authority = in_zone;
  }
  return r;
}

// Queries inside `banger.`: the apex, NAME.banger., or deeper (never exists).
Reply InsideZone(const Query& q, const NameTable& table, uint32_t ttl) {
  if (q.name.count == 1) {
    if (q.qtype == kTypeSOA || q.qtype == kTypeANY) {
      Reply r;
      r.authoritative = true;
      r.soa_answer = true;
      r.ttl = ttl;
      return r;
    }
    return Negative(Rcode::kNoError, ttl);
  }
  if (q.name.count == 2) {
    if (auto address = table.Find(q.name.FromRight(1))) return ForSandbox(q.qtype, *address, true, ttl);
  }
  return Negative(Rcode::kNxDomain, ttl);
}

}  // namespace

void NameTable::Add(std::string_view name, uint32_t address) {
  if (name.empty() || name.size() > kMaxLabelLength) return;
  std::string key(name);
  for (char& c : key) c = Lower(c);
  by_name_[std::move(key)] = address;
}

std::optional<uint32_t> NameTable::Find(std::string_view label) const {
  if (label.empty() || label.size() > kMaxLabelLength) return std::nullopt;
  std::array<char, kMaxLabelLength> lower;
  for (size_t i = 0; i < label.size(); ++i) lower[i] = Lower(label[i]);
  auto it = by_name_.find(std::string_view(lower.data(), label.size()));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

NameTable TableFromLeases(const std::vector<LeaseRecord>& leases) {
  NameTable table;
  for (const auto& lease : leases) {
    auto address = ParseIpv4(lease.address);
    if (address.ok()) table.Add(lease.sandbox, address->value);
  }
  return table;
}

Reply Decide(const Query& q, const NameTable& table, uint32_t ttl) {
  Reply refused;
  refused.rcode = Rcode::kRefused;
  if (q.qclass != kClassIN && q.qclass != kClassANY) return refused;
  if (q.qtype == kTypeAXFR || q.qtype == kTypeIXFR) return refused;  // no zone transfers
  if (InZone(q.name)) return InsideZone(q, table, ttl);
  if (q.name.count == 1) {
    if (auto address = table.Find(q.name.FromRight(0))) return ForSandbox(q.qtype, *address, false, ttl);
  }
  return refused;
}

size_t Respond(std::span<const uint8_t> packet, const NameTable& table, uint32_t ttl, std::span<uint8_t> out,
               Rcode* rcode) {
  ParseResult parsed = ParseQuery(packet);
  Reply reply;
  switch (parsed.status) {
    case ParseStatus::kIgnore:
      return 0;
    case ParseStatus::kFormErr:
      reply.rcode = Rcode::kFormErr;
      break;
    case ParseStatus::kNotImp:
      reply.rcode = Rcode::kNotImp;
      break;
    case ParseStatus::kOk:
      reply = Decide(parsed.query, table, ttl);
      break;
  }
  if (rcode != nullptr) *rcode = reply.rcode;
  return WriteResponse(parsed.query, parsed.status == ParseStatus::kOk, reply, out);
}

}  // namespace banger::dns
