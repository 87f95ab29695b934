// Test helpers shared by images/*_test.cc and *_itest.cc (not part of banger_images).
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/command_runner.h"
#include "base/files.h"
#include "base/strings.h"
#include "oci/test_layers.h"

namespace banger::images::testing {

namespace fs = std::filesystem;

class FixedClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  }
  std::chrono::steady_clock::time_point SteadyNow() const override {
    return std::chrono::steady_clock::time_point();
  }
  void SleepFor(std::chrono::milliseconds) override {}
};

/// A fresh temporary directory, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    auto dir = MakeTempDir("banger-images-test-");
    EXPECT_TRUE(dir.ok()) << dir.status().ToString();
    if (dir.ok()) path_ = *dir;
    remover_ = std::make_unique<ScopedRemove>(path_);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  std::unique_ptr<ScopedRemove> remover_;
};

/// What `debugfs -R "stat PATH"` says about one inode.
/// A capability set (cap_net_raw+ep), as `setcap` writes it.
inline const std::string kCapNetRaw("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                                    "\x00\x00\x00\x00",
                                    20);

/// A tar entry of any type with explicit mode and owners.
inline oci::testing::TarEntry Entry(std::string path, mode_t type, unsigned mode, int64_t uid = 0,
                                    int64_t gid = 0) {
  oci::testing::TarEntry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = mode;
  e.uid = uid;
  e.gid = gid;
  return e;
}

struct InodeInfo {
  std::string type;  // "regular", "directory", "symlink", ...
  unsigned mode = 0; // permission bits incl. setuid (octal as printed)
  unsigned uid = 0, gid = 0;
  uint64_t size = 0;
  std::string link_target;  // for fast symlinks
};

inline std::optional<InodeInfo> DebugfsStat(const fs::path& image, const std::string& path) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run(CommandSpec{.argv = {"debugfs", "-R", "stat " + path, image.string()}});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return std::nullopt;
  const std::string& s = out->stdout_data;
  std::smatch m;
  InodeInfo info;
  if (!std::regex_search(s, m, std::regex(R"(Type:\s+(\S+)\s+Mode:\s+([0-7]+))"))) return std::nullopt;
  info.type = m[1];
  info.mode = static_cast<unsigned>(std::stoul(m[2], nullptr, 8));
  if (std::regex_search(s, m, std::regex(R"(User:\s+(\d+)\s+Group:\s+(\d+))"))) {
    info.uid = static_cast<unsigned>(std::stoul(m[1]));
    info.gid = static_cast<unsigned>(std::stoul(m[2]));
  }
  if (std::regex_search(s, m, std::regex(R"(Size:\s+(\d+))"))) info.size = std::stoull(m[1]);
  if (std::regex_search(s, m, std::regex(R"(Fast link dest:\s+\"([^\"]*)\")"))) {
    info.link_target = m[1];
  }
  return info;
}

/// Contents of a file inside an ext4 image (`debugfs -R "cat PATH"`).
inline std::string DebugfsCat(const fs::path& image, const std::string& path) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run(CommandSpec{.argv = {"debugfs", "-R", "cat " + path, image.string()}});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? out->stdout_data : "";
}

/// Exit code of `e2fsck -fn IMAGE` (0: clean) plus its output on failure.
inline int E2fsck(const fs::path& image, std::string* output = nullptr) {
  auto runner = MakePosixCommandRunner();
  auto out = runner->Run(CommandSpec{.argv = {"e2fsck", "-fn", image.string()}});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return -1;
  if (output) *output = out->stdout_data + out->stderr_data;
  return out->exit_code;
}

/// Names of the entries directly inside `dir`, sorted.
inline std::vector<std::string> ListDir(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// N parties meet; each waits at most `timeout` for the others.
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}
  /// True if every party arrived within the timeout.
  bool ArriveAndWait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (++arrived_ >= parties_) {
      cv_.notify_all();
      return true;
    }
    return cv_.wait_for(lock, timeout, [&] { return arrived_ >= parties_; });
  }
  int arrived() {
    std::lock_guard<std::mutex> lock(mu_);
    return arrived_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int parties_;
  int arrived_ = 0;
};

/// One tar entry for WriteTar.
struct TarItem {
  std::string path;
  std::string content;
  mode_t type = AE_IFREG;
  unsigned mode = 0644;
  int64_t uid = 0, gid = 0;
  std::string symlink;
};

/// Writes a tar (zstd-compressed when `zstd`) with exactly these entries.
inline void WriteTar(const fs::path& out, const std::vector<TarItem>& items, bool zstd) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (zstd) {
    ASSERT_EQ(archive_write_add_filter_zstd(a), ARCHIVE_OK);
  }
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const auto& it : items) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, it.path.c_str());
    archive_entry_set_filetype(e, it.type);
    archive_entry_set_perm(e, it.mode);
    archive_entry_set_uid(e, it.uid);
    archive_entry_set_gid(e, it.gid);
    archive_entry_set_mtime(e, 1700000000, 0);
    if (it.type == AE_IFLNK) archive_entry_set_symlink(e, it.symlink.c_str());
    archive_entry_set_size(e, it.type == AE_IFREG ? static_cast<la_int64_t>(it.content.size()) : 0);
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    if (it.type == AE_IFREG && !it.content.empty()) {
      ASSERT_EQ(archive_write_data(a, it.content.data(), it.content.size()),
                static_cast<la_ssize_t>(it.content.size()));
    }
    archive_entry_free(e);
  }
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

/// Creates a file with content, mode and owner.
inline void MakeFile(const fs::path& p, const std::string& content, unsigned mode, unsigned uid = 0,
                     unsigned gid = 0) {
  fs::create_directories(p.parent_path());
  ASSERT_TRUE(WriteFileAtomic(p, content, mode).ok());
  ASSERT_EQ(::chown(p.c_str(), uid, gid), 0);
  ASSERT_EQ(::chmod(p.c_str(), mode), 0);  // chown clears setuid
}

/// A CommandRunner that fails any command whose argv[0] is `fail_program`
/// and runs everything else for real.
class FailingRunner final : public CommandRunner {
 public:
  explicit FailingRunner(std::string fail_program) : fail_(std::move(fail_program)) {}
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    if (!spec.argv.empty() && spec.argv[0] == fail_) {
      ++failures;
      return CommandOutput{1, "", fail_ + ": injected failure"};
    }
    return real_->Run(spec);
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override {
    return real_->StartDetached(spec);
  }
  std::atomic<int> failures{0};

 private:
  std::string fail_;
  std::unique_ptr<CommandRunner> real_ = MakePosixCommandRunner();
};

/// Runs every command for real and counts them by program (argv[0]).
class CountingRunner final : public CommandRunner {
 public:
  Result<CommandOutput> Run(const CommandSpec& spec) override {
    if (!spec.argv.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++runs_[spec.argv[0]];
    }
    return real_->Run(spec);
  }
  Result<ProcessIdentity> StartDetached(const CommandSpec& spec) override {
    return real_->StartDetached(spec);
  }
  int Runs(const std::string& program) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(program);
    return it == runs_.end() ? 0 : it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> runs_;
  std::unique_ptr<CommandRunner> real_ = MakePosixCommandRunner();
};

}  // namespace banger::images::testing
