#include "state/state_store.h"

#include <sys/stat.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "state/state_test_util.h"

namespace banger {
namespace {

using state_testing::ManualClock;
using state_testing::RawDb;
using state_testing::TempDir;

constexpr int64_t kT0 = 1'700'000'000;

unsigned ModeOf(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

SandboxRecord MakeSandbox(const std::string& name, const std::string& hash = "h1") {
  SandboxRecord r;
  r.name = name;
  r.id = "sb-" + name;
  r.owner = "path:/specs";
  r.spec_json = "{\"name\":\"" + name + "\",\"hash\":\"" + hash + "\"}";
  r.spec_hash = hash;
  return r;
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>(kT0);
    auto s = StateStore::Open(dir_.path() / "state", clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  std::filesystem::path DbPath() const { return dir_.path() / "state" / "state.db"; }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_;
  std::unique_ptr<StateStore> store_;
};

// --- opening, migrations, pragmas, permissions -------------------------------

TEST_F(StateStoreTest, FreshDatabaseIsMigratedToLatestSchema) {
  auto v = store_->SchemaVersion();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, StateStore::LatestSchemaVersion());
  EXPECT_GE(StateStore::LatestSchemaVersion(), 1);
  RawDb raw(DbPath());
  for (const char* table :
       {"sandboxes", "sandbox_status", "operations", "events", "images", "kernels", "settings"}) {
    EXPECT_EQ(raw.Query(std::string("SELECT name FROM sqlite_master WHERE type='table' AND name='") +
                        table + "'"),
              table);
  }
}

TEST_F(StateStoreTest, UsesWalJournalAndForeignKeys) {
  RawDb raw(DbPath());
  EXPECT_EQ(raw.Query("PRAGMA journal_mode"), "wal");  // persistent in the file
  // Foreign keys are per connection: prove ours enforces them by the cascade.
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web")).ok());
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sandbox_status WHERE name='web'"), "1");
  ASSERT_TRUE(store_->DeleteSandbox("web").ok());
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sandbox_status"), "0");
}

TEST_F(StateStoreTest, DirectoryIs0700AndFilesAre0600) {
  EXPECT_EQ(ModeOf(dir_.path() / "state"), 0700u);
  EXPECT_EQ(ModeOf(DbPath()), 0600u);
  ASSERT_TRUE(store_->SetSetting("k", "v").ok());  // forces a WAL write
  EXPECT_EQ(ModeOf(dir_.path() / "state" / "state.db-wal"), 0600u);
  EXPECT_EQ(ModeOf(dir_.path() / "state" / "state.db-shm"), 0600u);
}

TEST(StateStoreOpenTest, ExistingLooseDirectoryAndFileAreTightened) {
  TempDir dir;
  std::filesystem::path state = dir.path() / "state";
  ASSERT_TRUE(MakeDirs(state, 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(state / "state.db", "", 0644).ok());
  auto s = StateStore::Open(state);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(ModeOf(state), 0700u);
  EXPECT_EQ(ModeOf(state / "state.db"), 0600u);
}

TEST(StateStoreOpenTest, ReopenKeepsData) {
  TempDir dir;
  {
    auto s = StateStore::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->PutSandbox(MakeSandbox("keep")).ok());
    ASSERT_TRUE((*s)->SetSetting("serial", "42").ok());
  }
  auto s = StateStore::Open(dir.path());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto sb = (*s)->GetSandbox("keep");
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  EXPECT_EQ(sb->id, "sb-keep");
  auto v = (*s)->GetSetting("serial");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->value_or(""), "42");
  EXPECT_EQ(*(*s)->SchemaVersion(), StateStore::LatestSchemaVersion());
}

TEST(StateStoreOpenTest, RefusesNewerSchemaWithUpgradeHint) {
  TempDir dir;
  { ASSERT_TRUE(StateStore::Open(dir.path()).ok()); }
  {
    RawDb raw(dir.path() / "state.db");
    raw.Exec("PRAGMA user_version = 99");
  }
  auto s = StateStore::Open(dir.path());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("state.db schema version 99 is newer than this banger "
                                      "(knows up to " +
                                      std::to_string(StateStore::LatestSchemaVersion()) +
                                      "); upgrade banger"),
            std::string::npos)
      << s.status().message();
  // And the database was not touched.
  RawDb raw(dir.path() / "state.db");
  EXPECT_EQ(raw.Query("PRAGMA user_version"), "99");
}

TEST(StateStoreOpenTest, GarbageFileIsDataLossNamingThePath) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "state.db",
                              std::string(8192, 'x'), 0600).ok());
  auto s = StateStore::Open(dir.path());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss) << s.status().ToString();
  EXPECT_NE(s.status().message().find((dir.path() / "state.db").string()), std::string::npos)
      << s.status().message();
}

