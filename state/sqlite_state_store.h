// Internal to state/: the SQLite StateStore factory with an explicit migration
// list, so tests can apply a future migration to an existing database.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "state/migrations.h"
#include "state/state_store.h"

namespace banger::state_internal {

/// Opens `db_path` (":memory:" allowed), creating the file with mode 0600,
/// sets the connection pragmas and applies `migrations` past user_version.
/// FailedPrecondition if the database is newer than `migrations` knows.
Result<std::unique_ptr<StateStore>> OpenSqliteStateStore(const std::string& db_path,
                                                         const std::vector<Migration>& migrations,
                                                         std::shared_ptr<const Clock> clock);

}  // namespace banger::state_internal
