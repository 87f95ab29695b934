// Helpers for fetch tests: a private temp dir and a tar writer.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/files.h"

namespace banger::fetch {

class TempDirForTest {
 public:
  TempDirForTest() {
    auto dir = MakeTempDir("banger-fetch-test-");
    EXPECT_TRUE(dir.ok()) << dir.status().ToString();
    if (dir.ok()) path_ = *dir;
  }
  ~TempDirForTest() { (void)RemoveAll(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct TarItem {
  std::string path;
  std::string content;
  unsigned type = AE_IFREG;
  unsigned mode = 0644;
  std::string symlink;
  std::string hardlink;
};

inline void WriteTarZst(const std::filesystem::path& out, const std::vector<TarItem>& items) {
  archive* a = archive_write_new();
  archive_write_add_filter_zstd(a);
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK);
  for (const TarItem& t : items) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_filetype(e, t.type);
    archive_entry_set_perm(e, t.mode);
    if (!t.symlink.empty()) archive_entry_set_symlink(e, t.symlink.c_str());
    if (!t.hardlink.empty()) archive_entry_set_hardlink(e, t.hardlink.c_str());
    if (t.type == AE_IFREG && t.hardlink.empty()) {
      archive_entry_set_size(e, static_cast<la_int64_t>(t.content.size()));
    }
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    if (!t.content.empty()) archive_write_data(a, t.content.data(), t.content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace banger::fetch
