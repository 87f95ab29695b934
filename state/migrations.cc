#include "state/migrations.h"

#include <string>

namespace banger::state_internal {
namespace {

// Migration 1: the initial schema. STRICT tables (SQLite >= 3.37) so a wrong
// column type is an error instead of a silent conversion.
constexpr std::string_view kMigration1 = R"sql(
CREATE TABLE sandboxes (
  name        TEXT    NOT NULL PRIMARY KEY,
  id          TEXT    NOT NULL UNIQUE,
  owner       TEXT    NOT NULL DEFAULT '',
  spec_json   TEXT    NOT NULL,
  spec_hash   TEXT    NOT NULL,
  generation  INTEGER NOT NULL DEFAULT 1,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE sandbox_status (
  name            TEXT    NOT NULL PRIMARY KEY
                          REFERENCES sandboxes(name) ON DELETE CASCADE ON UPDATE CASCADE,
  phase           TEXT    NOT NULL DEFAULT 'Pending',
  hypervisor      TEXT    NOT NULL DEFAULT '',
  pid             INTEGER NOT NULL DEFAULT 0,
  pid_start_time  INTEGER NOT NULL DEFAULT 0,
  address         TEXT    NOT NULL DEFAULT '',
  runtime_dir     TEXT    NOT NULL DEFAULT '',
  disk_path       TEXT    NOT NULL DEFAULT '',
  image_ref       TEXT    NOT NULL DEFAULT '',
  kernel_ref      TEXT    NOT NULL DEFAULT '',
  last_error      TEXT    NOT NULL DEFAULT '',
  stopped_by_user INTEGER NOT NULL DEFAULT 0 CHECK (stopped_by_user IN (0, 1)),
  provisioned     INTEGER NOT NULL DEFAULT 0 CHECK (provisioned IN (0, 1)),
  restart_count   INTEGER NOT NULL DEFAULT 0,
  next_retry_at   INTEGER NOT NULL DEFAULT 0,
  ready_at        INTEGER NOT NULL DEFAULT 0,
  updated_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE operations (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  sandbox     TEXT    NOT NULL,
  step        TEXT    NOT NULL,
  detail      TEXT    NOT NULL DEFAULT '',
  state       TEXT    NOT NULL CHECK (state IN ('started', 'done', 'failed')),
  error       TEXT    NOT NULL DEFAULT '',
  started_at  INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX operations_by_state ON operations(state);
CREATE INDEX operations_by_sandbox ON operations(sandbox, id);

CREATE TABLE events (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  time     INTEGER NOT NULL,
  sandbox  TEXT    NOT NULL DEFAULT '',
  type     TEXT    NOT NULL,
  reason   TEXT    NOT NULL,
  message  TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX events_by_sandbox ON events(sandbox, id);

CREATE TABLE images (
  name         TEXT    NOT NULL PRIMARY KEY,
  id           TEXT    NOT NULL UNIQUE,
  source       TEXT    NOT NULL DEFAULT '',
  digest       TEXT    NOT NULL DEFAULT '',
  rootfs_path  TEXT    NOT NULL DEFAULT '',
  config_json  TEXT    NOT NULL DEFAULT '',
  size_bytes   INTEGER NOT NULL DEFAULT 0,
  created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE kernels (
  name          TEXT    NOT NULL PRIMARY KEY,
  id            TEXT    NOT NULL UNIQUE,
  source        TEXT    NOT NULL DEFAULT '',
  kernel_path   TEXT    NOT NULL DEFAULT '',
  vmlinux_path  TEXT    NOT NULL DEFAULT '',
  initrd_path   TEXT    NOT NULL DEFAULT '',
  modules_dir   TEXT    NOT NULL DEFAULT '',
  version       TEXT    NOT NULL DEFAULT '',
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
  key    TEXT NOT NULL PRIMARY KEY,
  value  TEXT NOT NULL
) STRICT;
)sql";

// Migration 2: journal rows name the process that owns them (so only a dead
// owner's unfinished steps are abandoned), and watch sources have a status row.
constexpr std::string_view kMigration2 = R"sql(
ALTER TABLE operations ADD COLUMN owner_pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN owner_start_time INTEGER NOT NULL DEFAULT 0;

CREATE TABLE sources (
  key                 TEXT    NOT NULL PRIMARY KEY,
  url                 TEXT    NOT NULL DEFAULT '',
  ref                 TEXT    NOT NULL DEFAULT '',
  owner               TEXT    NOT NULL DEFAULT '',
  applied_revision    TEXT    NOT NULL DEFAULT '',
  applied_summary     TEXT    NOT NULL DEFAULT '',
  applied_at          INTEGER NOT NULL DEFAULT 0,
  seen_revision       TEXT    NOT NULL DEFAULT '',
  last_attempt_at     INTEGER NOT NULL DEFAULT 0,
  last_result         TEXT    NOT NULL DEFAULT '' CHECK (last_result IN ('', 'ok', 'error')),
  last_error          TEXT    NOT NULL DEFAULT '',
  last_error_revision TEXT    NOT NULL DEFAULT '',
  last_success_at     INTEGER NOT NULL DEFAULT 0,
  watcher_pid         INTEGER NOT NULL DEFAULT 0,
  watcher_start_time  INTEGER NOT NULL DEFAULT 0,
  updated_at          INTEGER NOT NULL DEFAULT 0
) STRICT;
)sql";

// Bridged networking (issue 8): declared and implicit networks, and address
// leases. A lease belongs to a sandbox for its whole life (restart and
// replace keep it); the primary key makes an address impossible to hand out
// twice, whichever process asks.
constexpr std::string_view kMigration3 = R"sql(
CREATE TABLE networks (
  name        TEXT    PRIMARY KEY,
  owner       TEXT    NOT NULL DEFAULT '',
  declared    INTEGER NOT NULL DEFAULT 0 CHECK (declared IN (0, 1)),
  spec_json   TEXT    NOT NULL,
  spec_hash   TEXT    NOT NULL,
  subnet      TEXT    NOT NULL,
  gateway     TEXT    NOT NULL,
  bridge      TEXT    NOT NULL UNIQUE,
  created_at  INTEGER NOT NULL DEFAULT 0,
  updated_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE leases (
  network     TEXT    NOT NULL REFERENCES networks(name),
  address     TEXT    NOT NULL,
  sandbox     TEXT    NOT NULL UNIQUE,
  mac         TEXT    NOT NULL,
  created_at  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (network, address)
) STRICT;
)sql";

// Volumes (issue 9): persistent disks owned by a sandbox by name. No foreign
// key to sandboxes: a volume outlives its sandbox's delete and replace, and
// goes only with `banger delete --volumes` or `banger volume rm`.
constexpr std::string_view kMigration4 = R"sql(
CREATE TABLE volumes (
  sandbox      TEXT    NOT NULL,
  name         TEXT    NOT NULL,
  path         TEXT    NOT NULL UNIQUE,
  mount_path   TEXT    NOT NULL DEFAULT '',
  size_bytes   INTEGER NOT NULL CHECK (size_bytes > 0),
  seeded_from  TEXT    NOT NULL DEFAULT 'empty' CHECK (seeded_from IN ('empty', 'image')),
  seed_image   TEXT    NOT NULL DEFAULT '',
  created_at   INTEGER NOT NULL DEFAULT 0,
  updated_at   INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (sandbox, name)
) STRICT;
)sql";

}  // namespace

const std::vector<Migration>& BuiltinMigrations() {
  static const std::vector<Migration> kMigrations = {
      {1, kMigration1},
      {2, kMigration2},
      {3, kMigration3},
      {4, kMigration4},
  };
  return kMigrations;
}

Status ValidateMigrations(const std::vector<Migration>& migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    if (m.version != static_cast<int>(i) + 1) {
      return InvalidArgument("migration #" + std::to_string(i) + " has version " +
                             std::to_string(m.version) + ", want " + std::to_string(i + 1) +
                             " (versions must be 1..N in order)");
    }
    if (m.sql.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      return InvalidArgument("migration " + std::to_string(m.version) + " has no SQL");
    }
  }
  return OkStatus();
}

}  // namespace banger::state_internal
