// The database as a plugin sees it: the db_probe fixture runs through the
// real loader and worker against PostgreSQL, as a role made for its schema
// version with exactly the granted privileges, every call audited.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <cstdlib>

#include "engine/submit.hpp"
#include "services/database.hpp"
#include "store/audit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

// Tables as a data team would have them, owned by the database's owner, who
// puts claims and vendors (not secrets) on the list of tables schemas may be
// granted: what the provisioning role may grant on.
void create_tables(const test::TestDatabase& db) {
  db.connect_as_owner().exec_script(
      "CREATE TABLE public.claims (id serial PRIMARY KEY, status text NOT NULL, payload bytea, "
      "note text);"
      "CREATE TABLE public.vendors (id int PRIMARY KEY, name text);"
      "INSERT INTO public.vendors VALUES (1, 'esi'), (2, 'lighthouse');"
      "CREATE TABLE public.secrets (x text); INSERT INTO public.secrets VALUES ('ssn');"
      "GRANT SELECT, INSERT, UPDATE, DELETE ON public.claims, public.vendors "
      "  TO taskhost_provisioner WITH GRANT OPTION;"
      "GRANT USAGE ON SEQUENCE public.claims_id_seq TO taskhost_provisioner WITH GRANT OPTION");
}

// NAME@1.0.0 running db_probe with claims write and vendors read, its roles
// made the way `schema install` makes them.
InstalledSchema install_probe(pg::Connection& conn, const std::string& name,
                              const DatabaseTarget& target) {
  auto schema = test::install_fixture(conn, name, "db_probe.so",
                                      "params: { statement: { type: string } }\n"
                                      "capabilities:\n"
                                      "  db: { connection: " +
                                          target.connection +
                                          ", tables: { claims: write, vendors: read } }\n");
  provision_db_roles(schema.schema, target);
  return schema;
}

