// Manifests and indexes as a registry serves them (untrusted): parsing never
// crashes or throws, and what is accepted is usable (digests valid, platform
// selection works on any index).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "oci/manifest.h"
#include "oci/reference.h"

using namespace banger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  // The Content-Type header decides when the body has no mediaType: try both.
  for (std::string_view content_type : {std::string_view(), oci::kOciIndex, oci::kDockerManifest}) {
    Result<oci::Manifest> m = oci::ParseManifest(json, content_type, "fuzz:latest");
    if (!m.ok()) {
      FUZZ_CHECK(!m.error().message().empty(), "refused without a message");
      continue;
    }
    if (m->is_index) {
      for (const oci::Descriptor& d : m->manifests) {
        FUZZ_CHECK(oci::IsValidDigest(d.digest), "index entry with a bad digest: " + d.digest);
        (void)d.PlatformString();
      }
      for (std::string_view platform : {"linux/amd64", "linux/arm64/v8", "", "/", "linux/"}) {
        Result<oci::Descriptor> d = oci::SelectPlatform(*m, platform, "fuzz:latest");
        if (d.ok()) FUZZ_CHECK(oci::IsValidDigest(d->digest), "selected a bad digest");
      }
    } else {
      FUZZ_CHECK(oci::IsValidDigest(m->config.digest), "config with a bad digest: " + m->config.digest);
      for (const oci::Descriptor& l : m->layers) {
        FUZZ_CHECK(oci::IsValidDigest(l.digest), "layer with a bad digest: " + l.digest);
        (void)oci::IsSupportedLayerType(l.media_type);
      }
    }
  }
  return 0;
}
