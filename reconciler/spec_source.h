// SpecSource: where a watcher's desired state comes from (a set of spec files
// and directories, or a git repository). A source only reads; it never writes
// to what it follows. Implementations live in sources/; tests use fakes.
#pragma once

#include <functional>
#include <string>

#include "base/status.h"
#include "spec/loader.h"

namespace banger {

/// One look at a source: the revision seen and the specs found there.
struct SourceSnapshot {
  /// Git: the full 40-hex commit id. Directories: "sha256:<hex>" over the
  /// names and contents of every spec file (changes when any file changes).
  std::string revision;
  /// Git: the first line of the commit message; directories: empty.
  std::string summary;
  /// The specs at that revision. Diagnostics name files as users know them
  /// (repository-relative for git, as given for directories), so an error
  /// reads `specs/web.yaml:3:5: error: spec.cpus: ...`.
  LoadResult specs;
};

class SpecSource {
 public:
  virtual ~SpecSource() = default;

  /// Stable identity of what is followed, used as the key of its status row
  /// and as the default apply-set owner of its sandboxes: for git
  /// "git:<url>#<ref>:<path>" (ref empty = the remote's default branch), for
  /// files "path:<abs>,<abs>" (the same string `banger apply -f` uses).
  virtual std::string Key() const = 0;

  /// For logs and `banger status`: the URL or paths, and the ref.
  virtual std::string Url() const = 0;
  virtual std::string Ref() const = 0;

  /// Fetches (git) or re-reads (files) the source. An error Status means the
  /// source could not be read at all (network, authentication, missing
  /// repository); invalid specs are not an error here: they are reported in
  /// the snapshot's diagnostics.
  virtual Result<SourceSnapshot> Fetch() = 0;

  /// Starts calling `on_change` (from another thread) when the source may
  /// have changed, for sources that can tell (inotify on directories).
  /// Sources that cannot tell return OK and never call it; the watcher's
  /// periodic resync covers them.
  virtual Status StartNotifications(std::function<void()> on_change) {
    (void)on_change;
    return OkStatus();
  }
  /// Stops notifications; after it returns `on_change` is not called again.
  virtual void StopNotifications() {}
};

}  // namespace banger
