#include "base/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>

namespace banger {

namespace fs = std::filesystem;

Result<std::string> ReadFile(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path.string());
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read " + path.string());
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status WriteFileAtomic(const fs::path& path, std::string_view content, unsigned mode) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(std::random_device{}());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, "create " + tmp.string());
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(err, "write " + tmp.string());
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "sync " + tmp.string());
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "rename " + tmp.string() + " to " + path.string());
  }
  return OkStatus();
}

Status MakeDirs(const fs::path& path, unsigned mode) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return ErrnoStatus(ec.value(), "create directory " + path.string());
  if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, "chmod " + path.string());
  return OkStatus();
}

Status MakePrivateDir(const fs::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return MakeDirs(path, 0700);
  mode_t keep = st.st_gid != ::getegid() ? 0710 : 0700;
  mode_t mode = st.st_mode & 07777;
  if ((mode & ~keep) != 0 && ::chmod(path.c_str(), mode & keep) != 0) {
    return ErrnoStatus(errno, "chmod " + path.string());
  }
  return OkStatus();
}

Status RemoveAll(const fs::path& path) {
  if (path.empty()) return OkStatus();
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return ErrnoStatus(ec.value(), "remove " + path.string());
  }
  return OkStatus();
}

Result<std::vector<fs::path>> ListFilesRecursive(const fs::path& dir,
                                                 const std::vector<std::string>& extensions) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
    std::error_code sec;
    if (!it->is_regular_file(sec)) continue;
    std::string ext = it->path().extension().string();
    if (std::find(extensions.begin(), extensions.end(), ext) != extensions.end()) {
      out.push_back(it->path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<fs::path> MakeTempDir(std::string_view prefix, const fs::path& parent) {
  fs::path base = parent;
  if (base.empty()) {
    const char* t = std::getenv("TMPDIR");
    base = t && *t ? t : "/tmp";
  }
  std::string templ = (base / (std::string(prefix) + "XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp " + templ);
  return fs::path(templ);
}

ScopedRemove::~ScopedRemove() {
  if (!path_.empty()) (void)RemoveAll(path_);
}

namespace {

bool IsExecutableFile(const fs::path& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

}  // namespace

std::optional<fs::path> FindProgram(std::string_view program) {
  if (program.empty()) return std::nullopt;
  if (program.find('/') != std::string_view::npos) {
    fs::path p(program);
    if (IsExecutableFile(p)) return p;
    return std::nullopt;
  }
  const char* env = std::getenv("PATH");
  std::string path = env ? env : "/usr/bin:/bin";
  // System tools (mkfs.ext4, debugfs, ip, nft, sysctl) live in sbin, which an
  // ordinary user's PATH usually lacks.
  path += ":/usr/sbin:/sbin";
  std::string_view rest = path;
  while (true) {
    size_t colon = rest.find(':');
    std::string_view dir = rest.substr(0, colon);
    if (!dir.empty() && dir.front() == '/') {
      fs::path candidate = fs::path(dir) / program;
      if (IsExecutableFile(candidate)) return candidate;
    }
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

std::string_view DebianPackageOf(std::string_view program) {
  static constexpr std::pair<std::string_view, std::string_view> kPackages[] = {
      {"mkfs.ext4", "e2fsprogs"},        {"debugfs", "e2fsprogs"},
      {"e2fsck", "e2fsprogs"},           {"resize2fs", "e2fsprogs"},
      {"tune2fs", "e2fsprogs"},          {"ip", "iproute2"},
      {"nft", "nftables"},               {"sysctl", "procps"},
      {"qemu-system-x86_64", "qemu-system-x86"}, {"qemu-img", "qemu-utils"},
      {"debootstrap", "debootstrap"},    {"busybox", "busybox-static"},
      {"ssh", "openssh-client"},         {"ssh-keygen", "openssh-client"},
      {"git", "git"},                    {"cpio", "cpio"},
      {"setpriv", "util-linux"},         {"getent", "libc-bin"},
  };
  fs::path name(program);
  std::string base = name.filename().string();
  for (const auto& [tool, package] : kPackages) {
    if (tool == base) return package;
  }
  return {};
}

Result<fs::path> ResolveProgram(std::string_view program) {
  if (auto found = FindProgram(program)) return *found;
  std::string msg = "`" + std::string(program) + "` was not found on PATH, /usr/sbin or /sbin";
  if (std::string_view pkg = DebianPackageOf(program); !pkg.empty()) {
    msg += " (install the Debian package " + std::string(pkg) + ")";
  }
  return NotFound(msg);
}

}  // namespace banger
