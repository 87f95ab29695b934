// Archive extraction with libarchive that never writes outside the
// destination: entries with absolute paths or ".." components are refused,
// hard links must stay inside the archive, and writing through a symlink the
// archive planted is refused.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger::fetch {

struct ExtractOptions {
  /// Accept only tar formats (any compression); otherwise any libarchive format.
  bool tar_only = false;
  /// Restore owners, ACLs, xattrs, file flags and holes (a root file system
  /// tree). Otherwise files belong to the extracting user.
  bool keep_ownership = false;
  /// Apply the archive's "." entry (mode, owner, times) to `dest` itself;
  /// otherwise "." is skipped.
  bool apply_root_entry = false;
  /// Create only regular files, directories, symlinks and hard links;
  /// devices, fifos and sockets are skipped.
  bool plain_files_only = false;
  /// Refuse symlinks whose target is absolute or leads outside the archive.
  bool confine_symlinks = false;
  /// An archive without entries is an error.
  bool require_entries = false;
};

/// Extracts the archive into the existing directory `dest`. Refused entries
/// are InvalidArgument naming the archive and the entry; unreadable or
/// corrupt archives and failed writes are DataLoss.
Status ExtractArchive(const std::filesystem::path& archive, const std::filesystem::path& dest,
                      const ExtractOptions& options);

/// Extracts only the regular files called `names` (plain file names at the
/// archive's top level; a leading "./" is ignored) into dest/<name>, created
/// 0600 (must not exist), holes kept. Every entry of the archive is checked:
/// absolute or ".." paths and links pointing outside are refused, as are a
/// wanted name that is not a regular file or appears twice (InvalidArgument,
/// naming the archive and the entry). Returns the names found, in archive
/// order.
Result<std::vector<std::string>> ExtractNamedFiles(const std::filesystem::path& archive,
                                                   const std::filesystem::path& dest,
                                                   const std::vector<std::string>& names);

}  // namespace banger::fetch