TEST(StateStoreOpenTest, InMemoryDatabaseWorks) {
  auto s = StateStore::OpenFile(":memory:");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->PutSandbox(MakeSandbox("mem")).ok());
  EXPECT_EQ((*s)->ListSandboxes()->size(), 1u);
}

// --- sandboxes ---------------------------------------------------------------

TEST_F(StateStoreTest, PutGetListAndDeleteSandboxes) {
  SandboxRecord b = MakeSandbox("b");
  b.phase = SandboxPhase::kReady;
  b.hypervisor = "qemu";
  b.pid = 4242;
  b.pid_start_time = 123456789012ULL;
  b.address = "10.0.0.2";
  b.runtime_dir = "/run/banger/sb-b";
  b.disk_path = "/var/lib/banger/sandboxes/sb-b/root.qcow2";
  b.image_ref = "debian@sha256:abc";
  b.kernel_ref = "debian-6.1";
  b.stopped_by_user = true;
  b.provisioned = true;
  b.restart_count = 3;
  b.next_retry_at = kT0 + 60;
  b.ready_at = kT0 + 5;
  ASSERT_TRUE(store_->PutSandbox(b).ok());
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("a")).ok());

  auto got = store_->GetSandbox("b");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->id, "sb-b");
  EXPECT_EQ(got->owner, "path:/specs");
  EXPECT_EQ(got->spec_json, b.spec_json);
  EXPECT_EQ(got->spec_hash, "h1");
  EXPECT_EQ(got->generation, 1);
  EXPECT_EQ(got->created_at, kT0);
  EXPECT_EQ(got->updated_at, kT0);
  EXPECT_EQ(got->phase, SandboxPhase::kReady);
  EXPECT_EQ(got->hypervisor, "qemu");
  EXPECT_EQ(got->pid, 4242);
  EXPECT_EQ(got->pid_start_time, 123456789012ULL);
  EXPECT_EQ(got->address, "10.0.0.2");
  EXPECT_EQ(got->runtime_dir, b.runtime_dir);
  EXPECT_EQ(got->disk_path, b.disk_path);
  EXPECT_EQ(got->image_ref, b.image_ref);
  EXPECT_EQ(got->kernel_ref, b.kernel_ref);
  EXPECT_TRUE(got->stopped_by_user);
  EXPECT_TRUE(got->provisioned);
  EXPECT_EQ(got->restart_count, 3);
  EXPECT_EQ(got->next_retry_at, kT0 + 60);
  EXPECT_EQ(got->ready_at, kT0 + 5);

  auto list = store_->ListSandboxes();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "a");  // sorted by name
  EXPECT_EQ((*list)[1].name, "b");
  EXPECT_EQ((*list)[0].phase, SandboxPhase::kPending);

  ASSERT_TRUE(store_->DeleteSandbox("b").ok());
  EXPECT_EQ(store_->GetSandbox("b").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->DeleteSandbox("b").ok()) << "deleting a missing sandbox is OK";
  EXPECT_EQ(store_->ListSandboxes()->size(), 1u);
}

TEST_F(StateStoreTest, GetMissingSandboxIsNotFoundNamingIt) {
  auto got = store_->GetSandbox("ghost");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("ghost"), std::string::npos);
}

TEST_F(StateStoreTest, GenerationBumpsOnlyWhenSpecHashChanges) {
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web", "h1")).ok());
  EXPECT_EQ(store_->GetSandbox("web")->generation, 1);

  clock_->Set(kT0 + 10);
  SandboxRecord same = MakeSandbox("web", "h1");
  same.generation = 77;  // ignored: the store owns generation
  same.phase = SandboxPhase::kBooting;
  ASSERT_TRUE(store_->PutSandbox(same).ok());
  auto r = store_->GetSandbox("web");
  EXPECT_EQ(r->generation, 1);
  EXPECT_EQ(r->updated_at, kT0) << "nothing desired changed";
  EXPECT_EQ(r->phase, SandboxPhase::kBooting) << "observed part was still written";

  clock_->Set(kT0 + 20);
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web", "h2")).ok());
  r = store_->GetSandbox("web");
  EXPECT_EQ(r->generation, 2);
  EXPECT_EQ(r->spec_hash, "h2");
  EXPECT_EQ(r->created_at, kT0);
  EXPECT_EQ(r->updated_at, kT0 + 20);

  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web", "h3")).ok());
  EXPECT_EQ(store_->GetSandbox("web")->generation, 3);
}

