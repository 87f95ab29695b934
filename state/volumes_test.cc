// The volumes table (migration 4): rows outlive their sandbox's record.
#include <gtest/gtest.h>

#include "state/state_store.h"
#include "state/state_test_util.h"

namespace banger {
namespace {

using state_testing::ManualClock;
using state_testing::RawDb;
using state_testing::TempDir;

constexpr int64_t kT0 = 1'700'000'000;

class VolumeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>(kT0);
    auto s = StateStore::Open(dir_.path() / "state", clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  static VolumeRecord Volume(const std::string& sandbox, const std::string& name) {
    VolumeRecord v;
    v.sandbox = sandbox;
    v.name = name;
    v.path = "/var/lib/banger/volumes/" + sandbox + "/" + name + ".ext4";
    v.mount_path = "/" + name;
    v.size_bytes = 64ull << 20;
    return v;
  }
  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(VolumeStoreTest, PutGetListAndDelete) {
  VolumeRecord w = Volume("web", "data");
  w.seeded_from = "image";
  w.seed_image = "busybox";
  ASSERT_TRUE(store_->PutVolume(w).ok());
  ASSERT_TRUE(store_->PutVolume(Volume("db", "pg")).ok());
  ASSERT_TRUE(store_->PutVolume(Volume("web", "cache")).ok());

  auto got = store_->GetVolume("web", "data");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->path, w.path);
  EXPECT_EQ(got->mount_path, "/data");
  EXPECT_EQ(got->size_bytes, 64ull << 20);
  EXPECT_EQ(got->seeded_from, "image");
  EXPECT_EQ(got->seed_image, "busybox");
  EXPECT_EQ(got->created_at, kT0);

  auto all = store_->ListVolumes("");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].sandbox + "/" + (*all)[0].name, "db/pg");
  EXPECT_EQ((*all)[1].sandbox + "/" + (*all)[1].name, "web/cache");
  EXPECT_EQ((*all)[2].sandbox + "/" + (*all)[2].name, "web/data");
  EXPECT_EQ(store_->ListVolumes("web")->size(), 2u);

  ASSERT_TRUE(store_->DeleteVolume("web", "data").ok());
  ASSERT_TRUE(store_->DeleteVolume("web", "data").ok());  // missing is fine
  EXPECT_EQ(store_->GetVolume("web", "data").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->ListVolumes("web")->size(), 1u);
}

TEST_F(VolumeStoreTest, GrowingKeepsCreationTime) {
  ASSERT_TRUE(store_->PutVolume(Volume("web", "data")).ok());
  clock_->Set(kT0 + 100);
  VolumeRecord v = *store_->GetVolume("web", "data");
  v.size_bytes = 128ull << 20;
  ASSERT_TRUE(store_->PutVolume(v).ok());
  auto got = store_->GetVolume("web", "data");
  EXPECT_EQ(got->size_bytes, 128ull << 20);
  EXPECT_EQ(got->created_at, kT0);
  EXPECT_EQ(got->updated_at, kT0 + 100);
}

TEST_F(VolumeStoreTest, VolumesOutliveTheSandboxRecord) {
  SandboxRecord r;
  r.name = "web";
  r.id = "sb-web";
  r.spec_json = "{}";
  r.spec_hash = "h";
  ASSERT_TRUE(store_->PutSandbox(r).ok());
  ASSERT_TRUE(store_->PutVolume(Volume("web", "data")).ok());
  ASSERT_TRUE(store_->DeleteSandbox("web").ok());
  EXPECT_TRUE(store_->GetVolume("web", "data").ok());
}

TEST_F(VolumeStoreTest, RejectsIncompleteRows) {
  VolumeRecord v = Volume("web", "data");
  v.size_bytes = 0;
  EXPECT_EQ(store_->PutVolume(v).code(), StatusCode::kInvalidArgument);
  v = Volume("web", "data");
  v.seeded_from = "somewhere";
  EXPECT_EQ(store_->PutVolume(v).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->ListVolumes("")->empty());
}

TEST_F(VolumeStoreTest, OneFileBelongsToOneVolume) {
  ASSERT_TRUE(store_->PutVolume(Volume("web", "data")).ok());
  VolumeRecord other = Volume("db", "data");
  other.path = Volume("web", "data").path;
  EXPECT_FALSE(store_->PutVolume(other).ok());
}

TEST(VolumeMigrationTest, Version3DatabaseGainsTheVolumesTable) {
  TempDir dir;
  {
    auto s = StateStore::Open(dir.path());
    ASSERT_TRUE(s.ok());
  }
  {
    RawDb raw(dir.path() / "state.db");
    raw.Exec("DROP TABLE volumes; PRAGMA user_version = 3;");
  }
  auto s = StateStore::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*(*s)->SchemaVersion(), 4);
  EXPECT_TRUE((*s)->ListVolumes("")->empty());
}

}  // namespace
}  // namespace banger
