// The engine's bridged networking against a FakeNetworkDriver: networks as
// planned resources, leases, taps, rules, peers in /etc/hosts and drift repair.
#include <gtest/gtest.h>

#include <algorithm>
#include <latch>
#include <set>
#include <thread>

#include "base/strings.h"
#include "reconciler/engine.h"
#include "reconciler/network_plan.h"
#include "spec/loader.h"
#include "tests/support/fake_network.h"
#include "tests/support/fakes.h"
#include "tests/support/test_util.h"

namespace banger {
namespace {

using testing::FakeArtifacts;
using testing::FakeClock;
using testing::FakeNetworkDriver;
using testing::FakeRuntime;
using testing::MakeDoc;
using testing::MakeSpec;
using testing::TempDir;

SandboxSpec Bridged(const std::string& name, const std::string& network = "default") {
  SandboxSpec s = MakeSpec(name);
  s.network.mode = NetworkMode::kBridged;
  s.network.name = network;
  return s;
}

NetworkDocument Net(const std::string& name, const std::string& subnet, bool isolated = false, bool nat = true) {
  NetworkDocument d;
  d.spec.name = name;
  d.spec.subnet = subnet;
  d.spec.isolated = isolated;
  d.spec.nat = nat;
  d.location = {"specs/net.yaml", 1, 1};
  return d;
}

class NetworkEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StateStore::Open(dir_.path() / "state");
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    artifacts_.AddImage("busybox");
    artifacts_.AddImage("alpine");
    artifacts_.AddKernel("default-kernel");
  }

  Engine MakeEngine(int parallel = 4) {
    EngineOptions o;
    o.parallel = parallel;
    o.locks_dir = dir_.path() / "locks";
    o.network_driver = &net_;
    return Engine(*store_, &rt_, artifacts_, clock_, sink_, o);
  }

  Plan PlanFor(const std::vector<SandboxSpec>& specs, const std::vector<NetworkDocument>& nets = {},
               bool prune = false) {
    std::vector<SpecDocument> docs;
    for (const auto& s : specs) docs.push_back(MakeDoc(s));
    auto observed = store_->ListSandboxes();
    EXPECT_TRUE(observed.ok());
    PlanOptions o;
    o.owner = "set:test";
    o.prune = prune;
    o.default_kernel = artifacts_.DefaultKernel();
    Plan plan = ComputePlan(docs, *observed, o);
    NetworkObservations obs{*store_->ListNetworks(), *store_->ListLeases("")};
    PlanNetworks(nets, docs, *observed, obs, o, plan);
    return plan;
  }

  ApplyReport Apply(Engine& e, const Plan& plan) {
    EXPECT_TRUE(plan.errors.empty()) << plan.errors[0];
    ApplyReport r = e.Apply(plan);
    for (const auto& c : r.results) EXPECT_TRUE(c.status.ok()) << c.name << ": " << c.status.ToString();
    return r;
  }

  SandboxRecord Get(const std::string& name) {
    auto r = store_->GetSandbox(name);
    EXPECT_TRUE(r.ok()) << name;
    return r.ok() ? *r : SandboxRecord{};
  }

  std::string TapOf(const std::string& name) { return TapNameFor(Get(name).id); }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
  FakeArtifacts artifacts_;
  FakeClock clock_;
  NullEventSink sink_;
  FakeRuntime rt_;
  FakeNetworkDriver net_;
};