TEST_F(StateStoreTest, UpdateObservedChangesOnlyObservedFields) {
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web", "h1")).ok());
  SandboxRecord obs = MakeSandbox("web", "something-else");
  obs.id = "sb-other";
  obs.spec_json = "{}";
  obs.phase = SandboxPhase::kFailed;
  obs.last_error = "boot timed out";
  obs.restart_count = 2;
  ASSERT_TRUE(store_->UpdateObserved(obs).ok());
  auto r = store_->GetSandbox("web");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->phase, SandboxPhase::kFailed);
  EXPECT_EQ(r->last_error, "boot timed out");
  EXPECT_EQ(r->restart_count, 2);
  EXPECT_EQ(r->spec_hash, "h1");
  EXPECT_EQ(r->id, "sb-web");
  EXPECT_EQ(r->generation, 1);
}

TEST_F(StateStoreTest, UpdateObservedOnMissingSandboxIsNotFound) {
  Status st = store_->UpdateObserved(MakeSandbox("ghost"));
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find("ghost"), std::string::npos);
  EXPECT_EQ(store_->ListSandboxes()->size(), 0u);
}

TEST_F(StateStoreTest, TwoSandboxesCannotShareAnId) {
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("a")).ok());
  SandboxRecord b = MakeSandbox("b");
  b.id = "sb-a";
  Status st = store_->PutSandbox(b);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_EQ(store_->GetSandbox("b").status().code(), StatusCode::kNotFound)
      << "the failed put left nothing behind";
}

TEST_F(StateStoreTest, PutSandboxRejectsEmptyNameOrId) {
  SandboxRecord r = MakeSandbox("x");
  r.name = "";
  EXPECT_EQ(store_->PutSandbox(r).code(), StatusCode::kInvalidArgument);
  r = MakeSandbox("x");
  r.id = "";
  EXPECT_EQ(store_->PutSandbox(r).code(), StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, UnknownStoredPhaseReadsAsUnknown) {
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web")).ok());
  {
    RawDb raw(DbPath());
    raw.Exec("UPDATE sandbox_status SET phase='Hibernating' WHERE name='web'");
  }
  auto r = store_->GetSandbox("web");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->phase, SandboxPhase::kUnknown);
}

TEST(SandboxPhaseTest, NamesRoundTrip) {
  for (SandboxPhase p : {SandboxPhase::kPending, SandboxPhase::kBooting, SandboxPhase::kReady,
                         SandboxPhase::kStopped, SandboxPhase::kFailed, SandboxPhase::kDeleting,
                         SandboxPhase::kUnknown}) {
    auto back = SandboxPhaseFromString(ToString(p));
    ASSERT_TRUE(back.ok()) << ToString(p);
    EXPECT_EQ(*back, p);
  }
  EXPECT_EQ(ToString(SandboxPhase::kReady), "Ready");
  EXPECT_EQ(SandboxPhaseFromString("running").status().code(), StatusCode::kInvalidArgument);
}

// --- journal -----------------------------------------------------------------

