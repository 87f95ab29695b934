#include "images/ext4_fixup.h"

#include <ext2fs/ext2fs.h>
#include <ext2fs/ext2_ext_attr.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/strings.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {

Status Ext2Error(errcode_t err, const std::string& what) {
  return Internal(what + ": " + error_message(err));
}

class FsHandle {
 public:
  ~FsHandle() {
    if (fs_) ext2fs_close_free(&fs_);
  }
  ext2_filsys& get() { return fs_; }
  // Writes everything back; reports the error a destructor could not.
  Status Close(const std::string& image) {
    errcode_t err = ext2fs_close_free(&fs_);
    fs_ = nullptr;
    if (err) return Ext2Error(err, "write " + image);
    return OkStatus();
  }

 private:
  ext2_filsys fs_ = nullptr;
};

Status Open(const fs::path& image, bool write, FsHandle& h) {
  int flags = EXT2_FLAG_64BITS | EXT2_FLAG_THREADS;
  if (write) flags |= EXT2_FLAG_RW;
  errcode_t err = ext2fs_open(image.c_str(), flags, 0, 0, unix_io_manager, &h.get());
  if (err) return Ext2Error(err, "open ext4 image " + image.string());
  if (write) {
    err = ext2fs_read_bitmaps(h.get());
    if (err) return Ext2Error(err, "read bitmaps of " + image.string());
  }
  return OkStatus();
}

struct Child {
  std::string name;
  ext2_ino_t ino;
  bool is_dir = false;
};

int CollectChild(ext2_ino_t, int, ext2_dir_entry* dirent, int, int, char*, void* priv) {
  auto* out = static_cast<std::vector<Child>*>(priv);
  int len = ext2fs_dirent_name_len(dirent);
  std::string name(dirent->name, static_cast<size_t>(len));
  if (name == "." || name == "..") return 0;
  out->push_back(Child{std::move(name), dirent->inode, false});
  return 0;
}

