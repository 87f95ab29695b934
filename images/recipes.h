// Local recipes that build a root tree on this host: a tiny busybox root and
// a Debian root via debootstrap through the host's configured apt mirror.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/command_runner.h"
#include "base/status.h"
#include "images/catalog.h"

namespace banger::images {

/// The busybox image's sysinit line in /etc/inittab. Under banger the guest
/// agent has already mounted /proc, /sys and /run: it mounts only what is
/// missing (Debian's busybox has no mountpoint applet), never over the
/// agent's mounts, and sets the hostname, in one shell (each process costs
/// at boot). Test images that replace the inittab start theirs with it.
inline constexpr char kBusyboxSysinit[] =
    "::sysinit:/bin/sh -c '[ -e /proc/self ] || mount -t proc proc /proc;"
    " grep -qs \" /sys \" /proc/mounts || mount -t sysfs sysfs /sys;"
    " grep -qs \" /run \" /proc/mounts || mount -t tmpfs tmpfs /run;"
    " hostname -F /etc/hostname'\n";

/// Fills the empty directory `dest` with a minimal root around a static
/// busybox: /bin/busybox, one symlink per applet (`busybox --list-full`),
/// /sbin/init, /etc/{passwd,group,shadow,hostname,os-release,inittab} and
/// the usual mount-point directories. `busybox` must be statically linked.
Status BuildBusyboxTree(CommandRunner& runner, const std::filesystem::path& busybox,
                        const std::filesystem::path& dest);

/// One apt source as configured on the host.
struct AptSource {
  std::string uri;                  // "http://.../debian"
  std::vector<std::string> suites;  // "bookworm", "bookworm-updates"
  std::string keyring;              // Signed-By file, may be empty
};

/// Reads `apt_dir`/sources.list, sources.list.d/*.list (one-line form) and
/// sources.list.d/*.sources (deb822) and returns every `deb` source, in file order.
Result<std::vector<AptSource>> ReadAptSources(const std::filesystem::path& apt_dir);

/// The first configured `deb` source that serves `suite`; NotFound (naming
/// the files read) when none does.
Result<AptSource> FindAptMirror(const std::filesystem::path& apt_dir, const std::string& suite);

/// Runs `debootstrap --variant=V --include=... SUITE DEST MIRROR` (with the
/// source's keyring) for a debootstrap catalog entry. `dest` must exist and
/// be empty. Mounts debootstrap leaves behind inside `dest` are undone.
Status BuildDebootstrapTree(CommandRunner& runner, const CatalogEntry& entry,
                            const AptSource& mirror, const std::filesystem::path& dest,
                            std::chrono::milliseconds timeout);

/// Lazily unmounts every mount point at or below `path` (deepest first), so a
/// tree can be removed without reaching into /proc or /dev of the host.
Status UnmountBelow(const std::filesystem::path& path);

/// A scratch directory tree that is unmounted and removed when it goes out of
/// scope (on success and on every failure path).
class ScratchTree {
 public:
  explicit ScratchTree(std::filesystem::path path) : path_(std::move(path)) {}
  ~ScratchTree();
  ScratchTree(const ScratchTree&) = delete;
  ScratchTree& operator=(const ScratchTree&) = delete;
  const std::filesystem::path& path() const { return path_; }
  /// Removes it now.
  Status Remove();

 private:
  std::filesystem::path path_;
};

}  // namespace banger::images
