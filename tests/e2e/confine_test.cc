// End-to-end: confined VMMs (docs/qemu.md, "Confinement"). As root, each
// QEMU runs as its own uid under QEMU's seccomp sandbox with no_new_privs,
// in its own cgroup with a memory limit; one sandbox's QEMU identity cannot
// open another sandbox's disk (tried for real from a process that drops to
// that uid); a crashed QEMU restarts with the same identity; delete removes
// the runtime dir and the cgroup. A guest that allocates all its memory and
// a fork bomb in a guest leave banger and a second sandbox responsive, and
// the hog's QEMU stays within its memory.max.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include "providers/confinement.h"
#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

struct ProcStatus {
  std::vector<uint32_t> uid, gid, groups;
  int seccomp = -1;
  int no_new_privs = -1;
  int threads = 0;
};

ProcStatus ReadStatus(int pid) {
  ProcStatus s;
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status").value_or(""));
  std::string line;
  auto nums = [](const std::string& rest) {
    std::vector<uint32_t> v;
    std::istringstream r(rest);
    uint32_t x;
    while (r >> x) v.push_back(x);
    return v;
  };
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon), rest = line.substr(colon + 1);
    if (key == "Uid") s.uid = nums(rest);
    if (key == "Gid") s.gid = nums(rest);
    if (key == "Groups") s.groups = nums(rest);
    if (key == "Seccomp") s.seccomp = std::stoi(rest);
    if (key == "NoNewPrivs") s.no_new_privs = std::stoi(rest);
    if (key == "Threads") s.threads = std::stoi(rest);
  }
  return s;
}

// Opens `path` with `flags` from a forked child that first drops to
// uid/gid with `groups` (as a confined QEMU runs): 0 when the open worked,
// else the errno.
int OpenAs(uint32_t uid, uint32_t gid, const std::vector<gid_t>& groups, const std::string& path, int flags) {
  int pfd[2];
  if (::pipe(pfd) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pfd[0]);
    int result = 0;
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      result = -2;
    } else {
      int fd = ::open(path.c_str(), flags | O_CLOEXEC);
      result = fd >= 0 ? 0 : errno;
    }
    (void)!::write(pfd[1], &result, sizeof(result));
    ::_exit(0);
  }
  ::close(pfd[1]);
  int result = -1;
  if (::read(pfd[0], &result, sizeof(result)) != sizeof(result)) result = -1;
  ::close(pfd[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return result;
}

// The value of `-drive file=...,format=qcow2` on a QEMU command line.
std::string QcowDiskOf(int pid) {
  std::string cmd = ReadCmdline(pid);
  size_t at = cmd.find("file=");
  while (at != std::string::npos) {
    size_t end = cmd.find(',', at);
    std::string value = cmd.substr(at + 5, end - at - 5);
    if (cmd.compare(end, 14, ",format=qcow2,") == 0) return value;
    at = cmd.find("file=", end);
  }
  return "";
}

class ConfineTest : public VmFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "per-sandbox uids need root";
    VmFixture::SetUp();
  }
  int PidOf(const std::string& name) { return GetItem(name)["status"].value("pid", 0); }
  std::string IdOf(const std::string& name) { return GetItem(name).value("id", ""); }
};

