// GitSource: a SpecSource following a directory inside a git repository,
// fetched with libgit2 into a private bare mirror. It only ever reads from the
// remote (fetch), never pushes.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "reconciler/spec_source.h"

namespace banger {

struct GitSourceOptions {
  /// file://, a plain path, https://, ssh:// or scp-like user@host:path.
  std::string url;
  /// A branch, a tag, a full ref (refs/...) or a 40-hex commit id; empty:
  /// the remote's default branch (its HEAD).
  std::string ref;
  /// Directory inside the repository holding the specs.
  std::string path = ".";
  /// Private directory owned by this source (created 0700): the mirror in
  /// repo.git, materialized trees in trees/<sha>, and `current` pointing at
  /// the latest one.
  std::filesystem::path cache_dir;
  /// Name of an environment variable holding an HTTPS token, sent as the
  /// password (user name from the URL, else "git") and only over https://.
  /// Read at each Fetch(), never stored. Empty: none.
  std::string token_env;
  /// Keys (id_ed25519, id_ecdsa, id_rsa) and known_hosts for SSH. Empty:
  /// $HOME/.ssh.
  std::filesystem::path ssh_dir;
  /// libgit2 never repacks: every fetch that brings commits adds a pack file.
  /// Once the mirror holds more than this many, it is deleted and fetched
  /// afresh (one full fetch) instead of slowing down forever.
  int max_mirror_packs = 64;
};

/// Not thread-safe: Fetch() is called from one thread at a time (the
/// watcher's). Two GitSources must not share a cache_dir.
class GitSource : public SpecSource {
 public:
  explicit GitSource(GitSourceOptions options);
  ~GitSource() override;
  GitSource(const GitSource&) = delete;
  GitSource& operator=(const GitSource&) = delete;

  /// "git:<url>#<ref>:<path>" with `path` normalised ("./specs/" -> "specs").
  std::string Key() const override;
  std::string Url() const override;
  std::string Ref() const override;

  /// Fetches `ref` into the mirror (refs/banger/*, never the remote),
  /// materializes the subtree at `path` of that commit under
  /// cache_dir/trees/<sha>, atomically repoints cache_dir/current at it and
  /// loads the specs from there. Diagnostics name repository-relative files
  /// ("specs/web.yaml:3:5"). A spec whose `files[].source` resolves outside
  /// the materialized tree (via `..` or a symlink) is dropped with an error
  /// diagnostic. Errors: network, authentication, unknown SSH host, missing
  /// repository or ref (each naming the URL and ref), bad `path`.
  Result<SourceSnapshot> Fetch() override;

 private:
  struct Impl;
  GitSourceOptions options_;
  std::string path_;  // normalised options_.path
  std::unique_ptr<Impl> impl_;
};

}  // namespace banger
