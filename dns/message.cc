#include "dns/message.h"

namespace banger::dns {
namespace {

uint16_t Read16(std::span<const uint8_t> p, size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}

// Reads the question's name starting at `pos`; on success `pos` is just past
// its root label. False for a malformed name (pointer, reserved label type,
// too long, or running past the packet).
bool ReadName(std::span<const uint8_t> packet, size_t& pos, Name& name) {
  size_t wire = 0;
  name.count = 0;
  while (true) {
    if (pos >= packet.size()) return false;          // truncated
    uint8_t len = packet[pos];
    if ((len & 0xC0) != 0) return false;             // pointer (0xC0) or 0x40/0x80: > 63
    wire += 1 + len;
    if (wire > kMaxNameLength) return false;
    if (len == 0) {
      ++pos;
      return true;
    }
    if (len > packet.size() - pos - 1) return false;  // label runs past the end
    if (name.count == kMaxLabels) return false;       // unreachable given 255, kept as a guard
    name.labels[name.count++] =
        std::string_view(reinterpret_cast<const char*>(packet.data() + pos + 1), len);
    pos += 1 + len;
  }
}

// Appends to a fixed buffer; remembers an overflow instead of writing past it.
class Writer {
 public:
  explicit Writer(std::span<uint8_t> out) : out_(out) {}
  void U8(uint8_t v) {
    if (!Room(1)) return;
    out_[pos_++] = v;
  }
  void U16(uint16_t v) {
    U8(static_cast<uint8_t>(v >> 8));
    U8(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    U16(static_cast<uint16_t>(v >> 16));
    U16(static_cast<uint16_t>(v));
  }
  void Bytes(std::span<const uint8_t> b) {
    if (!Room(b.size())) return;
    for (uint8_t c : b) out_[pos_++] = c;
  }
  // A name in wire form from dotted text ("hostmaster.banger"), no compression.
  void Name(std::string_view dotted) {
    while (!dotted.empty()) {
      size_t dot = dotted.find('.');
      std::string_view label = dotted.substr(0, dot);
      U8(static_cast<uint8_t>(label.size()));
      Bytes({reinterpret_cast<const uint8_t*>(label.data()), label.size()});
      dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
    }
    U8(0);
  }
  size_t pos() const { return pos_; }
  bool overflow() const { return overflow_; }

 private:
  bool Room(size_t n) {
    if (overflow_ || n > out_.size() - pos_) overflow_ = true;
    return !overflow_;
  }
  std::span<uint8_t> out_;
  size_t pos_ = 0;
  bool overflow_ = false;
};

// banger. SOA banger. hostmaster.banger. 1 3600 600 86400 TTL: the zone's
// apex, so that resolvers cache negative answers for no longer than TTL.
void WriteSoa(Writer& w, uint32_t ttl) {
  w.Name(kZone);
  w.U16(kTypeSOA);
  w.U16(kClassIN);
  w.U32(ttl);
  // rdata: mname (8) + rname (19) + five 32-bit numbers (20)
  w.U16(static_cast<uint16_t>(kZone.size() + 2 + 11 + kZone.size() + 2 + 20));
  w.Name(kZone);
  w.U8(10);
  w.Bytes({reinterpret_cast<const uint8_t*>("hostmaster"), 10});
  w.Name(kZone);
  w.U32(1);     // serial: no secondaries ever transfer this zone
  w.U32(3600);  // refresh
  w.U32(600);   // retry
  w.U32(86400); // expire
  w.U32(ttl);   // minimum: the negative-caching TTL
}

}  // namespace

std::string_view ToString(Rcode rcode) {
  switch (rcode) {
    case Rcode::kNoError: return "NOERROR";
    case Rcode::kFormErr: return "FORMERR";
    case Rcode::kServFail: return "SERVFAIL";
    case Rcode::kNxDomain: return "NXDOMAIN";
    case Rcode::kNotImp: return "NOTIMP";
    case Rcode::kRefused: return "REFUSED";
  }
  return "RCODE?";
}

std::string ToText(const Name& name) {
  if (name.count == 0) return ".";
  std::string out;
  for (size_t i = 0; i < name.count; ++i) {
    for (char c : name.labels[i]) {
      bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (plain) {
        out += c;
      } else {
        unsigned v = static_cast<unsigned char>(c);
        out += '\\';
        out += static_cast<char>('0' + v / 100);
        out += static_cast<char>('0' + v / 10 % 10);
        out += static_cast<char>('0' + v % 10);
      }
    }
    out += '.';
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

ParseResult ParseQuery(std::span<const uint8_t> packet) {
  ParseResult r;
  if (packet.size() < kHeaderSize) return r;
  Header& h = r.query.header;
  h.id = Read16(packet, 0);
  uint8_t flags = packet[2];
  h.qr = (flags & 0x80) != 0;
  h.opcode = (flags >> 3) & 0x0F;
  h.rd = (flags & 0x01) != 0;
  h.qdcount = Read16(packet, 4);
  if (h.qr) return r;  // never answer a response: two servers could loop
  if (h.opcode != 0) {
    r.status = ParseStatus::kNotImp;
    return r;
  }
  r.status = ParseStatus::kFormErr;
  if (h.qdcount != 1) return r;
  size_t pos = kHeaderSize;
  if (!ReadName(packet, pos, r.query.name)) return r;
  if (packet.size() - pos < 4) return r;
  r.query.qtype = Read16(packet, pos);
  r.query.qclass = Read16(packet, pos + 2);
  r.query.question = packet.subspan(kHeaderSize, pos + 4 - kHeaderSize);
  r.status = ParseStatus::kOk;
  return r;
}

size_t WriteResponse(const Query& query, bool with_question, const Reply& reply, std::span<uint8_t> out) {
  Writer w(out);
  const Header& h = query.header;
  w.U16(h.id);
  w.U8(static_cast<uint8_t>(0x80 | (h.opcode << 3) | (reply.authoritative ? 0x04 : 0) | (h.rd ? 0x01 : 0)));
  w.U8(static_cast<uint8_t>(reply.rcode));  // RA = 0: banger does not recurse
  bool question = with_question && !query.question.empty();
  bool a_record = reply.address.has_value() && question;  // it points at the question's name
  w.U16(question ? 1 : 0);
  w.U16(static_cast<uint16_t>((a_record ? 1 : 0) + (reply.soa_answer ? 1 : 0)));
  w.U16(reply.soa_authority ? 1 : 0);
  w.U16(0);
  if (question) w.Bytes(query.question);
  if (a_record) {
    w.U16(0xC000 | kHeaderSize);  // pointer to the question's name
    w.U16(kTypeA);
    w.U16(kClassIN);
    w.U32(reply.ttl);
    w.U16(4);
    w.U32(*reply.address);
  }
  if (reply.soa_answer) WriteSoa(w, reply.ttl);
  if (reply.soa_authority) WriteSoa(w, reply.ttl);
  return w.overflow() ? 0 : w.pos();
}

}  // namespace banger::dns
