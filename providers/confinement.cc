#include "providers/confinement.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#include "base/files.h"
#include "base/strings.h"

namespace banger {
namespace fs = std::filesystem;

Result<uint32_t> LowestFreeId(const ConfineIds& ids, const std::set<uint32_t>& used) {
  for (uint32_t slot = 0; slot < ids.count; ++slot) {
    uint32_t id = ids.IdOfSlot(slot);
    if (!used.count(id)) return id;
  }
  return ResourceExhausted("all " + std::to_string(ids.count) + " sandbox uids (" +
                           std::to_string(ids.IdOfSlot(0)) + "-" + std::to_string(ids.IdOfSlot(ids.count - 1)) +
                           ") are in use");
}

Result<uint32_t> PickSandboxId(const ConfineIds& ids, const fs::path& runtime_dir) {
  struct stat st{};
  if (::lstat(runtime_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && ids.Owns(st.st_uid)) return st.st_uid;
  std::set<uint32_t> used;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(runtime_dir.parent_path(), ec)) {
    if (e.path() == runtime_dir) continue;
    if (::lstat(e.path().c_str(), &st) == 0 && ids.Owns(st.st_uid)) used.insert(st.st_uid);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return ErrnoStatus(ec.value(), "list " + runtime_dir.parent_path().string());
  }
  return LowestFreeId(ids, used);
}

Status OwnFile(const fs::path& file, uid_t uid, gid_t gid) {
  if (::chown(file.c_str(), uid, gid) != 0) return ErrnoStatus(errno, "chown " + file.string());
  if (::chmod(file.c_str(), 0600) != 0) return ErrnoStatus(errno, "chmod " + file.string());
  return OkStatus();
}

Status OwnRuntimeDir(const fs::path& dir, uid_t uid, gid_t gid) {
  if (::chown(dir.c_str(), uid, gid) != 0) return ErrnoStatus(errno, "chown " + dir.string());
  if (::chmod(dir.c_str(), 0700) != 0) return ErrnoStatus(errno, "chmod " + dir.string());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    struct stat st{};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    BANGER_RETURN_IF_ERROR(OwnFile(e.path(), uid, gid));
  }
  if (ec) return ErrnoStatus(ec.value(), "list " + dir.string());
  return OkStatus();
}

Status ReclaimFiles(const fs::path& dir, uid_t uid) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it.depth() >= 1) it.disable_recursion_pending();
    struct stat st{};
    if (::lstat(it->path().c_str(), &st) != 0 || st.st_uid != uid) continue;
    if (::lchown(it->path().c_str(), 0, 0) != 0) return ErrnoStatus(errno, "chown " + it->path().string());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) return ErrnoStatus(ec.value(), "list " + dir.string());
  return OkStatus();
}

Status GrantGroupAccess(const fs::path& path, const fs::path& top, gid_t gid, bool read) {
  fs::path rel = path.lexically_normal().lexically_relative(top.lexically_normal());
  if (top.empty() || rel.empty() || *rel.begin() == "..") return OkStatus();  // not ours to change
  auto grant = [gid](const fs::path& p, mode_t bits) -> Status {
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + p.string());
    if (S_ISLNK(st.st_mode)) return FailedPrecondition(p.string() + " is a symbolic link; refusing to share it");
    if (st.st_gid != gid && ::chown(p.c_str(), static_cast<uid_t>(-1), gid) != 0) {
      return ErrnoStatus(errno, "chgrp " + p.string());
    }
    mode_t mode = st.st_mode & 07777;
    if ((mode & bits) != bits && ::chmod(p.c_str(), mode | bits) != 0) {
      return ErrnoStatus(errno, "chmod " + p.string());
    }
    return OkStatus();
  };
  fs::path dir = top;
  BANGER_RETURN_IF_ERROR(grant(dir, 0010));
  auto last = std::prev(rel.end());
  for (auto it = rel.begin(); it != rel.end(); ++it) {
    dir /= *it;
    if (it != last) {
      BANGER_RETURN_IF_ERROR(grant(dir, 0010));
    } else {
      struct stat st{};
      if (::lstat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + dir.string());
      BANGER_RETURN_IF_ERROR(grant(dir, S_ISDIR(st.st_mode) ? 0010 : (read ? 0040 : 0)));
    }
  }
  return OkStatus();
}