TEST(DatabasePlugin, EveryCallThroughTheLoaderUnderTheSchemaRole) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  create_tables(db);
  pg::Connection data = db.connect_as_owner();
  auto schema = install_probe(conn, "dbprobe", database_target({}, db.conninfo(), "default"));

  std::string id = submit_run(conn, schema, Json::object(), "cli:test").run_id;
  taskhost::Run r = test::execute(db.conninfo(), id);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& out = r.output;
  EXPECT_EQ(out["vendors"], Json::parse(R"([["1","esi"],["2","lighthouse"]])"));
  EXPECT_EQ(out["inserted"], Json::array({"1", "\\x0001ff"}));
  EXPECT_EQ(out["updated"], 1);
  EXPECT_EQ(out["copied"], 1000);
  EXPECT_EQ(out["batch"], 3);
  // 1 + 3 + 100 + 101 + 1000 + 5000, 5001; 200, 201, 6000, 6001 rolled back
  EXPECT_EQ(out["claims"], "1008");
  EXPECT_EQ(data.exec("SELECT string_agg(id || ' ' || status, ', ' ORDER BY id) FROM "
                      "public.claims WHERE id >= 5000")
                .text(0, 0),
            "5000 loaded, 5001 loaded");
  auto batch = data.exec("SELECT note FROM public.claims WHERE status = 'batch' ORDER BY id");
  EXPECT_EQ(batch.text(0, 0), "a,b");
  EXPECT_EQ(batch.text(1, 0), "{\"c\"}\\");
  EXPECT_TRUE(batch.null(2, 0));

  auto notes = data.exec("SELECT id, note FROM public.claims WHERE id >= 1000 ORDER BY id LIMIT 7");
  EXPECT_TRUE(notes.null(0, 1));
  EXPECT_EQ(notes.text(1, 1), "line\nbreak");
  EXPECT_EQ(notes.text(2, 1), "back\\slash");
  EXPECT_EQ(notes.text(3, 1), "cr\rhere");
  EXPECT_EQ(notes.text(4, 1), "\\N");
  EXPECT_EQ(notes.text(5, 1), "ünïcødé ✓");
  EXPECT_EQ(notes.text(6, 1), "tab\there");
  EXPECT_EQ(data.exec("SELECT count(*) FROM public.claims WHERE id IN (200, 201)").integer(0, 0),
            0);

  const Json& refused = out["refused"];
  test::expect_refused(refused, "duplicate", TH_ERR_INVALID,
                       "duplicate key value violates unique constraint \"claims_pkey\"");
  test::expect_refused(refused, "transaction_throws", TH_ERR_INVALID, "changed my mind");
  test::expect_refused(refused, "read_undeclared", TH_ERR_PERMISSION,
                       "permission denied for table secrets (SQLSTATE 42501)");
  test::expect_refused(refused, "write_read_only", TH_ERR_PERMISSION,
                       "permission denied for table vendors");
  test::expect_refused(refused, "ddl", TH_ERR_PERMISSION, "permission denied for schema public");
  test::expect_refused(refused, "drop", TH_ERR_PERMISSION, "must be owner of table vendors");
  test::expect_refused(refused, "platform_tables", TH_ERR_PERMISSION,
                       "permission denied for schema taskhost");
  test::expect_refused(refused, "set_role", TH_ERR_PERMISSION,
                       "permission denied to set role \"taskhost\"");
  const std::string role_change =
      "permission denied: schema dbprobe runs its statements as role taskhost:dbprobe@1.0.0; a "
      "statement that changes the role is refused";
  test::expect_refused(refused, "reset_role", TH_ERR_PERMISSION, role_change);
  test::expect_refused(refused, "set_role_none_in_transaction", TH_ERR_PERMISSION, role_change);
  // A role changed inside an expression leaves the login role, which may do
  // nothing at all.
  test::expect_refused(refused, "set_config_role", TH_ERR_PERMISSION,
                       "permission denied for table vendors");
  test::expect_refused(refused, "session_authorization", TH_ERR_PERMISSION,
                       "permission denied to set session authorization");
  test::expect_refused(refused, "commit_by_sql", TH_ERR_INVALID,
                       "the statement ended the transaction");
  test::expect_refused(refused, "copy_read_only", TH_ERR_PERMISSION,
                       "permission denied: schema dbprobe has no db write grant for table vendors "
                       "(granted: claims write, vendors read)");
  for (const char* copy : {"copy_from_client", "copy_to_client"})
    test::expect_refused(refused, copy, TH_ERR_INVALID,
                         "COPY to or from the client is not a statement (use copy_in)");
  // (outside a transaction, where it is sent with the rest of its pipeline,
  // the session is reset; the probe's later calls show it still works)
  test::expect_refused(refused, "two_statements", TH_ERR_INVALID,
                       "cannot insert multiple commands into a prepared statement");
  EXPECT_TRUE(conn.exec("SELECT to_regclass('public.evil')").null(0, 0)) << "no DDL happened";

  auto calls = test::service_calls(conn, id, "db");
  EXPECT_EQ(calls.outcomes["denied"], 11);
  const auto& entries = calls.entries;
  EXPECT_EQ(entries.at(0).action, "service.db.query");
  EXPECT_EQ(entries.at(0).subject, "default: SELECT id, name FROM vendors ORDER BY id");
  EXPECT_EQ(entries.at(0).detail["outcome"], "SELECT 2");
}

