// Building ext4 root disks from directory trees, without mounting anything:
// `mkfs.ext4 -d TREE` copies the tree (ownership, modes, symlinks, device
// nodes, xattrs) into a fresh file system inside a sparse file.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/command_runner.h"
#include "base/status.h"
#include "oci/flatten.h"

namespace banger::images {

inline constexpr uint64_t kMinDefaultDiskBytes = 1ull << 30;  // 1 GiB

/// What a tree needs on disk: file contents rounded up to 4 KiB blocks, plus
/// one block per directory and symlink. Does not follow symlinks.
struct TreeUsage {
  uint64_t bytes = 0;
  uint64_t entries = 0;  // files, directories, links, nodes (inodes needed)
};
Result<TreeUsage> MeasureTree(const std::filesystem::path& tree);

/// max(tree_bytes * 1.25, 1 GiB), rounded up to a whole MiB.
uint64_t DefaultDiskSize(uint64_t tree_bytes);

/// `size_bytes` rounded up to whole 4 KiB blocks; InvalidArgument naming
/// `out` when that is below the 8 MiB minimum.
Result<uint64_t> CheckedDiskSize(uint64_t size_bytes, const std::filesystem::path& out);

/// Creates `out` (which must not exist) as a sparse file of `size_bytes`
/// (a multiple of 4 KiB) and runs `mkfs.ext4` on it: label "rootfs", 4 KiB
/// blocks, `inodes` inodes, the root directory 0:0, a copy of `tree` when
/// given (`-d`). On failure `out` is removed.
Status FormatExt4(CommandRunner& runner, const std::filesystem::path& out, uint64_t size_bytes,
                  uint64_t inodes, const std::filesystem::path* tree);

/// Creates `out` (which must not exist) as a sparse file of `size_bytes` and
/// formats it as ext4 labelled "rootfs" holding a copy of `tree`.
/// `size_bytes` 0 means DefaultDiskSize of the measured tree. The root
/// directory is owned by 0:0. Then FixupExt4 (images/ext4_fixup.h) makes the
/// disk exact whoever runs banger: entries in `manifest` get exactly its
/// owners, modes, xattrs and devices; entries not in it keep the tree's
/// owners and modes, except that files owned by a non-root builder become
/// 0:0. As root without a manifest the tree is copied as it is (no fixup).
/// On failure `out` is removed.
Status BuildExt4(CommandRunner& runner, const std::filesystem::path& tree,
                 const std::filesystem::path& out, uint64_t size_bytes,
                 const oci::TreeManifest* manifest = nullptr);

}  // namespace banger::images