namespace {

// The permission class of uid/gids on st: 0100/0010/0001 scaled.
mode_t Bits(const struct stat& st, uid_t uid, const std::vector<gid_t>& gids, mode_t owner_bits) {
  if (uid == 0) return owner_bits;  // never asked for root, but be exact
  if (st.st_uid == uid) return st.st_mode & owner_bits;
  if (std::find(gids.begin(), gids.end(), st.st_gid) != gids.end()) return st.st_mode & (owner_bits >> 3);
  return st.st_mode & (owner_bits >> 6);
}

}  // namespace

std::string AccessProblem(const fs::path& path, uid_t uid, const std::vector<gid_t>& gids, bool write) {
  fs::path norm = path.lexically_normal();
  fs::path dir = "/";
  struct stat st{};
  for (auto it = std::next(norm.begin()); it != norm.end(); ++it) {
    if (::stat(dir.c_str(), &st) != 0) return dir.string() + ": " + std::strerror(errno);
    if (!Bits(st, uid, gids, 0100)) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
      return dir.string() + " (mode " + mode + ", owner " + std::to_string(st.st_uid) + ":" +
             std::to_string(st.st_gid) + ") cannot be searched by uid " + std::to_string(uid);
    }
    dir /= *it;
  }
  if (::stat(norm.c_str(), &st) != 0) return norm.string() + ": " + std::strerror(errno);
  mode_t want = S_ISDIR(st.st_mode) ? 0100 : (write ? 0600 : 0400);
  mode_t have = 0;
  if (want & 0400) have |= Bits(st, uid, gids, 0400);
  if (want & 0200) have |= Bits(st, uid, gids, 0200);
  if (want & 0100) have |= Bits(st, uid, gids, 0100);
  // Bits() returns the class's bits; normalise them to owner position to compare.
  auto to_owner = [&](mode_t b) -> mode_t {
    if (st.st_uid == uid || uid == 0) return b;
    if (std::find(gids.begin(), gids.end(), st.st_gid) != gids.end()) return static_cast<mode_t>(b << 3);
    return static_cast<mode_t>(b << 6);
  };
  if ((to_owner(have) & want) != want) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    return norm.string() + " (mode " + mode + ", owner " + std::to_string(st.st_uid) + ":" +
           std::to_string(st.st_gid) + ") cannot be " + (write ? "opened read-write" : "read") + " by uid " +
           std::to_string(uid);
  }
  return "";
}

namespace {

Status SetTapOwnerHere(const std::string& tap, uid_t uid, gid_t gid) {
  if (tap.empty() || tap.size() >= IFNAMSIZ) return InvalidArgument("invalid tap name '" + tap + "'");
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open /dev/net/tun");
  struct ifreq ifr{};
  std::memcpy(ifr.ifr_name, tap.data(), tap.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  Status s;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    s = ErrnoStatus(errno, "attach to tap " + tap + " (TUNSETIFF)");
  } else if (::ioctl(fd, TUNSETOWNER, static_cast<unsigned long>(uid)) != 0) {
    s = ErrnoStatus(errno, "set the owner of tap " + tap);
  } else if (::ioctl(fd, TUNSETGROUP, static_cast<unsigned long>(gid)) != 0) {
    s = ErrnoStatus(errno, "set the group of tap " + tap);
  }
  ::close(fd);
  return s;
}

}  // namespace

Status SetTapOwner(const std::string& netns, const std::string& tap, uid_t uid, gid_t gid) {
  if (netns.empty()) return SetTapOwnerHere(tap, uid, gid);
  // setns(CLONE_NEWNET) changes only the calling thread: do it in a thread
  // of its own, which ends right after.
  Status result;
  std::thread t([&] {
    const std::string path = "/run/netns/" + netns;
    int nfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (nfd < 0) {
      result = ErrnoStatus(errno, "open network namespace " + path);
      return;
    }
    if (::setns(nfd, CLONE_NEWNET) != 0) {
      result = ErrnoStatus(errno, "enter network namespace " + netns);
      ::close(nfd);
      return;
    }
    ::close(nfd);
    result = SetTapOwnerHere(tap, uid, gid);
  });
  t.join();
  return result;
}

// ---------------------------------------------------------------------------
// cgroups

std::string CgroupSupport::Describe() const {
  switch (mode) {
    case CgroupMode::kV2:
      return "cgroup v2 (" + v2_root.string() + ")";
    case CgroupMode::kV1:
      return "cgroup v1 memory (" + v1_memory.string() + ")" +
             (v1_pids.empty() ? std::string(", no pids controller") : " and pids (" + v1_pids.string() + ")");
    case CgroupMode::kNone:
      break;
  }
  return "none: " + why_not;
}