TEST_F(StateStoreTest, JournalBeginFinishUnfinishedAndAbandon) {
  const ProcessIdentity me = SelfProcess();
  auto a = store_->BeginOperation("web", "pull_image", "debian", me);
  auto b = store_->BeginOperation("web", "boot_vm", "", me);
  auto c = store_->BeginOperation("db", "boot_vm", "", me);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_LT(*a, *b);
  EXPECT_LT(*b, *c);

  clock_->Set(kT0 + 3);
  ASSERT_TRUE(store_->FinishOperation(*a, "").ok());
  ASSERT_TRUE(store_->FinishOperation(*b, "qemu exited with status 1").ok());

  auto unfinished = store_->UnfinishedOperations();
  ASSERT_TRUE(unfinished.ok());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].id, *c);
  EXPECT_EQ((*unfinished)[0].sandbox, "db");
  EXPECT_EQ((*unfinished)[0].state, "started");

  auto ops = store_->ListOperations("web", 0);
  ASSERT_TRUE(ops.ok());
  ASSERT_EQ(ops->size(), 2u);
  EXPECT_EQ((*ops)[0].step, "pull_image");
  EXPECT_EQ((*ops)[0].detail, "debian");
  EXPECT_EQ((*ops)[0].state, "done");
  EXPECT_EQ((*ops)[0].started_at, kT0);
  EXPECT_EQ((*ops)[0].finished_at, kT0 + 3);
  EXPECT_EQ((*ops)[1].state, "failed");
  EXPECT_EQ((*ops)[1].error, "qemu exited with status 1");

  auto newest = store_->ListOperations("", 1);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 1u);
  EXPECT_EQ((*newest)[0].id, *c);

  EXPECT_EQ(store_->FinishOperation(*a, "").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->FinishOperation(9999, "").code(), StatusCode::kNotFound);

  EXPECT_EQ((*unfinished)[0].owner, me);
  // A live owner's step is not abandoned; a dead owner's is.
  auto kept = store_->AbandonUnfinishedOperations("banger restarted",
                                                  [](const ProcessIdentity&) { return true; });
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, 0);
  EXPECT_EQ(store_->UnfinishedOperations()->size(), 1u);
  auto gone = store_->AbandonUnfinishedOperations("banger restarted",
                                                  [](const ProcessIdentity&) { return false; });
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(*gone, 1);
  EXPECT_TRUE(store_->UnfinishedOperations()->empty());
  auto db_ops = store_->ListOperations("db", 10);
  ASSERT_EQ(db_ops->size(), 1u);
  EXPECT_EQ((*db_ops)[0].state, "failed");
  EXPECT_EQ((*db_ops)[0].error, "banger restarted");
  // Done and failed operations were not rewritten.
  EXPECT_EQ(store_->ListOperations("web", 0)->at(0).state, "done");
}

TEST_F(StateStoreTest, JournalSurvivesSandboxDeletion) {
  ASSERT_TRUE(store_->PutSandbox(MakeSandbox("web")).ok());
  auto op = store_->BeginOperation("web", "destroy_vm", "", SelfProcess());
  ASSERT_TRUE(op.ok());
  ASSERT_TRUE(store_->AddEvent({0, 0, "web", "Normal", "Deleted", "gone"}).ok());
  ASSERT_TRUE(store_->DeleteSandbox("web").ok());
  EXPECT_EQ(store_->ListOperations("web", 0)->size(), 1u);
  EXPECT_EQ(store_->ListEvents("web", 0)->size(), 1u);
}

TEST_F(StateStoreTest, OnlyStepsOfDeadOwnersAreAbandoned) {
  // Given steps started by two processes, one alive and one dead; when a third
  // process observes the host, it closes only the dead one's step.
  ProcessIdentity alive{4242, 1}, dead{4343, 2};
  auto a = store_->BeginOperation("web", "boot_vm", "", alive);
  auto d = store_->BeginOperation("db", "boot_vm", "", dead);
  ASSERT_TRUE(a.ok() && d.ok());
  auto n = store_->AbandonUnfinishedOperations("interrupted",
                                               [&](const ProcessIdentity& id) { return id == alive; });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  auto open = store_->UnfinishedOperations();
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].id, *a);
  EXPECT_EQ(store_->ListOperations("db", 0)->at(0).error, "interrupted");
}

// --- sources -----------------------------------------------------------------

TEST_F(StateStoreTest, SourcesRoundTripAndReplace) {
  SourceRecord r;
  r.key = "git:file:///srv/specs.git#main:specs";
  r.url = "file:///srv/specs.git";
  r.ref = "main";
  r.owner = r.key;
  r.applied_revision = std::string(40, 'a');
  r.applied_summary = "add web";
  r.applied_at = kT0;
  r.seen_revision = std::string(40, 'b');
  r.last_attempt_at = kT0 + 1;
  r.last_result = "error";
  r.last_error = "specs/web.yaml:3:5: error: spec.cpus: must be between 1 and 64";
  r.last_error_revision = std::string(40, 'b');
  r.watcher = {123, 456};
  ASSERT_TRUE(store_->PutSource(r).ok());
  auto back = store_->GetSource(r.key);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->applied_revision, r.applied_revision);
  EXPECT_EQ(back->last_error, r.last_error);
  EXPECT_EQ(back->watcher, r.watcher);
  EXPECT_EQ(back->updated_at, kT0);
  r.last_result = "ok";
  ASSERT_TRUE(store_->PutSource(r).ok());
  EXPECT_EQ(store_->ListSources()->size(), 1u);
  EXPECT_EQ(store_->GetSource(r.key)->last_result, "ok");
  r.last_result = "maybe";
  EXPECT_EQ(store_->PutSource(r).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->DeleteSource(r.key).ok());
  EXPECT_EQ(store_->GetSource(r.key).status().code(), StatusCode::kNotFound);
}

