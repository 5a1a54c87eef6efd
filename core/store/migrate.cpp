#include "store/migrate.hpp"

#include <spdlog/spdlog.h>

#include <map>

#include "common/sha256.hpp"

namespace taskhost {
namespace {

// Arbitrary, fixed: the advisory lock all appliers of migrations share.
constexpr int64_t migration_lock_key = 0x7461736b686f7374;  // "taskhost"

struct Applied {
  std::string name, checksum;
};

std::map<int, Applied> applied(pg::Connection& conn) {
  std::map<int, Applied> out;
  auto exists = conn.exec("SELECT to_regclass('taskhost.schema_migrations') IS NOT NULL");
  if (!exists.boolean(0, 0)) return out;
  auto r = conn.exec("SELECT version, name, checksum FROM taskhost.schema_migrations");
  for (int i = 0; i < r.rows(); ++i)
    out[static_cast<int>(r.integer(i, 0))] = {r.text(i, 1), r.text(i, 2)};
  return out;
}

// Compares what the database has applied with what this binary ships.
// Returns the versions still to apply.
std::vector<const Migration*> pending(const std::map<int, Applied>& done,
                                      const std::vector<Migration>& migrations) {
  std::map<int, const Migration*> known;
  for (const auto& m : migrations) known[m.version] = &m;
  for (const auto& [version, a] : done) {
    auto it = known.find(version);
    if (it == known.end())
      throw Error(ErrorKind::conflict,
                  "the database has migration " + a.name +
                      " which this taskhost does not know: it is older than the database; "
                      "upgrade taskhost");
    if (!constant_time_equal(a.checksum, sha256_hex(it->second->sql)))
      throw Error(ErrorKind::conflict,
                  "migration " + a.name +
                      " was edited after it was applied (checksum differs); add a new migration "
                      "instead of changing an applied one");
  }
  std::vector<const Migration*> out;
  for (const auto& [version, m] : known)
    if (!done.count(version)) out.push_back(m);
  return out;
}

}  // namespace

int migrate(pg::Connection& conn, const std::vector<Migration>& migrations) {
  {
    pg::Transaction tx(conn);
    tx.exec("SELECT pg_advisory_xact_lock($1)", {migration_lock_key});
    conn.exec_script(
        "CREATE SCHEMA IF NOT EXISTS taskhost;"
        "CREATE TABLE IF NOT EXISTS taskhost.schema_migrations ("
        "  version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        "  applied_at timestamptz NOT NULL DEFAULT now())");
    tx.commit();
  }
  int count = 0;
  for (;;) {
    pg::Transaction tx(conn);
    tx.exec("SELECT pg_advisory_xact_lock($1)", {migration_lock_key});
    auto todo = pending(applied(conn), migrations);
    if (todo.empty()) break;
    const Migration& m = *todo.front();
    try {
      conn.exec_script(m.sql);
    } catch (const pg::DbError& e) {
      throw Error(ErrorKind::environment, "migration " + m.name + " failed: " + e.what());
    }
    tx.exec("INSERT INTO taskhost.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            {m.version, m.name, sha256_hex(m.sql)});
    tx.commit();
    spdlog::info("applied migration {}", m.name);
    ++count;
  }
  return count;
}

void require_migrated(pg::Connection& conn, const std::vector<Migration>& migrations) {
  auto todo = pending(applied(conn), migrations);
  if (!todo.empty())
    throw Error(ErrorKind::environment, "the database lacks " + std::to_string(todo.size()) +
                                            " migration(s), starting with " + todo.front()->name +
                                            ": run `taskhost migrate`");
}

}  // namespace taskhost
