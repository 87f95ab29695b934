#include "state/sqlite_state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/failpoint.h"
#include "base/files.h"

namespace banger {
namespace state_internal {
namespace {

// ---------------------------------------------------------------------------
// Error mapping: the one place a sqlite result code becomes a Status.
// ---------------------------------------------------------------------------
// A full disk said plainly: "no space left on <db path> while <what>: ...".
std::string NoSpaceText(sqlite3* db, std::string_view what, const std::string& detail) {
  const char* file = db != nullptr ? sqlite3_db_filename(db, "main") : nullptr;
  std::string path = file != nullptr && *file ? file : "the state database";
  return "no space left on " + path + " while " + std::string(what) + ": " + detail;
}

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string text = std::string(what) + ": " + (msg ? msg : "unknown error") + " (sqlite " +
                     std::to_string(rc) + ")";
  int sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Unavailable(std::move(text));
    case SQLITE_FULL:
      return ResourceExhausted(NoSpaceText(db, what, text.substr(what.size() + 2)));
    case SQLITE_IOERR:
      if (sys_errno == ENOSPC || sys_errno == EDQUOT) {
        return ResourceExhausted(NoSpaceText(db, what, text.substr(what.size() + 2)));
      }
      return Internal(std::move(text));
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        return AlreadyExists(std::move(text));
      }
      return Internal(std::move(text));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DataLoss(std::move(text));
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return PermissionDenied(std::move(text));
    default:
      return Internal(std::move(text));
  }
}

// ---------------------------------------------------------------------------
// Prepared statements are kept per connection and reused: preparing was
// most of the cost of a watcher's resync pass (one GetSandbox per sandbox).
// A connection is used under its store's mutex; the cache's own mutex only
// guards the map. A statement already in use (a nested identical query) is
// prepared afresh instead.
// ---------------------------------------------------------------------------
struct CachedStmt {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
};
std::mutex g_stmt_cache_mu;
std::unordered_map<sqlite3*, std::unordered_map<std::string, CachedStmt>>& StmtCache() {
  static auto* cache = new std::unordered_map<sqlite3*, std::unordered_map<std::string, CachedStmt>>();
  return *cache;
}

// Finalizes every cached statement of `db` (before closing it).
void ForgetStatements(sqlite3* db) {
  std::lock_guard<std::mutex> l(g_stmt_cache_mu);
  auto it = StmtCache().find(db);
  if (it == StmtCache().end()) return;
  for (auto& [sql, c] : it->second) sqlite3_finalize(c.stmt);
  StmtCache().erase(it);
}

// ---------------------------------------------------------------------------
// Thin RAII statement wrapper.
// ---------------------------------------------------------------------------
class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    {
      std::lock_guard<std::mutex> l(g_stmt_cache_mu);
      auto& per_db = StmtCache()[db];
      auto it = per_db.find(std::string(sql));
      if (it != per_db.end() && !it->second.in_use) {
        it->second.in_use = true;
        stmt_ = it->second.stmt;
        cached_ = &it->second;
        return;
      }
      if (it == per_db.end()) {
        int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &stmt_, nullptr);
        if (rc != SQLITE_OK) {
          status_ = SqliteError(db, rc, "prepare \"" + std::string(sql.substr(0, 60)) + "\"");
          return;
        }
        auto& entry = per_db[std::string(sql)];
        entry.stmt = stmt_;
        entry.in_use = true;
        cached_ = &entry;
        return;
      }
    }
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
    if (rc != SQLITE_OK) {
      status_ = SqliteError(db, rc, "prepare \"" + std::string(sql.substr(0, 60)) + "\"");
    }
  }
  ~Stmt() {
    if (cached_ == nullptr) {
      sqlite3_finalize(stmt_);
      return;
    }
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    std::lock_guard<std::mutex> l(g_stmt_cache_mu);
    cached_->in_use = false;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int idx, std::string_view v) {
    if (status_.ok()) {
      Check(sqlite3_bind_text(stmt_, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    }
    return *this;
  }
  Stmt& Bind(int idx, const std::string& v) { return Bind(idx, std::string_view(v)); }
  Stmt& Bind(int idx, const char* v) { return Bind(idx, std::string_view(v)); }
  Stmt& Bind(int idx, int64_t v) {
    if (status_.ok()) Check(sqlite3_bind_int64(stmt_, idx, v));
    return *this;
  }
  Stmt& Bind(int idx, int v) { return Bind(idx, static_cast<int64_t>(v)); }
  Stmt& Bind(int idx, uint64_t v) { return Bind(idx, static_cast<int64_t>(v)); }
  Stmt& Bind(int idx, bool v) { return Bind(idx, static_cast<int64_t>(v ? 1 : 0)); }

  /// true when a row is available, false when done.
  Result<bool> Step() {
    if (!status_.ok()) return status_;
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    status_ = SqliteError(db_, rc, "execute \"" + Sql() + "\"");
    return status_;
  }
  /// Steps to completion, ignoring rows.
  Status Run() {
    while (true) {
      BANGER_ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return OkStatus();
    }
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK) status_ = SqliteError(db_, rc, "bind \"" + Sql() + "\"");
  }
  std::string Sql() const {
    const char* s = stmt_ ? sqlite3_sql(stmt_) : nullptr;
    std::string out = s ? s : "";
    if (out.size() > 60) out = out.substr(0, 60) + "...";
    return out;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  CachedStmt* cached_ = nullptr;  // entries are never moved: unordered_map nodes are stable
  Status status_;
};

Status Exec(sqlite3* db, const std::string& sql, std::string_view what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  return OkStatus();
}

Result<int> ReadUserVersion(sqlite3* db) {
  Stmt s(db, "PRAGMA user_version");
  BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return Internal("PRAGMA user_version returned no row");
  return static_cast<int>(s.Int(0));
}

// Runs `fn` inside BEGIN IMMEDIATE (write) or BEGIN (read); commits when it
// returns OK, rolls back otherwise.
Status InTxn(sqlite3* db, bool write, const std::function<Status()>& fn) {
  BANGER_RETURN_IF_ERROR(Exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", "begin transaction"));
  Status st = fn();
  if (st.ok() && write) st = failpoint::Hit("state.tx.before_commit");
  if (st.ok()) {
    st = Exec(db, "COMMIT", "commit");
    if (st.ok()) return write ? failpoint::Hit("state.tx.after_commit") : st;
  }
  if (!sqlite3_get_autocommit(db)) {
    Status rb = Exec(db, "ROLLBACK", "rollback");
    if (!rb.ok()) spdlog::warn("state: {}", rb.ToString());
  }
  return st;
}

// Creates the database file with 0600 before SQLite does (SQLite would use
// 0644 & ~umask), and tightens an existing one. SQLite gives -wal and -shm
// files the mode of the database file.
Status PrepareDbFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(errno, "open state database " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "stat state database " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return FailedPrecondition("state database " + path + " is not a regular file");
  }
  if ((st.st_mode & 07777) != 0600 && ::fchmod(fd, 0600) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "chmod 0600 state database " + path);
  }
  ::close(fd);
  return OkStatus();
}