// --- events ------------------------------------------------------------------

TEST_F(StateStoreTest, EventsAreNewestLastWithLimitAndAfterId) {
  for (int i = 0; i < 5; ++i) {
    clock_->Set(kT0 + i);
    ASSERT_TRUE(store_->AddEvent({0, 0, i % 2 ? "b" : "a", "Normal", "Step" + std::to_string(i),
                                  "message " + std::to_string(i)})
                    .ok());
  }
  ASSERT_TRUE(store_->AddEvent({0, 12345, "", "Warning", "HostLowDisk", "5% free"}).ok());

  auto all = store_->ListEvents("", 0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 6u);
  for (size_t i = 1; i < all->size(); ++i) EXPECT_LT((*all)[i - 1].id, (*all)[i].id);
  EXPECT_EQ((*all)[0].reason, "Step0");
  EXPECT_EQ((*all)[0].time, kT0);
  EXPECT_EQ((*all)[0].message, "message 0");
  EXPECT_EQ((*all)[5].type, "Warning");
  EXPECT_EQ((*all)[5].time, 12345) << "explicit time is kept";

  auto last2 = store_->ListEvents("", 2);
  ASSERT_EQ(last2->size(), 2u);
  EXPECT_EQ((*last2)[0].reason, "Step4");
  EXPECT_EQ((*last2)[1].reason, "HostLowDisk");

  auto a = store_->ListEvents("a", 2);
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].reason, "Step2");
  EXPECT_EQ((*a)[1].reason, "Step4");

  // Following: everything after the id seen, oldest first, never skipping.
  int64_t seen = (*all)[1].id;
  auto next = store_->ListEvents("", 2, seen);
  ASSERT_EQ(next->size(), 2u);
  EXPECT_EQ((*next)[0].reason, "Step2");
  EXPECT_EQ((*next)[1].reason, "Step3");
  EXPECT_TRUE(store_->ListEvents("", 0, (*all)[5].id)->empty());
}

