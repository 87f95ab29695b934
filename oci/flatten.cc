#include "oci/flatten.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "base/unique_fd.h"

namespace banger::oci {

namespace fs = std::filesystem;

namespace {


class Flattener {
 public:
  Flattener(UniqueFd root, TreeManifest* manifest) : root_(std::move(root)), manifest_(manifest) {}

  Status Apply(const LayerFile& layer, const FlattenProgressFn& progress);
  Status Finish();
  const FlattenStats& stats() const { return stats_; }

 private:
  Status EntryError(std::string_view entry, std::string_view why) const {
    return LayerEntryError(*layer_, entry, why);
  }
  Status EntryErrno(std::string_view entry, int err, std::string_view op) const {
    return ErrnoStatus(err, "layer " + layer_->digest + " entry \"" + std::string(entry) + "\": " +
                                std::string(op));
  }
  // Splits an entry path into components; refuses absolute paths and "..".
  Result<std::vector<std::string>> SplitPath(std::string_view entry, std::string_view raw) const;
  // Opens the directory holding the last component, creating missing parents
  // when `create`. Refuses to pass through symlinks or non-directories.
  Result<UniqueFd> OpenParent(std::string_view entry, const std::vector<std::string>& comps,
                        bool create);
  Result<UniqueFd> OpenDir(std::string_view entry, const std::vector<std::string>& comps, size_t n,
                     bool create);
  Status RemoveTree(int dirfd, const std::string& name, std::string_view entry);
  Status CleanOpaque(int dirfd, const std::string& dir_path, std::string_view entry);
  bool WrittenInLayer(const std::string& path) const;
  Status ApplyEntry(archive* a, archive_entry* e);
  Status ApplyMetadata(int fd, archive_entry* e, std::string_view entry, bool is_dir);
  // Records the entry's exact metadata in the manifest (when there is one).
  void Record(const std::string& path, archive_entry* e);
  void Forget(const std::string& path) {
    if (manifest_) EraseSubtree(*manifest_, path);
  }
  Status WriteData(archive* a, int fd, archive_entry* e, std::string_view entry);
  Status SetTimes(int fd, archive_entry* e, std::string_view entry);

  UniqueFd root_;
  const LayerFile* layer_ = nullptr;
  std::set<std::string> layer_paths_;  // paths written by the current layer
  std::map<std::string, struct timespec> dir_mtimes_;
  FlattenStats stats_;
  TreeManifest* manifest_ = nullptr;
  bool is_root_ = ::geteuid() == 0;
};

Result<std::vector<std::string>> Flattener::SplitPath(std::string_view entry,
                                                      std::string_view raw) const {
  return SplitLayerPath(*layer_, entry, raw);
}

Result<UniqueFd> Flattener::OpenDir(std::string_view entry, const std::vector<std::string>& comps,
                              size_t n, bool create) {
  UniqueFd cur(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
  if (!cur.valid()) return ErrnoStatus(errno, "dup root directory");
  for (size_t i = 0; i < n; ++i) {
    const std::string& c = comps[i];
    int fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
        return EntryErrno(entry, errno, "create parent " + JoinLayerPath(comps, i + 1));
      }
      fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int err = errno;
      struct stat st {};
      if (::fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return EntryError(entry, "path escapes the root (parent \"" + JoinLayerPath(comps, i + 1) +
                                       "\" is a symlink)");
        }
        if (!S_ISDIR(st.st_mode)) {
          return EntryError(entry, "parent \"" + JoinLayerPath(comps, i + 1) + "\" is not a directory");
        }
      }
      return EntryErrno(entry, err, "open parent " + JoinLayerPath(comps, i + 1));
    }
    cur = UniqueFd(fd);
  }
  return cur;
}

Result<UniqueFd> Flattener::OpenParent(std::string_view entry, const std::vector<std::string>& comps,
                                 bool create) {
  return OpenDir(entry, comps, comps.size() - 1, create);
}