std::string PhaseText(SandboxPhase p) { return std::string(ToString(p)); }

SandboxPhase PhaseFromColumn(const std::string& text, const std::string& sandbox) {
  if (text.empty()) return SandboxPhase::kPending;
  auto p = SandboxPhaseFromString(text);
  if (!p.ok()) {
    spdlog::warn("state: sandbox {} has unknown phase \"{}\"; treating it as Unknown", sandbox,
                 text);
    return SandboxPhase::kUnknown;
  }
  return *p;
}

// Column order shared by GetSandbox/ListSandboxes.
constexpr std::string_view kSandboxSelect =
    "SELECT s.name, s.id, s.owner, s.spec_json, s.spec_hash, s.generation, s.created_at, "
    "s.updated_at, st.phase, st.hypervisor, st.pid, st.pid_start_time, st.address, "
    "st.runtime_dir, st.disk_path, st.image_ref, st.kernel_ref, st.last_error, "
    "st.stopped_by_user, st.provisioned, st.restart_count, st.next_retry_at, st.ready_at "
    "FROM sandboxes s LEFT JOIN sandbox_status st ON st.name = s.name ";

SandboxRecord ReadSandbox(const Stmt& s) {
  SandboxRecord r;
  r.name = s.Text(0);
  r.id = s.Text(1);
  r.owner = s.Text(2);
  r.spec_json = s.Text(3);
  r.spec_hash = s.Text(4);
  r.generation = s.Int(5);
  r.created_at = s.Int(6);
  r.updated_at = s.Int(7);
  r.phase = PhaseFromColumn(s.Text(8), r.name);
  r.hypervisor = s.Text(9);
  r.pid = static_cast<int>(s.Int(10));
  r.pid_start_time = static_cast<uint64_t>(s.Int(11));
  r.address = s.Text(12);
  r.runtime_dir = s.Text(13);
  r.disk_path = s.Text(14);
  r.image_ref = s.Text(15);
  r.kernel_ref = s.Text(16);
  r.last_error = s.Text(17);
  r.stopped_by_user = s.Int(18) != 0;
  r.provisioned = s.Int(19) != 0;
  r.restart_count = static_cast<int>(s.Int(20));
  r.next_retry_at = s.Int(21);
  r.ready_at = s.Int(22);
  return r;
}

constexpr std::string_view kOperationColumns =
    "id, sandbox, step, detail, state, error, started_at, finished_at, owner_pid, owner_start_time";

OperationRecord ReadOperation(const Stmt& s) {
  OperationRecord o;
  o.id = s.Int(0);
  o.sandbox = s.Text(1);
  o.step = s.Text(2);
  o.detail = s.Text(3);
  o.state = s.Text(4);
  o.error = s.Text(5);
  o.started_at = s.Int(6);
  o.finished_at = s.Int(7);
  o.owner.pid = static_cast<int>(s.Int(8));
  o.owner.start_time = static_cast<uint64_t>(s.Int(9));
  return o;
}

constexpr std::string_view kSourceColumns =
    "key, url, ref, owner, applied_revision, applied_summary, applied_at, seen_revision, "
    "last_attempt_at, last_result, last_error, last_error_revision, last_success_at, watcher_pid, "
    "watcher_start_time, updated_at";

SourceRecord ReadSource(const Stmt& s) {
  SourceRecord r;
  r.key = s.Text(0);
  r.url = s.Text(1);
  r.ref = s.Text(2);
  r.owner = s.Text(3);
  r.applied_revision = s.Text(4);
  r.applied_summary = s.Text(5);
  r.applied_at = s.Int(6);
  r.seen_revision = s.Text(7);
  r.last_attempt_at = s.Int(8);
  r.last_result = s.Text(9);
  r.last_error = s.Text(10);
  r.last_error_revision = s.Text(11);
  r.last_success_at = s.Int(12);
  r.watcher.pid = static_cast<int>(s.Int(13));
  r.watcher.start_time = static_cast<uint64_t>(s.Int(14));
  r.updated_at = s.Int(15);
  return r;
}

constexpr std::string_view kNetworkColumns =
    "name, owner, declared, spec_json, spec_hash, subnet, gateway, bridge, created_at, updated_at";

NetworkRecord ReadNetwork(const Stmt& s) {
  NetworkRecord r;
  r.name = s.Text(0);
  r.owner = s.Text(1);
  r.declared = s.Int(2) != 0;
  r.spec_json = s.Text(3);
  r.spec_hash = s.Text(4);
  r.subnet = s.Text(5);
  r.gateway = s.Text(6);
  r.bridge = s.Text(7);
  r.created_at = s.Int(8);
  r.updated_at = s.Int(9);
  return r;
}

constexpr std::string_view kLeaseColumns = "network, address, sandbox, mac, created_at";

LeaseRecord ReadLease(const Stmt& s) {
  return LeaseRecord{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)};
}

constexpr std::string_view kVolumeColumns =
    "sandbox, name, path, mount_path, size_bytes, seeded_from, seed_image, created_at, updated_at";

VolumeRecord ReadVolume(const Stmt& s) {
  VolumeRecord v;
  v.sandbox = s.Text(0);
  v.name = s.Text(1);
  v.path = s.Text(2);
  v.mount_path = s.Text(3);
  v.size_bytes = static_cast<uint64_t>(s.Int(4));
  v.seeded_from = s.Text(5);
  v.seed_image = s.Text(6);
  v.created_at = s.Int(7);
  v.updated_at = s.Int(8);
  return v;
}