TEST_F(NetworkEngineTest, BridgedSandboxesShareTheImplicitDefaultNetworkAndKnowEachOther) {
  Engine e = MakeEngine();
  Plan plan = PlanFor({Bridged("web")});
  ASSERT_EQ(plan.networks.size(), 1u);
  EXPECT_EQ(plan.networks[0].name, "default");
  EXPECT_TRUE(plan.networks[0].implicit);
  EXPECT_EQ(plan.networks[0].action, Action::kCreate);
  EXPECT_NE(RenderPlanText(plan, false).find("network/default"), std::string::npos);
  Apply(e, plan);
  Apply(e, PlanFor({Bridged("web"), Bridged("db")}));

  auto net = store_->GetNetwork("default");
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->subnet, "10.213.0.0/24");
  EXPECT_EQ(net->bridge, "bgr-default");
  EXPECT_FALSE(net->declared);
  EXPECT_EQ(Get("web").address, "10.213.0.2");
  EXPECT_EQ(Get("db").address, "10.213.0.3");

  auto links = net_.links();
  ASSERT_TRUE(links.count(TapOf("web")));
  EXPECT_EQ(links[TapOf("web")].master, "bgr-default");
  EXPECT_EQ(links[TapOf("db")].master, "bgr-default");

  auto db_net = rt_.boot_network("db");
  ASSERT_TRUE(db_net.has_value());
  EXPECT_EQ(db_net->tap, TapOf("db"));
  EXPECT_EQ(db_net->gateway, "10.213.0.1");
  EXPECT_EQ(db_net->prefix, 24);
  EXPECT_EQ(db_net->dns, std::vector<std::string>{"192.0.2.53"});
  EXPECT_EQ(db_net->mac, MacFor("default", "db"));
  // db booted knowing web; web (already running) was told about db.
  EXPECT_EQ(db_net->hosts, (std::vector<HostEntry>{{"10.213.0.2", {"web", "web.banger"}}}));
  EXPECT_EQ(rt_.guest_hosts("web").value_or(std::vector<HostEntry>{}), (std::vector<HostEntry>{{"10.213.0.3", {"db", "db.banger"}}}));

  auto rules = net_.rules();
  ASSERT_TRUE(rules.has_value());
  ASSERT_EQ(rules->bridges.size(), 1u);
  EXPECT_TRUE(rules->bridges[0].nat);
}

TEST_F(NetworkEngineTest, DefaultSubnetAvoidsTheHostsRoutes) {
  net_.AddRoute("10.213.0.0/23");
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web")}));
  EXPECT_EQ(store_->GetNetwork("default")->subnet, "10.213.2.0/24");
  EXPECT_EQ(Get("web").address, "10.213.2.2");
}

TEST_F(NetworkEngineTest, RestartAndReplaceKeepTheAddress) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("a"), Bridged("web")}));
  const std::string before = Get("web").address;
  SandboxSpec more = Bridged("web");
  more.cpus = 2;  // restart
  Plan restart = PlanFor({Bridged("a"), more});
  ASSERT_EQ(restart.changes[1].action, Action::kRestart);
  Apply(e, restart);
  EXPECT_EQ(Get("web").address, before);
  SandboxSpec other = more;
  other.image = "alpine";  // replace
  Plan replace = PlanFor({Bridged("a"), other});
  ASSERT_EQ(replace.changes[1].action, Action::kReplace);
  Apply(e, replace);
  EXPECT_EQ(Get("web").address, before);
  EXPECT_EQ(store_->ListLeases("default")->size(), 2u);
}

TEST_F(NetworkEngineTest, PublishingAPortIsAnInPlaceRuleChange) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web")}));
  SandboxSpec ported = Bridged("web");
  ported.network.ports.push_back({8080, 80, Protocol::kTcp, "127.0.0.1"});
  Plan plan = PlanFor({ported});
  ASSERT_EQ(plan.changes[0].action, Action::kUpdate) << plan.changes[0].reason;
  int boots = rt_.boots();
  Apply(e, plan);
  EXPECT_EQ(rt_.boots(), boots);  // the VM was not touched
  auto rules = net_.rules();
  ASSERT_TRUE(rules.has_value());
  ASSERT_EQ(rules->ports.size(), 1u);
  EXPECT_EQ(rules->ports[0], (PublishedPort{"web", "tcp", "127.0.0.1", 8080, "10.213.0.2", 80, "bgr-default"}));
}

TEST_F(NetworkEngineTest, UserModePortsStillRequireARestart) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({MakeSpec("web")}));
  SandboxSpec ported = MakeSpec("web");
  ported.network.ports.push_back({8080, 80, Protocol::kTcp, "127.0.0.1"});
  EXPECT_EQ(PlanFor({ported}).changes[0].action, Action::kRestart);
}

