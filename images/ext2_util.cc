#include "images/ext2_util.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace banger::images::ext2 {

namespace fs = std::filesystem;

namespace {
int CollectXattr(char* name, char* value, size_t len, void* priv) {
  static_cast<Xattrs*>(priv)->emplace_back(name, std::string(value, len));
  return 0;
}
}  // namespace

Status Ext2Error(errcode_t err, const std::string& what) {
  // The host's file system is full (a short write to an image file is one).
  if (err == ENOSPC || err == EDQUOT || err == EXT2_ET_SHORT_WRITE) {
    return ErrnoStatus(err == EDQUOT ? EDQUOT : ENOSPC, what);
  }
  if (err == EXT2_ET_BLOCK_ALLOC_FAIL || err == EXT2_ET_INODE_ALLOC_FAIL) {
    return ResourceExhausted(what + ": " + error_message(err));
  }
  return Internal(what + ": " + error_message(err));
}

FsHandle::~FsHandle() {
  if (fs_) ext2fs_close_free(&fs_);
}

Status FsHandle::Close(const std::string& image) {
  errcode_t err = ext2fs_close_free(&fs_);
  fs_ = nullptr;
  if (err) return Ext2Error(err, "write " + image);
  return OkStatus();
}

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

void SetExtraIsize(ext2_filsys fs, ext2_inode_large& in) {
  if (EXT2_INODE_SIZE(fs->super) <= EXT2_GOOD_OLD_INODE_SIZE) return;
  in.i_extra_isize = sizeof(ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
  if (in.i_extra_isize > EXT2_INODE_SIZE(fs->super) - EXT2_GOOD_OLD_INODE_SIZE) {
    in.i_extra_isize = static_cast<__u16>(EXT2_INODE_SIZE(fs->super) - EXT2_GOOD_OLD_INODE_SIZE);
  }
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

int FileTypeOf(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    default: return 0;
  }
}

Status Link(ext2_filsys fs, ext2_ino_t dir, const std::string& name, ext2_ino_t ino, int type,
            const std::string& path) {
  errcode_t err = ext2fs_link(fs, dir, name.c_str(), ino, type);
  if (err == EXT2_ET_DIR_NO_SPACE) {
    err = ext2fs_expand_dir(fs, dir);
    if (!err) err = ext2fs_link(fs, dir, name.c_str(), ino, type);
  }
  if (err) return Ext2Error(err, "link /" + path);
  return OkStatus();
}

Status CreateNode(ext2_filsys fs, ext2_ino_t dir, const std::string& name, const std::string& path,
                  const oci::EntryMeta& m) {
  ext2_ino_t ino = 0;
  errcode_t err = ext2fs_new_inode(fs, dir, static_cast<int>(m.mode), nullptr, &ino);
  if (err) return Ext2Error(err, "allocate an inode for /" + path);
  BANGER_RETURN_IF_ERROR(Link(fs, dir, name, ino, FileTypeOf(m.mode), path));
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  ext2_inode_large in;
  std::memset(&in, 0, sizeof(in));
  in.i_mode = static_cast<__u16>(m.mode);
  SetOwner(in, m.uid, m.gid);
  in.i_atime = in.i_ctime = in.i_mtime = static_cast<__u32>(m.mtime);
  in.i_links_count = 1;
  if (S_ISCHR(m.mode) || S_ISBLK(m.mode)) EncodeDevice(in, m.rdev_major, m.rdev_minor);
  SetExtraIsize(fs, in);
  err = ext2fs_write_new_inode(fs, ino, reinterpret_cast<ext2_inode*>(&in));
  if (err) return Ext2Error(err, "write inode of /" + path);
  if (!m.xattrs.empty()) BANGER_RETURN_IF_ERROR(WriteXattrs(fs, ino, m.xattrs, path));
  return OkStatus();
}

}  // namespace banger::images::ext2
