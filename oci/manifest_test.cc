#include "oci/manifest.h"

#include <gtest/gtest.h>

#include "oci/http.h"

namespace banger::oci {
namespace {

std::string D(char c) { return "sha256:" + std::string(64, c); }

std::string Index() {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + D('a') + R"(","size":10,
     "platform":{"os":"linux","architecture":"arm","variant":"v7"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + D('b') + R"(","size":10,
     "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + D('c') + R"(","size":10,
     "platform":{"os":"linux","architecture":"amd64","variant":"v3"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + D('d') + R"(","size":10,
     "platform":{"os":"linux","architecture":"amd64"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + D('e') + R"(","size":10,
     "platform":{"os":"unknown","architecture":"unknown"}}
  ]})";
}

TEST(ManifestTest, ParsesImageManifest) {
  std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":")" + D('1') + R"(","size":7},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":")" + D('2') + R"(","size":100},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":")" + D('3') + R"(","size":200}]})";
  auto m = ParseManifest(json, "", "ref");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_FALSE(m->is_index);
  EXPECT_EQ(m->config.digest, D('1'));
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[1].digest, D('3'));
  EXPECT_EQ(m->layers[1].size, 200);
  EXPECT_TRUE(IsSupportedLayerType(m->layers[0].media_type));
  EXPECT_TRUE(IsSupportedLayerType(m->layers[1].media_type));
}

TEST(ManifestTest, TypeFromContentTypeWhenJsonHasNone) {
  std::string json = R"({"schemaVersion":2,"manifests":[]})";
  auto m = ParseManifest(json, "application/vnd.oci.image.index.v1+json; charset=utf-8", "ref");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->is_index);
}

TEST(ManifestTest, RejectsSchema1AndBadDigests) {
  auto s1 = ParseManifest(R"({"schemaVersion":1,"fsLayers":[]})", "", "old/image:1");
  ASSERT_FALSE(s1.ok());
  EXPECT_NE(s1.error().message().find("schema 1"), std::string::npos);
  EXPECT_NE(s1.error().message().find("old/image:1"), std::string::npos);
  auto bad = ParseManifest(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"digest":"sha512:abc"},"layers":[]})", "", "r");
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(ParseManifest("[1,2", "", "r").ok());
}

TEST(ManifestTest, SelectsPlatformPreferringNoVariant) {
  auto m = ParseManifest(Index(), "", "ref");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  auto amd = SelectPlatform(*m, "linux/amd64", "ref");
  ASSERT_TRUE(amd.ok());
  EXPECT_EQ(amd->digest, D('d'));
  auto v3 = SelectPlatform(*m, "linux/amd64/v3", "ref");
  ASSERT_TRUE(v3.ok());
  EXPECT_EQ(v3->digest, D('c'));
  auto arm64 = SelectPlatform(*m, "linux/arm64", "ref");
  ASSERT_TRUE(arm64.ok());
  EXPECT_EQ(arm64->digest, D('b'));
}

TEST(ManifestTest, MissingPlatformListsAvailableOnes) {
  auto m = ParseManifest(Index(), "", "docker.io/library/x:1");
  ASSERT_TRUE(m.ok());
  auto r = SelectPlatform(*m, "linux/s390x", "docker.io/library/x:1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), StatusCode::kNotFound);
  EXPECT_NE(r.error().message().find(
                "no manifest for platform linux/s390x; available: linux/arm/v7, linux/arm64/v8, "
                "linux/amd64/v3, linux/amd64"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(r.error().message().find("unknown"), std::string::npos);
  EXPECT_FALSE(SelectPlatform(*m, "linux", "x").ok());
}

TEST(ManifestTest, UnsupportedLayerTypes) {
  EXPECT_FALSE(IsSupportedLayerType("application/vnd.cncf.helm.chart.content.v1.tar+gzip"));
  EXPECT_FALSE(IsSupportedLayerType(""));
}

TEST(TransferStatusTest, MapsHttpAndTransportFailures) {
  EXPECT_TRUE(TransferStatus(0, 200, "x").ok());
  EXPECT_TRUE(TransferStatus(0, 206, "x").ok());
  EXPECT_EQ(TransferStatus(0, 404, "x").code(), StatusCode::kNotFound);
  EXPECT_EQ(TransferStatus(0, 401, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(TransferStatus(0, 403, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(TransferStatus(0, 429, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(TransferStatus(0, 503, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(TransferStatus(0, 400, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TransferStatus(7 /*CURLE_COULDNT_CONNECT*/, 0, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(TransferStatus(28 /*CURLE_OPERATION_TIMEDOUT*/, 0, "x").code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(TransferStatus(56 /*CURLE_RECV_ERROR*/, 200, "x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(TransferStatus(18 /*CURLE_PARTIAL_FILE*/, 200, "x").code(), StatusCode::kUnavailable);
  Status s = TransferStatus(0, 500, "GET http://r/v2/a/blobs/x");
  EXPECT_NE(s.message().find("GET http://r/v2/a/blobs/x: HTTP 500"), std::string::npos);
}

}  // namespace
}  // namespace banger::oci
