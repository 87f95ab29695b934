// Exact ownership inside ext4 disks whoever builds them: after `mkfs.ext4 -d`
// copied a tree (owned by whoever extracted it), this pass opens the disk with
// libext2fs and sets every inode's owner, mode (setuid/setgid/sticky
// included) and xattrs from a manifest, and creates the device nodes, fifos
// and sockets the tree could not hold. No mount, no root. See docs/images.md
// ("Ownership").
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/status.h"
#include "oci/flatten.h"

namespace banger::images {

struct FixupOptions {
  /// Apply below this directory of the disk ("" = the root); manifest paths
  /// are relative to it. It must exist.
  std::string subdir;
  /// Entries that are not in the manifest and are owned by this uid (gid)
  /// become owned by 0 (0): the files a user's own build created (a recipe's
  /// tree, directories the flattener made for parents) belong to root in the
  /// guest, as with a rootless container's user namespace. Unset: entries not
  /// in the manifest are left as they are.
  std::optional<uint32_t> map_uid_to_root;
  std::optional<uint32_t> map_gid_to_root;
};

struct FixupStats {
  uint64_t visited = 0;  // directory entries walked
  uint64_t changed = 0;  // inodes rewritten (owner, mode or xattrs)
  uint64_t created = 0;  // device nodes, fifos, sockets created
};

/// Opens `image` read-write and makes every entry below options.subdir match
/// `manifest` exactly (uid, gid, permission bits incl. setuid/setgid/sticky,
/// exactly the manifest's xattrs; device numbers of created nodes). Entries of
/// the manifest missing from the disk are created when they are devices,
/// fifos or sockets; any other missing entry is an error. The file system
/// stays consistent (`e2fsck -fn` is clean).
Result<FixupStats> FixupExt4(const std::filesystem::path& image, const oci::TreeManifest& manifest,
                             const FixupOptions& options);

/// Reads the metadata of every entry below `subdir` of `image` (read-only):
/// the inverse of FixupExt4, used to copy ownership from one disk to another
/// (seeded volumes) and by tests to compare disks.
Result<oci::TreeManifest> ReadExt4Manifest(const std::filesystem::path& image,
                                           const std::string& subdir = "");

/// The options banger uses for a tree it extracted or built itself: when not
/// root, the current euid/egid map to 0:0; as root nothing needs mapping.
FixupOptions OwnTreeFixupOptions();

}  // namespace banger::images
