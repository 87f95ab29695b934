#include "kernels/kernel_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>
#include <vector>

#include "base/strings.h"
#include "fetch/extract.h"
#include "kernels/host_kernel.h"
#include "kernels/vmlinux.h"

namespace banger::kernels {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxDownloadBytes = uint64_t{4} << 30;

// True if `p` exists and its fully resolved path lies inside `root_canon`.
std::optional<fs::path> ResolveInside(const fs::path& root_canon, const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::canonical(p, ec);
  if (ec) return std::nullopt;
  auto rel = c.lexically_relative(root_canon);
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  return c;
}

std::optional<fs::path> FirstFile(const fs::path& root, const std::vector<std::string>& rels) {
  std::error_code ec;
  for (const std::string& r : rels) {
    auto p = ResolveInside(root, root / r);
    if (p && fs::is_regular_file(*p, ec)) return p;
  }
  return std::nullopt;
}

// boot/<prefix>R files, newest release first.
std::vector<std::pair<std::string, fs::path>> Versioned(const fs::path& root, const std::string& prefix) {
  std::vector<std::pair<std::string, fs::path>> out;
  std::error_code ec;
  for (fs::directory_iterator it(root / "boot", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!StartsWith(name, prefix) || name.size() == prefix.size()) continue;
    auto p = ResolveInside(root, it->path());
    if (p && fs::is_regular_file(*p, ec)) out.emplace_back(name.substr(prefix.size()), *p);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return CompareKernelReleases(a.first, b.first) > 0;
  });
  return out;
}

}  // namespace

Result<std::string> DownloadFile(const std::string& url, const fs::path& dest,
                                 const KernelProgressFn& progress) {
  return fetch::DownloadFile(url, dest, progress, {.max_bytes = kMaxDownloadBytes});
}

Status ExtractTarball(const fs::path& archive_path, const fs::path& dest) {
  return fetch::ExtractArchive(archive_path, dest,
                               {.tar_only = true,
                                .plain_files_only = true,
                                .confine_symlinks = true,
                                .require_entries = true});
}

Result<KernelFiles> LocateKernelFiles(const fs::path& root_in) {
  std::error_code ec;
  fs::path root = fs::canonical(root_in, ec);
  if (ec) return ErrnoStatus(ec.value(), "resolve " + root_in.string());
  KernelFiles k;
  std::string version;
  if (auto p = FirstFile(root, {"boot/vmlinuz", "boot/bzImage", "vmlinuz", "bzImage"})) {
    k.bzimage = *p;
  } else if (auto v = Versioned(root, "vmlinuz-"); !v.empty()) {
    k.bzimage = v.front().second;
    version = v.front().first;
  }
  if (auto p = FirstFile(root, {"boot/vmlinux", "vmlinux"})) {
    k.vmlinux = *p;
  } else if (auto v = Versioned(root, "vmlinux-"); !v.empty()) {
    k.vmlinux = v.front().second;
    if (version.empty()) version = v.front().first;
  }
  if (k.bzimage.empty() && k.vmlinux.empty()) {
    return NotFound("no kernel in " + root_in.string() +
                    " (looked for boot/vmlinuz[-R], boot/bzImage, boot/vmlinux[-R], vmlinuz, "
                    "bzImage, vmlinux)");
  }
  if (!k.bzimage.empty()) {
    auto elf = IsElfFile(k.bzimage);
    if (elf.ok() && *elf) {
      // Some images ship an ELF under the vmlinuz name.
      if (k.vmlinux.empty()) k.vmlinux = k.bzimage;
      k.bzimage.clear();
    } else if (version.empty()) {
      auto info = ReadBzImageInfo(k.bzimage);
      if (info.ok()) version = info->version;
    }
  }
  if (version.empty() && !k.vmlinux.empty()) {
    auto v = ElfKernelVersion(k.vmlinux);
    if (v.ok()) version = *v;
  }

  std::vector<fs::path> module_dirs;
  auto add_modules = [&](const fs::path& dir) {
    auto c = ResolveInside(root, dir);
    if (!c || !fs::is_regular_file(*c / "modules.dep", ec)) return;
    if (std::find(module_dirs.begin(), module_dirs.end(), *c) == module_dirs.end()) {
      module_dirs.push_back(*c);
    }
  };
  for (const char* base : {"lib/modules", "usr/lib/modules", "modules"}) {
    fs::path b = root / base;
    add_modules(b);
    auto bc = ResolveInside(root, b);
    if (!bc || !fs::is_directory(*bc, ec)) continue;
    for (fs::directory_iterator it(*bc, ec), end; !ec && it != end; it.increment(ec)) {
      add_modules(it->path());
    }
  }
  if (module_dirs.size() == 1) {
    k.modules_dir = module_dirs.front();
  } else if (module_dirs.size() > 1) {
    for (const fs::path& d : module_dirs) {
      if (!version.empty() && d.filename() == version) k.modules_dir = d;
    }
    if (k.modules_dir.empty()) {
      std::vector<std::string> names;
      for (const fs::path& d : module_dirs) names.push_back(d.lexically_relative(root).string());
      return InvalidArgument(root_in.string() + ": several module trees (" + Join(names, ", ") +
                             ") and none matches kernel release \"" + version + "\"");
    }
  }
  if (version.empty() && !k.modules_dir.empty()) version = k.modules_dir.filename().string();

  auto optional_file = [&](const std::string& stem) -> fs::path {
    std::vector<std::string> c;
    if (!version.empty()) c.push_back("boot/" + stem + "-" + version);
    c.push_back("boot/" + stem);
    c.push_back(stem);
    auto p = FirstFile(root, c);
    return p ? *p : fs::path();
  };
  k.initrd = optional_file("initrd.img");
  k.system_map = optional_file("System.map");
  k.config = optional_file("config");
  return k;
}

