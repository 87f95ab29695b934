// Initramfs images for booting stock distribution kernels under banger:
//  - BuildInitramfs: one per kernel: the guest agent as /init plus the kernel
//    modules needed to reach the root disk and the host channel.
//  - WriteSandboxInitrd: one per sandbox: the kernel's initramfs followed by a
//    small cpio holding /banger/config.json (Linux unpacks concatenated archives).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/guest_config.h"

namespace banger {

/// The modules banger's guest needs, by module name (dependencies are resolved).
const std::vector<std::string>& DefaultGuestModules();
/// Modules included when the kernel has them (the vsock channel used under
/// Firecracker: vmw_vsock_virtio_transport and its dependencies).
const std::vector<std::string>& OptionalGuestModules();

/// Resolves `wanted` module names against `modules_dir` (a /lib/modules/<ver>
/// directory with modules.dep, and optionally modules.softdep, modules.alias,
/// modules.builtin) and returns paths relative to modules_dir in load order,
/// dependencies first, each once (the order `modprobe --show-depends` uses,
/// including "pre:" soft dependencies). Built-in modules are skipped; a module
/// of `wanted` that is neither listed nor built in is NotFound; one of
/// `optional` is then skipped (its dependencies follow the wanted modules).
Result<std::vector<std::string>> ResolveModuleLoadOrder(const std::filesystem::path& modules_dir,
                                                        const std::vector<std::string>& wanted,
                                                        const std::vector<std::string>& optional = {});

/// Writes a gzip-compressed newc cpio to `out`: /init (the agent), the
/// resolved modules (decompressed if .ko.xz/.ko.zst/.ko.gz) under
/// /lib/banger/modules/, /lib/banger/modules.order, the directories the agent
/// mounts on, and /dev/console. Identical inputs give identical bytes.
Status BuildInitramfs(const std::filesystem::path& modules_dir,
                      const std::filesystem::path& agent_binary, const std::filesystem::path& out,
                      const std::vector<std::string>& modules = DefaultGuestModules(),
                      const std::vector<std::string>& optional_modules = OptionalGuestModules());

/// The name of the cached initramfs built from these inputs:
/// "banger-initramfs-<16 hex>.img", the hex being a sha256 over the builder's
/// format version, the agent binary's sha256, the wanted module names, and
/// each resolved module's path, size and modification time (a kernel's
/// modules are immutable in its published directory; size and mtime also
/// catch an in-place update of a host's /lib/modules/<version>).
Result<std::string> InitramfsCacheName(const std::filesystem::path& modules_dir,
                                       const std::string& agent_sha256,
                                       const std::vector<std::string>& modules = DefaultGuestModules());

/// The initramfs for `modules_dir` and `agent_binary`, built once per set of
/// inputs (InitramfsCacheName) into `cache_dir` and reused afterwards: built
/// in a temporary file and renamed into place, so a reader never sees a
/// partial file (two concurrent first builds write identical bytes; one
/// rename wins). `built` (optional) tells whether this call built it.
Result<std::filesystem::path> EnsureCachedInitramfs(
    const std::filesystem::path& modules_dir, const std::filesystem::path& agent_binary,
    const std::filesystem::path& cache_dir, bool* built = nullptr,
    const std::vector<std::string>& modules = DefaultGuestModules());

/// Writes `out` (mode 0600) = the bytes of `kernel_initramfs`, zero-padded to
/// 4 bytes, + an uncompressed newc cpio with banger/config.json.
Status WriteSandboxInitrd(const std::filesystem::path& kernel_initramfs, const GuestConfig& guest,
                          const std::filesystem::path& out);

/// Lists the entries of a cpio (optionally compressed) archive as "path mode"
/// lines; for tests and `banger debug`. Reads only the first archive.
Result<std::vector<std::string>> ListCpio(const std::filesystem::path& archive);

}  // namespace banger
