#include "kernels/kernel_files.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <optional>
#include <system_error>
#include <vector>

#include "base/sha256.h"
#include "base/strings.h"
#include "kernels/host_kernel.h"
#include "kernels/vmlinux.h"

namespace banger::kernels {

namespace fs = std::filesystem;

namespace {

constexpr curl_off_t kMaxDownloadBytes = curl_off_t{4} << 30;

struct DownloadState {
  int fd = -1;
  int write_errno = 0;
  Sha256 hash;
  uint64_t written = 0;
  const KernelProgressFn* progress = nullptr;
};

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<DownloadState*>(user);
  size_t len = size * nmemb;
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::write(st->fd, data + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      st->write_errno = errno;
      return 0;  // makes curl fail with CURLE_WRITE_ERROR
    }
    done += static_cast<size_t>(n);
  }
  st->hash.Update(std::string_view(data, len));
  st->written += len;
  return len;
}

int ProgressCallback(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* st = static_cast<DownloadState*>(user);
  if (dlnow > kMaxDownloadBytes) return 1;  // abort
  if (st->progress && *st->progress && dlnow > 0) {
    (*st->progress)(static_cast<uint64_t>(dlnow), static_cast<uint64_t>(std::max<curl_off_t>(dltotal, 0)));
  }
  return 0;
}

bool IsUnsafeEntryPath(std::string_view p) {
  if (p.empty() || p.front() == '/') return true;
  for (const std::string& part : Split(p, '/')) {
    if (part == "..") return true;
  }
  return false;
}

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};
struct ArchiveWriter {
  archive* a = archive_write_disk_new();
  ~ArchiveWriter() { archive_write_free(a); }
};

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
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  DownloadState st;
  st.progress = &progress;
  st.fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (st.fd < 0) return ErrnoStatus(errno, "create " + dest.string());
  CURL* curl = curl_easy_init();
  if (!curl) {
    ::close(st.fd);
    ::unlink(dest.c_str());
    return Internal("curl_easy_init failed");
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, kMaxDownloadBytes);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &ProgressCallback);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  CURLcode rc = curl_easy_perform(curl);
  long http_code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_code);
  curl_easy_cleanup(curl);
  int close_err = (::fsync(st.fd) != 0) ? errno : 0;
  if (::close(st.fd) != 0 && close_err == 0) close_err = errno;
  auto fail = [&dest](Status s) {
    ::unlink(dest.c_str());
    return s;
  };
  if (st.write_errno != 0) return fail(ErrnoStatus(st.write_errno, "write " + dest.string()));
  if (rc != CURLE_OK) {
    std::string text = "download " + url + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
    switch (rc) {
      case CURLE_HTTP_RETURNED_ERROR:
        if (http_code == 404) return fail(NotFound(text));
        if (http_code == 401 || http_code == 403) return fail(PermissionDenied(text));
        if (http_code >= 500 || http_code == 429) return fail(Unavailable(text));
        return fail(InvalidArgument(text));
      case CURLE_FILE_COULDNT_READ_FILE:
        return fail(NotFound(text));
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        return fail(InvalidArgument(text));
      case CURLE_FILESIZE_EXCEEDED:
      case CURLE_ABORTED_BY_CALLBACK:
        return fail(InvalidArgument(text + " (larger than the 4 GiB limit)"));
      default:
        return fail(Unavailable(text));
    }
  }
  if (close_err != 0) return fail(ErrnoStatus(close_err, "close " + dest.string()));
  return st.hash.HexDigest();
}

Status ExtractTarball(const fs::path& archive_path, const fs::path& dest) {
  const std::string what = archive_path.string();
  ArchiveReader r;
  ArchiveWriter w;
  if (!r.a || !w.a) return Internal("libarchive allocation failed");
  archive_read_support_filter_all(r.a);
  archive_read_support_format_tar(r.a);
  archive_read_support_format_gnutar(r.a);
  // Entry paths are checked (no absolute, no "..") and then prefixed with
  // dest, so libarchive sees absolute paths and must not refuse those.
  archive_write_disk_set_options(
      w.a, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
               ARCHIVE_EXTRACT_SECURE_NODOTDOT |
               ARCHIVE_EXTRACT_UNLINK);
  if (archive_read_open_filename(r.a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return InvalidArgument(what + ": not a readable tar archive: " + archive_error_string(r.a));
  }
  size_t entries = 0;
  while (true) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      return InvalidArgument(what + ": bad tar archive: " + archive_error_string(r.a));
    }
    ++entries;
    const char* raw = archive_entry_pathname(e);
    std::string path = raw ? raw : "";
    while (StartsWith(path, "./")) path = path.substr(2);
    if (path.empty() || path == ".") continue;
    if (IsUnsafeEntryPath(path)) {
      return InvalidArgument(what + ": refusing entry \"" + path + "\" (absolute path or \"..\")");
    }
    auto type = archive_entry_filetype(e);
    const char* hl = archive_entry_hardlink(e);
    const char* sl = archive_entry_symlink(e);
    if (hl) {
      std::string target = hl;
      while (StartsWith(target, "./")) target = target.substr(2);
      if (IsUnsafeEntryPath(target)) {
        return InvalidArgument(what + ": refusing hard link \"" + path + "\" to \"" + target + "\"");
      }
      archive_entry_set_hardlink(e, (dest / target).c_str());
    } else if (type == AE_IFLNK) {
      std::string target = sl ? sl : "";
      fs::path resolved = (fs::path(path).parent_path() / target).lexically_normal();
      if (target.empty() || target.front() == '/' || (!resolved.empty() && *resolved.begin() == "..")) {
        return InvalidArgument(what + ": refusing symlink \"" + path + "\" -> \"" + target +
                               "\" (leads outside the archive)");
      }
    } else if (type != AE_IFREG && type != AE_IFDIR) {
      continue;  // devices, fifos, sockets: not part of a kernel
    }
    archive_entry_set_pathname(e, (dest / path).c_str());
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    if (archive_write_header(w.a, e) < ARCHIVE_WARN) {
      return Internal(what + ": extracting \"" + path + "\": " + archive_error_string(w.a));
    }
    if (type == AE_IFREG && !hl) {
      const void* buf;
      size_t size;
      la_int64_t offset;
      while (true) {
        int drc = archive_read_data_block(r.a, &buf, &size, &offset);
        if (drc == ARCHIVE_EOF) break;
        if (drc < ARCHIVE_WARN) {
          return InvalidArgument(what + ": reading \"" + path + "\": " + archive_error_string(r.a));
        }
        if (archive_write_data_block(w.a, buf, size, offset) < ARCHIVE_WARN) {
          return Internal(what + ": writing \"" + path + "\": " + archive_error_string(w.a));
        }
      }
    }
    if (archive_write_finish_entry(w.a) < ARCHIVE_WARN) {
      return Internal(what + ": finishing \"" + path + "\": " + archive_error_string(w.a));
    }
  }
  if (entries == 0) return InvalidArgument(what + ": archive is empty");
  return OkStatus();
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
  std::error_code ec;
  if (!fs::copy_file(src, dst, fs::copy_options::none, ec) || ec) {
    return ErrnoStatus(ec ? ec.value() : EIO, "copy " + src.string() + " to " + dst.string());
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
