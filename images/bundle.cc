#include "images/bundle.h"

#include <algorithm>

#include "fetch/download.h"
#include "fetch/extract.h"

namespace banger::images {

namespace fs = std::filesystem;

Result<std::string> DownloadFile(const std::string& url, const fs::path& out,
                                 const oci::ProgressFn& progress) {
  fetch::ProgressFn adapter;
  if (progress) {
    adapter = [&progress, &url](uint64_t done, uint64_t total) {
      progress(oci::PullProgress{"download", url, done, total});
    };
  }
  return fetch::DownloadFile(url, out, adapter, {.report_zero_progress = true});
}

Status ExtractBundle(const fs::path& archive_path, const fs::path& dest) {
  auto found = fetch::ExtractNamedFiles(archive_path, dest, {"rootfs.ext4", "manifest.json"});
  if (!found.ok()) return found.status().WithContext("bundle");
  if (std::find(found->begin(), found->end(), "rootfs.ext4") == found->end()) {
    return InvalidArgument("bundle " + archive_path.string() + " has no rootfs.ext4");
  }
  return OkStatus();
}

Status ExtractTree(const fs::path& archive_path, const fs::path& dest) {
  return fetch::ExtractArchive(archive_path, dest,
                               {.keep_ownership = true, .apply_root_entry = true});
}

}  // namespace banger::images
