// Test helpers shared by the spec tests (header-only, test code only).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "base/files.h"
#include "spec/loader.h"

namespace banger::spec_test {

/// A fresh temporary directory removed at scope exit, even on failure.
class TempDir {
 public:
  TempDir() {
    auto dir = MakeTempDir("banger-spec-test-");
    EXPECT_TRUE(dir.ok()) << dir.status().ToString();
    path_ = dir.ok() ? *dir : std::filesystem::path();
    guard_ = std::make_unique<ScopedRemove>(path_);
  }
  const std::filesystem::path& path() const { return path_; }

  /// Writes `content` to `relative` (creating parents) and returns the full path.
  std::filesystem::path Write(const std::string& relative, const std::string& content) const {
    std::filesystem::path p = path_ / relative;
    EXPECT_TRUE(MakeDirs(p.parent_path(), 0700).ok());
    Status st = WriteFileAtomic(p, content, 0600);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return p;
  }

 private:
  std::filesystem::path path_;
  std::unique_ptr<ScopedRemove> guard_;
};

/// A minimal valid document whose `spec:` body continues at line 7 with `extra`
/// (each line indented by two spaces).
inline std::string DocWith(const std::string& extra, const std::string& name = "web") {
  return "apiVersion: banger.dev/v1\n"
         "kind: Sandbox\n"
         "metadata:\n"
         "  name: " + name + "\n"
         "spec:\n"
         "  image: busybox\n" + extra;
}

}  // namespace banger::spec_test
