// Test helpers for dns/: building query packets by hand and reading the
// responses back (independently of the codec under test).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace banger::dns::testing {

using Bytes = std::vector<uint8_t>;

inline void Put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

/// "web.banger" -> 3 'web' 6 'banger' 0 ("" and "." are the root).
inline Bytes WireName(std::string_view dotted) {
  Bytes b;
  while (!dotted.empty() && dotted != ".") {
    size_t dot = dotted.find('.');
    std::string_view label = dotted.substr(0, dot);
    b.push_back(static_cast<uint8_t>(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
  }
  b.push_back(0);
  return b;
}

/// A header: id, flags (0x0100 = RD), qdcount, and the other counts.
inline Bytes HeaderBytes(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0, uint16_t ar = 0) {
  Bytes b;
  for (uint16_t v : {id, flags, qd, an, ns, ar}) Put16(b, v);
  return b;
}

/// A standard query (RD set) for `name`.
inline Bytes QueryFor(std::string_view name, uint16_t qtype = 1, uint16_t id = 0x1234, uint16_t qclass = 1) {
  Bytes b = HeaderBytes(id, 0x0100, 1);
  Bytes n = WireName(name);
  b.insert(b.end(), n.begin(), n.end());
  Put16(b, qtype);
  Put16(b, qclass);
  return b;
}

/// What a response holds, read with a separate, simple decoder.
struct Decoded {
  uint16_t id = 0;
  bool qr = false, aa = false, rd = false, ra = false;
  int opcode = 0, rcode = -1;
  uint16_t qd = 0, an = 0, ns = 0, ar = 0;
  Bytes question;                   // raw question section
  struct Record {
    Bytes owner;                    // raw owner bytes (a pointer stays a pointer)
    uint16_t type = 0, klass = 0;
    uint32_t ttl = 0;
    Bytes rdata;
  };
  std::vector<Record> records;      // answer then authority
  std::optional<std::string> A() const {  // the first A answer as text
    for (size_t i = 0; i < an && i < records.size(); ++i) {
      const auto& r = records[i];
      if (r.type == 1 && r.rdata.size() == 4) {
        return std::to_string(r.rdata[0]) + "." + std::to_string(r.rdata[1]) + "." + std::to_string(r.rdata[2]) +
               "." + std::to_string(r.rdata[3]);
      }
    }
    return std::nullopt;
  }
};

// Skips a name (labels, ending in a root or a pointer); false past the end.
inline bool SkipName(const Bytes& p, size_t& pos, Bytes* raw) {
  size_t start = pos;
  while (true) {
    if (pos >= p.size()) return false;
    uint8_t len = p[pos];
    if ((len & 0xC0) == 0xC0) {
      if (pos + 2 > p.size()) return false;
      pos += 2;
      break;
    }
    pos += 1 + len;
    if (len == 0) break;
  }
  if (pos > p.size()) return false;
  if (raw) raw->assign(p.begin() + static_cast<long>(start), p.begin() + static_cast<long>(pos));
  return true;
}

/// Decodes a response; nothing if it is malformed.
inline std::optional<Decoded> Decode(const Bytes& p) {
  if (p.size() < 12) return std::nullopt;
  auto u16 = [&](size_t at) { return static_cast<uint16_t>(p[at] << 8 | p[at + 1]); };
  Decoded d;
  d.id = u16(0);
  d.qr = p[2] & 0x80;
  d.opcode = (p[2] >> 3) & 0xF;
  d.aa = p[2] & 0x04;
  d.rd = p[2] & 0x01;
  d.ra = p[3] & 0x80;
  d.rcode = p[3] & 0xF;
  d.qd = u16(4);
  d.an = u16(6);
  d.ns = u16(8);
  d.ar = u16(10);
  size_t pos = 12;
  for (int i = 0; i < d.qd; ++i) {
    size_t start = pos;
    if (!SkipName(p, pos, nullptr) || pos + 4 > p.size()) return std::nullopt;
    pos += 4;
    d.question.insert(d.question.end(), p.begin() + static_cast<long>(start), p.begin() + static_cast<long>(pos));
  }
  for (int i = 0; i < d.an + d.ns + d.ar; ++i) {
    Decoded::Record r;
    if (!SkipName(p, pos, &r.owner) || pos + 10 > p.size()) return std::nullopt;
    r.type = u16(pos);
    r.klass = u16(pos + 2);
    r.ttl = static_cast<uint32_t>(u16(pos + 4)) << 16 | u16(pos + 6);
    uint16_t len = u16(pos + 8);
    pos += 10;
    if (pos + len > p.size()) return std::nullopt;
    r.rdata.assign(p.begin() + static_cast<long>(pos), p.begin() + static_cast<long>(pos + len));
    pos += len;
    d.records.push_back(std::move(r));
  }
  if (pos != p.size()) return std::nullopt;  // trailing bytes: the counts lie
  return d;
}

}  // namespace banger::dns::testing