std::string Dotted(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

uint32_t FromDotted(const std::string& text) {
  uint32_t v = 0;
  int parts = 0;
  unsigned cur = 0;
  for (char c : text + ".") {
    if (c == '.') {
      v = (v << 8) | (cur & 0xff);
      cur = 0;
      ++parts;
    } else {
      cur = cur * 10 + static_cast<unsigned>(c - '0');
    }
  }
  return parts == 4 ? v : 0;
}

constexpr std::string_view kImageColumns =
    "name, id, source, digest, rootfs_path, config_json, size_bytes, created_at";

ImageRecord ReadImage(const Stmt& s) {
  ImageRecord i;
  i.name = s.Text(0);
  i.id = s.Text(1);
  i.source = s.Text(2);
  i.digest = s.Text(3);
  i.rootfs_path = s.Text(4);
  i.config_json = s.Text(5);
  i.size_bytes = static_cast<uint64_t>(s.Int(6));
  i.created_at = s.Int(7);
  return i;
}

constexpr std::string_view kKernelColumns =
    "name, id, source, kernel_path, vmlinux_path, initrd_path, modules_dir, version, created_at";

KernelRecord ReadKernel(const Stmt& s) {
  KernelRecord k;
  k.name = s.Text(0);
  k.id = s.Text(1);
  k.source = s.Text(2);
  k.kernel_path = s.Text(3);
  k.vmlinux_path = s.Text(4);
  k.initrd_path = s.Text(5);
  k.modules_dir = s.Text(6);
  k.version = s.Text(7);
  k.created_at = s.Int(8);
  return k;
}

// ---------------------------------------------------------------------------
// The store.
// ---------------------------------------------------------------------------
class SqliteStateStore final : public StateStore {
 public:
  SqliteStateStore(sqlite3* db, std::string path, std::shared_ptr<const Clock> clock)
      : db_(db), path_(std::move(path)), clock_(std::move(clock)) {}
  ~SqliteStateStore() override {
    ForgetStatements(db_);
    sqlite3_close_v2(db_);
  }

  Status Migrate(const std::vector<Migration>& migrations);

  Result<int> SchemaVersion() override {
    std::lock_guard lock(mu_);
    return ReadUserVersion(db_);
  }

  // --- sandboxes ---
  Result<std::vector<SandboxRecord>> ListSandboxes() override {
    std::vector<SandboxRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, std::string(kSandboxSelect) + "ORDER BY s.name");
      while (true) {
        BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) return OkStatus();
        out.push_back(ReadSandbox(s));
      }
    }).WithContext(Where("list sandboxes")));
    return out;
  }

  Result<SandboxRecord> GetSandbox(const std::string& name) override {
    SandboxRecord rec;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, std::string(kSandboxSelect) + "WHERE s.name = ?1");
      s.Bind(1, name);
      BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return NotFound("sandbox \"" + name + "\" not found");
      rec = ReadSandbox(s);
      return OkStatus();
    }));
    return rec;
  }

  Status PutSandbox(const SandboxRecord& r) override {
    if (r.name.empty()) return InvalidArgument("PutSandbox: sandbox name is empty");
    if (r.id.empty()) return InvalidArgument("PutSandbox: sandbox \"" + r.name + "\" has no id");
    const int64_t now = Now();
    return Write([&]() -> Status {
      Stmt q(db_, "SELECT id, owner, spec_json, spec_hash, generation FROM sandboxes WHERE name = ?1");
      q.Bind(1, r.name);
      BANGER_ASSIGN_OR_RETURN(bool exists, q.Step());
      if (!exists) {
        Stmt ins(db_,
                 "INSERT INTO sandboxes (name, id, owner, spec_json, spec_hash, generation, "
                 "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)");
        ins.Bind(1, r.name).Bind(2, r.id).Bind(3, r.owner).Bind(4, r.spec_json)
            .Bind(5, r.spec_hash).Bind(6, r.created_at != 0 ? r.created_at : now).Bind(7, now);
        BANGER_RETURN_IF_ERROR(ins.Run());
      } else {
        const bool hash_changed = q.Text(3) != r.spec_hash;
        const bool desired_changed = hash_changed || q.Text(0) != r.id ||
                                     q.Text(1) != r.owner || q.Text(2) != r.spec_json;
        const int64_t generation = q.Int(4) + (hash_changed ? 1 : 0);
        if (desired_changed) {
          Stmt up(db_,
                  "UPDATE sandboxes SET id = ?2, owner = ?3, spec_json = ?4, spec_hash = ?5, "
                  "generation = ?6, updated_at = ?7 WHERE name = ?1");
          up.Bind(1, r.name).Bind(2, r.id).Bind(3, r.owner).Bind(4, r.spec_json)
              .Bind(5, r.spec_hash).Bind(6, generation).Bind(7, now);
          BANGER_RETURN_IF_ERROR(up.Run());
        }
      }
      return WriteObserved(r, now);
    }).WithContext(Where("put sandbox \"" + r.name + "\""));
  }

  Status UpdateObserved(const SandboxRecord& r) override {
    const int64_t now = Now();
    return Write([&]() -> Status {
      Stmt q(db_, "SELECT 1 FROM sandboxes WHERE name = ?1");
      q.Bind(1, r.name);
      BANGER_ASSIGN_OR_RETURN(bool exists, q.Step());
      if (!exists) return NotFound("sandbox \"" + r.name + "\" not found");
      return WriteObserved(r, now);
    }).WithContext(Where("update observed state of sandbox \"" + r.name + "\""));
  }

  Status DeleteSandbox(const std::string& name) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM sandboxes WHERE name = ?1");
      s.Bind(1, name);
      return s.Run();
    }).WithContext(Where("delete sandbox \"" + name + "\""));
  }

  // --- journal ---
  Result<int64_t> BeginOperation(const std::string& sandbox, const std::string& step,
                                 const std::string& detail, const ProcessIdentity& owner) override {
    if (step.empty()) return InvalidArgument("BeginOperation: step name is empty");
    const int64_t now = Now();
    int64_t id = 0;
    BANGER_RETURN_IF_ERROR(Write([&]() -> Status {
      Stmt s(db_,
             "INSERT INTO operations (sandbox, step, detail, state, started_at, owner_pid, "
             "owner_start_time) VALUES (?1, ?2, ?3, 'started', ?4, ?5, ?6)");
      s.Bind(1, sandbox).Bind(2, step).Bind(3, detail).Bind(4, now);
      s.Bind(5, static_cast<int64_t>(owner.pid)).Bind(6, static_cast<int64_t>(owner.start_time));
      BANGER_RETURN_IF_ERROR(s.Run());
      id = sqlite3_last_insert_rowid(db_);
      return OkStatus();
    }).WithContext(Where("begin operation " + step + " for \"" + sandbox + "\"")));
    return id;
  }

  Status FinishOperation(int64_t op_id, const std::string& error) override {
    const int64_t now = Now();
    const std::string what = "finish operation " + std::to_string(op_id);
    return Write([&]() -> Status {
      Stmt q(db_, "SELECT state FROM operations WHERE id = ?1");
      q.Bind(1, op_id);
      BANGER_ASSIGN_OR_RETURN(bool exists, q.Step());
      if (!exists) return NotFound("operation " + std::to_string(op_id) + " not found");
      std::string state = q.Text(0);
      if (state != "started") {
        return FailedPrecondition("operation " + std::to_string(op_id) + " is already " + state);
      }
      Stmt up(db_, "UPDATE operations SET state = ?2, error = ?3, finished_at = ?4 WHERE id = ?1");
      up.Bind(1, op_id).Bind(2, error.empty() ? "done" : "failed").Bind(3, error).Bind(4, now);
      return up.Run();
    }).WithContext(Where(what));
  }

  Result<std::vector<OperationRecord>> UnfinishedOperations() override {
    std::vector<OperationRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kOperationColumns) +
                      " FROM operations WHERE state = 'started' ORDER BY id");
      return Collect(s, out, ReadOperation);
    }).WithContext(Where("list unfinished operations")));
    return out;
  }

  Result<std::vector<OperationRecord>> ListOperations(const std::string& sandbox,
                                                      int limit) override {
    std::vector<OperationRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT * FROM (SELECT " + std::string(kOperationColumns) +
                      " FROM operations WHERE (?1 = '' OR sandbox = ?1) ORDER BY id DESC "
                      "LIMIT ?2) ORDER BY id");
      s.Bind(1, sandbox).Bind(2, static_cast<int64_t>(limit > 0 ? limit : -1));
      return Collect(s, out, ReadOperation);
    }).WithContext(Where("list operations")));
    return out;
  }

  Result<int> AbandonUnfinishedOperations(
      const std::string& reason,
      const std::function<bool(const ProcessIdentity&)>& owner_alive) override {
    const int64_t now = Now();
    int abandoned = 0;
    BANGER_RETURN_IF_ERROR(Write([&]() -> Status {
      std::vector<OperationRecord> open;
      Stmt q(db_, "SELECT " + std::string(kOperationColumns) +
                      " FROM operations WHERE state = 'started' ORDER BY id");
      BANGER_RETURN_IF_ERROR(Collect(q, open, ReadOperation));
      for (const auto& op : open) {
        if (op.owner.pid != 0 && owner_alive && owner_alive(op.owner)) continue;
        Stmt s(db_,
               "UPDATE operations SET state = 'failed', error = ?1, finished_at = ?2 "
               "WHERE id = ?3 AND state = 'started'");
        s.Bind(1, reason.empty() ? std::string("abandoned") : reason).Bind(2, now).Bind(3, op.id);
        BANGER_RETURN_IF_ERROR(s.Run());
        abandoned += sqlite3_changes(db_);
      }
      return OkStatus();
    }).WithContext(Where("abandon unfinished operations")));
    if (abandoned > 0) {
      spdlog::info("state: marked {} interrupted operation(s) failed: {}", abandoned, reason);
    }
    return abandoned;
  }

  // --- events ---
  Status AddEvent(const EventRecord& e) override {
    if (e.type != "Normal" && e.type != "Warning") {
      return InvalidArgument("event type \"" + e.type + "\" is not Normal or Warning");
    }
    if (e.reason.empty()) return InvalidArgument("event has no reason");
    const int64_t time = e.time != 0 ? e.time : Now();
    return Write([&]() -> Status {
      Stmt s(db_,
             "INSERT INTO events (time, sandbox, type, reason, message) VALUES (?1, ?2, ?3, ?4, ?5)");
      s.Bind(1, time).Bind(2, e.sandbox).Bind(3, e.type).Bind(4, e.reason).Bind(5, e.message);
      return s.Run();
    }).WithContext(Where("add event " + e.reason));
  }

  Result<std::vector<EventRecord>> ListEvents(const std::string& sandbox, int limit,
                                              int64_t after_id) override {
    std::vector<EventRecord> out;
    // Without after_id: the newest `limit`, returned oldest first. With it:
    // the first `limit` after after_id, so a follower never skips events.
    const char* order = after_id > 0 ? "ASC" : "DESC";
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, std::string("SELECT * FROM (SELECT id, time, sandbox, type, reason, message "
                              "FROM events WHERE (?1 = '' OR sandbox = ?1) AND id > ?2 "
                              "ORDER BY id ") +
                      order + " LIMIT ?3) ORDER BY id");
      s.Bind(1, sandbox).Bind(2, after_id).Bind(3, static_cast<int64_t>(limit > 0 ? limit : -1));
      return Collect(s, out, [](const Stmt& st) {
        EventRecord e;
        e.id = st.Int(0);
        e.time = st.Int(1);
        e.sandbox = st.Text(2);
        e.type = st.Text(3);
        e.reason = st.Text(4);
        e.message = st.Text(5);
        return e;
      });
    }).WithContext(Where("list events")));
    return out;
  }

  // --- images ---
  Result<std::vector<ImageRecord>> ListImages() override {
    std::vector<ImageRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kImageColumns) + " FROM images ORDER BY name");
      return Collect(s, out, ReadImage);
    }).WithContext(Where("list images")));
    return out;
  }

  Result<ImageRecord> GetImage(const std::string& name) override {
    ImageRecord rec;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kImageColumns) + " FROM images WHERE name = ?1");
      s.Bind(1, name);
      BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return NotFound("image \"" + name + "\" not found");
      rec = ReadImage(s);
      return OkStatus();
    }));
    return rec;
  }

  Status InsertImage(const ImageRecord& i) override {
    if (i.name.empty() || i.id.empty()) {
      return InvalidArgument("InsertImage: image name and id must be set");
    }
    const int64_t created = i.created_at != 0 ? i.created_at : Now();
    Status st = Write([&]() -> Status {
      Stmt s(db_, "INSERT INTO images (" + std::string(kImageColumns) +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
      s.Bind(1, i.name).Bind(2, i.id).Bind(3, i.source).Bind(4, i.digest).Bind(5, i.rootfs_path)
          .Bind(6, i.config_json).Bind(7, i.size_bytes).Bind(8, created);
      return s.Run();
    });
    if (st.code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("image name \"" + i.name + "\" (id " + i.id +
                           ") is already taken: " + st.message());
    }
    return st.WithContext(Where("insert image \"" + i.name + "\""));
  }

  Status DeleteImage(const std::string& name) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM images WHERE name = ?1");
      s.Bind(1, name);
      return s.Run();
    }).WithContext(Where("delete image \"" + name + "\""));
  }

  // --- kernels ---
  Result<std::vector<KernelRecord>> ListKernels() override {
    std::vector<KernelRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kKernelColumns) + " FROM kernels ORDER BY name");
      return Collect(s, out, ReadKernel);
    }).WithContext(Where("list kernels")));
    return out;
  }

  Result<KernelRecord> GetKernel(const std::string& name) override {
    KernelRecord rec;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kKernelColumns) + " FROM kernels WHERE name = ?1");
      s.Bind(1, name);
      BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return NotFound("kernel \"" + name + "\" not found");
      rec = ReadKernel(s);
      return OkStatus();
    }));
    return rec;
  }

  Status InsertKernel(const KernelRecord& k) override {
    if (k.name.empty() || k.id.empty()) {
      return InvalidArgument("InsertKernel: kernel name and id must be set");
    }
    const int64_t created = k.created_at != 0 ? k.created_at : Now();
    Status st = Write([&]() -> Status {
      Stmt s(db_, "INSERT INTO kernels (" + std::string(kKernelColumns) +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
      s.Bind(1, k.name).Bind(2, k.id).Bind(3, k.source).Bind(4, k.kernel_path)
          .Bind(5, k.vmlinux_path).Bind(6, k.initrd_path).Bind(7, k.modules_dir)
          .Bind(8, k.version).Bind(9, created);
      return s.Run();
    });
    if (st.code() == StatusCode::kAlreadyExists) {
      return AlreadyExists("kernel name \"" + k.name + "\" (id " + k.id +
                           ") is already taken: " + st.message());
    }
    return st.WithContext(Where("insert kernel \"" + k.name + "\""));
  }

  Status DeleteKernel(const std::string& name) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM kernels WHERE name = ?1");
      s.Bind(1, name);
      return s.Run();
    }).WithContext(Where("delete kernel \"" + name + "\""));
  }

  // --- settings ---
  // --- watch sources ---
  Result<std::vector<SourceRecord>> ListSources() override {
    std::vector<SourceRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kSourceColumns) + " FROM sources ORDER BY key");
      return Collect(s, out, ReadSource);
    }).WithContext(Where("list sources")));
    return out;
  }

  Result<SourceRecord> GetSource(const std::string& key) override {
    SourceRecord r;
    bool found = false;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kSourceColumns) + " FROM sources WHERE key = ?1");
      s.Bind(1, key);
      BANGER_ASSIGN_OR_RETURN(found, s.Step());
      if (found) r = ReadSource(s);
      return OkStatus();
    }).WithContext(Where("get source " + key)));
    if (!found) return NotFound("source \"" + key + "\" not found");
    return r;
  }

  Status PutSource(const SourceRecord& r) override {
    if (r.key.empty()) return InvalidArgument("PutSource: key is empty");
    if (r.last_result != "" && r.last_result != "ok" && r.last_result != "error") {
      return InvalidArgument("PutSource: last_result \"" + r.last_result + "\" is not ok or error");
    }
    const int64_t now = Now();
    return Write([&]() -> Status {
      Stmt s(db_, "INSERT OR REPLACE INTO sources (" + std::string(kSourceColumns) +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)");
      s.Bind(1, r.key).Bind(2, r.url).Bind(3, r.ref).Bind(4, r.owner).Bind(5, r.applied_revision);
      s.Bind(6, r.applied_summary).Bind(7, r.applied_at).Bind(8, r.seen_revision);
      s.Bind(9, r.last_attempt_at).Bind(10, r.last_result).Bind(11, r.last_error);
      s.Bind(12, r.last_error_revision).Bind(13, r.last_success_at);
      s.Bind(14, static_cast<int64_t>(r.watcher.pid)).Bind(15, static_cast<int64_t>(r.watcher.start_time));
      s.Bind(16, now);
      return s.Run();
    }).WithContext(Where("record source " + r.key));
  }

  Status DeleteSource(const std::string& key) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM sources WHERE key = ?1");
      s.Bind(1, key);
      return s.Run();
    }).WithContext(Where("delete source " + key));
  }

  Result<std::vector<NetworkRecord>> ListNetworks() override {
    std::vector<NetworkRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kNetworkColumns) + " FROM networks ORDER BY name");
      return Collect(s, out, ReadNetwork);
    }).WithContext(Where("list networks")));
    return out;
  }

  Result<NetworkRecord> GetNetwork(const std::string& name) override {
    NetworkRecord r;
    bool found = false;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kNetworkColumns) + " FROM networks WHERE name = ?1");
      s.Bind(1, name);
      BANGER_ASSIGN_OR_RETURN(found, s.Step());
      if (found) r = ReadNetwork(s);
      return OkStatus();
    }).WithContext(Where("get network " + name)));
    if (!found) return NotFound("network \"" + name + "\" not found");
    return r;
  }

  Status PutNetwork(const NetworkRecord& r) override {
    if (r.name.empty() || r.bridge.empty() || r.subnet.empty()) {
      return InvalidArgument("PutNetwork: name, bridge and subnet are required");
    }
    const int64_t now = Now();
    return Write([&]() -> Status {
      Stmt clash(db_, "SELECT name FROM networks WHERE bridge = ?1 AND name != ?2");
      clash.Bind(1, r.bridge).Bind(2, r.name);
      BANGER_ASSIGN_OR_RETURN(bool taken, clash.Step());
      if (taken) {
        return AlreadyExists("bridge " + r.bridge + " already belongs to network " + clash.Text(0));
      }
      Stmt s(db_, "INSERT INTO networks (" + std::string(kNetworkColumns) +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(name) DO UPDATE SET "
                      "owner = excluded.owner, declared = excluded.declared, spec_json = excluded.spec_json, "
                      "spec_hash = excluded.spec_hash, subnet = excluded.subnet, gateway = excluded.gateway, "
                      "bridge = excluded.bridge, updated_at = excluded.updated_at");
      s.Bind(1, r.name).Bind(2, r.owner).Bind(3, r.declared).Bind(4, r.spec_json).Bind(5, r.spec_hash);
      s.Bind(6, r.subnet).Bind(7, r.gateway).Bind(8, r.bridge).Bind(9, r.created_at != 0 ? r.created_at : now);
      s.Bind(10, now);
      return s.Run();
    }).WithContext(Where("record network " + r.name));
  }

  Status DeleteNetwork(const std::string& name) override {
    return Write([&]() -> Status {
      Stmt users(db_, "SELECT sandbox FROM leases WHERE network = ?1 ORDER BY sandbox");
      users.Bind(1, name);
      std::vector<std::string> names;
      BANGER_RETURN_IF_ERROR(Collect(users, names, [](const Stmt& st) { return st.Text(0); }));
      if (!names.empty()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        return FailedPrecondition("network " + name + " is still used by sandbox " + list);
      }
      Stmt s(db_, "DELETE FROM networks WHERE name = ?1");
      s.Bind(1, name);
      return s.Run();
    }).WithContext(Where("delete network " + name));
  }

  // --- volumes ---
  Result<std::vector<VolumeRecord>> ListVolumes(const std::string& sandbox) override {
    std::vector<VolumeRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kVolumeColumns) +
                      " FROM volumes WHERE ?1 = '' OR sandbox = ?1 ORDER BY sandbox, name");
      s.Bind(1, sandbox);
      return Collect(s, out, ReadVolume);
    }).WithContext(Where("list volumes")));
    return out;
  }

  Result<VolumeRecord> GetVolume(const std::string& sandbox, const std::string& name) override {
    VolumeRecord r;
    bool found = false;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kVolumeColumns) + " FROM volumes WHERE sandbox = ?1 AND name = ?2");
      s.Bind(1, sandbox).Bind(2, name);
      BANGER_ASSIGN_OR_RETURN(found, s.Step());
      if (found) r = ReadVolume(s);
      return OkStatus();
    }).WithContext(Where("get volume " + sandbox + "/" + name)));
    if (!found) return NotFound("volume \"" + sandbox + "/" + name + "\" not found");
    return r;
  }

  Status PutVolume(const VolumeRecord& v) override {
    if (v.sandbox.empty() || v.name.empty() || v.path.empty() || v.size_bytes == 0) {
      return InvalidArgument("PutVolume: sandbox, name, path and size are required");
    }
    if (v.seeded_from != "empty" && v.seeded_from != "image") {
      return InvalidArgument("PutVolume: seeded_from must be empty or image, not \"" + v.seeded_from + "\"");
    }
    const int64_t now = Now();
    return Write([&]() -> Status {
      Stmt s(db_, "INSERT INTO volumes (" + std::string(kVolumeColumns) +
                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(sandbox, name) DO UPDATE SET "
                      "path = excluded.path, mount_path = excluded.mount_path, size_bytes = excluded.size_bytes, "
                      "seeded_from = excluded.seeded_from, seed_image = excluded.seed_image, "
                      "updated_at = excluded.updated_at");
      s.Bind(1, v.sandbox).Bind(2, v.name).Bind(3, v.path).Bind(4, v.mount_path).Bind(5, v.size_bytes);
      s.Bind(6, v.seeded_from).Bind(7, v.seed_image).Bind(8, v.created_at != 0 ? v.created_at : now).Bind(9, now);
      return s.Run();
    }).WithContext(Where("record volume " + v.sandbox + "/" + v.name));
  }

  Status DeleteVolume(const std::string& sandbox, const std::string& name) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM volumes WHERE sandbox = ?1 AND name = ?2");
      s.Bind(1, sandbox).Bind(2, name);
      return s.Run();
    }).WithContext(Where("delete volume " + sandbox + "/" + name));
  }

  Result<std::vector<LeaseRecord>> ListLeases(const std::string& network) override {
    std::vector<LeaseRecord> out;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kLeaseColumns) + " FROM leases WHERE ?1 = '' OR network = ?1");
      s.Bind(1, network);
      return Collect(s, out, ReadLease);
    }).WithContext(Where("list leases")));
    std::sort(out.begin(), out.end(), [](const LeaseRecord& a, const LeaseRecord& b) {
      return std::make_pair(a.network, FromDotted(a.address)) < std::make_pair(b.network, FromDotted(b.address));
    });
    return out;
  }

  Result<LeaseRecord> GetLease(const std::string& sandbox) override {
    LeaseRecord r;
    bool found = false;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT " + std::string(kLeaseColumns) + " FROM leases WHERE sandbox = ?1");
      s.Bind(1, sandbox);
      BANGER_ASSIGN_OR_RETURN(found, s.Step());
      if (found) r = ReadLease(s);
      return OkStatus();
    }).WithContext(Where("get lease of " + sandbox)));
    if (!found) return NotFound("sandbox " + sandbox + " has no address lease");
    return r;
  }

  Result<LeaseRecord> AcquireLease(const LeaseRequest& q) override {
    if (q.network.empty() || q.sandbox.empty()) return InvalidArgument("AcquireLease: network and sandbox are required");
    LeaseRecord out;
    const int64_t now = Now();
    BANGER_RETURN_IF_ERROR(Write([&]() -> Status {
      Stmt mine(db_, "SELECT " + std::string(kLeaseColumns) + " FROM leases WHERE sandbox = ?1");
      mine.Bind(1, q.sandbox);
      BANGER_ASSIGN_OR_RETURN(bool has, mine.Step());
      if (has) {
        LeaseRecord cur = ReadLease(mine);
        if (cur.network == q.network && (q.fixed_address.empty() || q.fixed_address == cur.address)) {
          out = cur;
          return OkStatus();
        }
        Stmt drop(db_, "DELETE FROM leases WHERE sandbox = ?1");
        drop.Bind(1, q.sandbox);
        BANGER_RETURN_IF_ERROR(drop.Run());
      }
      std::string address = q.fixed_address;
      if (!address.empty()) {
        Stmt holder(db_, "SELECT sandbox FROM leases WHERE network = ?1 AND address = ?2");
        holder.Bind(1, q.network).Bind(2, address);
        BANGER_ASSIGN_OR_RETURN(bool taken, holder.Step());
        if (taken) {
          return AlreadyExists("address " + address + " on network " + q.network + " is leased to sandbox " +
                               holder.Text(0));
        }
      } else {
        Stmt used(db_, "SELECT address FROM leases WHERE network = ?1");
        used.Bind(1, q.network);
        std::vector<std::string> taken;
        BANGER_RETURN_IF_ERROR(Collect(used, taken, [](const Stmt& st) { return st.Text(0); }));
        std::vector<uint32_t> nums;
        for (const auto& t : taken) nums.push_back(FromDotted(t));
        std::sort(nums.begin(), nums.end());
        for (uint64_t a = q.first; a <= q.last; ++a) {
          if (!std::binary_search(nums.begin(), nums.end(), static_cast<uint32_t>(a))) {
            address = Dotted(static_cast<uint32_t>(a));
            break;
          }
        }
        if (address.empty()) {
          return ResourceExhausted("network " + q.network + " has no free address left (" +
                                   std::to_string(taken.size()) + " leased); use a larger subnet");
        }
      }
      Stmt ins(db_, "INSERT INTO leases (" + std::string(kLeaseColumns) + ") VALUES (?1, ?2, ?3, ?4, ?5)");
      ins.Bind(1, q.network).Bind(2, address).Bind(3, q.sandbox).Bind(4, q.mac).Bind(5, now);
      BANGER_RETURN_IF_ERROR(ins.Run());
      out = LeaseRecord{q.network, address, q.sandbox, q.mac, now};
      return OkStatus();
    }).WithContext(Where("lease an address on network " + q.network + " for " + q.sandbox)));
    return out;
  }

  Status RestoreLease(const LeaseRecord& l) override {
    return Write([&]() -> Status {
      Stmt holder(db_, "SELECT sandbox FROM leases WHERE network = ?1 AND address = ?2");
      holder.Bind(1, l.network).Bind(2, l.address);
      BANGER_ASSIGN_OR_RETURN(bool taken, holder.Step());
      if (taken && holder.Text(0) != l.sandbox) {
        return AlreadyExists("address " + l.address + " on network " + l.network + " is leased to sandbox " +
                             holder.Text(0));
      }
      Stmt s(db_, "INSERT OR REPLACE INTO leases (" + std::string(kLeaseColumns) + ") VALUES (?1, ?2, ?3, ?4, ?5)");
      s.Bind(1, l.network).Bind(2, l.address).Bind(3, l.sandbox).Bind(4, l.mac);
      s.Bind(5, l.created_at != 0 ? l.created_at : Now());
      return s.Run();
    }).WithContext(Where("restore the lease of " + l.sandbox));
  }

  Status ReleaseLease(const std::string& sandbox) override {
    return Write([&]() -> Status {
      Stmt s(db_, "DELETE FROM leases WHERE sandbox = ?1");
      s.Bind(1, sandbox);
      return s.Run();
    }).WithContext(Where("release the lease of " + sandbox));
  }

  Result<std::optional<std::string>> GetSetting(const std::string& key) override {
    std::optional<std::string> value;
    BANGER_RETURN_IF_ERROR(Read([&]() -> Status {
      Stmt s(db_, "SELECT value FROM settings WHERE key = ?1");
      s.Bind(1, key);
      BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
      if (row) value = s.Text(0);
      return OkStatus();
    }).WithContext(Where("get setting " + key)));
    return value;
  }

  Status SetSetting(const std::string& key, const std::string& value) override {
    if (key.empty()) return InvalidArgument("SetSetting: key is empty");
    return Write([&]() -> Status {
      Stmt s(db_,
             "INSERT INTO settings (key, value) VALUES (?1, ?2) "
             "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
      s.Bind(1, key).Bind(2, value);
      return s.Run();
    }).WithContext(Where("set setting " + key));
  }

 private:
  int64_t Now() const { return clock_->NowUnix(); }
  std::string Where(const std::string& what) const { return what + " in " + path_; }

  Status Write(const std::function<Status()>& fn) {
    std::lock_guard lock(mu_);
    return InTxn(db_, /*write=*/true, fn);
  }
  Status Read(const std::function<Status()>& fn) {
    std::lock_guard lock(mu_);
    return InTxn(db_, /*write=*/false, fn);
  }

  template <typename T, typename F>
  static Status Collect(Stmt& s, std::vector<T>& out, F read) {
    while (true) {
      BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return OkStatus();
      out.push_back(read(s));
    }
  }

  Status WriteObserved(const SandboxRecord& r, int64_t now) {
    Stmt s(db_,
           "INSERT INTO sandbox_status (name, phase, hypervisor, pid, pid_start_time, address, "
           "runtime_dir, disk_path, image_ref, kernel_ref, last_error, stopped_by_user, "
           "provisioned, restart_count, next_retry_at, ready_at, updated_at) VALUES "
           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) "
           "ON CONFLICT(name) DO UPDATE SET phase = excluded.phase, "
           "hypervisor = excluded.hypervisor, pid = excluded.pid, "
           "pid_start_time = excluded.pid_start_time, address = excluded.address, "
           "runtime_dir = excluded.runtime_dir, disk_path = excluded.disk_path, "
           "image_ref = excluded.image_ref, kernel_ref = excluded.kernel_ref, "
           "last_error = excluded.last_error, stopped_by_user = excluded.stopped_by_user, "
           "provisioned = excluded.provisioned, restart_count = excluded.restart_count, "
           "next_retry_at = excluded.next_retry_at, ready_at = excluded.ready_at, "
           "updated_at = excluded.updated_at");
    s.Bind(1, r.name).Bind(2, PhaseText(r.phase)).Bind(3, r.hypervisor).Bind(4, r.pid)
        .Bind(5, r.pid_start_time).Bind(6, r.address).Bind(7, r.runtime_dir).Bind(8, r.disk_path)
        .Bind(9, r.image_ref).Bind(10, r.kernel_ref).Bind(11, r.last_error)
        .Bind(12, r.stopped_by_user).Bind(13, r.provisioned).Bind(14, r.restart_count)
        .Bind(15, r.next_retry_at).Bind(16, r.ready_at).Bind(17, now);
    return s.Run();
  }

  std::mutex mu_;
  sqlite3* db_;
  std::string path_;
  std::shared_ptr<const Clock> clock_;
};