Status Flattener::RemoveTree(int dirfd, const std::string& name, std::string_view entry) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return OkStatus();
    return EntryErrno(entry, errno, "stat " + name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return EntryErrno(entry, errno, "remove " + name);
    }
    return OkStatus();
  }
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return EntryErrno(entry, errno, "open " + name);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int err = errno;
    ::close(fd);
    return EntryErrno(entry, err, "read " + name);
  }
  std::vector<std::string> children;
  while (dirent* de = ::readdir(d)) {
    std::string child = de->d_name;
    if (child != "." && child != "..") children.push_back(std::move(child));
  }
  Status s;
  for (const std::string& child : children) {
    s = RemoveTree(::dirfd(d), child, entry);
    if (!s.ok()) break;
  }
  ::closedir(d);
  BANGER_RETURN_IF_ERROR(s);
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return EntryErrno(entry, errno, "remove directory " + name);
  }
  return OkStatus();
}

bool Flattener::WrittenInLayer(const std::string& path) const {
  if (layer_paths_.count(path)) return true;
  auto it = layer_paths_.lower_bound(path + "/");
  return it != layer_paths_.end() && StartsWith(*it, path + "/");
}

// Removes everything below dir_path that the current layer did not write.
Status Flattener::CleanOpaque(int dirfd, const std::string& dir_path, std::string_view entry) {
  int fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "dup");
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return EntryErrno(entry, errno, "read " + dir_path);
  }
  ::rewinddir(d);
  std::vector<std::string> children;
  while (dirent* de = ::readdir(d)) {
    std::string child = de->d_name;
    if (child != "." && child != "..") children.push_back(std::move(child));
  }
  ::closedir(d);
  for (const std::string& child : children) {
    std::string path = dir_path.empty() ? child : dir_path + "/" + child;
    if (!WrittenInLayer(path)) {
      BANGER_RETURN_IF_ERROR(RemoveTree(dirfd, child, entry));
      dir_mtimes_.erase(path);
      Forget(path);
      continue;
    }
    struct stat st {};
    if (::fstatat(dirfd, child.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirfd, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return EntryErrno(entry, errno, "open " + path);
      BANGER_RETURN_IF_ERROR(CleanOpaque(sub.get(), path, entry));
    }
  }
  return OkStatus();
}

Status Flattener::ApplyMetadata(int fd, archive_entry* e, std::string_view entry, bool is_dir) {
  if (is_root_) {
    if (::fchown(fd, static_cast<uid_t>(archive_entry_uid(e)),
                 static_cast<gid_t>(archive_entry_gid(e))) != 0) {
      return EntryErrno(entry, errno, "chown");
    }
  }
  // After chown, which clears setuid/setgid. A user keeps read/write (and
  // search) for itself so later layers and mkfs can use the tree; the exact
  // mode is in the manifest.
  mode_t perm = archive_entry_perm(e) & 07777;
  if (!is_root_) perm |= is_dir ? 0700 : 0600;
  if (::fchmod(fd, perm) != 0) return EntryErrno(entry, errno, "chmod");
  // A user cannot set privileged xattrs (security.capability, trusted.*);
  // the manifest carries them all to the disk.
  if (manifest_ && !is_root_) {
    if (!is_dir) return SetTimes(fd, e, entry);
    return OkStatus();
  }
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (::fsetxattr(fd, name, value, size, 0) != 0) {
      int err = errno;
      if (err == ENOTSUP || (err == EPERM && !is_root_)) {
        spdlog::warn("layer {} entry \"{}\": cannot set xattr {}: {}", layer_->digest, entry,
                     name, std::strerror(err));
        continue;
      }
      return EntryErrno(entry, err, std::string("set xattr ") + name);
    }
  }
  if (!is_dir) return SetTimes(fd, e, entry);
  return OkStatus();
}

