#include "state/migrations.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "state/sqlite_state_store.h"
#include "state/state_test_util.h"

namespace banger {
namespace {

using state_internal::BuiltinMigrations;
using state_internal::Migration;
using state_internal::OpenSqliteStateStore;
using state_internal::ValidateMigrations;
using state_testing::RawDb;
using state_testing::TempDir;

// A plausible future migration 2: a new column with a default and a new table.
constexpr std::string_view kTestMigration2 = R"sql(
ALTER TABLE sandboxes ADD COLUMN labels_json TEXT NOT NULL DEFAULT '{}';
CREATE TABLE snapshots (
  id       TEXT NOT NULL PRIMARY KEY,
  sandbox  TEXT NOT NULL REFERENCES sandboxes(name) ON DELETE CASCADE
) STRICT;
)sql";

std::vector<Migration> WithMigration2(std::string_view sql = kTestMigration2) {
  std::vector<Migration> m = BuiltinMigrations();
  m.push_back({static_cast<int>(m.size()) + 1, sql});
  return m;
}

SandboxRecord Sandbox(const std::string& name) {
  SandboxRecord r;
  r.name = name;
  r.id = "sb-" + name;
  r.spec_json = "{}";
  r.spec_hash = "h";
  r.phase = SandboxPhase::kReady;
  r.pid = 77;
  return r;
}

TEST(MigrationsTest, BuiltinListIsWellFormed) {
  EXPECT_TRUE(ValidateMigrations(BuiltinMigrations()).ok());
  EXPECT_EQ(BuiltinMigrations().front().version, 1);
}

TEST(MigrationsTest, ValidateRejectsGapsDuplicatesAndEmptySql) {
  EXPECT_EQ(ValidateMigrations({{1, "SELECT 1"}, {3, "SELECT 1"}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMigrations({{1, "SELECT 1"}, {1, "SELECT 1"}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateMigrations({{1, "  \n"}}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateMigrations({}).ok());
}

TEST(MigrationsTest, FutureMigrationUpgradesV1DatabaseAndKeepsData) {
  TempDir dir;
  const std::string db = (dir.path() / "state.db").string();
  const int v1 = static_cast<int>(BuiltinMigrations().size());
  {
    auto s = OpenSqliteStateStore(db, BuiltinMigrations(), nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->PutSandbox(Sandbox("web")).ok());
    ASSERT_TRUE((*s)->SetSetting("serial", "7").ok());
    EXPECT_EQ(*(*s)->SchemaVersion(), v1);
  }
  auto s = OpenSqliteStateStore(db, WithMigration2(), nullptr);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*(*s)->SchemaVersion(), v1 + 1);
  auto web = (*s)->GetSandbox("web");
  ASSERT_TRUE(web.ok()) << web.status().ToString();
  EXPECT_EQ(web->id, "sb-web");
  EXPECT_EQ(web->phase, SandboxPhase::kReady);
  EXPECT_EQ(web->pid, 77);
  EXPECT_EQ((*s)->GetSetting("serial")->value_or(""), "7");
  // The store keeps working on the new schema.
  ASSERT_TRUE((*s)->PutSandbox(Sandbox("db")).ok());
  RawDb raw(db);
  EXPECT_EQ(raw.Query("SELECT labels_json FROM sandboxes WHERE name='web'"), "{}");
  raw.Exec("INSERT INTO snapshots VALUES ('snap-1', 'web')");
  EXPECT_EQ(raw.Query("SELECT count(*) FROM snapshots"), "1");

  // The v1 binary now refuses this database instead of misreading it.
  s = OpenSqliteStateStore(db, BuiltinMigrations(), nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
}

TEST(MigrationsTest, FailingMigrationRollsBackCompletely) {
  TempDir dir;
  const std::string db = (dir.path() / "state.db").string();
  {
    auto s = OpenSqliteStateStore(db, BuiltinMigrations(), nullptr);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->PutSandbox(Sandbox("web")).ok());
  }
  // First statement succeeds, second fails: neither may remain.
  auto s = OpenSqliteStateStore(
      db, WithMigration2("CREATE TABLE half_done (x INTEGER);\nSELECT * FROM no_such_table;"),
      nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("schema migration " + std::to_string(BuiltinMigrations().size() + 1)),
            std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find(db), std::string::npos) << s.status().message();
  RawDb raw(db);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(BuiltinMigrations().size()));
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sqlite_master WHERE name='half_done'"), "0");
  EXPECT_EQ(raw.Query("SELECT id FROM sandboxes WHERE name='web'"), "sb-web");
}

TEST(MigrationsTest, MigrationLeavingForeignKeyViolationIsRejected) {
  TempDir dir;
  const std::string db = (dir.path() / "state.db").string();
  { ASSERT_TRUE(OpenSqliteStateStore(db, BuiltinMigrations(), nullptr).ok()); }
  // With foreign_keys=ON an INSERT would fail at once; disabling the check
  // for this transaction lets the violation reach foreign_key_check.
  auto s = OpenSqliteStateStore(
      db,
      WithMigration2("PRAGMA defer_foreign_keys = ON;\n"
                     "INSERT INTO sandbox_status (name, updated_at) VALUES ('orphan', 0);"),
      nullptr);
  ASSERT_FALSE(s.ok());
  RawDb raw(db);
  EXPECT_EQ(raw.Query("PRAGMA user_version"), std::to_string(BuiltinMigrations().size()));
  EXPECT_EQ(raw.Query("SELECT count(*) FROM sandbox_status"), "0");
}

TEST(MigrationsTest, Version2KeepsV1JournalAndAbandonsItsOwnerlessSteps) {
  // Given a database written by a banger that knew only migration 1, with a
  // step left "started"; when this banger opens it, the rows survive, the
  // step has no known owner and is abandoned, and sources can be recorded.
  TempDir dir;
  const std::string db = (dir.path() / "state.db").string();
  {
    std::vector<Migration> v1 = {BuiltinMigrations().front()};
    auto s = OpenSqliteStateStore(db, v1, nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    RawDb raw(db);
    raw.Exec("INSERT INTO operations (sandbox, step, state, started_at) VALUES ('web', 'boot_vm', 'started', 5)");
  }
  auto s = OpenSqliteStateStore(db, BuiltinMigrations(), nullptr);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto open = (*s)->UnfinishedOperations();
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].owner.pid, 0);
  auto n = (*s)->AbandonUnfinishedOperations("interrupted", [](const ProcessIdentity&) { return true; });
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1) << "a step with no recorded owner cannot be proven alive";
  SourceRecord src;
  src.key = "git:file:///r#main:.";
  src.last_result = "ok";
  EXPECT_TRUE((*s)->PutSource(src).ok());
}

}  // namespace
}  // namespace banger
