#include "state/layout.h"

#include <unistd.h>

#include <cstdlib>
#include <system_error>

#include "base/files.h"

namespace banger {
namespace fs = std::filesystem;
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

Result<fs::path> Absolute(const std::string& p, std::string_view from) {
  std::error_code ec;
  fs::path abs = fs::absolute(fs::path(p), ec);
  if (ec) {
    return ErrnoStatus(ec.value(),
                       "resolve state directory " + p + " (from " + std::string(from) + ")");
  }
  return abs.lexically_normal();
}

}  // namespace

StateLayout LayoutAt(const fs::path& root) {
  StateLayout l;
  l.root = root;
  l.db_path = root / "state.db";
  l.blobs_dir = root / "blobs";
  l.images_dir = root / "images";
  l.kernels_dir = root / "kernels";
  l.sandboxes_dir = root / "sandboxes";
  l.run_dir = root / "run";
  return l;
}

Result<StateLayout> ResolveStateLayout(const std::string& flag_state_dir) {
  return ResolveStateLayout(flag_state_dir, ::geteuid() == 0);
}

Result<StateLayout> ResolveStateLayout(const std::string& flag_state_dir, bool running_as_root) {
  if (!flag_state_dir.empty()) {
    BANGER_ASSIGN_OR_RETURN(fs::path root, Absolute(flag_state_dir, "--state-dir"));
    return LayoutAt(root);
  }
  if (std::string home = Env("BANGER_HOME"); !home.empty()) {
    BANGER_ASSIGN_OR_RETURN(fs::path root, Absolute(home, "$BANGER_HOME"));
    return LayoutAt(root);
  }
  if (running_as_root) return LayoutAt("/var/lib/banger");
  if (std::string xdg = Env("XDG_DATA_HOME"); !xdg.empty() && fs::path(xdg).is_absolute()) {
    return LayoutAt((fs::path(xdg) / "banger").lexically_normal());
  }
  if (std::string home = Env("HOME"); !home.empty() && fs::path(home).is_absolute()) {
    return LayoutAt((fs::path(home) / ".local" / "share" / "banger").lexically_normal());
  }
  return FailedPrecondition(
      "cannot choose a state directory: pass --state-dir or set BANGER_HOME "
      "(HOME and XDG_DATA_HOME are unset or not absolute)");
}

Status EnsureLayout(const StateLayout& layout) {
  if (layout.root.empty()) return InvalidArgument("state layout has an empty root");
  for (const fs::path* dir : {&layout.root, &layout.blobs_dir, &layout.images_dir,
                              &layout.kernels_dir, &layout.sandboxes_dir, &layout.run_dir}) {
    if (dir->empty()) continue;
    BANGER_RETURN_IF_ERROR(MakePrivateDir(*dir).WithContext("state layout"));
  }
  return OkStatus();
}

}  // namespace banger
