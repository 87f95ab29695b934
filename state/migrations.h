// Numbered schema migrations embedded in the binary (internal to state/).
//
// Policy: migrations are append-only. Version N+1 is added at the end of the
// list; an applied migration's SQL is never edited. Each one runs in its own
// IMMEDIATE transaction together with `PRAGMA user_version = N`, so a crash
// leaves the database at N-1 or N, never in between.
#pragma once

#include <string_view>
#include <vector>

#include "base/status.h"

namespace banger::state_internal {

struct Migration {
  int version;           // 1, 2, 3 ... contiguous
  std::string_view sql;  // one or more statements
};

/// The migrations this binary ships, in order.
const std::vector<Migration>& BuiltinMigrations();

/// InvalidArgument unless versions are 1..N, contiguous and ascending, with
/// non-empty SQL.
Status ValidateMigrations(const std::vector<Migration>& migrations);

}  // namespace banger::state_internal
