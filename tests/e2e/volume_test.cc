// End-to-end: persistent volumes (spec.volumes, docs/volumes.md) with real
// VMs under QEMU. A file written to a volume survives a replace of the
// sandbox with another image; a volume seeded from the image holds the
// image's files; growing is a restart the guest sees; a shrink is refused;
// delete keeps volumes and `delete --volumes` removes them.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <sstream>
#include <string>

#include "tests/e2e/vm_fixture.h"

namespace banger {
namespace {

using namespace e2e;  // NOLINT: the shared VM fixture (tests/e2e/vm_fixture.h)

class VolumeTest : public ::testing::Test, public BangerEnv {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/qemu-system-x86_64")) GTEST_SKIP() << "qemu-system-x86_64 is not installed";
    // busybox-b: the same recipe under another name, so switching to it is
    // an image change, which replaces the sandbox (a new root disk).
    ASSERT_NO_FATAL_FAILURE(Init("parallel: 2\nimages:\n  busybox-b: {recipe: busybox}\n"));
  }
  void TearDown() override {
    if (!HasFailure() && !slow_) return;
    std::printf("%s commands:\n%s", HasFailure() ? "failed test" : "slow test", Timeline().c_str());
  }

  static SpecOptions Spec(const std::string& image, const std::string& data_size) {
    SpecOptions o;
    o.image = image;
    o.extra = "  volumes:\n"
              "    - {name: data, mountPath: /data, size: " + data_size + "}\n"
              "    - {name: etc, mountPath: /etc, size: 32MiB, seedFrom: image}\n";
    return o;
  }

