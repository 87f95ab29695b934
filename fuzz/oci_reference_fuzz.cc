// Image references from specs, the CLI and registries' index entries: parsing
// never crashes, and an accepted reference prints to a string that parses
// back to the same reference.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "oci/reference.h"

using namespace banger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)oci::IsValidDigest(text);
  Result<oci::Reference> ref = oci::ParseReference(text);
  if (!ref.ok()) {
    FUZZ_CHECK(!ref.error().message().empty(), "refused without a message");
    return 0;
  }
  FUZZ_CHECK(!ref->registry.empty() && !ref->repository.empty(), "accepted without registry or repository");
  FUZZ_CHECK(ref->digest.empty() || oci::IsValidDigest(ref->digest), "accepted a bad digest: " + ref->digest);
  std::string printed = ref->ToString();
  Result<oci::Reference> again = oci::ParseReference(printed);
  FUZZ_CHECK(again.ok(), "ToString() does not parse back: " + printed);
  FUZZ_CHECK(again->registry == ref->registry && again->repository == ref->repository &&
                 again->tag == ref->tag && again->digest == ref->digest,
             "round trip changed the reference: " + printed + " -> " + again->ToString());
  (void)ref->ApiHost();
  (void)ref->IsLoopback();
  (void)ref->ManifestSelector();
  return 0;
}
