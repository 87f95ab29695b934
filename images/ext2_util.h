// libext2fs helpers shared by the disk fixup (ext4_fixup.cc) and the direct
// disk writer (ext4_writer.cc). Internal to images/.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "oci/flatten.h"

namespace banger::images::ext2 {

/// Internal "<what>: <libext2fs message>"; a full disk (no free block or
/// inode in the image) is ResourceExhausted so callers can tell it apart, and
/// a full host file system is ErrnoStatus(ENOSPC) ("No space left on device").
Status Ext2Error(errcode_t err, const std::string& what);

/// An open file system, closed (and freed) on destruction.
class FsHandle {
 public:
  FsHandle() = default;
  ~FsHandle();
  FsHandle(const FsHandle&) = delete;
  FsHandle& operator=(const FsHandle&) = delete;
  ext2_filsys& get() { return fs_; }
  /// Writes everything back; reports the error a destructor could not.
  Status Close(const std::string& image);

 private:
  ext2_filsys fs_ = nullptr;
};

/// Opens `image` (read-write with bitmaps loaded when `write`).
Status Open(const std::filesystem::path& image, bool write, FsHandle& h);

/// "dir/name", or "name" when dir is "" (paths inside a disk, no leading '/').
std::string Join(const std::string& dir, const std::string& name);

uint32_t InodeUid(const ext2_inode_large& in);
uint32_t InodeGid(const ext2_inode_large& in);
void SetOwner(ext2_inode_large& in, uint32_t uid, uint32_t gid);
/// Device numbers as the kernel stores them in i_block (old and new encoding).
void DecodeDevice(const ext2_inode_large& in, uint32_t& major, uint32_t& minor);
void EncodeDevice(ext2_inode_large& in, uint32_t major, uint32_t minor);
/// Sets i_extra_isize for the file system's inode size (nanosecond times
/// and in-inode xattrs live past the old 128-byte inode).
void SetExtraIsize(ext2_filsys fs, ext2_inode_large& in);

using Xattrs = std::vector<std::pair<std::string, std::string>>;
Result<Xattrs> ReadXattrs(ext2_filsys fs, ext2_ino_t ino, const std::string& path);
/// Makes the inode's xattrs exactly `want`.
Status WriteXattrs(ext2_filsys fs, ext2_ino_t ino, const Xattrs& want, const std::string& path);

/// The directory entry type of a device, fifo or socket mode (0 otherwise).
int FileTypeOf(uint32_t mode);
/// Adds `name` -> `ino` to directory `dir`, growing the directory when full.
Status Link(ext2_filsys fs, ext2_ino_t dir, const std::string& name, ext2_ino_t ino, int type,
            const std::string& path);
/// Creates a device node, fifo or socket `name` in directory `dir`.
Status CreateNode(ext2_filsys fs, ext2_ino_t dir, const std::string& name, const std::string& path,
                  const oci::EntryMeta& m);

}  // namespace banger::images::ext2