TEST_F(NetworkEngineTest, DeleteReleasesEverythingAndTheLastSandboxTakesTheImplicitBridge) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web"), Bridged("db")}));
  const std::string web_tap = TapOf("web"), db_tap = TapOf("db");
  ASSERT_TRUE(e.DeleteSandbox("db").ok());
  EXPECT_FALSE(net_.links().count(db_tap));
  EXPECT_EQ(store_->GetLease("db").error().code(), StatusCode::kNotFound);
  EXPECT_TRUE(rt_.guest_hosts("web").value_or(std::vector<HostEntry>{}).empty());  // web no longer lists db
  EXPECT_TRUE(net_.links().count("bgr-default"));
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  EXPECT_TRUE(net_.links().empty());
  EXPECT_EQ(store_->GetNetwork("default").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(net_.rules().has_value());  // the table is gone with the last network
}

// web is attached (its lease taken, its boot list empty) and still booting
// when db is created, boots and becomes Ready: db's push skips web, which is
// not Ready yet. web must still end up listing db once it is Ready itself.
TEST_F(NetworkEngineTest, SandboxThatBecomesReadyLastLearnsPeersThatBecameReadyFirst) {
  std::latch web_in_boot(1), release_web(1);
  rt_.on_boot = [&](const std::string& name) {
    if (name != "web") return;
    web_in_boot.count_down();
    release_web.wait();
  };
  std::thread first([&] {
    Engine e = MakeEngine();
    Apply(e, PlanFor({Bridged("web")}));
  });
  web_in_boot.wait();
  {
    Engine e = MakeEngine();
    Apply(e, PlanFor({Bridged("db")}));
  }
  EXPECT_EQ(Get("db").phase, SandboxPhase::kReady);
  EXPECT_NE(Get("web").phase, SandboxPhase::kReady);
  release_web.count_down();
  first.join();
  rt_.on_boot = nullptr;

  ASSERT_EQ(Get("web").phase, SandboxPhase::kReady);
  ASSERT_TRUE(rt_.boot_network("web").has_value());
  EXPECT_TRUE(rt_.boot_network("web")->hosts.empty()) << "web was attached before db had a lease";
  EXPECT_EQ(rt_.guest_hosts("web").value_or(std::vector<HostEntry>{}),
            (std::vector<HostEntry>{{Get("db").address, {"db", "db.banger"}}}));
  EXPECT_EQ(rt_.guest_hosts("db").value_or(std::vector<HostEntry>{}),
            (std::vector<HostEntry>{{Get("web").address, {"web", "web.banger"}}}));

  // A sandbox whose boot list is already current is not sent it again.
  size_t web_updates = rt_.hosts_updates("web").size();
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web"), Bridged("db"), Bridged("cache")}));
  EXPECT_TRUE(rt_.hosts_updates("cache").empty());
  EXPECT_EQ(rt_.hosts_updates("web").size(), web_updates + 1);
}

TEST_F(NetworkEngineTest, DeclaredIsolatedNetworkHidesPeersAndIsolatesTaps) {
  // One at a time: which of two parallel creates leases first is not defined.
  Engine e = MakeEngine(/*parallel=*/1);
  auto nets = std::vector<NetworkDocument>{Net("backend", "10.77.0.0/24", /*isolated=*/true)};
  Plan plan = PlanFor({Bridged("a", "backend"), Bridged("b", "backend")}, nets);
  ASSERT_EQ(plan.networks.size(), 1u);
  EXPECT_EQ(plan.networks[0].action, Action::kCreate);
  Apply(e, plan);
  EXPECT_EQ(Get("a").address, "10.77.0.2");
  EXPECT_TRUE(net_.links()[TapOf("a")].isolated);
  EXPECT_TRUE(rt_.boot_network("b")->hosts.empty());
  EXPECT_EQ(store_->GetNetwork("backend")->owner, "set:test");
  // Turning isolation off is in place: taps follow, no sandbox restarts.
  int boots = rt_.boots();
  Plan open = PlanFor({Bridged("a", "backend"), Bridged("b", "backend")}, {Net("backend", "10.77.0.0/24")});
  ASSERT_EQ(open.networks[0].action, Action::kUpdate);
  Apply(e, open);
  EXPECT_EQ(rt_.boots(), boots);
  EXPECT_FALSE(net_.links()[TapOf("a")].isolated);
}

