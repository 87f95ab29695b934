// Confinement of each VMM process, in the spirit of Firecracker's jailer
// (docs/qemu.md, "Confinement"): when banger runs as root, every QEMU runs as
// its own unprivileged uid/gid, sees only its own runtime directory, its own
// volumes and the read-only shared artifacts, runs under QEMU's seccomp
// sandbox, and sits in its own cgroup with a memory and a pids limit.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace banger {

/// The reserved id range: group `base` is shared by every confined QEMU (it
/// may traverse the state directory and read the shared base artifacts);
/// slot k is uid = gid = base + 1 + k. No passwd or group entry is needed.
struct ConfineIds {
  uint32_t base = 1u << 20;  // 1048576
  uint32_t count = 65536;
  uint32_t shared_gid() const { return base; }
  uint32_t IdOfSlot(uint32_t slot) const { return base + 1 + slot; }
  bool Owns(uint32_t id) const { return id > base && id <= base + count; }
};

/// The lowest per-sandbox id not in `used`; ResourceExhausted when all are.
Result<uint32_t> LowestFreeId(const ConfineIds& ids, const std::set<uint32_t>& used);

/// The id of the sandbox whose runtime dir is `runtime_dir`: the owner of
/// that directory when it is one of ours (a restart keeps its identity),
/// else the lowest id that owns no entry of its parent (the sandboxes dir).
/// The caller serializes calls (a lock in <state>/run/locks).
Result<uint32_t> PickSandboxId(const ConfineIds& ids, const std::filesystem::path& runtime_dir);

/// chown to uid:gid and chmod `mode` (files) / 0700 (dir): the runtime dir
/// and each of its direct entries.
Status OwnRuntimeDir(const std::filesystem::path& dir, uid_t uid, gid_t gid);
/// chown uid:gid, chmod 0600.
Status OwnFile(const std::filesystem::path& file, uid_t uid, gid_t gid);

/// Gives every file and directory below `dir` (two levels) owned by `uid`
/// back to root (0:0), modes unchanged. Missing `dir` is fine.
Status ReclaimFiles(const std::filesystem::path& dir, uid_t uid);

/// Lets group `gid` reach `path` below `top`: every directory from `top` down
/// to path's parent gets group `gid` and g+x (no read: nothing is listed);
/// `path` itself gets group `gid` and g+r when `read` (a file), g+x when it
/// is a directory. Nothing outside `top` is touched. Idempotent.
Status GrantGroupAccess(const std::filesystem::path& path, const std::filesystem::path& top, gid_t gid,
                        bool read);

/// "" when a process with uid/gids can search every ancestor directory of
/// `path` and open it (read, or read-write), judged from the modes and
/// owners; else which directory or file stops it.
std::string AccessProblem(const std::filesystem::path& path, uid_t uid, const std::vector<gid_t>& gids,
                          bool write);

/// Makes uid/gid the owner of the persistent tap `tap` (in the network
/// namespace `netns`, "" = banger's) so that an unprivileged QEMU may attach
/// to it (TUNSETOWNER/TUNSETGROUP; the tap must not be attached now).
Status SetTapOwner(const std::string& netns, const std::string& tap, uid_t uid, gid_t gid);

// ---------------------------------------------------------------------------
// cgroups: one per sandbox under a "banger" parent; v2 where the memory and
// pids controllers are on the unified hierarchy, else v1's memory (and pids)
// hierarchies (hybrid hosts), else none (QEMU runs without a limit).

enum class CgroupMode { kNone, kV2, kV1 };

struct CgroupSupport {
  CgroupMode mode = CgroupMode::kNone;
  std::filesystem::path v2_root;     // the cgroup2 mount (kV2)
  std::filesystem::path v1_memory;   // the v1 memory mount (kV1)
  std::filesystem::path v1_pids;     // the v1 pids mount (kV1; empty: no pids limit)
  std::string why_not;               // kNone: why
  /// "cgroup v2 (/sys/fs/cgroup)" etc., for doctor and logs.
  std::string Describe() const;
};

/// From /proc/self/mountinfo's text and a reader of a cgroup2 root's
/// cgroup.controllers (pure, for tests).
CgroupSupport ParseCgroupSupport(const std::string& mountinfo,
                                 const std::string& v2_root_controllers);
/// This host's.
CgroupSupport DetectCgroups();

struct CgroupLimits {
  uint64_t memory_max = 0;  // bytes; 0: none
  uint64_t pids_max = 0;    // 0: none
};

/// The cgroup directories of sandbox `id` (v2: one; v1: memory, pids). Pure.
std::vector<std::filesystem::path> SandboxCgroupDirs(const CgroupSupport& s, const std::string& id);
/// Creates (or updates) them with the limits; swap is not allowed.
Status CreateSandboxCgroup(const CgroupSupport& s, const std::string& id, const CgroupLimits& limits);
/// Kills what is left in them and removes them; missing is fine.
Status RemoveSandboxCgroup(const CgroupSupport& s, const std::string& id);

struct CgroupMemory {
  uint64_t current = 0, peak = 0, max = 0;
  uint64_t oom_kills = 0;
};
Result<CgroupMemory> ReadSandboxCgroupMemory(const CgroupSupport& s, const std::string& id);

/// memory.max for a guest of `guest_bytes`: the guest's RAM plus QEMU's own
/// measured overhead under TCG (docs/qemu.md).
uint64_t QemuMemoryLimit(uint64_t guest_bytes);
/// QEMU's TCG translation cache size (MiB) banger sets, so that the overhead is bounded.
constexpr uint32_t kQemuTcgTbSizeMiB = 64;

}  // namespace banger
