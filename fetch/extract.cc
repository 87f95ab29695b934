#include "fetch/extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/strings.h"

namespace banger::fetch {

namespace fs = std::filesystem;

namespace {

bool IsUnsafeEntryPath(std::string_view p) {
  if (p.empty() || p.front() == '/') return true;
  for (const std::string& part : Split(p, '/')) {
    if (part == "..") return true;
  }
  return false;
}

// "./boot/vmlinuz" -> "boot/vmlinuz"
std::string StripDotSlash(std::string_view p) {
  while (StartsWith(p, "./")) p.remove_prefix(2);
  return std::string(p);
}

struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};
struct ArchiveWriter {
  archive* a = archive_write_disk_new();
  ~ArchiveWriter() { archive_write_free(a); }
};

// "<archive>: <what>: <libarchive's message>" as DataLoss.
Status ArchiveError(archive* a, const fs::path& file, std::string_view what) {
  const char* msg = a ? archive_error_string(a) : nullptr;
  return DataLoss(file.string() + ": " + std::string(what) + ": " + (msg ? msg : "archive error"));
}

Status OpenReader(const ArchiveReader& r, const fs::path& archive_path, bool tar_only) {
  if (!r.a) return Internal("libarchive allocation failed");
  archive_read_support_filter_all(r.a);
  if (tar_only) {
    archive_read_support_format_tar(r.a);
    archive_read_support_format_gnutar(r.a);
  } else {
    archive_read_support_format_all(r.a);
  }
  if (archive_read_open_filename(r.a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return ArchiveError(r.a, archive_path, tar_only ? "not a readable tar archive"
                                                    : "not a readable archive");
  }
  return OkStatus();
}

Status RefuseEntry(const fs::path& archive_path, const std::string& path) {
  return InvalidArgument(archive_path.string() + ": refusing entry \"" + path +
                         "\" (absolute path or \"..\")");
}

// Writes the current entry's data into `out` (created 0600, must not exist),
// keeping holes.
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
      st = ArchiveError(a, archive_path, "reading \"" + out.filename().string() + "\"");
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

Status ExtractArchive(const fs::path& archive_path, const fs::path& dest,
                      const ExtractOptions& options) {
  const std::string what = archive_path.string();
  ArchiveReader r;
  ArchiveWriter w;
  if (!w.a) return Internal("libarchive allocation failed");
  BANGER_RETURN_IF_ERROR(OpenReader(r, archive_path, options.tar_only));
  // Entry paths are checked to be relative and then rooted at `dest` (so
  // NOABSOLUTEPATHS cannot be used); SECURE_SYMLINKS refuses writing through
  // a symlink the archive planted earlier. No user/group name lookup: a root
  // tree's numeric ids mean the guest's users, not the host's.
  int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
              ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK;
  if (options.keep_ownership) {
    flags |= ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL |
             ARCHIVE_EXTRACT_FFLAGS | ARCHIVE_EXTRACT_SPARSE;
  }
  archive_write_disk_set_options(w.a, flags);
  size_t entries = 0;
  while (true) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "bad archive");
    ++entries;
    const char* raw = archive_entry_pathname(e);
    if (!raw || !*raw) return RefuseEntry(archive_path, "");
    std::string path = StripDotSlash(raw);
    if (path.empty() || path == ".") {
      if (!options.apply_root_entry) continue;
      path = ".";
    } else if (IsUnsafeEntryPath(path)) {
      return RefuseEntry(archive_path, path);
    }
    auto type = archive_entry_filetype(e);
    const char* hl = archive_entry_hardlink(e);
    if (hl) {
      std::string target = StripDotSlash(hl);
      if (IsUnsafeEntryPath(target)) {
        return InvalidArgument(what + ": refusing hard link \"" + path + "\" to \"" + target +
                               "\"");
      }
      archive_entry_set_hardlink(e, (dest / target).c_str());
    } else if (type == AE_IFLNK) {
      if (options.confine_symlinks) {
        const char* sl = archive_entry_symlink(e);
        std::string target = sl ? sl : "";
        fs::path resolved = (fs::path(path).parent_path() / target).lexically_normal();
        if (target.empty() || target.front() == '/' ||
            (!resolved.empty() && *resolved.begin() == "..")) {
          return InvalidArgument(what + ": refusing symlink \"" + path + "\" -> \"" + target +
                                 "\" (leads outside the archive)");
        }
      }
    } else if (options.plain_files_only && type != AE_IFREG && type != AE_IFDIR) {
      continue;
    }
    archive_entry_set_pathname(e, (dest / path).c_str());
    if (!options.keep_ownership) {
      archive_entry_set_uid(e, 0);
      archive_entry_set_gid(e, 0);
    }
    if (archive_write_header(w.a, e) < ARCHIVE_WARN) {
      return ArchiveError(w.a, archive_path, "extracting \"" + path + "\"");
    }
    if (archive_entry_size(e) > 0) {
      while (true) {
        const void* buf = nullptr;
        size_t len = 0;
        la_int64_t offset = 0;
        int dr = archive_read_data_block(r.a, &buf, &len, &offset);
        if (dr == ARCHIVE_EOF) break;
        if (dr < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "reading \"" + path + "\"");
        if (archive_write_data_block(w.a, buf, len, offset) < ARCHIVE_WARN) {
          return ArchiveError(w.a, archive_path, "writing \"" + path + "\"");
        }
      }
    }
    if (archive_write_finish_entry(w.a) < ARCHIVE_WARN) {
      return ArchiveError(w.a, archive_path, "finishing \"" + path + "\"");
    }
  }
  if (archive_write_close(w.a) != ARCHIVE_OK) return ArchiveError(w.a, archive_path, "extract");
  if (options.require_entries && entries == 0) {
    return InvalidArgument(what + ": archive is empty");
  }
  return OkStatus();
}

Result<std::vector<std::string>> ExtractNamedFiles(const fs::path& archive_path,
                                                   const fs::path& dest,
                                                   const std::vector<std::string>& names) {
  const std::string what = archive_path.string();
  ArchiveReader r;
  BANGER_RETURN_IF_ERROR(OpenReader(r, archive_path, /*tar_only=*/false));
  std::vector<std::string> found;
  while (true) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) return ArchiveError(r.a, archive_path, "bad archive");
    const char* raw = archive_entry_pathname(e);
    std::string path = raw ? raw : "";
    if (IsUnsafeEntryPath(path)) return RefuseEntry(archive_path, path);
    const char* hl = archive_entry_hardlink(e);
    const char* sl = archive_entry_symlink(e);
    if ((hl && IsUnsafeEntryPath(hl)) || (sl && IsUnsafeEntryPath(sl))) {
      return InvalidArgument(what + ": refusing link \"" + path + "\" pointing outside the archive");
    }
    std::string name = StripDotSlash(path);
    if (std::find(names.begin(), names.end(), name) == names.end()) continue;
    if (archive_entry_filetype(e) != AE_IFREG || hl || sl) {
      return InvalidArgument(what + ": \"" + path + "\" must be a regular file");
    }
    if (std::find(found.begin(), found.end(), name) != found.end()) {
      return InvalidArgument(what + ": \"" + name + "\" appears twice");
    }
    found.push_back(name);
    BANGER_RETURN_IF_ERROR(WriteEntryData(r.a, archive_path, dest / name, archive_entry_size(e)));
  }
  return found;
}

}  // namespace banger::fetch