namespace {

std::vector<std::string> Tokens(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

CgroupSupport ParseCgroupSupport(const std::string& mountinfo, const std::string& v2_root_controllers) {
  CgroupSupport s;
  fs::path v2, v1_memory, v1_pids;
  std::istringstream in(mountinfo);
  std::string line;
  while (std::getline(in, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<std::string> pre = Tokens(line.substr(0, dash), ' ');
    std::vector<std::string> post = Tokens(line.substr(dash + 3), ' ');
    if (pre.size() < 5 || post.size() < 3) continue;
    const std::string mount_point = UnescapeMountInfo(pre[4]);
    if (post[0] == "cgroup2" && v2.empty()) v2 = mount_point;
    if (post[0] == "cgroup") {
      std::vector<std::string> opts = Tokens(post[2], ',');
      if (Has(opts, "memory") && v1_memory.empty()) v1_memory = mount_point;
      if (Has(opts, "pids") && v1_pids.empty()) v1_pids = mount_point;
    }
  }
  std::vector<std::string> ctl = Words(v2_root_controllers);
  if (!v2.empty() && Has(ctl, "memory") && Has(ctl, "pids")) {
    s.mode = CgroupMode::kV2;
    s.v2_root = v2;
    return s;
  }
  if (!v1_memory.empty()) {
    s.mode = CgroupMode::kV1;
    s.v1_memory = v1_memory;
    s.v1_pids = v1_pids;
    return s;
  }
  s.why_not = v2.empty() ? "no cgroup v2 mount and no cgroup v1 memory hierarchy"
                         : "the cgroup v2 hierarchy at " + v2.string() + " lacks the memory or pids controller (has: " +
                               (ctl.empty() ? std::string("none") : std::string(Trim(v2_root_controllers))) +
                               ") and there is no cgroup v1 memory hierarchy";
  return s;
}

CgroupSupport DetectCgroups() {
  std::string mountinfo = ReadFile("/proc/self/mountinfo").value_or("");
  CgroupSupport probe = ParseCgroupSupport(mountinfo, "memory pids");
  std::string controllers;
  if (probe.mode == CgroupMode::kV2) controllers = ReadFile(probe.v2_root / "cgroup.controllers").value_or("");
  return ParseCgroupSupport(mountinfo, controllers);
}

std::vector<fs::path> SandboxCgroupDirs(const CgroupSupport& s, const std::string& id) {
  switch (s.mode) {
    case CgroupMode::kV2:
      return {s.v2_root / "banger" / id};
    case CgroupMode::kV1: {
      std::vector<fs::path> out{s.v1_memory / "banger" / id};
      if (!s.v1_pids.empty()) out.push_back(s.v1_pids / "banger" / id);
      return out;
    }
    case CgroupMode::kNone:
      break;
  }
  return {};
}

namespace {

Status WriteCgroupFile(const fs::path& file, const std::string& value) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + file.string());
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) return ErrnoStatus(err, "write '" + value + "' to " + file.string());
  return OkStatus();
}

Status MkdirOne(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "create cgroup " + dir.string());
  return OkStatus();
}

bool Exists(const fs::path& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0;
}

// Enables memory and pids for the children of `dir` (v2).
Status EnableControllers(const fs::path& dir) {
  std::vector<std::string> on = Words(ReadFile(dir / "cgroup.subtree_control").value_or(""));
  for (std::string c : {"memory", "pids"}) {
    if (Has(on, c)) continue;
    BANGER_RETURN_IF_ERROR(WriteCgroupFile(dir / "cgroup.subtree_control", "+" + c));
  }
  return OkStatus();
}

uint64_t ReadNumber(const fs::path& file) {
  auto text = ReadFile(file);
  if (!text) return 0;
  std::string t(Trim(*text));
  if (t.empty() || t == "max") return 0;
  return std::strtoull(t.c_str(), nullptr, 10);
}

uint64_t ReadKey(const fs::path& file, const std::string& key) {
  std::istringstream in(ReadFile(file).value_or(""));
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

}  // namespace