Status Flattener::SetTimes(int fd, archive_entry* e, std::string_view entry) {
  struct timespec ts[2];
  ts[1].tv_sec = archive_entry_mtime(e);
  ts[1].tv_nsec = archive_entry_mtime_nsec(e);
  ts[0] = archive_entry_atime_is_set(e)
              ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
              : ts[1];
  if (::futimens(fd, ts) != 0) return EntryErrno(entry, errno, "set times");
  return OkStatus();
}

void Flattener::Record(const std::string& path, archive_entry* e) {
  if (!manifest_) return;
  (*manifest_)[path] = EntryMetaOf(e);
}

Status Flattener::WriteData(archive* a, int fd, archive_entry* e, std::string_view entry) {
  const void* buf = nullptr;
  size_t len = 0;
  la_int64_t offset = 0;
  while (true) {
    int r = archive_read_data_block(a, &buf, &len, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return DataLoss("layer " + layer_->digest + " entry \"" + std::string(entry) +
                      "\": " + ArchiveErrorOf(a, r));
    }
    const char* p = static_cast<const char*>(buf);
    while (len > 0) {
      ssize_t n = ::pwrite(fd, p, len, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return EntryErrno(entry, errno, "write");
      }
      p += n;
      len -= static_cast<size_t>(n);
      offset += n;
      stats_.file_bytes += static_cast<uint64_t>(n);
    }
  }
  if (archive_entry_size_is_set(e) && ::ftruncate(fd, archive_entry_size(e)) != 0) {
    return EntryErrno(entry, errno, "truncate");
  }
  return OkStatus();
}

