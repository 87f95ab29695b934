#include "kernels/host_kernel.h"

#include <algorithm>
#include <cctype>
#include <system_error>

#include "base/strings.h"

namespace banger::kernels {

namespace fs = std::filesystem;

int CompareKernelReleases(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  auto is_digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  while (i < a.size() && j < b.size()) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && is_digit(a[i2])) ++i2;
      while (j2 < b.size() && is_digit(b[j2])) ++j2;
      std::string_view na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      while (na.size() > 1 && na.front() == '0') na.remove_prefix(1);
      while (nb.size() > 1 && nb.front() == '0') nb.remove_prefix(1);
      if (na.size() != nb.size()) return na.size() < nb.size() ? -1 : 1;
      if (int c = na.compare(nb); c != 0) return c < 0 ? -1 : 1;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j] ? -1 : 1;
      ++i;
      ++j;
    }
  }
  if (i == a.size() && j == b.size()) return 0;
  return i == a.size() ? -1 : 1;
}

bool ReleaseMatches(std::string_view release, std::string_view pin) {
  if (pin.empty() || release == pin) return true;
  return release.size() > pin.size() && StartsWith(release, pin) &&
         (release[pin.size()] == '.' || release[pin.size()] == '-');
}

Result<HostKernel> FindHostKernel(const fs::path& boot_dir, const fs::path& modules_root,
                                  std::string_view pin) {
  std::vector<std::string> releases;
  std::error_code ec;
  for (fs::directory_iterator it(boot_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (StartsWith(name, "vmlinuz-") && it->is_regular_file(ec)) releases.push_back(name.substr(8));
  }
  if (ec) return ErrnoStatus(ec.value(), "read directory " + boot_dir.string());
  std::sort(releases.begin(), releases.end(), [](const std::string& x, const std::string& y) {
    return CompareKernelReleases(x, y) > 0;
  });
  std::vector<std::string> rejected;
  for (const std::string& r : releases) {
    if (!ReleaseMatches(r, pin)) {
      rejected.push_back(r + " (does not match version " + std::string(pin) + ")");
      continue;
    }
    HostKernel k;
    k.version = r;
    k.kernel = boot_dir / ("vmlinuz-" + r);
    k.system_map = boot_dir / ("System.map-" + r);
    k.modules_dir = modules_root / r;
    if (!fs::is_regular_file(k.system_map, ec)) {
      rejected.push_back(r + " (no " + k.system_map.string() + ")");
      continue;
    }
    if (!fs::is_regular_file(k.modules_dir / "modules.dep", ec)) {
      rejected.push_back(r + " (no " + (k.modules_dir / "modules.dep").string() + ")");
      continue;
    }
    fs::path config = boot_dir / ("config-" + r);
    if (fs::is_regular_file(config, ec)) k.config = config;
    return k;
  }
  std::string msg = "no usable host kernel in " + boot_dir.string();
  if (!pin.empty()) msg += " matching version " + std::string(pin);
  if (rejected.empty()) {
    msg += ": no vmlinuz-* found (install the distribution kernel package, e.g. linux-image-amd64)";
  } else {
    msg += ": " + Join(rejected, ", ");
  }
  return NotFound(msg);
}

}  // namespace banger::kernels
