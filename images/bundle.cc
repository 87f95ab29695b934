#include "images/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include <spdlog/spdlog.h>

#include "base/sha256.h"
#include "base/strings.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {

struct DownloadState {
  int fd = -1;
  Sha256 hash;
  uint64_t written = 0;
  int write_errno = 0;
  const oci::ProgressFn* progress = nullptr;
  std::string url;
};

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* user) {
  auto* st = static_cast<DownloadState*>(user);
  size_t len = size * nmemb;
  size_t off = 0;
  while (off < len) {
    ssize_t n = ::write(st->fd, data + off, len - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      st->write_errno = errno;
      return 0;  // aborts the transfer
    }
    off += static_cast<size_t>(n);
  }
  st->hash.Update(std::string_view(data, len));
  st->written += len;
  return len;
}

int ProgressCallback(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* st = static_cast<DownloadState*>(user);
  if (st->progress && *st->progress) {
    (*st->progress)(oci::PullProgress{"download", st->url, static_cast<uint64_t>(dlnow),
                                      static_cast<uint64_t>(dltotal)});
  }
  return 0;
}

bool IsUnsafeEntryPath(std::string_view p) {
  if (p.empty() || p.front() == '/') return true;
  for (const auto& part : Split(p, '/')) {
    if (part == "..") return true;
  }
  return false;
}

// "./rootfs.ext4" -> "rootfs.ext4"
std::string NormaliseEntry(std::string_view p) {
  while (StartsWith(p, "./")) p.remove_prefix(2);
  return std::string(p);
}

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};

Status ArchiveError(archive* a, const fs::path& file, std::string_view what) {
  const char* msg = archive_error_string(a);
  return DataLoss(std::string(what) + " " + file.string() + ": " + (msg ? msg : "archive error"));
}

// Writes the current entry's data into `out`, keeping holes.
Status WriteEntryData(archive* a, const fs::path& archive_path, const fs::path& out,
                      int64_t size) {
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create " + out.string());
  Status st;
  while (true) {
    const void* buf = nullptr;
    size_t len = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(a, &buf, &len, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      st = ArchiveError(a, archive_path, "read " + out.filename().string() + " from");
      break;
    }
    size_t done = 0;
    while (done < len) {
      ssize_t n = ::pwrite(fd, static_cast<const char*>(buf) + done, len - done,
                           static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (n < 0) {
        if (errno == EINTR) continue;
        st = ErrnoStatus(errno, "write " + out.string());
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (!st.ok()) break;
  }
  if (st.ok() && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    st = ErrnoStatus(errno, "size " + out.string());
  }
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus(errno, "sync " + out.string());
  ::close(fd);
  if (!st.ok()) ::unlink(out.c_str());
  return st;
}

}  // namespace

Result<std::string> DownloadFile(const std::string& url, const fs::path& out,
                                 const oci::ProgressFn& progress) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  DownloadState st;
  st.progress = &progress;
  st.url = url;
  st.fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (st.fd < 0) return ErrnoStatus(errno, "create " + out.string());
  CURL* curl = curl_easy_init();
  if (!curl) {
    ::close(st.fd);
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
  // Abort a stalled transfer: under 1 KiB/s for 60 s.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
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
  int close_err = (::fsync(st.fd) != 0 || ::close(st.fd) != 0) ? errno : 0;
  auto fail = [&out](Status s) {
    ::unlink(out.c_str());
    return s;
  };
  if (st.write_errno != 0) return fail(ErrnoStatus(st.write_errno, "write " + out.string()));
  if (rc != CURLE_OK) {
    std::string msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    std::string text = "download " + url + ": " + msg;
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
      default:
        return fail(Unavailable(text));
    }
  }
  if (close_err != 0) return fail(ErrnoStatus(close_err, "close " + out.string()));
  return st.hash.HexDigest();
}

Status ExtractBundle(const fs::path& archive_path, const fs::path& dest) {
  ArchiveReader r;
  archive_read_support_filter_all(r.a);
  archive_read_support_format_all(r.a);
  if (archive_read_open_filename(r.a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return ArchiveError(r.a, archive_path, "open bundle");
  }
  bool have_rootfs = false, have_manifest = false;
  while (true) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "read bundle");
    const char* raw = archive_entry_pathname(e);
    std::string path = raw ? raw : "";
    if (IsUnsafeEntryPath(path)) {
      return InvalidArgument("bundle " + archive_path.string() + ": refusing entry \"" + path +
                             "\" (absolute path or \"..\")");
    }
    const char* hl = archive_entry_hardlink(e);
    const char* sl = archive_entry_symlink(e);
    if ((hl && IsUnsafeEntryPath(hl)) || (sl && IsUnsafeEntryPath(sl))) {
      return InvalidArgument("bundle " + archive_path.string() + ": refusing link \"" + path +
                             "\" pointing outside the bundle");
    }
    std::string name = NormaliseEntry(path);
    bool wanted = name == "rootfs.ext4" || name == "manifest.json";
    if (!wanted) continue;
    if (archive_entry_filetype(e) != AE_IFREG || hl || sl) {
      return InvalidArgument("bundle " + archive_path.string() + ": \"" + path +
                             "\" must be a regular file");
    }
    bool& seen = name == "rootfs.ext4" ? have_rootfs : have_manifest;
    if (seen) {
      return InvalidArgument("bundle " + archive_path.string() + ": \"" + name +
                             "\" appears twice");
    }
    seen = true;
    BANGER_RETURN_IF_ERROR(
        WriteEntryData(r.a, archive_path, dest / name, archive_entry_size(e)));
  }
  if (!have_rootfs) {
    return InvalidArgument("bundle " + archive_path.string() + " has no rootfs.ext4");
  }
  return OkStatus();
}