TEST(DatabaseRoles, ExactlyTheGrantAndNothingElse) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  create_tables(db);
  pg::Connection data = db.connect_as_owner();
  const auto target = database_target({}, db.conninfo(), "default");
  auto schema = install_probe(conn, "dbroles", target);
  const std::string run = "taskhost:dbroles@1.0.0", login = run + ":login";
  auto can = [&](const std::string& role, const std::string& object, const std::string& what) {
    const std::string fn =
        object.find("seq") != std::string::npos ? "has_sequence_privilege" : "has_table_privilege";
    return conn.exec("SELECT " + fn + "($1, $2, $3)", {role, "public." + object, what})
        .boolean(0, 0);
  };
  EXPECT_TRUE(can(run, "vendors", "SELECT"));
  EXPECT_FALSE(can(run, "vendors", "INSERT"));
  for (const char* p : {"SELECT", "INSERT", "UPDATE", "DELETE"}) EXPECT_TRUE(can(run, "claims", p));
  EXPECT_FALSE(can(run, "claims", "TRUNCATE"));
  EXPECT_TRUE(can(run, "claims_id_seq", "USAGE"));
  EXPECT_FALSE(can(run, "secrets", "SELECT"));
  EXPECT_FALSE(can(login, "vendors", "SELECT")) << "the login role holds nothing itself";
  auto attrs = conn.exec(
      "SELECT rolcanlogin, rolinherit, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
      "WHERE rolname = $1",
      {login});
  EXPECT_EQ(
      attrs.text(0, 0) + attrs.text(0, 1) + attrs.text(0, 2) + attrs.text(0, 3) + attrs.text(0, 4),
      "tffff");
  EXPECT_FALSE(
      conn.exec("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", {run}).boolean(0, 0));

  // Whatever was granted beside the schema goes at the next install: a
  // membership the provisioning role revokes; a privilege someone else
  // granted, which it cannot revoke, is named and stops the install.
  pg::Connection super = db.connect_as_superuser();
  super.exec_script("DROP ROLE IF EXISTS dbroles_bystander; CREATE ROLE dbroles_bystander");
  super.exec("GRANT dbroles_bystander TO " + super.identifier(login));
  provision_db_roles(schema.schema, target);
  EXPECT_EQ(conn.exec("SELECT count(*) FROM pg_auth_members WHERE member = $1::regrole",
                      {super.identifier(login)})
                .integer(0, 0),
            1)
      << "member of the run role only";
  super.exec("DROP ROLE dbroles_bystander");
  super.exec("GRANT SELECT ON public.secrets TO " + super.identifier(run));
  try {
    provision_db_roles(schema.schema, target);
    ADD_FAILURE() << "an extra grant was kept silently";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("taskhost:dbroles@1.0.0 holds SELECT ON TABLE "
                                         "public.secrets granted by taskhost_owner"),
              std::string::npos)
        << e.what();
  }
  super.exec("REVOKE SELECT ON public.secrets FROM " + super.identifier(run));
  provision_db_roles(schema.schema, target);
  EXPECT_FALSE(can(run, "secrets", "SELECT"));
  EXPECT_TRUE(can(run, "claims", "DELETE")) << "re-granted after its own revoke";

  // A table that does not exist is named, and no role is made for it.
  std::vector<Diagnostic> errors;
  auto missing = parse_schema(
      "name: dbmissing\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: " +
          std::string(64, 'a') +
          " }\ncapabilities:\n  db: { connection: default, tables: { claim: write } }\n",
      "dbmissing.yaml", &errors);
  ASSERT_TRUE(missing) << format_diagnostics(errors);
  try {
    provision_db_roles(*missing, target);
    ADD_FAILURE() << "a missing table was granted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    EXPECT_STREQ(e.what(),
                 "dbmissing@1.0.0: capabilities.db.tables.claim: no such table in database "
                 "connection 'default'");
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'taskhost:dbmissing%'")
                .integer(0, 0),
            0);
}