TEST_F(StateStoreTest, EventTypeMustBeNormalOrWarning) {
  EXPECT_EQ(store_->AddEvent({0, 0, "web", "Info", "Created", ""}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AddEvent({0, 0, "web", "Normal", "", ""}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->ListEvents("", 0)->empty());
}

// --- images and kernels -----------------------------------------------------

ImageRecord MakeImage(const std::string& name, const std::string& id) {
  ImageRecord i;
  i.name = name;
  i.id = id;
  i.source = "registry.local/" + name + ":latest";
  i.digest = "sha256:" + std::string(64, 'a');
  i.rootfs_path = "/var/lib/banger/images/" + id + "/rootfs.ext4";
  i.config_json = "{\"Cmd\":[\"/bin/sh\"]}";
  i.size_bytes = 5ULL << 32;
  return i;
}

TEST_F(StateStoreTest, ImagesInsertGetListDelete) {
  ASSERT_TRUE(store_->InsertImage(MakeImage("debian", "img-1")).ok());
  ASSERT_TRUE(store_->InsertImage(MakeImage("alpine", "img-2")).ok());
  auto got = store_->GetImage("debian");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->id, "img-1");
  EXPECT_EQ(got->source, "registry.local/debian:latest");
  EXPECT_EQ(got->digest, "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(got->rootfs_path, "/var/lib/banger/images/img-1/rootfs.ext4");
  EXPECT_EQ(got->config_json, "{\"Cmd\":[\"/bin/sh\"]}");
  EXPECT_EQ(got->size_bytes, 5ULL << 32);
  EXPECT_EQ(got->created_at, kT0);
  auto list = store_->ListImages();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "alpine");
  ASSERT_TRUE(store_->DeleteImage("debian").ok());
  EXPECT_EQ(store_->GetImage("debian").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->DeleteImage("debian").ok());
}

TEST_F(StateStoreTest, ImageNameTakenIsAlreadyExists) {
  ASSERT_TRUE(store_->InsertImage(MakeImage("debian", "img-1")).ok());
  Status st = store_->InsertImage(MakeImage("debian", "img-2"));
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_NE(st.message().find("debian"), std::string::npos);
  EXPECT_EQ(store_->GetImage("debian")->id, "img-1") << "the first publisher keeps the name";
}

TEST_F(StateStoreTest, KernelsInsertGetListDeleteAndUniqueName) {
  KernelRecord k;
  k.name = "debian-6.1";
  k.id = "k-1";
  k.source = "deb:linux-image-amd64";
  k.kernel_path = "/k/vmlinuz";
  k.vmlinux_path = "/k/vmlinux";
  k.initrd_path = "/k/initrd";
  k.modules_dir = "/k/lib/modules/6.1.0-18-amd64";
  k.version = "6.1.0-18-amd64";
  k.created_at = 99;
  ASSERT_TRUE(store_->InsertKernel(k).ok());
  auto got = store_->GetKernel("debian-6.1");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->id, "k-1");
  EXPECT_EQ(got->source, k.source);
  EXPECT_EQ(got->kernel_path, k.kernel_path);
  EXPECT_EQ(got->vmlinux_path, k.vmlinux_path);
  EXPECT_EQ(got->initrd_path, k.initrd_path);
  EXPECT_EQ(got->modules_dir, k.modules_dir);
  EXPECT_EQ(got->version, k.version);
  EXPECT_EQ(got->created_at, 99);

  KernelRecord dup = k;
  dup.id = "k-2";
  Status st = store_->InsertKernel(dup);
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.ToString();
  EXPECT_EQ(store_->ListKernels()->size(), 1u);
  ASSERT_TRUE(store_->DeleteKernel("debian-6.1").ok());
  EXPECT_EQ(store_->GetKernel("debian-6.1").status().code(), StatusCode::kNotFound);
}

TEST(StateStoreConcurrencyTest, TwoProcessesRacingToPublishOneImageNameHaveOneWinner) {
  TempDir dir;
  // Two connections, as two `banger image pull` processes would have.
  for (int round = 0; round < 20; ++round) {
    auto s1 = StateStore::Open(dir.path());
    auto s2 = StateStore::Open(dir.path());
    ASSERT_TRUE(s1.ok() && s2.ok());
    std::string name = "img" + std::to_string(round);
    std::atomic<bool> go{false};
    Status r1, r2;
    std::thread t1([&] {
      while (!go) std::this_thread::yield();
      r1 = (*s1)->InsertImage(MakeImage(name, name + "-a"));
    });
    std::thread t2([&] {
      while (!go) std::this_thread::yield();
      r2 = (*s2)->InsertImage(MakeImage(name, name + "-b"));
    });
    go = true;
    t1.join();
    t2.join();
    EXPECT_NE(r1.ok(), r2.ok()) << r1.ToString() << " / " << r2.ToString();
    const Status& loser = r1.ok() ? r2 : r1;
    EXPECT_EQ(loser.code(), StatusCode::kAlreadyExists) << loser.ToString();
    auto img = (*s1)->GetImage(name);
    ASSERT_TRUE(img.ok());
    EXPECT_EQ(img->id, r1.ok() ? name + "-a" : name + "-b");
  }
}

TEST(StateStoreConcurrencyTest, EightProcessesOpeningAFreshDatabaseAtOnceAllSucceed) {
  // Two `banger apply` started together on a new host both create the database, switch
  // it to WAL and migrate it. SQLite answers a journal-mode switch that races another
  // connection with SQLITE_BUSY without waiting, so Open must retry it itself.
  for (int round = 0; round < 30; ++round) {
    TempDir dir;
    constexpr int kThreads = 8;
    std::atomic<bool> go{false};
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go) std::this_thread::yield();
        auto s = StateStore::Open(dir.path());
        if (!s.ok()) errors[t] = s.status().ToString();
      });
    }
    go = true;
    for (auto& th : threads) th.join();
    for (const auto& e : errors) ASSERT_TRUE(e.empty()) << "round " << round << ": " << e;
    auto s = StateStore::Open(dir.path());
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(*(*s)->SchemaVersion(), StateStore::LatestSchemaVersion());
  }
}

