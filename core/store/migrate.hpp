#pragma once

#include <string>
#include <vector>

#include "store/pg.hpp"

namespace taskhost {

struct Migration {
  int version = 0;   // NNNN of migrations/NNNN_name.sql
  std::string name;  // file name
  std::string sql;
};

// The migrations/ files compiled into this binary, in version order.
const std::vector<Migration>& bundled_migrations();

// Applies the migrations not yet applied, each in its own transaction, in
// order, recording version, name and SHA-256 in taskhost.schema_migrations.
// Safe to run concurrently (an advisory lock serialises appliers). Returns
// how many it applied. Throws Error(conflict) when an applied migration's
// text has changed or the database has one this binary does not know.
int migrate(pg::Connection& conn, const std::vector<Migration>& migrations);

// Throws Error(environment) saying to run `taskhost migrate` unless every
// migration is applied (and unchanged).
void require_migrated(pg::Connection& conn, const std::vector<Migration>& migrations);

}  // namespace taskhost
