#include "store/migrate.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

std::vector<Migration> sample() {
  return {{1, "0001_a.sql", "CREATE TABLE taskhost.a (x int)"},
          {2, "0002_b.sql", "CREATE TABLE taskhost.b (y int); INSERT INTO taskhost.b VALUES (1)"}};
}

TEST(Migrate, BundledMigrationsAreOrderedAndApplied) {
  const auto& m = bundled_migrations();
  ASSERT_FALSE(m.empty());
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i].version, static_cast<int>(i) + 1);
  test::TestDatabase db;  // migrates
  auto conn = db.connect_as_owner();
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.schema_migrations").integer(0, 0),
            static_cast<int64_t>(m.size()));
  EXPECT_NO_THROW(require_migrated(conn, m));
  EXPECT_EQ(migrate(conn, m), 0);  // idempotent
}

// A database of its own without the bundled tables, for sample migrations.
struct Empty : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect_as_owner();
  void SetUp() override { conn.exec("DROP SCHEMA taskhost CASCADE"); }
};

TEST_F(Empty, AppliesInOrderOnceAndRecordsChecksums) {
  EXPECT_THROW(require_migrated(conn, sample()), Error);
  EXPECT_EQ(migrate(conn, sample()), 2);
  EXPECT_EQ(migrate(conn, sample()), 0);
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.b").integer(0, 0), 1);
  auto r =
      conn.exec("SELECT name, length(checksum) FROM taskhost.schema_migrations ORDER BY version");
  ASSERT_EQ(r.rows(), 2);
  EXPECT_EQ(r.text(1, 0), "0002_b.sql");
  EXPECT_EQ(r.integer(1, 1), 64);
}

TEST_F(Empty, RefusesAnEditedAppliedMigration) {
  migrate(conn, sample());
  auto edited = sample();
  edited[0].sql += " -- changed";
  try {
    migrate(conn, edited);
    FAIL() << "edited migration was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_STREQ(e.what(),
                 "migration 0001_a.sql was edited after it was applied (checksum differs); add a "
                 "new migration instead of changing an applied one");
  }
}

TEST_F(Empty, RefusesADatabaseNewerThanTheBinary) {
  migrate(conn, sample());
  auto older = sample();
  older.pop_back();
  try {
    require_migrated(conn, older);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0002_b.sql which this taskhost does not know"),
              std::string::npos);
  }
}

TEST_F(Empty, AFailedMigrationLeavesNothingBehind) {
  auto broken = sample();
  broken.push_back({3, "0003_bad.sql", "CREATE TABLE taskhost.c (z int); SELECT nonsense"});
  EXPECT_THROW(migrate(conn, broken), Error);
  // 1 and 2 committed; 3 rolled back whole, including its first statement.
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.schema_migrations").integer(0, 0), 2);
  EXPECT_FALSE(conn.exec("SELECT to_regclass('taskhost.c') IS NOT NULL").boolean(0, 0));
}

}  // namespace
}  // namespace taskhost
