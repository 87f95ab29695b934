// Writing an ext4 root disk straight from OCI layer streams with libext2fs:
// no flattened tree on the host, no `mkfs.ext4 -d` copy of it and no fixup
// pass. Every inode gets exactly the owner, mode (setuid/setgid/sticky),
// xattrs, device numbers and times its layer entry says, whoever runs banger.
// File contents go into the disk as each layer streams by; names, directories
// and metadata are written once at Finish, from an in-memory model of the
// flattened tree (whiteouts and opaque directories applied to it), so a file
// deleted by a later layer only costs its freed blocks. See docs/images.md
// ("Writing the disk").
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "base/command_runner.h"
#include "base/status.h"
#include "oci/flatten.h"

namespace banger::images {

/// The size the writer starts with when the user chose none: the default rule
/// (images/ext4_builder.h DefaultDiskSize) applied to 4x the compressed layer
/// bytes, since the tree's size is not known before the layers are read.
/// Finish grows the disk if the tree turned out to need more.
uint64_t StreamedDiskSize(uint64_t compressed_bytes);

class Ext4DiskWriter : public oci::LayerSink {
 public:
  /// Creates `out` (which must not exist) as an empty ext4 file system of
  /// `size_bytes` (FormatExt4, 16 KiB of disk per inode). `grow` lets Finish
  /// enlarge the disk to DefaultDiskSize of the tree (`resize2fs`) when that
  /// is larger. A disk too small for the layers fails Apply or Finish with
  /// ResourceExhausted ("... is full"). Until Finish succeeds, destroying the
  /// writer removes `out`.
  static Result<std::unique_ptr<Ext4DiskWriter>> Create(CommandRunner& runner,
                                                        const std::filesystem::path& out,
                                                        uint64_t size_bytes, bool grow);
  ~Ext4DiskWriter() override;
  Ext4DiskWriter(const Ext4DiskWriter&) = delete;
  Ext4DiskWriter& operator=(const Ext4DiskWriter&) = delete;

  /// Same rules and errors as oci::FlattenLayers (whiteouts, opaque
  /// directories, hard links, escapes refused naming the layer and entry).
  Status Apply(const oci::LayerFile& layer, const oci::FlattenProgressFn& progress = {}) override;
  /// Writes the directories, names and metadata, closes the file system.
  Result<oci::FlattenStats> Finish() override;

 private:
  struct Impl;
  explicit Ext4DiskWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace banger::images