Result<std::vector<Child>> ListDir(ext2_filsys fs, ext2_ino_t dir, const std::string& path) {
  std::vector<Child> children;
  errcode_t err = ext2fs_dir_iterate2(fs, dir, 0, nullptr, CollectChild, &children);
  if (err) return Ext2Error(err, "read directory /" + path);
  return children;
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

uint32_t InodeUid(const ext2_inode_large& in) { return inode_uid(in); }
uint32_t InodeGid(const ext2_inode_large& in) { return inode_gid(in); }
void SetOwner(ext2_inode_large& in, uint32_t uid, uint32_t gid) {
  in.i_uid = static_cast<__u16>(uid & 0xffff);
  ext2fs_set_i_uid_high(in, static_cast<__u16>(uid >> 16));
  in.i_gid = static_cast<__u16>(gid & 0xffff);
  ext2fs_set_i_gid_high(in, static_cast<__u16>(gid >> 16));
}

// Device numbers as the kernel stores them in i_block (old and new encoding).
void DecodeDevice(const ext2_inode_large& in, uint32_t& major, uint32_t& minor) {
  if (in.i_block[0] != 0) {
    major = (in.i_block[0] >> 8) & 0xff;
    minor = in.i_block[0] & 0xff;
  } else {
    uint32_t dev = in.i_block[1];
    major = (dev & 0xfff00) >> 8;
    minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  }
}
void EncodeDevice(ext2_inode_large& in, uint32_t major, uint32_t minor) {
  if (major < 256 && minor < 256) {
    in.i_block[0] = major * 256 + minor;
    in.i_block[1] = 0;
  } else {
    in.i_block[0] = 0;
    in.i_block[1] = (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
  }
  in.i_block[2] = 0;
}

// Whether the inode carries any xattr (in the inode body or an EA block),
// without opening an xattr handle.
bool HasXattrs(ext2_filsys fs, ext2_ino_t ino, const ext2_inode_large& in) {
  if (ext2fs_file_acl_block(fs, reinterpret_cast<const ext2_inode*>(&in)) != 0) return true;
  size_t isize = EXT2_INODE_SIZE(fs->super);
  if (isize <= EXT2_GOOD_OLD_INODE_SIZE) return false;
  // The in-inode area lies past struct ext2_inode_large: read the whole inode.
  std::vector<char> buf(isize);
  if (ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(buf.data()),
                             static_cast<int>(isize)) != 0) {
    return true;  // let the xattr reader report it
  }
  size_t off = EXT2_GOOD_OLD_INODE_SIZE + in.i_extra_isize;
  if (off + sizeof(__u32) > isize) return false;
  __u32 magic;
  std::memcpy(&magic, buf.data() + off, sizeof(magic));
  return magic == EXT2_EXT_ATTR_MAGIC;
}

using Xattrs = std::vector<std::pair<std::string, std::string>>;

int CollectXattr(char* name, char* value, size_t len, void* priv) {
  static_cast<Xattrs*>(priv)->emplace_back(name, std::string(value, len));
  return 0;
}

Result<Xattrs> ReadXattrs(ext2_filsys fs, ext2_ino_t ino, const std::string& path) {
  ext2_xattr_handle* h = nullptr;
  errcode_t err = ext2fs_xattrs_open(fs, ino, &h);
  if (err) return Ext2Error(err, "xattrs of /" + path);
  Xattrs out;
  err = ext2fs_xattrs_read(h);
  if (!err) err = ext2fs_xattrs_iterate(h, CollectXattr, &out);
  ext2fs_xattrs_close(&h);
  if (err) return Ext2Error(err, "read xattrs of /" + path);
  return out;
}

// Makes the inode's xattrs exactly `want`.
Status WriteXattrs(ext2_filsys fs, ext2_ino_t ino, const Xattrs& want, const std::string& path) {
  ext2_xattr_handle* h = nullptr;
  errcode_t err = ext2fs_xattrs_open(fs, ino, &h);
  if (err) return Ext2Error(err, "xattrs of /" + path);
  Xattrs have;
  err = ext2fs_xattrs_read(h);
  if (!err) err = ext2fs_xattrs_iterate(h, CollectXattr, &have);
  std::set<std::string> wanted;
  for (const auto& [k, v] : want) wanted.insert(k);
  for (const auto& [k, v] : have) {
    if (err) break;
    if (!wanted.count(k)) err = ext2fs_xattr_remove(h, k.c_str());
  }
  for (const auto& [k, v] : want) {
    if (err) break;
    err = ext2fs_xattr_set(h, k.c_str(), v.data(), v.size());
  }
  errcode_t cerr = ext2fs_xattrs_close(&h);
  if (!err) err = cerr;
  if (err) return Ext2Error(err, "set xattrs of /" + path);
  return OkStatus();
}

Xattrs Sorted(Xattrs x) {
  std::sort(x.begin(), x.end());
  return x;
}

Result<ext2_ino_t> Lookup(ext2_filsys fs, const std::string& path) {
  if (path.empty()) return static_cast<ext2_ino_t>(EXT2_ROOT_INO);
  ext2_ino_t ino = 0;
  errcode_t err = ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path.c_str(), &ino);
  if (err == EXT2_ET_FILE_NOT_FOUND) return NotFound("/" + path + " is not in the disk");
  if (err) return Ext2Error(err, "look up /" + path);
  return ino;
}

int FileTypeOf(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    default: return 0;
  }
}

// Creates a device node, fifo or socket `name` in directory `dir`.
Status CreateNode(ext2_filsys fs, ext2_ino_t dir, const std::string& name, const std::string& path,
                  const oci::EntryMeta& m) {
  ext2_ino_t ino = 0;
  errcode_t err = ext2fs_new_inode(fs, dir, static_cast<int>(m.mode), nullptr, &ino);
  if (err) return Ext2Error(err, "allocate an inode for /" + path);
  err = ext2fs_link(fs, dir, name.c_str(), ino, FileTypeOf(m.mode));
  if (err == EXT2_ET_DIR_NO_SPACE) {
    err = ext2fs_expand_dir(fs, dir);
    if (!err) err = ext2fs_link(fs, dir, name.c_str(), ino, FileTypeOf(m.mode));
  }
  if (err) return Ext2Error(err, "link /" + path);
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  ext2_inode_large in;
  std::memset(&in, 0, sizeof(in));
  in.i_mode = static_cast<__u16>(m.mode);
  SetOwner(in, m.uid, m.gid);
  in.i_atime = in.i_ctime = in.i_mtime = static_cast<__u32>(m.mtime);
  in.i_links_count = 1;
  if (S_ISCHR(m.mode) || S_ISBLK(m.mode)) EncodeDevice(in, m.rdev_major, m.rdev_minor);
  if (EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE) {
    in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
    if (in.i_extra_isize > EXT2_INODE_SIZE(fs->super) - EXT2_GOOD_OLD_INODE_SIZE) {
      in.i_extra_isize = static_cast<__u16>(EXT2_INODE_SIZE(fs->super) - EXT2_GOOD_OLD_INODE_SIZE);
    }
  }
  err = ext2fs_write_new_inode(fs, ino, reinterpret_cast<ext2_inode*>(&in));
  if (err) return Ext2Error(err, "write inode of /" + path);
  if (!m.xattrs.empty()) BANGER_RETURN_IF_ERROR(WriteXattrs(fs, ino, m.xattrs, path));
  return OkStatus();
}

