// Plugins' own tables: the SQL files a schema lists under
// capabilities.db.migrations, applied once at install as taskhost_data
// (migrations/0010_data_migrations.sql), never able to touch the platform.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/sha256.hpp"
#include "services/database.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

class DataMigrations : public ::testing::Test {
 protected:
  DataMigrations()
      : dir_(fs::temp_directory_path() / ("th-datamig-" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
  }
  ~DataMigrations() override { fs::remove_all(dir_); }

  // Writes the file beside the plugin and returns its digest.
  std::string write(const std::string& name, const std::string& sql) {
    std::ofstream(dir_ / name) << sql;
    return sha256_hex(sql);
  }

  // A schema granting `tables` after the listed migrations (path, digest).
  TaskSchema schema(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& migrations,
                    const std::string& tables, const std::string& connection = "default") {
    std::string yaml =
        "name: " + name +
        "\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: " + std::string(64, 'a') +
        " }\ncapabilities:\n  db:\n    connection: " + connection + "\n    tables: { " + tables +
        " }\n    migrations:\n";
    for (const auto& [path, digest] : migrations)
      yaml += "      - { path: " + path + ", sha256: " + digest + " }\n";
    std::vector<Diagnostic> errors;
    auto s = parse_schema(yaml, name + ".yaml", &errors);
    EXPECT_TRUE(s) << format_diagnostics(errors);
    return *s;
  }

  std::string refusal(const TaskSchema& s, const DatabaseTarget& target) {
    try {
      apply_data_migrations(s, target, dir_);
    } catch (const Error& e) {
      return e.what();
    }
    return "applied";
  }

  fs::path dir_;
};

TEST_F(DataMigrations, AppliedOnceOwnedByTheDataRoleAndGrantable) {
  test::TestDatabase db;
  const auto target = database_target({}, db.conninfo(), "default");
  const auto d1 = write("ledger_1.sql",
                        "CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                        "amount_cents bigint NOT NULL);\n"
                        "CREATE TABLE ledger_meta (k text PRIMARY KEY, v text);");
  const auto d2 = write(
      "ledger_2.sql", "CREATE VIEW ledger_total AS SELECT sum(amount_cents) AS cents FROM ledger;");
  auto s = schema("ledger", {{"ledger_1.sql", d1}, {"ledger_2.sql", d2}},
                  "ledger: write, ledger_total: read");
  EXPECT_EQ(apply_data_migrations(s, target, dir_),
            (std::vector<std::string>{"ledger_1.sql", "ledger_2.sql"}));
  EXPECT_TRUE(apply_data_migrations(s, target, dir_).empty()) << "each file once";

  pg::Connection conn = db.connect();
  EXPECT_EQ(conn.exec("SELECT string_agg(pg_get_userbyid(relowner), ',') FROM pg_class "
                      "WHERE relname IN ('ledger', 'ledger_total')")
                .text(0, 0),
            "taskhost_data,taskhost_data");
  EXPECT_EQ(conn.exec("SELECT string_agg(path || '=' || sha256, ',' ORDER BY path) FROM "
                      "taskhost.data_migrations")
                .text(0, 0),
            "ledger_1.sql=" + d1 + ",ledger_2.sql=" + d2);
  // What they made is on the list schemas may be granted: the roles follow.
  provision_db_roles(s, target);
  EXPECT_TRUE(conn.exec("SELECT has_table_privilege('taskhost:ledger@1.0.0', 'public.ledger', "
                        "'INSERT') AND has_table_privilege('taskhost:ledger@1.0.0', "
                        "'public.ledger_total', 'SELECT')")
                  .boolean(0, 0));
  EXPECT_FALSE(conn.exec("SELECT has_table_privilege('taskhost:ledger@1.0.0', "
                         "'public.ledger_meta', 'SELECT')")
                   .boolean(0, 0))
      << "made by the migration, but not granted to this schema";

  // A second schema sharing the file applies nothing again.
  auto other = schema("ledger-report", {{"ledger_1.sql", d1}}, "ledger: read");
  EXPECT_TRUE(apply_data_migrations(other, target, dir_).empty());
}

