#include "state/layout.h"

#include <sys/stat.h>

#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "state/state_test_util.h"

namespace banger {
namespace {

using state_testing::TempDir;

/// Sets (or unsets, with nullopt) an environment variable and restores the
/// previous value at scope exit.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(LayoutTest, FlagWinsOverEverything) {
  ScopedEnv home("BANGER_HOME", "/env/banger");
  auto l = ResolveStateLayout("/flag/dir", /*running_as_root=*/true);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->root, "/flag/dir");
  EXPECT_EQ(l->db_path, "/flag/dir/state.db");
  EXPECT_EQ(l->blobs_dir, "/flag/dir/blobs");
  EXPECT_EQ(l->images_dir, "/flag/dir/images");
  EXPECT_EQ(l->kernels_dir, "/flag/dir/kernels");
  EXPECT_EQ(l->sandboxes_dir, "/flag/dir/sandboxes");
  EXPECT_EQ(l->run_dir, "/flag/dir/run");
}

TEST(LayoutTest, BangerHomeBeatsRootDefault) {
  ScopedEnv home("BANGER_HOME", "/env/banger/");
  auto l = ResolveStateLayout("", /*running_as_root=*/true);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->db_path, "/env/banger/state.db");
}

TEST(LayoutTest, RootUsesVarLibBanger) {
  ScopedEnv home("BANGER_HOME", std::nullopt);
  ScopedEnv xdg("XDG_DATA_HOME", "/xdg");
  auto l = ResolveStateLayout("", /*running_as_root=*/true);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->root, "/var/lib/banger");
}

TEST(LayoutTest, UserUsesXdgDataHomeThenHome) {
  ScopedEnv banger_home("BANGER_HOME", std::nullopt);
  ScopedEnv home("HOME", "/home/alice");
  {
    ScopedEnv xdg("XDG_DATA_HOME", "/data/alice");
    EXPECT_EQ(ResolveStateLayout("", false)->root, "/data/alice/banger");
  }
  {
    ScopedEnv xdg("XDG_DATA_HOME", "relative/ignored");  // XDG spec: must be absolute
    EXPECT_EQ(ResolveStateLayout("", false)->root, "/home/alice/.local/share/banger");
  }
  {
    ScopedEnv xdg("XDG_DATA_HOME", std::nullopt);
    EXPECT_EQ(ResolveStateLayout("", false)->root, "/home/alice/.local/share/banger");
  }
}

TEST(LayoutTest, NoHomeAtAllIsFailedPrecondition) {
  ScopedEnv banger_home("BANGER_HOME", std::nullopt);
  ScopedEnv xdg("XDG_DATA_HOME", std::nullopt);
  ScopedEnv home("HOME", std::nullopt);
  auto l = ResolveStateLayout("", false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(l.status().message().find("--state-dir"), std::string::npos);
}

TEST(LayoutTest, RelativeFlagBecomesAbsolute) {
  auto l = ResolveStateLayout("some/dir", false);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->root.is_absolute());
  EXPECT_EQ(l->root, (std::filesystem::current_path() / "some/dir").lexically_normal());
}

TEST(LayoutTest, EnsureLayoutCreatesPrivateDirectories) {
  TempDir tmp;
  StateLayout l = LayoutAt(tmp.path() / "nested" / "banger");
  ASSERT_TRUE(EnsureLayout(l).ok());
  ASSERT_TRUE(EnsureLayout(l).ok()) << "idempotent";
  for (const auto& dir :
       {l.root, l.blobs_dir, l.images_dir, l.kernels_dir, l.sandboxes_dir, l.run_dir}) {
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << dir;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << dir;
  }
  EXPECT_FALSE(std::filesystem::exists(l.db_path)) << "the database is StateStore::Open's job";
}

}  // namespace
}  // namespace banger
