#pragma once
// libgit2 helpers shared by sources/ (git spec sources) and workspace/
// (workspaces): one-time initialisation, owning handles and error text.
// Header-only, so base/ itself does not link libgit2; include it only from
// modules that do.

#include <git2.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace banger::git {

/// Initialises libgit2 once per process. It is never shut down: other threads
/// may still hold its objects at exit.
inline void Init() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};

/// An owning libgit2 handle: `git::Ptr<git_tree, git_tree_free> tree;`.
template <typename T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;

/// Calls a libgit2 constructor `fn(T** out, args...)` and hands what it made
/// to `owner`: `if (git::Fill(tree, git_tree_lookup, repo, &oid) != 0) ...`.
/// Returns libgit2's code; `owner` is set before Fill returns, so it can be
/// used in the rest of the same expression.
template <typename T, void (*Free)(T*), typename Fn, typename... Args>
[[nodiscard]] int Fill(Ptr<T, Free>& owner, Fn fn, Args&&... args) {
  T* raw = nullptr;
  int rc = fn(&raw, std::forward<Args>(args)...);
  owner.reset(raw);
  return rc;
}

/// The message of the last libgit2 error on this thread.
inline std::string LastError() {
  const git_error* e = git_error_last();
  return e && e->message ? e->message : "unknown libgit2 error";
}

}  // namespace banger::git
