// Sandbox/Network YAML as a user (or a tool) writes it: the loader must never
// throw or crash, must explain what it refuses (file:line), and everything it
// accepts must render to canonical JSON and read back equal.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "spec/loader.h"

using namespace banger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // Relative files[].source paths resolve beside the spec: in the scratch dir.
  static const std::string filename = (fuzz::ScratchDir() / "fuzz.yaml").string();
  LoadResult r;
  try {
    r = ParseSpecText(text, filename);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("ParseSpecText threw: ") + e.what());
  } catch (...) {
    FUZZ_CHECK(false, "ParseSpecText threw a non-std exception");
  }
  for (const Diagnostic& d : r.diagnostics.items()) {
    FUZZ_CHECK(d.where.file == filename, "diagnostic names another file: " + d.where.file);
    FUZZ_CHECK(!d.message.empty(), "diagnostic without a message");
  }
  for (const SpecDocument& d : r.specs) {
    std::string json = CanonicalJson(d.spec);
    Result<SandboxSpec> back = SpecFromCanonicalJson(json);
    FUZZ_CHECK(back.ok(), "accepted spec does not read back: " + back.error().ToString() + "\n" + json);
    FUZZ_CHECK(*back == d.spec, "canonical JSON round trip changed the spec:\n" + json);
    FUZZ_CHECK(CanonicalJson(*back) == json, "canonical JSON is not stable:\n" + json);
    (void)SpecHash(d.spec);
  }
  for (const NetworkDocument& d : r.networks) {
    std::string json = CanonicalNetworkJson(d.spec);
    Result<NetworkSpecDoc> back = NetworkSpecFromCanonicalJson(json);
    FUZZ_CHECK(back.ok(), "accepted network does not read back: " + back.error().ToString() + "\n" + json);
    FUZZ_CHECK(CanonicalNetworkJson(*back) == json, "network canonical JSON round trip changed:\n" + json);
  }
  return 0;
}