TEST(StateStoreConcurrencyTest, EightWritersOnSeparateConnectionsSeeNoErrors) {
  TempDir dir;
  constexpr int kThreads = 8;
  constexpr int kOps = 100;
  { ASSERT_TRUE(StateStore::Open(dir.path()).ok()); }
  std::vector<std::unique_ptr<StateStore>> stores;
  for (int t = 0; t < kThreads; ++t) {
    auto s = StateStore::Open(dir.path());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    stores.push_back(std::move(*s));
  }
  std::atomic<int> errors{0};
  std::vector<std::string> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      StateStore& s = *stores[t];
      auto fail = [&](const Status& st) {
        if (!st.ok() && errors++ == 0) first_error[t] = st.ToString();
      };
      for (int i = 0; i < kOps; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string((i / 4) % 10);
        switch (i % 4) {
          case 0: fail(s.PutSandbox(MakeSandbox(name, "h" + std::to_string(i)))); break;
          case 1: fail(s.AddEvent({0, 0, name, "Normal", "Tick", std::to_string(i)})); break;
          case 2: {
            auto op = s.BeginOperation(name, "step", "", SelfProcess());
            fail(op.status());
            if (op.ok()) fail(s.FinishOperation(*op, ""));
            break;
          }
          case 3: fail(s.ListSandboxes().status()); break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : first_error) EXPECT_TRUE(e.empty()) << e;
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(stores[0]->ListEvents("", 0)->size(), static_cast<size_t>(kThreads * kOps / 4));
  EXPECT_EQ(stores[0]->ListOperations("", 0)->size(), static_cast<size_t>(kThreads * kOps / 4));
  EXPECT_TRUE(stores[0]->UnfinishedOperations()->empty());
  EXPECT_EQ(stores[0]->ListSandboxes()->size(), static_cast<size_t>(kThreads * 10));
}

TEST(StateStoreConcurrencyTest, EightThreadsSharingOneStoreSeeNoErrors) {
  TempDir dir;
  auto s = StateStore::Open(dir.path());
  ASSERT_TRUE(s.ok());
  StateStore& store = **s;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        Status st = store.SetSetting("k" + std::to_string(t), std::to_string(i));
        if (!st.ok()) ++errors;
        if (!store.AddEvent({0, 0, "", "Normal", "Tick", ""}).ok()) ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(store.ListEvents("", 0)->size(), 800u);
  EXPECT_EQ(store.GetSetting("k3")->value_or(""), "99");
}

// --- settings ----------------------------------------------------------------

TEST_F(StateStoreTest, SettingsSetGetOverwriteAndMissing) {
  auto missing = store_->GetSetting("accel.verdict");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  ASSERT_TRUE(store_->SetSetting("accel.verdict", "tcg").ok());
  ASSERT_TRUE(store_->SetSetting("accel.verdict", "kvm").ok());
  EXPECT_EQ(store_->GetSetting("accel.verdict")->value_or(""), "kvm");
  ASSERT_TRUE(store_->SetSetting("empty", "").ok());
  auto empty = store_->GetSetting("empty");
  ASSERT_TRUE(empty->has_value()) << "an empty value is still a value";
  EXPECT_EQ(store_->SetSetting("", "x").code(), StatusCode::kInvalidArgument);
}

// --- networks and leases -------------------------------------------------------

NetworkRecord MakeNetwork(const std::string& name, const std::string& bridge, const std::string& subnet) {
  NetworkRecord n;
  n.name = name;
  n.spec_json = "{}";
  n.spec_hash = "h";
  n.subnet = subnet;
  n.gateway = subnet.substr(0, subnet.rfind('.')) + ".1";
  n.bridge = bridge;
  return n;
}

constexpr uint32_t kNet10 = (10u << 24) | (213u << 16);  // 10.213.0.0

TEST_F(StateStoreTest, NetworksRoundTripAndBridgesAreUnique) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("default", "bgr-default", "10.213.0.0/24")).ok());
  auto got = store_->GetNetwork("default");
  ASSERT_TRUE(got.ok()) << got.error().ToString();
  EXPECT_EQ(got->subnet, "10.213.0.0/24");
  EXPECT_EQ(got->gateway, "10.213.0.1");
  EXPECT_EQ(got->created_at, kT0);
  Status clash = store_->PutNetwork(MakeNetwork("other", "bgr-default", "10.213.1.0/24"));
  EXPECT_EQ(clash.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(clash.message().find("bridge bgr-default already belongs to network default"), std::string::npos);
  EXPECT_EQ(store_->GetNetwork("nope").error().code(), StatusCode::kNotFound);
}