TEST_F(NetworkEngineTest, PlanRejectsUndeclaredNetworksBadAddressesAndPortClashes) {
  SandboxSpec lost = Bridged("lost", "nowhere");
  SandboxSpec outside = Bridged("outside", "backend");
  outside.network.address = "10.78.0.5";
  SandboxSpec gw = Bridged("gw", "backend");
  gw.network.address = "10.77.0.1";
  SandboxSpec p1 = Bridged("p1"), p2 = Bridged("p2");
  p1.network.ports.push_back({8080, 80, Protocol::kTcp, "127.0.0.1"});
  p2.network.ports.push_back({8080, 81, Protocol::kTcp, "0.0.0.0"});
  Plan plan = PlanFor({lost, outside, gw, p1, p2}, {Net("backend", "10.77.0.0/24")});
  std::string all;
  for (const auto& err : plan.errors) all += err + "\n";
  EXPECT_NE(all.find("sandbox \"lost\": spec.network.name: network \"nowhere\" does not exist"), std::string::npos) << all;
  EXPECT_NE(all.find("10.78.0.5 is outside network \"backend\" (10.77.0.0/24)"), std::string::npos) << all;
  EXPECT_NE(all.find("10.77.0.1 is reserved"), std::string::npos) << all;
  EXPECT_NE(all.find("host port 8080/tcp"), std::string::npos) << all;
  EXPECT_NE(all.find("specs/test.yaml:1: "), std::string::npos) << all;  // names the file
}

TEST_F(NetworkEngineTest, FixedAddressIsHonouredAndCannotBeTakenTwice) {
  Engine e = MakeEngine();
  SandboxSpec db = Bridged("db", "backend");
  db.network.address = "10.77.0.200";
  auto nets = std::vector<NetworkDocument>{Net("backend", "10.77.0.0/24")};
  Apply(e, PlanFor({db}, nets));
  EXPECT_EQ(Get("db").address, "10.77.0.200");
  SandboxSpec thief = Bridged("thief", "backend");
  thief.network.address = "10.77.0.200";
  Plan plan = PlanFor({db, thief}, nets);
  ASSERT_FALSE(plan.errors.empty());
  EXPECT_NE(plan.errors[0].find("also the address of sandbox \"db\""), std::string::npos) << plan.errors[0];
}

TEST_F(NetworkEngineTest, PruneDeletesAnUnusedNetworkAndRefusesOneInUse) {
  Engine e = MakeEngine();
  auto nets = std::vector<NetworkDocument>{Net("backend", "10.77.0.0/24")};
  Apply(e, PlanFor({Bridged("a", "backend")}, nets));
  Plan in_use = PlanFor({Bridged("a", "backend")}, {}, /*prune=*/true);
  ASSERT_FALSE(in_use.errors.empty());
  EXPECT_NE(in_use.errors[0].find("sandboxes still use it (a)"), std::string::npos) << in_use.errors[0];
  Plan both = PlanFor({}, {}, /*prune=*/true);
  ASSERT_TRUE(both.errors.empty()) << both.errors[0];
  ASSERT_EQ(both.networks.size(), 1u);
  EXPECT_EQ(both.networks[0].action, Action::kDelete);
  Apply(e, both);
  EXPECT_EQ(store_->GetNetwork("backend").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(net_.links().count("bgr-backend"));
}

TEST_F(NetworkEngineTest, SubnetCannotMoveUnderRunningSandboxes) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("a", "backend")}, {Net("backend", "10.77.0.0/24")}));
  Plan plan = PlanFor({Bridged("a", "backend")}, {Net("backend", "10.88.0.0/24")});
  ASSERT_FALSE(plan.errors.empty());
  EXPECT_NE(plan.errors[0].find("spec.subnet cannot change from 10.77.0.0/24 to 10.88.0.0/24 while sandboxes use it (a)"),
            std::string::npos)
      << plan.errors[0];
}