Status SqliteStateStore::Migrate(const std::vector<Migration>& migrations) {
  std::lock_guard lock(mu_);
  const int latest = static_cast<int>(migrations.size());
  BANGER_ASSIGN_OR_RETURN(int current, ReadUserVersion(db_));
  if (current > latest) {
    return FailedPrecondition(path_ + ": state.db schema version " + std::to_string(current) +
                              " is newer than this banger (knows up to " +
                              std::to_string(latest) + "); upgrade banger");
  }
  for (const Migration& m : migrations) {
    if (m.version <= current) continue;
    bool applied = false;
    Status st = InTxn(db_, /*write=*/true, [&]() -> Status {
      // Another process may have migrated while we waited for the write lock.
      BANGER_ASSIGN_OR_RETURN(int now_version, ReadUserVersion(db_));
      if (now_version >= m.version) return OkStatus();
      BANGER_RETURN_IF_ERROR(Exec(db_, std::string(m.sql), "apply"));
      {
        Stmt fk(db_, "PRAGMA foreign_key_check");
        BANGER_ASSIGN_OR_RETURN(bool violation, fk.Step());
        if (violation) {
          return Internal("leaves a foreign key violation in table " + fk.Text(0));
        }
      }
      BANGER_RETURN_IF_ERROR(
          Exec(db_, "PRAGMA user_version = " + std::to_string(m.version), "set user_version"));
      applied = true;
      return OkStatus();
    });
    if (!st.ok()) {
      return st.WithContext(path_ + ": schema migration " + std::to_string(m.version));
    }
    if (applied) spdlog::info("state: migrated {} to schema version {}", path_, m.version);
    current = m.version;
  }
  return OkStatus();
}

