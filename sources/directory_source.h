// DirectorySource: a SpecSource following spec files and directories on the
// host, with inotify notifications.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "reconciler/spec_source.h"

namespace banger {

/// Follows a set of spec files and directories (as given to `banger apply -f`).
/// Fetch() may be called from any one thread at a time; notifications run on
/// a private thread.
class DirectorySource : public SpecSource {
 public:
  explicit DirectorySource(std::vector<std::filesystem::path> paths);
  /// Stops notifications (joins the thread).
  ~DirectorySource() override;
  DirectorySource(const DirectorySource&) = delete;
  DirectorySource& operator=(const DirectorySource&) = delete;

  /// "path:<abs>,<abs>": the sorted, de-duplicated weakly_canonical absolute
  /// paths, equal to the apply-set owner `banger apply -f` uses.
  std::string Key() const override;
  /// The paths as given, joined by ",".
  std::string Url() const override;
  /// Always empty.
  std::string Ref() const override;

  /// Re-reads every path. The revision is "sha256:<hex>" over the names and
  /// contents of every *.yaml / *.yml file (and the digests of the files
  /// their specs' `files[].source` name), so it changes exactly when one of
  /// them changes. Never fails: unreadable paths are diagnostics.
  Result<SourceSnapshot> Fetch() override;

  /// Starts an inotify thread watching every directory recursively (new
  /// subdirectories are added as they appear) and, for file paths, the
  /// file's parent directory filtered by the file's name. `on_change` is
  /// called from that thread for every relevant event (spec-file writes,
  /// renames, creations and deletions, directory creation, removal of a
  /// watched directory); debouncing is the caller's business. `on_change`
  /// must not call StopNotifications(). FailedPrecondition if already started.
  Status StartNotifications(std::function<void()> on_change) override;
  /// Joins the thread; afterwards `on_change` is not called again. Idempotent.
  void StopNotifications() override;

 private:
  struct Watcher;

  std::vector<std::filesystem::path> paths_;
  std::mutex mu_;  // guards watcher_ (Start/Stop from different threads)
  std::unique_ptr<Watcher> watcher_;
  // The last snapshot and the digest of the spec files it was parsed from:
  // a resync that finds the same files (and the same files[].source
  // contents) returns it instead of parsing every spec again.
  std::mutex cache_mu_;
  std::string cached_files_digest_;
  std::optional<SourceSnapshot> cached_;
};

}  // namespace banger