TEST_F(NetworkEngineTest, ReconcileRepairsBridgeTableLeaseAndRestartsASandboxThatLostItsTap) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web"), Bridged("db")}));
  const std::string web_tap = TapOf("web");
  const std::string web_address = Get("web").address;
  const std::string db_address = Get("db").address;
  net_.RemoveLink(web_tap);
  net_.RemoveLink("bgr-default");
  net_.FlushRules();
  ASSERT_TRUE(store_->ReleaseLease("db").ok());
  int boots = rt_.boots();

  ApplyReport r = e.Reconcile();
  for (const auto& c : r.results) EXPECT_TRUE(c.status.ok()) << c.name << ": " << c.status.ToString();
  auto links = net_.links();
  EXPECT_TRUE(links.count("bgr-default"));
  ASSERT_TRUE(links.count(web_tap));
  EXPECT_EQ(links[web_tap].master, "bgr-default");
  EXPECT_EQ(links[TapOf("db")].master, "bgr-default");  // re-enslaved to the new bridge
  EXPECT_EQ(store_->GetLease("db")->address, db_address);
  auto rules = net_.rules();
  ASSERT_TRUE(rules.has_value());
  EXPECT_EQ(rules->bridges.size(), 1u);
  EXPECT_EQ(rt_.boots(), boots + 1);  // only web, whose VM held the dead tap
  EXPECT_EQ(Get("web").phase, SandboxPhase::kReady);
  EXPECT_EQ(Get("web").address, web_address);
}

TEST_F(NetworkEngineTest, ConcurrentCreatesGetDistinctAddresses) {
  Engine e = MakeEngine(/*parallel=*/8);
  std::vector<SandboxSpec> specs;
  for (int i = 0; i < 8; ++i) specs.push_back(Bridged("s" + std::to_string(i)));
  rt_.boot_delay = std::chrono::milliseconds(20);
  Apply(e, PlanFor(specs));
  std::set<std::string> addresses;
  for (const auto& s : specs) addresses.insert(Get(s.name).address);
  EXPECT_EQ(addresses.size(), 8u);
  EXPECT_EQ(store_->ListLeases("")->size(), 8u);
}

TEST_F(NetworkEngineTest, LeavingBridgedModeReturnsTheAddress) {
  Engine e = MakeEngine();
  Apply(e, PlanFor({Bridged("web")}));
  Plan plan = PlanFor({MakeSpec("web")});
  ASSERT_EQ(plan.changes[0].action, Action::kRestart);
  Apply(e, plan);
  EXPECT_EQ(store_->GetLease("web").error().code(), StatusCode::kNotFound);
  EXPECT_FALSE(rt_.boot_network("web").has_value());
  EXPECT_NE(Get("web").address, "10.213.0.2");  // the user-mode address, not the lease
}

TEST_F(NetworkEngineTest, SandboxesWithoutBridgedNetworkingNeverTouchTheHostNetwork) {
  // As a user without CAP_NET_ADMIN would be: user-mode and none sandboxes
  // still boot, restart and delete, and no host network command runs.
  net_.SetAvailable(FailedPrecondition("bridged networking needs CAP_NET_ADMIN"));
  Engine e = MakeEngine();
  SandboxSpec quiet = MakeSpec("quiet");
  quiet.network.mode = NetworkMode::kNone;
  Apply(e, PlanFor({MakeSpec("web"), quiet}));
  ASSERT_TRUE(e.StartSandbox("web").ok());
  ASSERT_TRUE(e.DeleteSandbox("web").ok());
  ASSERT_TRUE(e.DeleteSandbox("quiet").ok());
  EXPECT_TRUE(net_.calls().empty()) << Join(net_.calls(), "\n");
}

TEST_F(NetworkEngineTest, NoDriverOrNoPrivilegeIsAClearError) {
  net_.SetAvailable(FailedPrecondition("bridged networking needs CAP_NET_ADMIN"));
  Engine e = MakeEngine();
  ApplyReport r = e.Apply(PlanFor({Bridged("web")}));
  bool saw = false;
  for (const auto& c : r.results) {
    if (!c.status.ok() && c.status.message().find("CAP_NET_ADMIN") != std::string::npos) saw = true;
  }
  EXPECT_TRUE(saw);
  EXPECT_EQ(rt_.boots(), 0);
}

}  // namespace
}  // namespace banger