TEST_F(StateStoreTest, LeasesAreStablePerSandboxAndReleasedOnRequest) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("default", "bgr-default", "10.213.0.0/24")).ok());
  LeaseRequest q{"default", "web", "02:00:00:00:00:01", "", kNet10 + 2, kNet10 + 254};
  auto a = store_->AcquireLease(q);
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  EXPECT_EQ(a->address, "10.213.0.2");
  auto again = store_->AcquireLease(q);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->address, "10.213.0.2");  // restart/replace keep it
  q.sandbox = "db";
  EXPECT_EQ(store_->AcquireLease(q)->address, "10.213.0.3");
  Status busy = store_->DeleteNetwork("default");
  EXPECT_EQ(busy.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.message().find("still used by sandbox db, web"), std::string::npos) << busy.message();
  ASSERT_TRUE(store_->ReleaseLease("web").ok());
  EXPECT_EQ(store_->GetLease("web").error().code(), StatusCode::kNotFound);
  q.sandbox = "cache";
  EXPECT_EQ(store_->AcquireLease(q)->address, "10.213.0.2");  // freed addresses are reused
}

TEST_F(StateStoreTest, FixedAddressesConflictNamingTheHolder) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("default", "bgr-default", "10.213.0.0/24")).ok());
  LeaseRequest q{"default", "web", "m1", "10.213.0.50", kNet10 + 2, kNet10 + 254};
  ASSERT_EQ(store_->AcquireLease(q)->address, "10.213.0.50");
  q.sandbox = "db";
  auto taken = store_->AcquireLease(q);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(taken.error().message().find("leased to sandbox web"), std::string::npos);
  // Changing the fixed address moves the lease.
  q.sandbox = "web";
  q.fixed_address = "10.213.0.51";
  ASSERT_EQ(store_->AcquireLease(q)->address, "10.213.0.51");
  EXPECT_EQ(store_->ListLeases("default")->size(), 1u);
}

TEST_F(StateStoreTest, FullRangeIsResourceExhausted) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("tiny", "bgr-tiny", "10.213.0.0/29")).ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->AcquireLease({"tiny", "s" + std::to_string(i), "m", "", kNet10 + 2, kNet10 + 6}).ok());
  }
  auto full = store_->AcquireLease({"tiny", "s9", "m", "", kNet10 + 2, kNet10 + 6});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.error().message().find("no free address"), std::string::npos);
}

TEST_F(StateStoreTest, ConcurrentAcquiresFromSeparateConnectionsNeverShareAnAddress) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("default", "bgr-default", "10.213.0.0/24")).ok());
  // Separate StateStore objects: separate SQLite connections, like separate processes.
  constexpr int kN = 8;
  std::vector<std::string> got(kN);
  std::vector<std::thread> threads;
  for (int i = 0; i < kN; ++i) {
    threads.emplace_back([&, i] {
      auto s = StateStore::Open(dir_.path() / "state");
      ASSERT_TRUE(s.ok());
      auto l = (*s)->AcquireLease({"default", "sb" + std::to_string(i), "m", "", kNet10 + 2, kNet10 + 254});
      ASSERT_TRUE(l.ok()) << l.error().ToString();
      got[i] = l->address;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), static_cast<size_t>(kN));
}

TEST_F(StateStoreTest, RestoreLeaseRefusesAnAddressSomeoneElseHolds) {
  ASSERT_TRUE(store_->PutNetwork(MakeNetwork("default", "bgr-default", "10.213.0.0/24")).ok());
  ASSERT_TRUE(store_->AcquireLease({"default", "web", "m", "", kNet10 + 2, kNet10 + 254}).ok());
  ASSERT_TRUE(store_->ReleaseLease("web").ok());
  ASSERT_TRUE(store_->RestoreLease({"default", "10.213.0.2", "web", "m", 0}).ok());
  EXPECT_EQ(store_->GetLease("web")->address, "10.213.0.2");
  Status s = store_->RestoreLease({"default", "10.213.0.2", "db", "m", 0});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace banger
