// The real VolumeFiles port (reconciler/ports.h): each volume is a sparse
// ext4 image at <state>/volumes/<sandbox>/<name>.ext4 (files 0600, dirs
// 0700), built with mkfs.ext4 -d from a private staging directory, which for
// seedFrom: image holds the image's files at mountPath extracted with
// `debugfs -R "rdump ..."` (no mount). See docs/volumes.md.
#pragma once

#include <filesystem>
#include <memory>

#include "base/command_runner.h"
#include "reconciler/ports.h"
#include "state/layout.h"

namespace banger {

/// <state>/volumes: where every volume file lives.
inline std::filesystem::path VolumesDir(const StateLayout& layout) { return layout.root / "volumes"; }

std::unique_ptr<VolumeFiles> MakeVolumeFiles(CommandRunner& runner, const std::filesystem::path& volumes_dir);

}  // namespace banger