Status CreateSandboxCgroup(const CgroupSupport& s, const std::string& id, const CgroupLimits& limits) {
  if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') {
    return InvalidArgument("invalid cgroup name '" + id + "'");
  }
  auto ctx = [&](const Status& st) { return st.WithContext("cgroup of sandbox " + id); };
  if (s.mode == CgroupMode::kV2) {
    const fs::path parent = s.v2_root / "banger";
    if (Status st = EnableControllers(s.v2_root); !st.ok()) return ctx(st);
    if (Status st = MkdirOne(parent); !st.ok()) return ctx(st);
    if (Status st = EnableControllers(parent); !st.ok()) return ctx(st);
    const fs::path dir = parent / id;
    if (Status st = MkdirOne(dir); !st.ok()) return ctx(st);
    if (limits.memory_max) {
      if (Status st = WriteCgroupFile(dir / "memory.max", std::to_string(limits.memory_max)); !st.ok()) return ctx(st);
      if (Exists(dir / "memory.swap.max")) {
        if (Status st = WriteCgroupFile(dir / "memory.swap.max", "0"); !st.ok()) return ctx(st);
      }
    }
    if (limits.pids_max) {
      if (Status st = WriteCgroupFile(dir / "pids.max", std::to_string(limits.pids_max)); !st.ok()) return ctx(st);
    }
    return OkStatus();
  }
  if (s.mode == CgroupMode::kV1) {
    const fs::path mem = s.v1_memory / "banger" / id;
    if (Status st = MkdirOne(s.v1_memory / "banger"); !st.ok()) return ctx(st);
    if (Status st = MkdirOne(mem); !st.ok()) return ctx(st);
    if (limits.memory_max) {
      const std::string v = std::to_string(limits.memory_max);
      // memsw (memory+swap) must stay >= the memory limit: raise it first,
      // lower it last.
      bool memsw = Exists(mem / "memory.memsw.limit_in_bytes");
      bool memsw_done = memsw && WriteCgroupFile(mem / "memory.memsw.limit_in_bytes", v).ok();
      if (Status st = WriteCgroupFile(mem / "memory.limit_in_bytes", v); !st.ok()) return ctx(st);
      if (memsw && !memsw_done) {
        if (Status st = WriteCgroupFile(mem / "memory.memsw.limit_in_bytes", v); !st.ok()) return ctx(st);
      }
    }
    if (!s.v1_pids.empty()) {
      const fs::path pids = s.v1_pids / "banger" / id;
      if (Status st = MkdirOne(s.v1_pids / "banger"); !st.ok()) return ctx(st);
      if (Status st = MkdirOne(pids); !st.ok()) return ctx(st);
      if (limits.pids_max) {
        if (Status st = WriteCgroupFile(pids / "pids.max", std::to_string(limits.pids_max)); !st.ok()) return ctx(st);
      }
    }
    return OkStatus();
  }
  return OkStatus();
}

Status RemoveSandboxCgroup(const CgroupSupport& s, const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') return OkStatus();
  for (const fs::path& dir : SandboxCgroupDirs(s, id)) {
    if (!Exists(dir)) continue;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) {
        return ErrnoStatus(errno, "remove cgroup " + dir.string());
      }
      // What is left in the sandbox's cgroup is its QEMU (or a thread of
      // it): kill it by cgroup, not by name.
      if (Exists(dir / "cgroup.kill")) {
        (void)WriteCgroupFile(dir / "cgroup.kill", "1");
      } else {
        std::istringstream procs(ReadFile(dir / "cgroup.procs").value_or(""));
        int pid = 0;
        while (procs >> pid) {
          if (pid > 0) ::kill(pid, SIGKILL);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return OkStatus();
}

Result<CgroupMemory> ReadSandboxCgroupMemory(const CgroupSupport& s, const std::string& id) {
  std::vector<fs::path> dirs = SandboxCgroupDirs(s, id);
  if (dirs.empty()) return FailedPrecondition("no cgroup memory controller: " + s.why_not);
  const fs::path& d = dirs[0];
  if (!Exists(d)) return NotFound("no cgroup " + d.string());
  CgroupMemory m;
  if (s.mode == CgroupMode::kV2) {
    m.current = ReadNumber(d / "memory.current");
    m.peak = ReadNumber(d / "memory.peak");
    m.max = ReadNumber(d / "memory.max");
    m.oom_kills = ReadKey(d / "memory.events", "oom_kill");
  } else {
    m.current = ReadNumber(d / "memory.usage_in_bytes");
    m.peak = ReadNumber(d / "memory.max_usage_in_bytes");
    m.max = ReadNumber(d / "memory.limit_in_bytes");
    m.oom_kills = ReadKey(d / "memory.oom_control", "oom_kill");
  }
  return m;
}

uint64_t QemuMemoryLimit(uint64_t guest_bytes) {
  constexpr uint64_t kMiB = 1024 * 1024;
  if (guest_bytes == 0) guest_bytes = 256 * kMiB;
  // Measured (docs/qemu.md): see kQemuOverheadBytes.
  constexpr uint64_t kQemuOverheadBytes = 192 * kMiB;
  return guest_bytes + kQemuOverheadBytes;
}

}  // namespace banger
