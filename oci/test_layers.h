// Test support: builds tar layers with libarchive's write API. Header-only;
// used by oci unit and integration tests.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace banger::oci::testing {

enum class Compression { kNone, kGzip, kZstd };

struct TarEntry {
  std::string path;
  mode_t type = AE_IFREG;     // AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFBLK, AE_IFIFO
  std::string content;        // regular files
  std::string link;           // symlink target
  std::string hardlink;       // hard link target (type ignored)
  unsigned mode = 0644;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1700000000;
  long mtime_nsec = 0;
  unsigned dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

class TarBuilder {
 public:
  TarBuilder& Add(TarEntry e) {
    entries_.push_back(std::move(e));
    return *this;
  }
  TarBuilder& File(std::string path, std::string content, unsigned mode = 0644) {
    TarEntry e;
    e.path = std::move(path);
    e.content = std::move(content);
    e.mode = mode;
    return Add(std::move(e));
  }
  TarBuilder& Dir(std::string path, unsigned mode = 0755) {
    TarEntry e;
    e.path = std::move(path);
    e.type = AE_IFDIR;
    e.mode = mode;
    return Add(std::move(e));
  }
  TarBuilder& Symlink(std::string path, std::string target) {
    TarEntry e;
    e.path = std::move(path);
    e.type = AE_IFLNK;
    e.link = std::move(target);
    e.mode = 0777;
    return Add(std::move(e));
  }
  TarBuilder& Hardlink(std::string path, std::string target) {
    TarEntry e;
    e.path = std::move(path);
    e.hardlink = std::move(target);
    return Add(std::move(e));
  }
  TarBuilder& Whiteout(const std::string& dir, const std::string& name) {
    return File(dir.empty() ? ".wh." + name : dir + "/.wh." + name, "");
  }
  TarBuilder& Opaque(const std::string& dir) { return File(dir + "/.wh..wh..opq", ""); }

  std::string Build(Compression c = Compression::kNone) const {
    std::string out;
    archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
    if (c == Compression::kZstd) archive_write_add_filter_zstd(a);
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open(a, &out, nullptr, &WriteCb, nullptr) != ARCHIVE_OK) {
      throw std::runtime_error(archive_error_string(a));
    }
    for (const TarEntry& t : entries_) {
      archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, t.path.c_str());
      archive_entry_set_uid(e, t.uid);
      archive_entry_set_gid(e, t.gid);
      archive_entry_set_mtime(e, t.mtime, t.mtime_nsec);
      for (const auto& [k, v] : t.xattrs) {
        archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
      }
      if (!t.hardlink.empty()) {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, t.mode);
        archive_entry_set_hardlink(e, t.hardlink.c_str());
        archive_entry_set_size(e, 0);
      } else {
        archive_entry_set_filetype(e, t.type);
        archive_entry_set_perm(e, t.mode);
        if (t.type == AE_IFLNK) archive_entry_set_symlink(e, t.link.c_str());
        if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
          archive_entry_set_rdev(e, makedev(t.dev_major, t.dev_minor));
        }
        archive_entry_set_size(e, t.type == AE_IFREG ? static_cast<la_int64_t>(t.content.size()) : 0);
      }
      if (archive_write_header(a, e) != ARCHIVE_OK) {
        std::string err = archive_error_string(a);
        archive_entry_free(e);
        archive_write_free(a);
        throw std::runtime_error("tar header " + t.path + ": " + err);
      }
      if (t.hardlink.empty() && t.type == AE_IFREG && !t.content.empty()) {
        archive_write_data(a, t.content.data(), t.content.size());
      }
      archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    return out;
  }

 private:
  static la_ssize_t WriteCb(archive*, void* client, const void* buf, size_t len) {
    static_cast<std::string*>(client)->append(static_cast<const char*>(buf), len);
    return static_cast<la_ssize_t>(len);
  }
  std::vector<TarEntry> entries_;
};

}  // namespace banger::oci::testing
