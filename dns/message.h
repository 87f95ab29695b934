// The DNS wire format, as much of it as banger's responder needs (RFC 1035):
// parsing a query (header and its one question) and writing a response into a
// caller's fixed buffer. Parsing never reads outside the packet, allocates
// nothing and does bounded work: names are at most 255 bytes, labels at most
// 63, and compression pointers are refused in questions (a query has nothing
// earlier to point at, so a pointer there is malformed or hostile).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace banger::dns {

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxNameLength = 255;  // wire form, length bytes and root included
inline constexpr size_t kMaxLabelLength = 63;
inline constexpr size_t kMaxLabels = 127;      // 127 one-byte labels + root = 255
/// Every response banger writes fits (header, a 259-byte question, one SOA).
inline constexpr size_t kMaxResponseSize = 512;

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeNS = 2;
inline constexpr uint16_t kTypeSOA = 6;
inline constexpr uint16_t kTypeAAAA = 28;
inline constexpr uint16_t kTypeIXFR = 251;
inline constexpr uint16_t kTypeAXFR = 252;
inline constexpr uint16_t kTypeANY = 255;
inline constexpr uint16_t kClassIN = 1;
inline constexpr uint16_t kClassANY = 255;

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};
std::string_view ToString(Rcode rcode);

/// A question's name: its labels as views into the packet (case as sent).
struct Name {
  std::array<std::string_view, kMaxLabels> labels{};
  size_t count = 0;  // 0 for the root

  /// Label `i` counted from the right (0 = the last one). REQUIRES i < count.
  std::string_view FromRight(size_t i) const { return labels[count - 1 - i]; }
};

/// The name in presentation form for logs: "web.banger." ("." for the
/// root); bytes other than letters, digits, '-' and '_' as \DDD.
std::string ToText(const Name& name);

/// ASCII case-insensitive equality (DNS names compare this way, RFC 4343).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

/// The header bits of a query that a response copies or checks.
struct Header {
  uint16_t id = 0;
  bool qr = false;      // set in responses
  uint8_t opcode = 0;   // 0 = QUERY
  bool rd = false;      // recursion desired (copied back; banger never recurses)
  uint16_t qdcount = 0;
};

struct Query {
  Header header;
  Name name;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  /// The question exactly as received (name, type, class), echoed back so
  /// that the asker's case (0x20 randomisation) survives.
  std::span<const uint8_t> question;
};

enum class ParseStatus {
  kOk,
  kIgnore,   // not worth an answer: shorter than a header, or a response
  kFormErr,  // header readable, the rest malformed: answer FORMERR
  kNotImp,   // an opcode other than QUERY: answer NOTIMP
};

struct ParseResult {
  ParseStatus status = ParseStatus::kIgnore;
  Query query;  // header valid unless kIgnore; name/type/class only when kOk
};

/// Parses a query. Anything after the question (an EDNS OPT record, for
/// instance) is ignored. `packet` must outlive the result's views.
ParseResult ParseQuery(std::span<const uint8_t> packet);

/// What goes into a response besides the echoed header and question.
struct Reply {
  Rcode rcode = Rcode::kNoError;
  bool authoritative = false;
  std::optional<uint32_t> address;  // one A record for the question's name (host order)
  bool soa_answer = false;          // the zone's SOA as the answer (a query for `banger.` SOA)
  bool soa_authority = false;       // the zone's SOA in authority (negative answers, RFC 2308)
  uint32_t ttl = 5;
};

/// The zone banger answers for and the SOA it puts in responses.
inline constexpr std::string_view kZone = "banger";

/// Writes the response to `query` into `out`; returns its size, or 0 if it
/// did not fit (never for out.size() >= kMaxResponseSize). With
/// `with_question` false (FORMERR, NOTIMP) the question section is empty.
size_t WriteResponse(const Query& query, bool with_question, const Reply& reply, std::span<uint8_t> out);

}  // namespace banger::dns
