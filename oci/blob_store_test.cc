#include "oci/blob_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "base/files.h"
#include "base/sha256.h"

namespace banger::oci {
namespace {

namespace fs = std::filesystem;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = MakeTempDir("banger-blobs-");
    ASSERT_TRUE(t.ok());
    guard_ = std::make_unique<ScopedRemove>(*t);
    dir_ = *t / "blobs";
  }
  std::vector<std::string> Files() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ / "sha256", ec)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }
  std::unique_ptr<ScopedRemove> guard_;
  fs::path dir_;
};

TEST_F(BlobStoreTest, PublishesVerifiedBlobWithPrivatePermissions) {
  BlobStore store(dir_);
  std::string data = "hello blob";
  std::string digest = "sha256:" + Sha256Hex(data);
  ASSERT_TRUE(store.Put(digest, data).ok());
  EXPECT_TRUE(store.Has(digest));
  EXPECT_TRUE(store.Has(digest, static_cast<int64_t>(data.size())));
  EXPECT_FALSE(store.Has(digest, 3));
  EXPECT_EQ(store.Read(digest).value_or(""), data);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "sha256").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(store.PathFor(digest).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Files(), std::vector<std::string>{digest.substr(7)});
}

TEST_F(BlobStoreTest, DigestMismatchPublishesNothingAndLeavesNoTemp) {
  BlobStore store(dir_);
  std::string digest = "sha256:" + Sha256Hex("expected");
  Status s = store.Put(digest, "something else");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find(digest), std::string::npos);
  EXPECT_FALSE(store.Has(digest));
  EXPECT_TRUE(Files().empty());
}

TEST_F(BlobStoreTest, SizeMismatchIsDataLoss) {
  BlobStore store(dir_);
  auto w = store.NewWriter("sha256:" + Sha256Hex("abc"));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append("abc").ok());
  Status s = (*w)->Commit(4);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Files().empty());
}

TEST_F(BlobStoreTest, AbandonedWriterRemovesItsTempFileAndRestartDiscards) {
  BlobStore store(dir_);
  std::string digest = "sha256:" + Sha256Hex("final");
  {
    auto w = store.NewWriter(digest);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("partial").ok());
    EXPECT_EQ(Files().size(), 1u);
  }
  EXPECT_TRUE(Files().empty());
  auto w = store.NewWriter(digest);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append("garbage").ok());
  ASSERT_TRUE((*w)->Restart().ok());
  ASSERT_TRUE((*w)->Append("final").ok());
  ASSERT_TRUE((*w)->Commit(5).ok());
  EXPECT_EQ(store.Read(digest).value_or(""), "final");
}

TEST_F(BlobStoreTest, ConcurrentWritersOfTheSameBlobBothSucceed) {
  BlobStore store(dir_);
  std::string data(1 << 20, 'x');
  std::string digest = "sha256:" + Sha256Hex(data);
  Status s1, s2;
  std::thread t1([&] { s1 = store.Put(digest, data); });
  std::thread t2([&] { s2 = store.Put(digest, data); });
  t1.join();
  t2.join();
  EXPECT_TRUE(s1.ok()) << s1.ToString();
  EXPECT_TRUE(s2.ok()) << s2.ToString();
  EXPECT_EQ(Files(), std::vector<std::string>{digest.substr(7)});
}

TEST_F(BlobStoreTest, ReadDetectsCorruption) {
  BlobStore store(dir_);
  std::string digest = "sha256:" + Sha256Hex("good");
  ASSERT_TRUE(store.Put(digest, "good").ok());
  ASSERT_TRUE(WriteFileAtomic(store.PathFor(digest), "evil").ok());
  auto r = store.Read(digest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kDataLoss);
}

TEST_F(BlobStoreTest, ReferencedDigestsAndPruneKeepWhatImagesUse) {
  BlobStore store(dir_);
  auto put = [&](const std::string& data) {
    std::string d = "sha256:" + Sha256Hex(data);
    EXPECT_TRUE(store.Put(d, data).ok());
    return d;
  };
  std::string config = put("{\"config\":{}}");
  std::string layer1 = put("layer-one");
  std::string layer2 = put("layer-two");
  std::string orphan = put("orphan");
  std::string manifest = put(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" + config + R"(","size":13},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":")" + layer1 + R"(","size":9},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":")" + layer2 + R"(","size":9}]})");
  std::string index = put(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
    "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + manifest + R"(",
      "size":1,"platform":{"os":"linux","architecture":"amd64"}},
     {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" + std::string(64, 'f') + R"(",
      "size":1,"platform":{"os":"linux","architecture":"arm64"}}]})");

  auto refs = ReferencedDigests(dir_, manifest);
  ASSERT_TRUE(refs.ok()) << refs.error().ToString();
  EXPECT_EQ(*refs, (std::set<std::string>{manifest, config, layer1, layer2}));
  auto from_index = ReferencedDigests(dir_, index);
  ASSERT_TRUE(from_index.ok()) << from_index.error().ToString();
  EXPECT_EQ(*from_index, (std::set<std::string>{index, manifest, config, layer1, layer2}));

  ASSERT_TRUE(PruneBlobs(dir_, *from_index).ok());
  EXPECT_FALSE(store.Has(orphan));
  for (const std::string& d : *from_index) EXPECT_TRUE(store.Has(d)) << d;
  ASSERT_TRUE(PruneBlobs(dir_, {}).ok());
  EXPECT_TRUE(Files().empty());
}

TEST_F(BlobStoreTest, RejectsInvalidDigests) {
  BlobStore store(dir_);
  EXPECT_FALSE(store.NewWriter("sha256:../../etc").ok());
  EXPECT_FALSE(store.Has("sha256:../x"));
  EXPECT_FALSE(store.Read("md5:abc").ok());
}

}  // namespace
}  // namespace banger::oci
