// The agent's @banger/tar, @banger/untar and @banger/stat builtins and the
// host side (guest_tar.h, workspace.h) against the real agent binary run on
// the host in --serve-unix mode: the "guest" directories are local, so every
// result is checked on disk. Hostile archives are built with libarchive.
#include <archive.h>
#include <archive_entry.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "base/command_runner.h"
#include "base/files.h"
#include "providers/agent_testing.h"
#include "workspace/guest_tar.h"
#include "workspace/workspace.h"

namespace banger::workspace {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class AgentProcess : public testing::HostAgent {
 public:
  AgentProcess() : HostAgent({.tag = "guest-files-test"}) {}
};

void Write(const fs::path& p, const std::string& content, unsigned mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
  ::chmod(p.c_str(), mode);
}

std::string Read(const fs::path& p) {
  auto r = ReadFile(p);
  return r.ok() ? *r : "<missing>";
}

unsigned ModeOf(const fs::path& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

// A tar stream of entries (name, type, content or link target) built with libarchive.
struct RawEntry {
  std::string name;
  int type = AE_IFREG;
  std::string data;  // content, or link target for symlinks and hard links
};
std::string MakeTar(const std::vector<RawEntry>& entries, bool gnu = false) {
  std::string out;
  struct archive* a = archive_write_new();
  if (gnu) {
    archive_write_set_format_gnutar(a);
  } else {
    archive_write_set_format_pax_restricted(a);
  }
  archive_write_open(
      a, &out, nullptr,
      [](struct archive*, void* d, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(d)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const RawEntry& r : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, r.name.c_str());
    archive_entry_set_perm(e, 0644);
    if (r.type == AE_IFLNK) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, r.data.c_str());
    } else if (r.type == 0) {  // hard link
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, r.data.c_str());
    } else {
      archive_entry_set_filetype(e, static_cast<unsigned>(r.type));
      if (r.type == AE_IFREG) archive_entry_set_size(e, static_cast<la_int64_t>(r.data.size()));
    }
    archive_write_header(a, e);
    if (r.type == AE_IFREG && !r.data.empty()) archive_write_data(a, r.data.data(), r.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

TEST(GuestFilesTest, PushAndPullRoundTripKeepModesSymlinksAndLongNames) {
  AgentProcess agent;
  fs::path src = agent.dir() / "src";
  std::string long_dir(120, 'd');           // > 100: pax path
  std::string longer(180, 'f');              // > 155 + 100 split
  Write(src / "run.sh", "#!/bin/sh\necho hi\n", 0750);
  Write(src / "secret", "s", 0600);
  Write(src / long_dir / longer, "deep");
  Write(src / "empty", "");
  fs::create_directories(src / "emptydir");
  ::chmod((src / "emptydir").c_str(), 0700);
  fs::create_symlink("run.sh", src / "link");
  fs::create_symlink(std::string(150, 'x'), src / "longlink");

  fs::path guest = agent.dir() / "guest" / "deep" / "dest";  // created by untar
  Status s = PushArchive(agent.conn(), guest.string(), [&](struct archive* a) { return AddLocalPath(a, src, "copy"); });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Read(guest / "copy/run.sh"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(ModeOf(guest / "copy/run.sh"), 0750u);
  EXPECT_EQ(ModeOf(guest / "copy/secret"), 0600u);
  EXPECT_EQ(ModeOf(guest / "copy/emptydir"), 0700u);
  EXPECT_EQ(Read(guest / "copy" / long_dir / longer), "deep");
  EXPECT_EQ(Read(guest / "copy/empty"), "");
  EXPECT_EQ(fs::read_symlink(guest / "copy/link"), "run.sh");
  EXPECT_EQ(fs::read_symlink(guest / "copy/longlink"), std::string(150, 'x'));

  // And back with @banger/tar.
  fs::path back = agent.dir() / "back";
  fs::create_directories(back);
  s = PullTree(agent.conn(), guest.string(), {"copy"}, back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Read(back / "copy/run.sh"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(ModeOf(back / "copy/run.sh"), 0750u);
  EXPECT_EQ(ModeOf(back / "copy/secret"), 0600u);
  EXPECT_EQ(Read(back / "copy" / long_dir / longer), "deep");
  EXPECT_EQ(fs::read_symlink(back / "copy/longlink"), std::string(150, 'x'));

  auto kind = GuestPathKind(agent.conn(), (guest / "copy").string());
  ASSERT_TRUE(kind.ok()) << kind.error().ToString();
  EXPECT_EQ(*kind, "directory");
  EXPECT_EQ(GuestPathKind(agent.conn(), (guest / "copy/run.sh").string()).value_or(""), "file");
  EXPECT_EQ(GuestPathKind(agent.conn(), (guest / "nope").string()).value_or(""), "missing");
}

TEST(GuestFilesTest, UntarReadsGnuLongNamesAndHardLinks) {
  AgentProcess agent;
  std::string name = std::string(130, 'g') + "/file";
  std::string tar = MakeTar({{name, AE_IFREG, "gnu"}, {"hard", 0, name}}, /*gnu=*/true);
  fs::path dest = agent.dir() / "gnu";
  auto r = agent.conn().Exec({.argv = {"@banger/untar", dest.string()}}, tar, milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_EQ(Read(dest / name), "gnu");
  EXPECT_EQ(Read(dest / "hard"), "gnu");
}

TEST(GuestFilesTest, UntarRefusesEntriesOutsideTheDestination) {
  AgentProcess agent;
  fs::path outside = agent.dir() / "outside";
  fs::create_directories(outside);
  struct Case {
    const char* what;
    std::vector<RawEntry> entries;
  };
  std::vector<Case> cases = {
      {"dotdot", {{"../outside/evil", AE_IFREG, "x"}}},
      {"nested dotdot", {{"a/../../outside/evil", AE_IFREG, "x"}}},
      {"absolute", {{(outside / "evil").string(), AE_IFREG, "x"}}},
      {"through a symlink", {{"link", AE_IFLNK, outside.string()}, {"link/evil", AE_IFREG, "x"}}},
      {"through a relative symlink", {{"up", AE_IFLNK, "../outside"}, {"up/evil", AE_IFREG, "x"}}},
      {"symlinked dir then dir entry", {{"d", AE_IFLNK, outside.string()}, {"d/sub/", AE_IFDIR, ""}}},
      {"hard link out", {{"h", 0, "../outside/target"}}},
  };
  Write(outside / "target", "keep");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    fs::path dest = agent.dir() / "dest";
    (void)RemoveAll(dest);
    auto r = agent.conn().Exec({.argv = {"@banger/untar", dest.string()}}, MakeTar(c.entries), milliseconds(10000));
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_NE(r->exit_code, 0);
    EXPECT_NE(r->stderr_data.find("refused"), std::string::npos) << r->stderr_data;
    EXPECT_FALSE(fs::exists(outside / "evil"));
    EXPECT_FALSE(fs::exists(outside / "sub"));
    EXPECT_EQ(Read(outside / "target"), "keep");
  }
  // A file that replaces a planted symlink replaces the link, not its target.
  fs::path dest = agent.dir() / "dest2";
  auto r = agent.conn().Exec({.argv = {"@banger/untar", dest.string()}},
                             MakeTar({{"f", AE_IFLNK, (outside / "target").string()}, {"f", AE_IFREG, "new"}}),
                             milliseconds(10000));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_EQ(Read(outside / "target"), "keep");
  EXPECT_EQ(Read(dest / "f"), "new");
  // Garbage is not a tar stream.
  r = agent.conn().Exec({.argv = {"@banger/untar", dest.string()}}, std::string(1024, 'z'), milliseconds(10000));
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->exit_code, 0);
  EXPECT_NE(r->stderr_data.find("not a tar stream"), std::string::npos) << r->stderr_data;
}

TEST(GuestFilesTest, PushReportsTheGuestsRefusal) {
  AgentProcess agent;
  fs::path dest = agent.dir() / "d";
  fs::create_directories(dest);
  fs::create_symlink(agent.dir(), dest / "escape");  // a symlink already in the guest
  Status s = PushArchive(agent.conn(), dest.string(), [&](struct archive* a) {
    return AddBuffer(a, "escape/evil", "x", 0644);
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("symlink"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(agent.dir() / "evil"));
  // Refused early in a long stream: the guest's reason, not the broken pipe.
  s = PushArchive(agent.conn(), dest.string(), [&](struct archive* a) -> Status {
    BANGER_RETURN_IF_ERROR(AddBuffer(a, "escape/evil", "x", 0644));
    std::string chunk(1 << 20, 'p');
    for (int i = 0; i < 32; ++i) BANGER_RETURN_IF_ERROR(AddBuffer(a, "pad" + std::to_string(i), chunk, 0644));
    return OkStatus();
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("refused"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(agent.dir() / "evil"));
}

TEST(GuestFilesTest, LargeFileStreamsThroughIntact) {
  AgentProcess agent;
  {
    std::ofstream f(agent.dir() / "big.bin", std::ios::binary);
    std::string chunk(1 << 20, 'b');
    for (int i = 0; i < 64; ++i) f << chunk;
  }
  fs::path dest = agent.dir() / "bigdest";
  Status s = PushArchive(agent.conn(), dest.string(), [&](struct archive* a) {
    return AddLocalFile(a, agent.dir() / "big.bin", "big.bin");
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fs::file_size(dest / "big.bin"), 64u << 20);
}

}  // namespace
}  // namespace banger::workspace
