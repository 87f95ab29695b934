// The guest agent's JSON reader (agent/json_lite) and /banger/config.json
// parser: no crash, no unbounded recursion, and a refusal always says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/config.h"
#include "agent/json_lite.h"
#include "fuzz/fuzz_util.h"

using namespace banger;

namespace {

// Walks a parsed value the way config.cc reads one.
void Walk(const agent::JsonValue& v, int depth) {
  (void)v.AsString();
  (void)v.AsInt();
  (void)v.AsBool();
  (void)v.AsStringList();
  if (depth > 64) return;
  for (const auto& e : v.AsArray()) Walk(e, depth + 1);
  for (const auto& [k, e] : v.AsObject()) {
    FUZZ_CHECK(v.Has(k), "member not found by Has: " + k);
    Walk(e, depth + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string err;
  if (auto v = agent::ParseJson(text, &err)) {
    Walk(*v, 0);
  } else {
    FUZZ_CHECK(!err.empty(), "JSON refused without a reason");
  }
  err.clear();
  if (!agent::ParseAgentConfig(text, &err)) FUZZ_CHECK(!err.empty(), "config refused without a reason");
  (void)agent::Base64Decode(text);
  (void)agent::ParseIpv4(text);
  return 0;
}