struct Walker {
  ext2_filsys fs;
  const oci::TreeManifest& manifest;
  const FixupOptions& options;
  FixupStats stats;

  struct Entry {
    ext2_ino_t ino;
    std::string rel, abs;
  };
  std::vector<Entry> entries;

  // Phase 1: every path below `ino`, by walking directories (read only).
  Status Collect(ext2_ino_t ino, const std::string& rel, const std::string& abs, bool is_dir) {
    entries.push_back(Entry{ino, rel, abs});
    if (!is_dir) return OkStatus();
    std::vector<Child> children;
    errcode_t err = ext2fs_dir_iterate2(fs, ino, 0, nullptr, CollectTyped, &children);
    if (err) return Ext2Error(err, "read directory /" + abs);
    for (const Child& c : children) {
      if (rel.empty() && options.subdir.empty() && c.name == "lost+found" &&
          !manifest.count(c.name)) {
        continue;  // made by mkfs, root's already
      }
      BANGER_RETURN_IF_ERROR(Collect(c.ino, Join(rel, c.name), Join(abs, c.name), c.is_dir));
    }
    return OkStatus();
  }

  // Phase 2, in inode order so the inode tables are read and written
  // sequentially (a walk in directory order made it 10x slower).
  Status ApplyAll() {
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.ino < b.ino; });
    for (const Entry& e : entries) BANGER_RETURN_IF_ERROR(Apply(e.ino, e.rel, e.abs));
    return OkStatus();
  }

  static int CollectTyped(ext2_ino_t, int, ext2_dir_entry* dirent, int, int, char*, void* priv) {
    auto* out = static_cast<std::vector<Child>*>(priv);
    int len = ext2fs_dirent_name_len(dirent);
    std::string name(dirent->name, static_cast<size_t>(len));
    if (name == "." || name == "..") return 0;
    out->push_back(Child{std::move(name), dirent->inode,
                         ext2fs_dirent_file_type(dirent) == EXT2_FT_DIR});
    return 0;
  }

  Status Apply(ext2_ino_t ino, const std::string& rel, const std::string& abs) {
    ++stats.visited;
    ext2_inode_large in;
    errcode_t err = ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&in),
                                           sizeof(in));
    if (err) return Ext2Error(err, "read inode of /" + abs);
    ext2_inode_large before = in;
    auto it = manifest.find(rel);
    const oci::EntryMeta* m = it == manifest.end() ? nullptr : &it->second;
    if (m) {
      if ((m->mode & S_IFMT) != (in.i_mode & S_IFMT)) {
        return Internal("/" + abs + " has file type " + std::to_string(in.i_mode & S_IFMT) +
                        " in the disk but " + std::to_string(m->mode & S_IFMT) +
                        " in the image");
      }
      in.i_mode = static_cast<__u16>((in.i_mode & S_IFMT) | (m->mode & 07777));
      SetOwner(in, m->uid, m->gid);
    } else {
      uint32_t uid = InodeUid(in), gid = InodeGid(in);
      if (options.map_uid_to_root && uid == *options.map_uid_to_root) uid = 0;
      if (options.map_gid_to_root && gid == *options.map_gid_to_root) gid = 0;
      SetOwner(in, uid, gid);
    }
    if (std::memcmp(&in, &before, sizeof(in)) != 0) {
      err = ext2fs_write_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&in), sizeof(in));
      if (err) return Ext2Error(err, "write inode of /" + abs);
      ++stats.changed;
    }
    if (m && (!m->xattrs.empty() || HasXattrs(fs, ino, in))) {
      BANGER_ASSIGN_OR_RETURN(Xattrs have, ReadXattrs(fs, ino, abs));
      if (Sorted(have) != Sorted(m->xattrs)) {
        BANGER_RETURN_IF_ERROR(WriteXattrs(fs, ino, m->xattrs, abs));
        if (std::memcmp(&in, &before, sizeof(in)) == 0) ++stats.changed;
      }
    }
    return OkStatus();
  }
};

}  // namespace