Status Flattener::ApplyEntry(archive* a, archive_entry* e) {
  const char* raw_c = archive_entry_pathname(e);
  std::string raw = raw_c ? raw_c : "";
  std::string_view entry = raw;
  BANGER_ASSIGN_OR_RETURN(std::vector<std::string> comps, SplitPath(entry, raw));
  ++stats_.entries;
  mode_t type = archive_entry_filetype(e);
  const char* hardlink = archive_entry_hardlink(e);

  if (comps.empty()) {
    // The root directory itself ("./"): take its mode and owner, nothing else.
    if (type == AE_IFDIR && !hardlink) {
      Record("", e);
      return ApplyMetadata(root_.get(), e, entry, true);
    }
    return EntryError(entry, "refusing to replace the root directory");
  }
  const std::string name = comps.back();
  const std::string path = JoinLayerPath(comps, comps.size());

  if (StartsWith(name, kWhiteoutPrefix)) {
    if (name == kOpaqueMarker) {
      BANGER_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(entry, comps, comps.size() - 1, /*create=*/true));
      std::string dir_path = JoinLayerPath(comps, comps.size() - 1);
      if (manifest_) {
        // Entries that exist only in the manifest (devices) are not seen by
        // CleanOpaque's readdir.
        std::string prefix = dir_path.empty() ? "" : dir_path + "/";
        for (auto it = manifest_->lower_bound(prefix);
             it != manifest_->end() && StartsWith(it->first, prefix);) {
          if (!it->first.empty() && it->first != dir_path && !WrittenInLayer(it->first)) {
            it = manifest_->erase(it);
          } else {
            ++it;
          }
        }
      }
      return CleanOpaque(dir.get(), dir_path, entry);
    }
    std::string target = name.substr(kWhiteoutPrefix.size());
    if (target.empty() || target == "." || target == "..") {
      return EntryError(entry, "path escapes the root (invalid whiteout)");
    }
    std::vector<std::string> tcomps = comps;
    tcomps.back() = target;
    std::string tpath = JoinLayerPath(tcomps, tcomps.size());
    if (WrittenInLayer(tpath)) return OkStatus();  // only lower layers are whited out
    auto parent = OpenParent(entry, comps, /*create=*/false);
    if (!parent) {
      if (parent.error().code() == StatusCode::kNotFound) {
        Forget(tpath);
        return OkStatus();
      }
      return parent.error();
    }
    dir_mtimes_.erase(tpath);
    Forget(tpath);
    return RemoveTree(parent->get(), target, entry);
  }

  BANGER_ASSIGN_OR_RETURN(UniqueFd parent, OpenParent(entry, comps, /*create=*/true));
  layer_paths_.insert(path);

  struct stat existing {};
  bool exists = ::fstatat(parent.get(), name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
  bool new_is_dir = !hardlink && type == AE_IFDIR;
  if (exists && !(new_is_dir && S_ISDIR(existing.st_mode))) {
    BANGER_RETURN_IF_ERROR(RemoveTree(parent.get(), name, entry));
    dir_mtimes_.erase(path);
  }
  if (!(new_is_dir && exists && S_ISDIR(existing.st_mode))) Forget(path);

  if (hardlink) {
    BANGER_ASSIGN_OR_RETURN(std::vector<std::string> tcomps, SplitPath(entry, hardlink));
    if (tcomps.empty()) return EntryError(entry, "hard link to the root directory");
    auto tparent = OpenParent(entry, tcomps, /*create=*/false);
    if (!tparent) return tparent.error().WithContext("hard link target \"" + std::string(hardlink) + "\"");
    std::string tpath = JoinLayerPath(tcomps, tcomps.size());
    if (manifest_) {
      auto target = manifest_->find(tpath);
      if (target != manifest_->end() &&
          (S_ISCHR(target->second.mode) || S_ISBLK(target->second.mode))) {
        // A link to a device that lives only in the manifest: the fixup
        // creates a second node with the same numbers.
        EntryMeta copy = target->second;
        (*manifest_)[path] = std::move(copy);
        return OkStatus();
      }
    }
    if (::linkat(tparent->get(), tcomps.back().c_str(), parent.get(), name.c_str(), 0) != 0) {
      return EntryErrno(entry, errno, "hard link to \"" + std::string(hardlink) + "\"");
    }
    if (manifest_) {
      auto target = manifest_->find(tpath);
      if (target != manifest_->end()) {
        EntryMeta copy = target->second;
        (*manifest_)[path] = std::move(copy);
      }
    }
    return OkStatus();
  }

  switch (type) {
    case AE_IFREG: {
      UniqueFd fd(::openat(parent.get(), name.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.valid()) return EntryErrno(entry, errno, "create file");
      BANGER_RETURN_IF_ERROR(WriteData(a, fd.get(), e, entry));
      Record(path, e);
      return ApplyMetadata(fd.get(), e, entry, false);
    }
    case AE_IFDIR: {
      if (!exists || !S_ISDIR(existing.st_mode)) {
        if (::mkdirat(parent.get(), name.c_str(), 0700) != 0) {
          return EntryErrno(entry, errno, "create directory");
        }
      }
      UniqueFd fd(::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd.valid()) return EntryErrno(entry, errno, "open directory");
      Record(path, e);
      BANGER_RETURN_IF_ERROR(ApplyMetadata(fd.get(), e, entry, true));
      dir_mtimes_[path] = timespec{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
      return OkStatus();
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (!target) return EntryError(entry, "symlink without target");
      if (::symlinkat(target, parent.get(), name.c_str()) != 0) {
        return EntryErrno(entry, errno, "create symlink");
      }
      Record(path, e);
      if (is_root_ && ::fchownat(parent.get(), name.c_str(),
                                 static_cast<uid_t>(archive_entry_uid(e)),
                                 static_cast<gid_t>(archive_entry_gid(e)),
                                 AT_SYMLINK_NOFOLLOW) != 0) {
        return EntryErrno(entry, errno, "chown symlink");
      }
      struct timespec ts[2];
      ts[1] = timespec{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
      ts[0] = ts[1];
      if (::utimensat(parent.get(), name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
        return EntryErrno(entry, errno, "set symlink times");
      }
      return OkStatus();
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
      dev_t dev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
      Record(path, e);
      // With a manifest, devices are created by the disk fixup only (a user
      // cannot mknod them; root does the same so both build the same disk).
      if (manifest_ && type != AE_IFIFO) return OkStatus();
      if (::mknodat(parent.get(), name.c_str(), kind | 0600, dev) != 0) {
        if (errno == EPERM && !is_root_) {
          spdlog::warn("layer {} entry \"{}\": skipping device node (not root)", layer_->digest,
                       entry);
          return OkStatus();
        }
        return EntryErrno(entry, errno, "create device node");
      }
      // Device nodes cannot be opened safely for metadata; use the *at forms.
      if (is_root_ && ::fchownat(parent.get(), name.c_str(),
                                 static_cast<uid_t>(archive_entry_uid(e)),
                                 static_cast<gid_t>(archive_entry_gid(e)),
                                 AT_SYMLINK_NOFOLLOW) != 0) {
        return EntryErrno(entry, errno, "chown device node");
      }
      mode_t perm = archive_entry_perm(e) & 07777;
      if (!is_root_) perm |= 0600;
      if (::fchmodat(parent.get(), name.c_str(), perm, 0) != 0) {
        return EntryErrno(entry, errno, "chmod device node");
      }
      struct timespec ts[2];
      ts[1] = timespec{archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
      ts[0] = ts[1];
      if (::utimensat(parent.get(), name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
        return EntryErrno(entry, errno, "set device node times");
      }
      return OkStatus();
    }
    case AE_IFSOCK:
      spdlog::debug("layer {} entry \"{}\": skipping socket", layer_->digest, entry);
      return OkStatus();
    default:
      return EntryError(entry, "unsupported entry type " + std::to_string(type));
  }
}

Status Flattener::Apply(const LayerFile& layer, const FlattenProgressFn& progress) {
  layer_ = &layer;
  layer_paths_.clear();
  return ForEachLayerEntry(layer, progress,
                           [&](archive* a, archive_entry* e) { return ApplyEntry(a, e); });
}

Status Flattener::Finish() {
  // Directory mtimes last: writing entries into a directory changes its mtime.
  for (auto it = dir_mtimes_.rbegin(); it != dir_mtimes_.rend(); ++it) {
    std::vector<std::string> comps = Split(it->first, '/');
    UniqueFd dir(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
    bool ok = true;
    for (const std::string& c : comps) {
      int fd = ::openat(dir.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        ok = false;
        break;
      }
      dir = UniqueFd(fd);
    }
    if (!ok) continue;  // removed by a later whiteout
    struct timespec ts[2] = {it->second, it->second};
    if (::futimens(dir.get(), ts) != 0) return ErrnoStatus(errno, "set times of " + it->first);
  }
  return OkStatus();
}

}  // namespace

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};

// libarchive returns NULL when a reader failed without setting a message (a
// truncated or corrupt stream can do that).
std::string ArchiveErrorOf(archive* a, int r) {
  const char* msg = archive_error_string(a);
  if (msg && *msg) return msg;
  return r == ARCHIVE_FATAL ? "unreadable archive (libarchive gave no reason)"
                            : "archive error " + std::to_string(r) + " (libarchive gave no reason)";
}

std::string JoinLayerPath(const std::vector<std::string>& comps, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < comps.size(); ++i) {
    if (i) out += '/';
    out += comps[i];
  }
  return out;
}

Status LayerEntryError(const LayerFile& layer, std::string_view entry, std::string_view why) {
  return InvalidArgument("layer " + layer.digest + " entry \"" + std::string(entry) + "\": " +
                         std::string(why));
}

Result<std::vector<std::string>> SplitLayerPath(const LayerFile& layer, std::string_view entry,
                                                std::string_view raw) {
  if (StartsWith(raw, "/")) return LayerEntryError(layer, entry, "path escapes the root (absolute path)");
  std::vector<std::string> comps;
  for (std::string& c : Split(raw, '/')) {
    if (c.empty() || c == ".") continue;
    if (c == "..") return LayerEntryError(layer, entry, "path escapes the root (\"..\" component)");
    comps.push_back(std::move(c));
  }
  return comps;
}

EntryMeta EntryMetaOf(archive_entry* e) {
  EntryMeta m;
  mode_t type = archive_entry_filetype(e);
  m.mode = static_cast<uint32_t>(type | (archive_entry_perm(e) & 07777));
  m.uid = static_cast<uint32_t>(archive_entry_uid(e));
  m.gid = static_cast<uint32_t>(archive_entry_gid(e));
  if (type == AE_IFCHR || type == AE_IFBLK) {
    m.rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
    m.rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
  }
  m.mtime = archive_entry_mtime(e);
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    m.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
  }
  return m;
}

Status ForEachLayerEntry(const LayerFile& layer, const FlattenProgressFn& progress,
                         const std::function<Status(archive*, archive_entry*)>& fn) {
  std::unique_ptr<archive, ArchiveCloser> a(archive_read_new());
  if (!a) return Internal("archive_read_new failed");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  std::error_code ec;
  uint64_t total = fs::file_size(layer.path, ec);
  if (ec) return ErrnoStatus(ec.value(), "layer " + layer.digest + ": " + layer.path.string());
  if (total == 0) return OkStatus();  // an empty blob is an empty layer
  if (int r = archive_read_open_filename(a.get(), layer.path.c_str(), 1 << 16); r != ARCHIVE_OK) {
    return DataLoss("layer " + layer.digest + ": " + ArchiveErrorOf(a.get(), r));
  }
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r == ARCHIVE_WARN) {
      spdlog::warn("layer {}: {}", layer.digest, ArchiveErrorOf(a.get(), r));
    } else if (r != ARCHIVE_OK) {
      return DataLoss("layer " + layer.digest + ": " + ArchiveErrorOf(a.get(), r));
    }
    BANGER_RETURN_IF_ERROR(fn(a.get(), e));
    if (progress) {
      progress(layer, static_cast<uint64_t>(archive_filter_bytes(a.get(), -1)), total);
    }
  }
  if (progress) progress(layer, total, total);
  return OkStatus();
}

struct LayerApplier::Impl {
  explicit Impl(UniqueFd root, TreeManifest* manifest) : f(std::move(root), manifest) {}
  Flattener f;
};

LayerApplier::LayerApplier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerApplier::~LayerApplier() = default;

Result<std::unique_ptr<LayerApplier>> LayerApplier::Open(const fs::path& dest_dir,
                                                         TreeManifest* manifest) {
  UniqueFd root(::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ErrnoStatus(errno, "open destination " + dest_dir.string());
  return std::unique_ptr<LayerApplier>(
      new LayerApplier(std::make_unique<Impl>(std::move(root), manifest)));
}

Status LayerApplier::Apply(const LayerFile& layer, const FlattenProgressFn& progress) {
  return impl_->f.Apply(layer, progress);
}

Result<FlattenStats> LayerApplier::Finish() {
  BANGER_RETURN_IF_ERROR(impl_->f.Finish());
  return impl_->f.stats();
}

Result<FlattenStats> FlattenLayers(const std::vector<LayerFile>& layers, const fs::path& dest_dir,
                                   const FlattenProgressFn& progress, TreeManifest* manifest) {
  BANGER_ASSIGN_OR_RETURN(std::unique_ptr<LayerApplier> applier, LayerApplier::Open(dest_dir, manifest));
  for (const LayerFile& layer : layers) {
    BANGER_RETURN_IF_ERROR(applier->Apply(layer, progress));
  }
  return applier->Finish();
}

void EraseSubtree(TreeManifest& manifest, const std::string& path) {
  if (path.empty()) {
    manifest.clear();
    return;
  }
  manifest.erase(path);
  std::string prefix = path + "/";
  for (auto it = manifest.lower_bound(prefix);
       it != manifest.end() && StartsWith(it->first, prefix);) {
    it = manifest.erase(it);
  }
}

Result<uint64_t> TreeApparentSize(const fs::path& dir) {
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t total = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return ErrnoStatus(ec.value(), "read directory " + dir.string());
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_size);
    } else if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
      total += static_cast<uint64_t>(st.st_size);
    }
  }
  return total;
}

}  // namespace banger::oci
