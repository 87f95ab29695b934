#include "agent/json_lite.h"

#include <gtest/gtest.h>

#include "agent/config.h"

namespace banger::agent {
namespace {

TEST(JsonLiteTest, ParsesNestedDocument) {
  std::string err;
  auto v = ParseJson(R"({"a": [1, 2, {"b": "x\u00e9\n"}], "t": true, "n": null, "f": -2.5e1})", &err);
  ASSERT_TRUE(v) << err;
  EXPECT_EQ((*v)["a"].AsArray().size(), 3u);
  EXPECT_EQ((*v)["a"].AsArray()[1].AsInt(), 2);
  EXPECT_EQ((*v)["a"].AsArray()[2]["b"].AsString(), "x\xc3\xa9\n");
  EXPECT_TRUE((*v)["t"].AsBool());
  EXPECT_TRUE((*v)["n"].IsNull());
  EXPECT_EQ((*v)["f"].AsInt(), -25);
  EXPECT_TRUE((*v)["missing"].IsNull());
}

TEST(JsonLiteTest, RejectsMalformedInputWithOffset) {
  std::string err;
  EXPECT_FALSE(ParseJson(R"({"a": [1, 2})", &err));
  EXPECT_NE(err.find("offset"), std::string::npos) << err;
  EXPECT_FALSE(ParseJson(R"({"a": "unterminated)", &err));
  EXPECT_FALSE(ParseJson(R"({"a": 1} x)", &err));
  EXPECT_FALSE(ParseJson(std::string(100, '['), &err));  // too deep
}

TEST(JsonLiteTest, DecodesSurrogatePairs) {
  std::string err;
  auto v = ParseJson(R"("\ud83d\ude00")", &err);
  ASSERT_TRUE(v) << err;
  EXPECT_EQ(v->AsString(), "\xf0\x9f\x98\x80");
}

TEST(Base64Test, DecodesWithAndWithoutPadding) {
  EXPECT_EQ(*Base64Decode("aGVsbG8gd29ybGQ="), "hello world");
  EXPECT_EQ(*Base64Decode("aGVsbG8gd29ybGQ"), "hello world");
  EXPECT_EQ(*Base64Decode(""), "");
  EXPECT_EQ(*Base64Decode("AAEC/w=="), std::string("\x00\x01\x02\xff", 4));
  EXPECT_FALSE(Base64Decode("a$b="));
  EXPECT_FALSE(Base64Decode("a"));
}

TEST(AgentConfigTest, ParsesFullConfig) {
  std::string err;
  auto c = ParseAgentConfig(R"({
    "hostname": "web-1",
    "network": {"address": "10.0.0.2", "prefix": 24, "gateway": "10.0.0.1", "dns": ["1.1.1.1"]},
    "files": [{"path": "/etc/motd", "content_base64": "aGk=", "mode": 384}],
    "hosts": [{"address": "10.99.0.7", "names": ["peer", "peer.banger"]}, {"address": "10.99.0.8", "names": ["db"]}],
    "authorized_keys": ["ssh-ed25519 AAAA test"],
    "env": {"A": "1"},
    "entrypoint": {"argv": ["sleep", "1000"], "env": {"B": "2"}, "workdir": "/tmp"},
    "init": "agent"
  })", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->hostname, "web-1");
  ASSERT_TRUE(c->network);
  EXPECT_EQ(c->network->gateway, "10.0.0.1");
  EXPECT_EQ(c->network->dns, std::vector<std::string>{"1.1.1.1"});
  ASSERT_EQ(c->files.size(), 1u);
  EXPECT_EQ(c->files[0].content, "hi");
  EXPECT_EQ(c->files[0].mode, 0600u);
  EXPECT_EQ(c->env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(c->entrypoint, (std::vector<std::string>{"sleep", "1000"}));
  EXPECT_EQ(c->entrypoint_env, std::vector<std::string>{"B=2"});
  EXPECT_EQ(c->workdir, "/tmp");
  EXPECT_EQ(c->init, "agent");
  EXPECT_EQ(c->root_device, "/dev/vda");
  ASSERT_EQ(c->hosts.size(), 2u);
  EXPECT_EQ(c->hosts[0].address, "10.99.0.7");
  EXPECT_EQ(c->hosts[0].names, (std::vector<std::string>{"peer", "peer.banger"}));
  EXPECT_EQ(c->hosts[1].names, std::vector<std::string>{"db"});
}

TEST(AgentConfigTest, HostsAreOptionalAndValidated) {
  std::string err;
  auto none = ParseAgentConfig(R"({"hostname": "x"})", &err);
  ASSERT_TRUE(none) << err;
  EXPECT_TRUE(none->hosts.empty());
  auto null_hosts = ParseAgentConfig(R"({"hosts": null})", &err);
  ASSERT_TRUE(null_hosts) << err;
  EXPECT_TRUE(null_hosts->hosts.empty());

  EXPECT_FALSE(ParseAgentConfig(R"({"hosts": [{"address": "10.0.0.1", "names": ["bad name"]}]})", &err));
  EXPECT_NE(err.find("hosts entry 0"), std::string::npos) << err;
  EXPECT_NE(err.find("bad name"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"hosts": [{"address": "10.0.0.1\nevil", "names": ["a"]}]})", &err));
  EXPECT_NE(err.find("not an IPv4"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"hosts": [{"address": "10.0.0.1", "names": []}]})", &err));
  EXPECT_NE(err.find("no names"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"hosts": {"address": "10.0.0.1"}})", &err));
  EXPECT_NE(err.find("hosts must be a list"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"hosts": ["10.0.0.1 a"]})", &err));
}

TEST(AgentConfigTest, RejectsBadFieldsNamingThem) {
  std::string err;
  EXPECT_FALSE(ParseAgentConfig(R"({"network": {"address": "10.0.0.300"}})", &err));
  EXPECT_NE(err.find("network.address"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"files": [{"path": "etc/x", "content_base64": ""}]})", &err));
  EXPECT_NE(err.find("etc/x"), std::string::npos) << err;
  EXPECT_FALSE(ParseAgentConfig(R"({"init": "systemd"})", &err));
  EXPECT_NE(err.find("init"), std::string::npos) << err;
}

TEST(AgentConfigTest, HoldIsOffByDefaultAndMustBeABool) {
  std::string err;
  auto c = ParseAgentConfig(R"({"hostname": "x"})", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_FALSE(c->hold);
  c = ParseAgentConfig(R"({"hold": true})", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_TRUE(c->hold);
  c = ParseAgentConfig(R"({"hold": false})", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_FALSE(c->hold);
  for (const char* bad : {R"({"hold": "yes"})", R"({"hold": 1})", R"({"hold": {}})"}) {
    EXPECT_FALSE(ParseAgentConfig(bad, &err)) << bad;
    EXPECT_NE(err.find("hold must be true or false"), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace banger::agent