FixupOptions OwnTreeFixupOptions() {
  FixupOptions o;
  if (::geteuid() != 0) {
    o.map_uid_to_root = ::geteuid();
    o.map_gid_to_root = ::getegid();
  }
  return o;
}

Result<FixupStats> FixupExt4(const fs::path& image, const oci::TreeManifest& manifest,
                             const FixupOptions& options) {
  FsHandle h;
  BANGER_RETURN_IF_ERROR(Open(image, /*write=*/true, h));
  ext2_filsys fs = h.get();
  BANGER_ASSIGN_OR_RETURN(ext2_ino_t top, Lookup(fs, options.subdir));

  Walker w{fs, manifest, options, {}, {}};
  // Entries the tree could not hold: devices (never extracted), and whatever
  // a copy left out. Parents first (the map is sorted by path).
  for (const auto& [rel, m] : manifest) {
    if (rel.empty()) continue;
    std::string abs = Join(options.subdir, rel);
    auto found = Lookup(fs, abs);
    if (found) continue;
    if (found.error().code() != StatusCode::kNotFound) return found.error();
    if (FileTypeOf(m.mode) == 0) {
      return Internal("/" + abs + " is in the image but missing from the disk " + image.string());
    }
    size_t slash = rel.rfind('/');
    std::string parent_rel = slash == std::string::npos ? "" : rel.substr(0, slash);
    std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
    BANGER_ASSIGN_OR_RETURN(ext2_ino_t parent, Lookup(fs, Join(options.subdir, parent_rel)));
    BANGER_RETURN_IF_ERROR(CreateNode(fs, parent, name, abs, m));
    ++w.stats.created;
  }
  BANGER_RETURN_IF_ERROR(w.Collect(top, "", options.subdir, /*is_dir=*/true));
  BANGER_RETURN_IF_ERROR(w.ApplyAll());
  BANGER_RETURN_IF_ERROR(h.Close(image.string()));
  return w.stats;
}

Result<oci::TreeManifest> ReadExt4Manifest(const fs::path& image, const std::string& subdir) {
  FsHandle h;
  BANGER_RETURN_IF_ERROR(Open(image, /*write=*/false, h));
  ext2_filsys fs = h.get();
  BANGER_ASSIGN_OR_RETURN(ext2_ino_t top, Lookup(fs, subdir));
  oci::TreeManifest out;
  std::vector<std::pair<ext2_ino_t, std::string>> stack{{top, ""}};
  while (!stack.empty()) {
    auto [ino, rel] = stack.back();
    stack.pop_back();
    std::string abs = Join(subdir, rel);
    ext2_inode_large in;
    errcode_t err = ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&in),
                                           sizeof(in));
    if (err) return Ext2Error(err, "read inode of /" + abs);
    oci::EntryMeta m;
    m.mode = in.i_mode;
    m.uid = InodeUid(in);
    m.gid = InodeGid(in);
    m.mtime = in.i_mtime;
    if (LINUX_S_ISCHR(in.i_mode) || LINUX_S_ISBLK(in.i_mode)) {
      DecodeDevice(in, m.rdev_major, m.rdev_minor);
    }
    if (HasXattrs(fs, ino, in)) {
      BANGER_ASSIGN_OR_RETURN(m.xattrs, ReadXattrs(fs, ino, abs));
      m.xattrs = Sorted(std::move(m.xattrs));
    }
    out[rel] = std::move(m);
    if (!LINUX_S_ISDIR(in.i_mode)) continue;
    BANGER_ASSIGN_OR_RETURN(std::vector<Child> children, ListDir(fs, ino, abs));
    for (Child& c : children) stack.emplace_back(c.ino, Join(rel, c.name));
  }
  return out;
}

}  // namespace banger::images