TEST_F(ConfineTest, EachQemuRunsAsItsOwnUidUnderSeccompAndCannotOpenAnotherSandboxsDisk) {
  SpecOptions o;
  o.restart_policy = "Always";
  std::string fa = WriteSpec("conf-a", o);
  std::string fb = WriteSpec("conf-b", o);
  ASSERT_NO_FATAL_FAILURE(ApplyReady(fa, "conf-a"));
  ASSERT_NO_FATAL_FAILURE(ApplyReady(fb, "conf-b"));
  const ConfineIds ids;
  const int pa = PidOf("conf-a"), pb = PidOf("conf-b");
  ASSERT_GT(pa, 0);
  ASSERT_GT(pb, 0);
  ProcStatus sa = ReadStatus(pa), sb = ReadStatus(pb);
  ASSERT_EQ(sa.uid.size(), 4u);
  ASSERT_EQ(sb.uid.size(), 4u);
  const uint32_t ua = sa.uid[0], ub = sb.uid[0];
  for (const ProcStatus& s : {sa, sb}) {
    for (uint32_t id : s.uid) EXPECT_EQ(id, s.uid[0]) << "real, effective, saved and fs uid are the same";
    for (uint32_t id : s.gid) EXPECT_EQ(id, s.uid[0]) << "its own gid";
    EXPECT_TRUE(ids.Owns(s.uid[0])) << s.uid[0];
    EXPECT_EQ(s.groups, std::vector<uint32_t>{ids.shared_gid()}) << "only the shared group (no KVM here)";
    EXPECT_EQ(s.seccomp, 2) << "QEMU's seccomp filter is loaded (mode 2: filter)";
    EXPECT_EQ(s.no_new_privs, 1);
  }
  EXPECT_NE(ua, ub) << "one uid per sandbox";

  // Files: each sandbox's runtime dir and disk belong to its uid alone.
  const std::string disk_a = QcowDiskOf(pa), disk_b = QcowDiskOf(pb);
  ASSERT_FALSE(disk_a.empty()) << ReadCmdline(pa);
  ASSERT_FALSE(disk_b.empty()) << ReadCmdline(pb);
  struct stat st{};
  ASSERT_EQ(::stat(disk_b.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ub);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(fs::path(disk_b).parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ub);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  for (const char* sock : {"qmp.sock", "agent.sock"}) {
    ASSERT_EQ(::stat((fs::path(disk_b).parent_path() / sock).c_str(), &st), 0) << sock;
    EXPECT_EQ(st.st_mode & 0077, 0u) << sock << " is private to its QEMU (and root)";
  }

  // For real: a process with sandbox A's QEMU identity opens its own disk,
  // reads the shared base image, and is refused B's disk, B's runtime dir,
  // the base image for writing and the state database.
  const std::vector<gid_t> groups{ids.shared_gid()};
  EXPECT_EQ(OpenAs(ua, ua, groups, disk_a, O_RDWR), 0) << "A's own disk";
  EXPECT_EQ(OpenAs(ua, ua, groups, disk_b, O_RDONLY), EACCES) << "B's disk";
  EXPECT_EQ(OpenAs(ua, ua, groups, fs::path(disk_b).parent_path().string(), O_RDONLY | O_DIRECTORY), EACCES);
  EXPECT_EQ(OpenAs(ua, ua, groups, (fs::path(state_) / "state.db").string(), O_RDONLY), EACCES);
  EXPECT_EQ(OpenAs(ua, ua, groups, state_, O_RDONLY | O_DIRECTORY), EACCES) << "no listing of the state dir";
  // The base image is the qcow2's backing file: find it among the images.
  std::string base;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(state_) / "images")) {
    if (e.path().filename() == "rootfs.ext4") base = e.path().string();
  }
  ASSERT_FALSE(base.empty());
  EXPECT_EQ(OpenAs(ua, ua, groups, base, O_RDONLY), 0) << "the shared base image is readable";
  EXPECT_EQ(OpenAs(ua, ua, groups, base, O_RDWR), EACCES) << "but not writable";

  // Each QEMU is in its sandbox's cgroup, with a memory limit.
  CgroupSupport cg = DetectCgroups();
  ASSERT_NE(cg.mode, CgroupMode::kNone) << "this host has no cgroup memory controller: " << cg.why_not;
  const std::string id_a = IdOf("conf-a"), id_b = IdOf("conf-b");
  std::string cgroups = ReadFile("/proc/" + std::to_string(pa) + "/cgroup").value_or("");
  EXPECT_NE(cgroups.find("/banger/" + id_a), std::string::npos) << cgroups;
  auto mem = ReadSandboxCgroupMemory(cg, id_a);
  ASSERT_TRUE(mem.ok()) << mem.error().ToString();
  EXPECT_EQ(mem->max, QemuMemoryLimit(256ull << 20));

  // A crashed QEMU is restarted with the same identity and its disk.
  ASSERT_EQ(Exec("conf-a", {"sh", "-c", "echo kept > /root/m && sync"}).exit_code, 0);
  KillByPid(pa);
  CommandOutput rec = Banger({"reconcile"});
  ASSERT_EQ(rec.exit_code, 0) << rec.stdout_data << rec.stderr_data << Logs("conf-a");
  ASSERT_EQ(Phase("conf-a"), "Ready");
  const int pa2 = PidOf("conf-a");
  ASSERT_NE(pa2, pa);
  EXPECT_EQ(ReadStatus(pa2).uid[0], ua) << "a restart keeps the sandbox's uid";
  EXPECT_EQ(Exec("conf-a", {"cat", "/root/m"}).stdout_data, "kept\n");

  // Delete removes B's runtime dir and cgroup; its uid is free again.
  CommandOutput del = Banger({"delete", "conf-b", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << del.stderr_data;
  EXPECT_FALSE(fs::exists(fs::path(disk_b).parent_path()));
  for (const auto& d : SandboxCgroupDirs(cg, id_b)) EXPECT_FALSE(fs::exists(d)) << d;
  std::string fc = WriteSpec("conf-c", SpecOptions{});
  ASSERT_NO_FATAL_FAILURE(ApplyReady(fc, "conf-c"));
  EXPECT_EQ(ReadStatus(PidOf("conf-c")).uid[0], ub) << "the lowest free uid: B's, freed by delete";

  // doctor reports each part of the confinement.
  CommandOutput doc = Banger({"doctor"});
  EXPECT_NE(doc.stdout_data.find("✓ [qemu] QEMU runs as a per-sandbox uid (1048577-1114112, shared group 1048576)"),
            std::string::npos) << doc.stdout_data;
  EXPECT_NE(doc.stdout_data.find("✓ [qemu] QEMU seccomp sandbox (-sandbox on,obsolete=deny,elevateprivileges=deny,"
                                 "spawn=deny,resourcecontrol=deny)"),
            std::string::npos) << doc.stdout_data;
  EXPECT_NE(doc.stdout_data.find("✓ [qemu] memory limit per QEMU: cgroup v"), std::string::npos) << doc.stdout_data;
  EXPECT_NE(doc.stdout_data.find("✓ state directory"), std::string::npos) << doc.stdout_data;
}

TEST_F(ConfineTest, MemoryHogAndForkBombStayInsideTheirSandbox) {
  std::string fh = WriteSpec("hog", SpecOptions{});
  std::string fc = WriteSpec("calm", SpecOptions{});
  ASSERT_NO_FATAL_FAILURE(ApplyReady(fh, "hog"));
  ASSERT_NO_FATAL_FAILURE(ApplyReady(fc, "calm"));
  CgroupSupport cg = DetectCgroups();
  ASSERT_NE(cg.mode, CgroupMode::kNone) << "this host has no cgroup memory controller: " << cg.why_not;
  const std::string hog_id = IdOf("hog");
  const int hog_pid = PidOf("hog");

  // 1. The guest allocates all its memory: four 80 MiB buffers at once in
  //    a 256 MiB guest (206 MiB usable; busybox dd mallocs and fills bs
  //    bytes, and a single 230 MiB one is refused); the guest's OOM killer
  //    ends some of them.
  (void)Exec("hog", {"sh", "-c",
                     "for i in 1 2 3 4; do dd if=/dev/zero of=/dev/null bs=80M count=20 2>/dev/null & "
                     "done; wait; echo done"});
  auto mem = ReadSandboxCgroupMemory(cg, hog_id);
  ASSERT_TRUE(mem.ok()) << mem.error().ToString();
  std::printf("hog QEMU memory after filling the guest: peak %.1f MiB, now %.1f MiB, limit %.1f MiB, "
              "oom kills %llu\n",
              mem->peak / 1048576.0, mem->current / 1048576.0, mem->max / 1048576.0,
              static_cast<unsigned long long>(mem->oom_kills));
  ::testing::Test::RecordProperty("hog_peak_mib", std::to_string(mem->peak >> 20));
  EXPECT_GT(mem->peak, 200ull << 20) << "the guest's memory really was used";
  EXPECT_LE(mem->peak, mem->max);
  EXPECT_EQ(mem->oom_kills, 0u) << "the measured overhead leaves QEMU room: the guest's OOM killer acted, not the host's";
  CommandOutput calm = Exec("calm", {"echo", "calm"});
  EXPECT_EQ(calm.stdout_data, "calm\n") << calm.stderr_data;

  // 2. A fork bomb in the hog guest, left running.
  CommandOutput bomb = Exec("hog", {"sh", "-c", "(b() { b | b & }; b) >/dev/null 2>&1 </dev/null & echo lit"});
  EXPECT_EQ(bomb.stdout_data, "lit\n") << bomb.stderr_data;
  std::this_thread::sleep_for(seconds(10));
  auto t0 = steady_clock::now();
  calm = Exec("calm", {"echo", "still-calm"});
  double secs = std::chrono::duration<double>(steady_clock::now() - t0).count();
  std::printf("exec in the other sandbox during the fork bomb: %.1f s\n", secs);
  EXPECT_EQ(calm.stdout_data, "still-calm\n") << calm.stderr_data;
  EXPECT_EQ(Banger({"get"}).exit_code, 0) << "banger itself answers";
  mem = ReadSandboxCgroupMemory(cg, hog_id);
  ASSERT_TRUE(mem.ok());
  EXPECT_LE(mem->peak, mem->max);
  // The bomb's processes are guest processes: the host sees only QEMU's
  // threads, bounded by pids.max.
  ProcStatus s = ReadStatus(hog_pid);
  EXPECT_GT(s.threads, 0) << "the hog's QEMU is still running";
  EXPECT_LE(s.threads, 512) << "QEMU threads";
  std::printf("hog QEMU after the fork bomb: peak %.1f MiB, limit %.1f MiB, %d threads\n", mem->peak / 1048576.0,
              mem->max / 1048576.0, s.threads);
  CommandOutput del = Banger({"delete", "hog", "--yes"});
  EXPECT_EQ(del.exit_code, 0) << del.stderr_data;
  for (const auto& d : SandboxCgroupDirs(cg, hog_id)) EXPECT_FALSE(fs::exists(d)) << d;
  EXPECT_EQ(Exec("calm", {"echo", "after"}).stdout_data, "after\n");
}

}  // namespace
}  // namespace banger
