// DNS queries to the host responder (from any guest on a bridge): parse,
// decide and write a response. Beyond the codec's own promises (never read
// outside the packet, bounded work), the response fits kMaxResponseSize,
// echoes the query id, and is itself a parseable DNS message header.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dns/message.h"
#include "dns/responder.h"
#include "fuzz/fuzz_util.h"

using namespace banger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dns::NameTable table = [] {
    dns::NameTable t;
    t.Add("web", 0x0a000002);
    t.Add("DB", 0x0a000003);
    t.Add("a-b-c", 0x0a000004);
    return t;
  }();
  std::span<const uint8_t> packet(data, size);
  dns::ParseResult pr = dns::ParseQuery(packet);
  if (pr.status == dns::ParseStatus::kOk) {
    (void)dns::ToText(pr.query.name);
    FUZZ_CHECK(pr.query.name.count <= dns::kMaxLabels, "too many labels");
    for (size_t i = 0; i < pr.query.name.count; ++i) {
      auto l = pr.query.name.labels[i];
      FUZZ_CHECK(l.size() >= 1 && l.size() <= dns::kMaxLabelLength, "bad label size");
      FUZZ_CHECK(reinterpret_cast<const uint8_t*>(l.data()) >= data &&
                     reinterpret_cast<const uint8_t*>(l.data()) + l.size() <= data + size,
                 "label outside the packet");
    }
  }
  uint8_t out[dns::kMaxResponseSize];
  dns::Rcode rcode{};
  size_t n = dns::Respond(packet, table, 5, std::span<uint8_t>(out, sizeof(out)), &rcode);
  FUZZ_CHECK(n <= sizeof(out), "response larger than its buffer");
  if (n > 0) {
    FUZZ_CHECK(n >= dns::kHeaderSize, "response shorter than a header");
    FUZZ_CHECK(size >= 2 && out[0] == data[0] && out[1] == data[1], "response does not echo the id");
    FUZZ_CHECK(out[2] & 0x80, "response without QR");
  }
  // A response is never taken for a query (no answer loops between responders).
  dns::ParseResult again = dns::ParseQuery(std::span<const uint8_t>(out, n));
  FUZZ_CHECK(n == 0 || again.status == dns::ParseStatus::kIgnore, "a response parses as a query");
  return 0;
}