/// Reads the journal mode, or sets it when `set` is given.
Result<std::string> JournalMode(sqlite3* db, bool set) {
  Stmt s(db, set ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode");
  BANGER_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.Text(0) : std::string();
}

/// Puts the database in WAL mode. WAL is persistent in the file, so every open after the
/// first only reads it. The first switch needs an exclusive lock, and SQLite answers a
/// switch that races another connection's open with SQLITE_BUSY at once, without calling
/// the busy handler (it would deadlock otherwise); two processes creating the database
/// together therefore retry here, within the same 10 s the busy timeout allows.
Status SwitchToWal(sqlite3* db, bool in_memory) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  auto pause = std::chrono::milliseconds(2);
  while (true) {
    Result<std::string> mode = JournalMode(db, false);
    if (mode.ok() && *mode != "wal") mode = JournalMode(db, true);
    if (mode.ok()) {
      if (*mode == "wal" || (in_memory && *mode == "memory")) return OkStatus();
      return FailedPrecondition("could not switch to WAL journal mode (got \"" + *mode + "\")");
    }
    if (mode.status().code() != StatusCode::kUnavailable || Clock::now() >= deadline) {
      return mode.status();
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace

Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& db_path,
                                                         const std::vector<Migration>& migrations,
                                                         std::shared_ptr<const Clock> clock) {
  BANGER_RETURN_IF_ERROR(ValidateMigrations(migrations));
  if (db_path.empty()) return InvalidArgument("state database path is empty");
  if (!clock) clock = MakeSystemClock();
  const bool in_memory = db_path == ":memory:";
  if (!in_memory) BANGER_RETURN_IF_ERROR(PrepareDbFile(db_path));

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
                           nullptr);
  if (rc != SQLITE_OK) {
    Status st = SqliteError(raw, rc, "open state database " + db_path);
    sqlite3_close_v2(raw);
    return st;
  }
  auto store = std::make_unique<SqliteStateStore>(raw, db_path, std::move(clock));
  sqlite3_extended_result_codes(raw, 1);
  // Busy timeout first: switching to WAL itself may wait for other processes.
  rc = sqlite3_busy_timeout(raw, 10000);
  if (rc != SQLITE_OK) return SqliteError(raw, rc, "set busy_timeout on " + db_path);

  Status configured = [&]() -> Status {
    BANGER_RETURN_IF_ERROR(SwitchToWal(raw, in_memory));
    BANGER_RETURN_IF_ERROR(Exec(raw, "PRAGMA synchronous=NORMAL", "set synchronous"));
    BANGER_RETURN_IF_ERROR(Exec(raw, "PRAGMA foreign_keys=ON", "enable foreign keys"));
    return OkStatus();
  }();
  if (!configured.ok()) return configured.WithContext("state database " + db_path);
  BANGER_RETURN_IF_ERROR(store->Migrate(migrations));
  return std::unique_ptr<StateStore>(std::move(store));
}

}  // namespace state_internal

// ---------------------------------------------------------------------------
// Public factories.
// ---------------------------------------------------------------------------
Result<std::unique_ptr<StateStore>> StateStore::Open(const std::filesystem::path& dir) {
  return Open(dir, nullptr);
}

Result<std::unique_ptr<StateStore>> StateStore::Open(const std::filesystem::path& dir,
                                                     std::shared_ptr<const Clock> clock) {
  if (dir.empty()) return InvalidArgument("state directory is empty");
  BANGER_RETURN_IF_ERROR(MakePrivateDir(dir).WithContext("state directory"));
  return OpenFile((dir / "state.db").string(), std::move(clock));
}

Result<std::unique_ptr<StateStore>> StateStore::OpenFile(const std::string& db_path) {
  return OpenFile(db_path, nullptr);
}

Result<std::unique_ptr<StateStore>> StateStore::OpenFile(const std::string& db_path,
                                                         std::shared_ptr<const Clock> clock) {
  return state_internal::OpenSqliteStateStore(db_path, state_internal::BuiltinMigrations(),
                                              std::move(clock));
}

int StateStore::LatestSchemaVersion() {
  return static_cast<int>(state_internal::BuiltinMigrations().size());
}

}  // namespace banger
