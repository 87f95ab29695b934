#include "base/disk_space.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace banger {

bool IsNoSpace(const Status& s) {
  if (s.ok()) return false;
  const std::string& m = s.message();
  return m.find(std::strerror(ENOSPC)) != std::string::npos ||     // "No space left on device"
         m.find(std::strerror(EDQUOT)) != std::string::npos ||     // "Disk quota exceeded"
         m.find("database or disk is full") != std::string::npos;  // SQLITE_FULL
}

Result<uint64_t> FreeBytes(const std::filesystem::path& path) {
  struct statvfs v;
  if (::statvfs(path.c_str(), &v) != 0) return ErrnoStatus(errno, "statvfs " + path.string());
  return static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
}

Status NoSpaceError(Status s, const std::filesystem::path& path, std::string_view step) {
  if (!IsNoSpace(s)) return s;
  if (s.message().find("no space left on /") != std::string::npos) return s;  // already said
  // The nearest existing directory: the file that failed may be gone already.
  std::filesystem::path probe = path;
  std::error_code ec;
  while (!probe.empty() && !std::filesystem::exists(probe, ec) && probe != probe.parent_path()) {
    probe = probe.parent_path();
  }
  std::string free;
  if (auto f = FreeBytes(probe.empty() ? std::filesystem::path("/") : probe); f.ok()) {
    free = " (" + std::to_string(*f / 1024) + " KiB free)";
  }
  return ResourceExhausted("no space left on " + path.string() + " while " + std::string(step) + free + ": " +
                           s.message());
}

}  // namespace banger
