// Where banger keeps its state on disk.
#pragma once

#include <filesystem>
#include <string>

#include "base/status.h"

namespace banger {

struct StateLayout {
  std::filesystem::path root;           // everything below lives here
  std::filesystem::path db_path;        // root/state.db
  std::filesystem::path blobs_dir;      // root/blobs: content-addressed downloads (sha256)
  std::filesystem::path images_dir;     // root/images/<image id>/
  std::filesystem::path kernels_dir;    // root/kernels/<kernel id>/
  std::filesystem::path sandboxes_dir;  // root/sandboxes/<sandbox id>/ (disks, logs)
  std::filesystem::path run_dir;        // root/run: sockets and pid files of live VMs
};

/// Builds the layout below `root` (no I/O).
StateLayout LayoutAt(const std::filesystem::path& root);

/// The state root is, in order: `flag_state_dir` when non-empty, else
/// $BANGER_HOME, else /var/lib/banger when running as root (euid 0), else
/// $XDG_DATA_HOME/banger (when absolute), else $HOME/.local/share/banger.
/// Relative flag/$BANGER_HOME values are made absolute against the current
/// directory. FailedPrecondition when nothing applies (no HOME).
Result<StateLayout> ResolveStateLayout(const std::string& flag_state_dir);
/// Same, with the "running as root" decision made by the caller (tests).
Result<StateLayout> ResolveStateLayout(const std::string& flag_state_dir, bool running_as_root);

/// Creates root and every directory of the layout with mode 0700 (existing
/// ones are tightened to at most 0710: group search stays, for the group of
/// banger's confined QEMUs, docs/qemu.md).
Status EnsureLayout(const StateLayout& layout);

}  // namespace banger