// A configured connection: its statement timeout holds, errors fail the run
// with PostgreSQL's message, and neither the URL's password nor the role
// secret appears anywhere.
TEST(DatabasePlugin, ConfiguredConnectionTimeoutAndErrorsReachTheRun) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  create_tables(db);
  pg::Connection data = db.connect_as_owner();
  const std::string url_canary = "canary-db-url-5f1e", secret_canary = "canary-role-secret-9b2c";
  ::setenv("TEST_WAREHOUSE_URL", (db.superuser_conninfo() + " password=" + url_canary).c_str(), 1);
  ::setenv("TEST_ROLE_SECRET", secret_canary.c_str(), 1);
  HostConfig config;
  DatabaseConfig warehouse;
  warehouse.url.setting = "databases.warehouse.url";
  warehouse.url.env = "TEST_WAREHOUSE_URL";
  warehouse.role_secret = SecretRef{"databases.warehouse.role_secret", "TEST_ROLE_SECRET", {}};
  warehouse.statement_timeout = std::chrono::milliseconds(300);
  config.databases["warehouse"] = warehouse;
  auto schema = install_probe(conn, "dbconfigured", database_target(config, "", "warehouse"));
  EXPECT_EQ(db.connect_as_superuser()
                .exec("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = $1",
                      {"taskhost:dbconfigured@1.0.0:login"})
                .text(0, 0),
            "t")
      << "the login role has the derived password";

  auto run_statement = [&](const std::string& sql) {
    std::string id = submit_run(conn, schema, {{"statement", sql}}, "cli:test").run_id;
    return test::execute(db.conninfo(), id, test::fixture_dir, config);
  };
  taskhost::Run slow, denied;
  std::string logs = test::capture_logs([&] {
    slow = run_statement("SELECT pg_sleep(5)");
    denied = run_statement("DELETE FROM secrets");
  });
  EXPECT_EQ(slow.state, RunState::failed);
  EXPECT_NE(slow.error.value_or("").find("canceling statement due to statement timeout"),
            std::string::npos)
      << slow.error.value_or("");
  EXPECT_EQ(denied.state, RunState::failed);
  EXPECT_EQ(denied.error_code, "permission_denied");
  EXPECT_NE(denied.error.value_or("").find("permission denied for table secrets"),
            std::string::npos)
      << denied.error.value_or("");
  EXPECT_EQ(data.exec("SELECT count(*) FROM public.secrets").integer(0, 0), 1);

  pg::Connection super = db.connect_as_superuser();
  for (const auto& canary : {url_canary, secret_canary}) {
    EXPECT_EQ(logs.find(canary), std::string::npos);
    for (const char* table : {"audit_log", "runs", "run_events", "run_transitions"})
      EXPECT_EQ(super
                    .exec("SELECT count(*) FROM taskhost." + std::string(table) +
                              " t WHERE t::text LIKE '%' || $1 || '%'",
                          {canary})
                    .integer(0, 0),
                0)
          << canary << " in " << table;
  }
}

// Roles that were never made (the schema recorded some other way): the run
// fails saying which role could not log in.
TEST(DatabasePlugin, AMissingLoginRoleIsNamed) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema = test::install_fixture(
      conn, "dbnoroles", "db_probe.so",
      "params: { statement: { type: string } }\n"
      "capabilities: { db: { connection: default, tables: { claims: write } } }\n");
  std::string id = submit_run(conn, schema, {{"statement", "SELECT 1"}}, "cli:test").run_id;
  taskhost::Run r = test::execute(db.conninfo(), id);
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error.value_or("").find("role \"taskhost:dbnoroles@1.0.0:login\" does not exist"),
            std::string::npos)
      << r.error.value_or("");
  EXPECT_NE(r.error.value_or("").find("(as role taskhost:dbnoroles@1.0.0:login; if the server "
                                      "asks for a password, set databases.default.role_secret)"),
            std::string::npos)
      << r.error.value_or("");
}

// The server ends the session mid-transaction: the call says the connection
// and the transaction are gone, and the next call works on a new connection.
TEST(DatabaseService, ALostConnectionIsSaidAndTheNextCallReconnects) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  create_tables(db);
  pg::Connection data = db.connect_as_owner();
  auto schema = install_probe(conn, "dblost", database_target({}, db.conninfo(), "default"));
  std::vector<ServiceCall> calls;
  DatabaseService service("dblost", db_roles(schema.schema), *schema.schema.capabilities.db,
                          database_target({}, db.conninfo(), "default"),
                          [&](const ServiceCall& c) { calls.push_back(c); });
  const ByteSource none = [](char*, size_t) { return size_t{0}; };
  const ByteSink discard = [](const char*, size_t) {};
  auto query = [&](const std::string& sql) {
    return service.call("query", {{"sql", sql}}, none, discard);
  };
  service.call("begin", Json::object(), none, discard);
  query("INSERT INTO claims (status) VALUES ('lost')");
  db.connect_as_superuser().exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
      {"taskhost:dblost@1.0.0:login"});
  try {
    query("INSERT INTO claims (status) VALUES ('lost too')");
    ADD_FAILURE() << "a statement ran on a terminated session";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::environment);
    EXPECT_NE(std::string(e.what()).find(
                  "db: the connection to the database was lost and the open transaction with it"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(query("SELECT count(*) FROM claims")["rows"], Json::parse(R"([["0"]])"));
  EXPECT_EQ(calls.back().outcome, "SELECT 1");
  EXPECT_THROW(service.call("commit", Json::object(), none, discard), Error)
      << "the transaction is gone, not open";
}

}  // namespace
}  // namespace taskhost
