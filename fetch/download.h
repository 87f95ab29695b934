// Downloads with libcurl (http, https, file) that hash what they write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "base/status.h"

namespace banger::fetch {

/// Called while a download runs with the bytes received so far and the
/// expected total (0 when the server did not say).
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct DownloadOptions {
  /// Refuse (InvalidArgument) a download larger than this; 0 = no limit.
  uint64_t max_bytes = 0;
  /// Also call `progress` before the first byte arrived (done == 0).
  bool report_zero_progress = false;
};

/// Downloads `url` (http, https or file) to `dest` (created 0600, must not
/// exist) and returns the sha256 hex of what was written. On error `dest` is
/// removed. 404 / missing file -> NotFound, 401/403 -> PermissionDenied, 5xx,
/// 429 and network errors -> Unavailable, other HTTP errors and bad URLs ->
/// InvalidArgument.
Result<std::string> DownloadFile(const std::string& url, const std::filesystem::path& dest,
                                 const ProgressFn& progress, const DownloadOptions& options = {});

}  // namespace banger::fetch