TEST_F(DataMigrations, AChangedOrUnreviewedFileIsRefused) {
  test::TestDatabase db;
  const auto target = database_target({}, db.conninfo(), "default");
  const auto d1 = write("notes_1.sql", "CREATE TABLE notes (id int PRIMARY KEY);");
  EXPECT_EQ(refusal(schema("notes", {{"notes_1.sql", d1}}, "notes: read"), target), "applied");

  // The file on disk is not the one the schema pins.
  write("notes_1.sql", "CREATE TABLE notes (id int PRIMARY KEY, x text);");
  EXPECT_EQ(refusal(schema("notes", {{"notes_1.sql", d1}}, "notes: read"), target),
            "notes@1.0.0: data migration " + (dir_ / "notes_1.sql").string() + " has SHA-256 " +
                sha256_hex("CREATE TABLE notes (id int PRIMARY KEY, x text);") +
                ", not the reviewed " + d1);
  // Pinned anew, it is still a different file under an applied name.
  const auto d2 = sha256_hex("CREATE TABLE notes (id int PRIMARY KEY, x text);");
  EXPECT_EQ(refusal(schema("notes", {{"notes_1.sql", d2}}, "notes: read"), target),
            "notes@1.0.0: data migration notes_1.sql: it was applied with SHA-256 " + d1 +
                " and now has " + d2 +
                " in database connection 'default' (an applied migration never changes: add a "
                "new file)");
}

// The file is reviewed, but the platform does not rely on it: as
// taskhost_data it can reach neither the platform's tables nor its roles.
TEST_F(DataMigrations, AHostileFileCannotTouchThePlatform) {
  test::TestDatabase db;
  const auto target = database_target({}, db.conninfo(), "default");
  pg::Connection conn = db.connect();
  for (const std::string sql : {
           "DELETE FROM taskhost.audit_log",
           "UPDATE taskhost.runs SET state = 'succeeded'",
           "SELECT * FROM taskhost.webhook_secrets",
           "DROP TABLE taskhost.runs",
           "ALTER TABLE taskhost.audit_log DISABLE TRIGGER USER",
           "SET ROLE taskhost_owner",
           "RESET ROLE; DELETE FROM taskhost.audit_log",
           "GRANT taskhost_provisioner TO taskhost",
           "CREATE ROLE intruder SUPERUSER",
           "COMMIT; CREATE TABLE escaped (x int)",
           "DELETE FROM taskhost.data_migrations",
       }) {
    const auto d = write("hostile.sql", sql);
    const std::string r = refusal(schema("hostile", {{"hostile.sql", d}}, "x: read"), target);
    EXPECT_NE(r, "applied") << sql;
    EXPECT_EQ(r.find("hostile@1.0.0: data migration hostile.sql: "), 0u) << r;
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.data_migrations").integer(0, 0), 0);
  EXPECT_EQ(conn.exec("SELECT to_regclass('public.escaped') IS NULL").boolean(0, 0), true);
  EXPECT_EQ(conn.exec("SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'").integer(0, 0), 0);
}

// A configured data database: applied as its URL's role, recorded there.
TEST_F(DataMigrations, AConfiguredConnectionKeepsItsOwnRecord) {
  test::TestDatabase db;
  ::setenv("TEST_DATA_MIGRATIONS_URL", db.superuser_conninfo().c_str(), 1);
  HostConfig config;
  DatabaseConfig data;
  data.url.setting = "databases.data.url";
  data.url.env = "TEST_DATA_MIGRATIONS_URL";
  config.databases["data"] = data;
  const auto target = database_target(config, "", "data");
  const auto d = write("rx_1.sql", "CREATE TABLE rx (id int PRIMARY KEY);");
  auto s = schema("rx", {{"rx_1.sql", d}}, "rx: write", "data");
  EXPECT_EQ(apply_data_migrations(s, target, dir_), std::vector<std::string>{"rx_1.sql"});
  EXPECT_TRUE(apply_data_migrations(s, target, dir_).empty());
  EXPECT_EQ(db.connect_as_superuser()
                .exec("SELECT sha256 FROM public.taskhost_data_migrations WHERE path = 'rx_1.sql'")
                .text(0, 0),
            d);
  provision_db_roles(s, target);
}

}  // namespace
}  // namespace taskhost
