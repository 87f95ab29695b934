// A qcow2 header for tests, header-only: provider tests use it without
// linking the rest of the test support library.
#pragma once

#include <cstddef>
#include <string>

namespace banger::testing {

/// The first 512 bytes of a qcow2 image as qemu-img writes them, naming
/// `backing` as its backing file (none when empty).
inline std::string Qcow2Header(const std::string& backing) {
  std::string h(512, '\0');
  h.replace(0, 4, "QFI\xfb");
  h[7] = 3;  // version
  if (!backing.empty()) {
    const size_t offset = 0x68;  // right after the version-3 header
    h[15] = static_cast<char>(offset);
    h[19] = static_cast<char>(backing.size());
    h.replace(offset, backing.size(), backing);
  }
  return h;
}

}  // namespace banger::testing
