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
#include "images/ext2_util.h"

namespace banger::images {

namespace fs = std::filesystem;

namespace {

using namespace ext2;

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
