// File plumbing for kernel sources: downloads, tarball extraction, finding a
// kernel inside a tree, and cheap tree copies (hard links when possible).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "base/status.h"
#include "fetch/download.h"

namespace banger::kernels {

using KernelProgressFn = fetch::ProgressFn;

/// fetch::DownloadFile with the kernel size limit (4 GiB): downloads `url`
/// (http, https or file) to `dest` (created 0600, must not exist) and returns
/// the sha256 hex of what was written. On error `dest` is removed. 404 /
/// missing file -> NotFound, 5xx and network errors -> Unavailable.
Result<std::string> DownloadFile(const std::string& url, const std::filesystem::path& dest,
                                 const KernelProgressFn& progress);

/// fetch::ExtractArchive for kernel tarballs: extracts a (compressed) tar
/// archive into `dest` (an existing directory).
/// Only regular files, directories, symlinks and hard links are created;
/// entries with absolute paths or ".." and links pointing outside `dest` are
/// refused with an error naming the archive and the entry.
Status ExtractTarball(const std::filesystem::path& archive, const std::filesystem::path& dest);

/// The pieces of one kernel found somewhere.
struct KernelFiles {
  std::filesystem::path bzimage;      // compressed kernel; may be empty when vmlinux is given
  std::filesystem::path vmlinux;      // ELF kernel; may be empty
  std::filesystem::path modules_dir;  // directory holding modules.dep; may be empty
  std::filesystem::path initrd;       // may be empty
  std::filesystem::path system_map;   // may be empty
  std::filesystem::path config;       // may be empty
};

/// Finds a kernel in an unpacked tree (an OCI image root or a tarball):
/// boot/vmlinuz[-R], boot/bzImage, vmlinuz, bzImage (compressed) and
/// boot/vmlinux[-R], vmlinux (ELF); modules in lib/modules/R,
/// usr/lib/modules/R or modules/[R]; optional initrd.img, System.map, config
/// (also under boot/ with a -R suffix). Every path found resolves inside
/// `root` (symlinks leading out are ignored). NotFound when there is no
/// kernel; InvalidArgument when several module trees fit and none matches.
Result<KernelFiles> LocateKernelFiles(const std::filesystem::path& root);

/// Recreates the tree `src` at `dst` (which must not exist): directories
/// are created, regular files are hard-linked, falling back to a copy across
/// file systems or when linking is not permitted, relative symlinks that stay
/// inside the tree are recreated; anything else is skipped. Returns the number
/// of files copied rather than linked.
Result<uint64_t> LinkOrCopyTree(const std::filesystem::path& src, const std::filesystem::path& dst);

/// Copies one regular file (not a link), mode 0644.
Status CopyRegularFile(const std::filesystem::path& src, const std::filesystem::path& dst);

}  // namespace banger::kernels
