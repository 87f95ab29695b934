// Discovery of the distribution kernel installed on this host (Debian's
// linux-image-amd64): /boot/vmlinuz-<release> plus /lib/modules/<release>.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::kernels {

struct HostKernel {
  std::string version;                 // release, e.g. "6.1.0-56-amd64"
  std::filesystem::path kernel;        // boot_dir/vmlinuz-<release>
  std::filesystem::path modules_dir;   // modules_root/<release>
  std::filesystem::path system_map;    // boot_dir/System.map-<release>
  std::filesystem::path config;        // boot_dir/config-<release>; empty if absent
};

/// Orders kernel releases the way people read them ("6.1.0-9" < "6.1.0-56";
/// "6.1.0" < "6.10.0"): runs of digits compare numerically.
int CompareKernelReleases(std::string_view a, std::string_view b);

/// True if `release` is `pin` or starts with `pin` followed by '.' or '-'
/// ("6.1" matches "6.1.0-56-amd64" but not "6.10.0").
bool ReleaseMatches(std::string_view release, std::string_view pin);

/// The newest kernel in `boot_dir` that has vmlinuz-<r>, System.map-<r> and
/// modules_root/<r>/ (with modules.dep). With `pin`, only releases matching it
/// (see ReleaseMatches). NotFound lists what was looked at.
Result<HostKernel> FindHostKernel(const std::filesystem::path& boot_dir,
                                  const std::filesystem::path& modules_root,
                                  std::string_view pin);

}  // namespace banger::kernels