  json VolumeList() {
    CommandOutput out = Banger({"volume", "ls", "-o", "json"});
    EXPECT_EQ(out.exit_code, 0) << out.stderr_data;
    json j = json::parse(out.stdout_data, nullptr, false);
    EXPECT_TRUE(j.is_array()) << out.stdout_data;
    return j.is_array() ? j : json::array();
  }
};

TEST_F(VolumeTest, VolumeSurvivesReplaceGrowsAndGoesOnlyWhenAsked) {
  std::string f = WriteSpec("vol", Spec("busybox", "32MiB"));

  CommandOutput plan = Banger({"plan", "-f", f});
  ASSERT_EQ(plan.exit_code, 0) << plan.stderr_data;
  EXPECT_NE(plan.stdout_data.find("volume data: create 32MiB (empty)"), std::string::npos) << plan.stdout_data;
  EXPECT_NE(plan.stdout_data.find("volume etc: create 32MiB (seeded from image at /etc)"), std::string::npos)
      << plan.stdout_data;

  ASSERT_NO_FATAL_FAILURE(ApplyReady(f, "vol"));

  // The seeded volume is what the guest sees at /etc, with the image's files.
  CommandOutput mounts = Exec("vol", {"cat", "/proc/mounts"});
  ASSERT_EQ(mounts.exit_code, 0) << mounts.stderr_data;
  EXPECT_NE(mounts.stdout_data.find(" /etc ext4 "), std::string::npos) << mounts.stdout_data;
  EXPECT_NE(mounts.stdout_data.find(" /data ext4 "), std::string::npos) << mounts.stdout_data;
  CommandOutput release = Exec("vol", {"cat", "/etc/os-release", "/etc/passwd"});
  ASSERT_EQ(release.exit_code, 0) << release.stderr_data;
  EXPECT_NE(release.stdout_data.find("ID=banger-busybox"), std::string::npos) << release.stdout_data;
  EXPECT_NE(release.stdout_data.find("root:x:0:0:root:/root:/bin/sh"), std::string::npos) << release.stdout_data;
  CommandOutput empty = Exec("vol", {"ls", "-A", "/data"});
  EXPECT_EQ(empty.stdout_data, "lost+found\n") << "a seedFrom: empty volume is a fresh file system";

  CommandOutput wrote = Exec("vol", {"sh", "-c",
                                     "echo kept-across-replace > /data/file && echo etc-edit >> /etc/passwd && "
                                     "echo on-root > /root/marker && sync"});
  ASSERT_EQ(wrote.exit_code, 0) << wrote.stderr_data;

  json before = VolumeList();
  ASSERT_EQ(before.size(), 2u) << before.dump();
  EXPECT_EQ(before[0]["name"], "data");
  EXPECT_EQ(before[0]["attached"], true);
  EXPECT_EQ(before[0]["sizeBytes"], 32ull << 20);
  EXPECT_GT(before[0]["usedBytes"].get<int64_t>(), 0);
  EXPECT_LT(before[0]["usedBytes"].get<int64_t>(), 32ll << 20) << "the file is sparse";
  EXPECT_EQ(before[1]["seededFrom"], "image");
  EXPECT_EQ(before[1]["seedImage"], "busybox");
  std::string data_path = before[0]["path"];
  struct stat st{};
  ASSERT_EQ(::stat(data_path.c_str(), &st), 0) << data_path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // As root, the file belongs to the sandbox's own QEMU uid and its
  // directory is searchable (not listable) by the confined QEMUs' group.
  if (::geteuid() == 0) {
    EXPECT_GT(st.st_uid, 1u << 20) << "owned by the sandbox's uid";
  }
  ASSERT_EQ(::stat(fs::path(data_path).parent_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, ::geteuid() == 0 ? 0710u : 0700u);

  // Replace with another image: a new VM and root disk, the same volumes.
  int64_t first_pid = GetItem("vol")["status"].value("pid", 0);
  Write("specs/vol.yaml", SpecYaml("vol", Spec("busybox-b", "32MiB")));
  CommandOutput replace = Apply(f);
  ASSERT_EQ(replace.exit_code, 0) << replace.stdout_data << replace.stderr_data << Logs("vol");
  ASSERT_EQ(Phase("vol"), "Ready");
  EXPECT_NE(GetItem("vol")["status"].value("pid", 0), first_pid) << "a new VM";
  EXPECT_EQ(Exec("vol", {"test", "-e", "/root/marker"}).exit_code, 1) << "the root disk is new";
  CommandOutput kept = Exec("vol", {"cat", "/data/file"});
  EXPECT_EQ(kept.exit_code, 0) << kept.stderr_data;
  EXPECT_EQ(kept.stdout_data, "kept-across-replace\n");
  CommandOutput etc = Exec("vol", {"tail", "-n", "1", "/etc/passwd"});
  EXPECT_EQ(etc.stdout_data, "etc-edit\n") << "the seeded volume is not seeded again";

  // Growing: a restart; the guest's file system fills the bigger disk.
  Write("specs/vol.yaml", SpecYaml("vol", Spec("busybox-b", "96MiB")));
  CommandOutput grow_plan = Banger({"plan", "-f", f});
  EXPECT_NE(grow_plan.stdout_data.find("volume data: grow 32MiB -> 96MiB"), std::string::npos)
      << grow_plan.stdout_data;
  EXPECT_NE(grow_plan.stdout_data.find("restart"), std::string::npos) << grow_plan.stdout_data;
  CommandOutput grown = Apply(f);
  ASSERT_EQ(grown.exit_code, 0) << grown.stdout_data << grown.stderr_data << Logs("vol");
  CommandOutput df = Exec("vol", {"df", "-k", "/data"});
  ASSERT_EQ(df.exit_code, 0) << df.stderr_data;
  // "Filesystem 1K-blocks Used Available Use% Mounted on" / "/dev/vdb 9xxxx ..."
  std::istringstream lines(df.stdout_data);
  std::string header, row, dev;
  std::getline(lines, header);
  std::getline(lines, row);
  int64_t blocks = 0;
  std::istringstream(row) >> dev >> blocks;
  EXPECT_GT(blocks, 80 * 1024) << df.stdout_data;
  EXPECT_EQ(Exec("vol", {"cat", "/data/file"}).stdout_data, "kept-across-replace\n");

  // Shrinking is refused by the plan, naming the volume.
  Write("specs/vol.yaml", SpecYaml("vol", Spec("busybox-b", "32MiB")));
  CommandOutput shrink = Apply(f);
  EXPECT_EQ(shrink.exit_code, 1) << shrink.stdout_data;
  EXPECT_NE((shrink.stdout_data + shrink.stderr_data).find("volume \"data\" is 96MiB and cannot shrink to 32MiB"),
            std::string::npos)
      << shrink.stdout_data << shrink.stderr_data;

  // Attached volumes cannot be removed; delete keeps them; --volumes removes them.
  CommandOutput busy = Banger({"volume", "rm", "vol/data"});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.stderr_data.find("attached to running sandbox vol"), std::string::npos) << busy.stderr_data;
  CommandOutput del = Banger({"delete", "vol", "--yes"});
  ASSERT_EQ(del.exit_code, 0) << del.stderr_data;
  EXPECT_NE(del.stdout_data.find("kept 2 volumes"), std::string::npos) << del.stdout_data;
  json after = VolumeList();
  ASSERT_EQ(after.size(), 2u) << after.dump();
  EXPECT_EQ(after[0]["attached"], false);
  EXPECT_EQ(after[0]["sandboxExists"], false);
  EXPECT_TRUE(fs::exists(data_path));
  CommandOutput purge = Banger({"delete", "vol", "--volumes", "--yes"});
  ASSERT_EQ(purge.exit_code, 0) << purge.stderr_data;
  EXPECT_TRUE(VolumeList().empty());
  EXPECT_FALSE(fs::exists(fs::path(data_path).parent_path())) << "the sandbox's volume directory goes too";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(state_) / "volumes", ec)) {
    ADD_FAILURE() << "left behind: " << e.path();
  }
}

}  // namespace
}  // namespace banger