Status ExtractTree(const fs::path& archive_path, const fs::path& dest) {
  ArchiveReader r;
  archive_read_support_filter_all(r.a);
  archive_read_support_format_all(r.a);
  if (archive_read_open_filename(r.a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return ArchiveError(r.a, archive_path, "open");
  }
  archive* w = archive_write_disk_new();
  archive_write_disk_set_options(
      w, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
             ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS |
             ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
             ARCHIVE_EXTRACT_UNLINK |
             ARCHIVE_EXTRACT_SPARSE);
  // Entry paths are checked to be relative and then rooted at `dest` (so
  // NOABSOLUTEPATHS cannot be used); SECURE_SYMLINKS refuses writing through
  // a symlink the archive planted earlier. No user/group name lookup: a root
  // tree's numeric ids mean the guest's users, not the host's.
  struct WriterGuard {
    archive* w;
    ~WriterGuard() { archive_write_free(w); }
  } guard{w};
  while (true) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "read");
    std::string path = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    if (IsUnsafeEntryPath(path)) {
      return InvalidArgument(archive_path.string() + ": refusing entry \"" + path +
                             "\" (absolute path or \"..\")");
    }
    const char* hl = archive_entry_hardlink(e);
    if (hl && IsUnsafeEntryPath(hl)) {
      return InvalidArgument(archive_path.string() + ": refusing hard link \"" + path + "\" to \"" +
                             hl + "\"");
    }
    archive_entry_set_pathname(e, (dest / path).c_str());
    if (hl) archive_entry_set_hardlink(e, (dest / hl).c_str());
    if (archive_write_header(w, e) < ARCHIVE_WARN) {
      return ArchiveError(w, archive_path, "extract \"" + path + "\" from");
    }
    if (archive_entry_size(e) > 0) {
      while (true) {
        const void* buf = nullptr;
        size_t len = 0;
        la_int64_t offset = 0;
        int dr = archive_read_data_block(r.a, &buf, &len, &offset);
        if (dr == ARCHIVE_EOF) break;
        if (dr < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "read");
        if (archive_write_data_block(w, buf, len, offset) < ARCHIVE_WARN) {
          return ArchiveError(w, archive_path, "write \"" + path + "\" from");
        }
      }
    }
    if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
      return ArchiveError(w, archive_path, "finish \"" + path + "\" from");
    }
  }
  if (archive_write_close(w) != ARCHIVE_OK) return ArchiveError(w, archive_path, "extract");
  return OkStatus();
}

}  // namespace banger::images