Status CopyRegularFile(const fs::path& src, const fs::path& dst) {
  // read/write rather than std::filesystem::copy_file, whose sendfile path
  // reports a full disk as EIO (found by host/full_disk_itest.cc): the
  // caller must be able to say "no space left".
  const std::string what = "copy " + src.string() + " to " + dst.string();
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoStatus(errno, what);
  int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, what);
  }
  std::vector<char> buf(1 << 20);
  int err = 0;
  while (err == 0) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    for (ssize_t done = 0; done < n && err == 0;) {
      ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) err = errno;
      else done += w;
    }
  }
  if (::close(out) != 0 && err == 0) err = errno;
  ::close(in);
  if (err != 0) {
    ::unlink(dst.c_str());
    return ErrnoStatus(err, what);
  }
  if (::chmod(dst.c_str(), 0644) != 0) return ErrnoStatus(errno, "chmod " + dst.string());
  return OkStatus();
}

Result<uint64_t> LinkOrCopyTree(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  if (!fs::is_directory(src, ec)) return NotFound(src.string() + " is not a directory");
  if (!fs::create_directory(dst, ec) || ec) {
    return ErrnoStatus(ec ? ec.value() : EEXIST, "create directory " + dst.string());
  }
  uint64_t copied = 0;
  fs::recursive_directory_iterator it(src, fs::directory_options::none, ec);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + src.string());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoStatus(ec.value(), "read directory " + src.string());
    const fs::path& from = it->path();
    fs::path rel = from.lexically_relative(src);
    fs::path to = dst / rel;
    fs::file_status s = it->symlink_status(ec);
    if (ec) return ErrnoStatus(ec.value(), "stat " + from.string());
    if (fs::is_directory(s)) {
      if (!fs::create_directory(to, ec) || ec) {
        return ErrnoStatus(ec ? ec.value() : EEXIST, "create directory " + to.string());
      }
      ::chmod(to.c_str(), 0755);
    } else if (fs::is_regular_file(s)) {
      if (::link(from.c_str(), to.c_str()) != 0) {
        int err = errno;
        if (err != EXDEV && err != EPERM && err != EMLINK && err != EACCES) {
          return ErrnoStatus(err, "link " + from.string() + " to " + to.string());
        }
        BANGER_RETURN_IF_ERROR(CopyRegularFile(from, to));
        ++copied;
      }
    } else if (fs::is_symlink(s)) {
      fs::path target = fs::read_symlink(from, ec);
      if (ec) return ErrnoStatus(ec.value(), "readlink " + from.string());
      fs::path resolved = (rel.parent_path() / target).lexically_normal();
      if (target.is_absolute() || resolved.empty() || *resolved.begin() == "..") continue;
      fs::create_symlink(target, to, ec);
      if (ec) return ErrnoStatus(ec.value(), "symlink " + to.string());
    }
  }
  return copied;
}

}  // namespace banger::kernels
