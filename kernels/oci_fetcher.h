// The production OciTreeFetcher: pulls a kernel image with oci::PullAndFlatten.
#pragma once

#include "kernels/kernel_service.h"
#include "oci/puller.h"

namespace banger::kernels {

/// An OciTreeFetcher that pulls through `options` (blob cache, auth,
/// plain_http). The progress callback of each fetch replaces options.progress.
OciTreeFetcher MakeOciTreeFetcher(oci::PullOptions options);

}  // namespace banger::kernels
