#include "kernels/oci_fetcher.h"

namespace banger::kernels {

OciTreeFetcher MakeOciTreeFetcher(oci::PullOptions options) {
  return [options = std::move(options)](const std::string& reference,
                                        const std::filesystem::path& dest,
                                        const KernelProgressFn& progress) -> Status {
    oci::PullOptions o = options;
    if (progress) {
      o.progress = [progress](const oci::PullProgress& p) { progress(p.done_bytes, p.total_bytes); };
    }
    auto pulled = oci::PullAndFlatten(reference, dest, o);
    if (!pulled.ok()) return pulled.status().WithContext("pull kernel image " + reference);
    return OkStatus();
  };
}

}  // namespace banger::kernels
