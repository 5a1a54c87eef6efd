// The platform's database roles (migrations/0007_roles.sql): each attack was
// reproduced as the runtime role before the split; here each one fails, or is
// audited.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/submit.hpp"
#include "services/database.hpp"
#include "store/audit.hpp"
#include "store/queue.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

struct Roles : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();  // the runtime role, as workers connect

  // sql, as the runtime role, must fail with insufficient_privilege.
  void refused(const std::string& sql, const std::string& message) {
    try {
      conn.exec(sql);
      ADD_FAILURE() << sql << " was allowed";
    } catch (const pg::DbError& e) {
      EXPECT_EQ(e.sqlstate(), "42501") << sql << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << sql << ": " << e.what();
    }
  }
  bool runtime_may(const std::string& table, const std::string& privilege) {
    return conn.exec("SELECT has_table_privilege('taskhost', $1, $2)", {table, privilege})
        .boolean(0, 0);
  }
  // A run that failed at its first attempt.
  std::string failed_run() {
    auto noop = test::install_fixture(conn, "noop", "noop.so");
    const std::string id = submit_run(conn, noop, Json::object(), "cli:alice").run_id;
    EXPECT_EQ(claim(conn, "worker:a", 1, std::chrono::seconds(60)).size(), 1u);
    Completion c;
    c.run_id = id;
    c.attempt = 1;
    c.error_code = "plugin_error";
    c.error = "boom";
    c.reason = "plugin failed";
    complete(conn, "worker:a", {c});
    return id;
  }
  std::vector<AuditEntry> about(const std::string& id) {
    AuditFilter f;
    f.run_id = id;
    return list_audit(conn, f);
  }
};

TEST_F(Roles, TheRuntimeOwnsNothingAndCannotMakeRoles) {
  EXPECT_EQ(conn.exec("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                      "c.relnamespace WHERE n.nspname = 'taskhost' AND c.relowner = "
                      "'taskhost'::regrole")
                .integer(0, 0),
            0);
  auto attrs = conn.exec(
      "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user");
  EXPECT_EQ(attrs.text(0, 0) + attrs.text(0, 1) + attrs.text(0, 2), "fff");
  refused("CREATE ROLE mallory LOGIN", "permission denied to create role");
  // PostgreSQL 15 lets a CREATEROLE role grant itself this, then COPY ... TO
  // PROGRAM runs commands as the server's OS user.
  refused("GRANT pg_execute_server_program TO taskhost", "pg_execute_server_program");
  refused("SET ROLE taskhost_owner", "permission denied to set role");
  refused("SET ROLE taskhost_provisioner", "permission denied to set role");
  refused("CREATE TABLE taskhost.mine (x int)", "permission denied for schema taskhost");
  refused(
      "CREATE OR REPLACE FUNCTION taskhost.audit_append(entries taskhost.audit_entry[]) "
      "RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'",
      "permission denied for schema taskhost");
  refused("SET session_replication_role = replica",
          "permission denied to set parameter \"session_replication_role\"");
}

TEST_F(Roles, TheAuditLogCannotBeRewrittenByTheRuntime) {
  for (int i = 0; i < 3; ++i) append_audit(conn, "tester", "test.entry", std::nullopt, "x");
  refused("ALTER TABLE taskhost.audit_log DISABLE TRIGGER audit_log_append_only",
          "must be owner of table audit_log");
  refused("ALTER TABLE taskhost.runs DISABLE TRIGGER runs_audit_update",
          "must be owner of table runs");
  // Granting itself DELETE does nothing: it holds no grant option.
  try {
    conn.exec("GRANT DELETE, UPDATE, TRUNCATE ON taskhost.audit_log TO taskhost");
  } catch (const pg::DbError&) {
  }
  for (const char* p : {"DELETE", "UPDATE", "TRUNCATE", "INSERT"})
    EXPECT_FALSE(runtime_may("taskhost.audit_log", p)) << p;
  refused("DELETE FROM taskhost.audit_log WHERE seq = 2", "permission denied for table audit_log");
  refused("TRUNCATE taskhost.audit_log", "permission denied for table audit_log");
  refused("INSERT INTO taskhost.audit_log VALUES (4, now(), 'x', 'y', NULL, NULL, '{}', 'a', 'b')",
          "permission denied for table audit_log");
  // The head moves only through audit_append.
  refused("UPDATE taskhost.audit_head SET seq = 2", "permission denied for table audit_head");
  refused("SELECT * FROM taskhost.audit_head FOR UPDATE", "permission denied for table audit_head");
  EXPECT_EQ(conn.exec("SELECT seq FROM taskhost.audit_chain_head()").integer(0, 0), 3);
  auto v = verify_audit(conn);
  EXPECT_TRUE(v.ok()) << v.why;
  EXPECT_EQ(v.entries, 3);
}

TEST_F(Roles, AnUpdateOfARunByHandIsAudited) {
  const std::string id = failed_run();
  const auto before = about(id);
  ASSERT_EQ(before.size(), 3u) << "submitted, started, failed: no run.changed on the normal path";
  EXPECT_EQ(before.back().action, "run.failed");

  conn.exec(
      "UPDATE taskhost.runs SET state = 'succeeded', error = NULL, error_code = NULL "
      "WHERE id = $1",
      {id});
  auto after = about(id);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[3].action, "run.changed");
  EXPECT_EQ(after[3].actor, "db:taskhost");
  EXPECT_EQ(after[3].detail["state"], (Json{{"from", "failed"}, {"to", "succeeded"}}));
  EXPECT_EQ(after[3].detail["error"]["code"], nullptr);

  // Params and output too, and a run inserted without its transition.
  conn.exec(
      "UPDATE taskhost.runs SET params = '{\"x\": 1}', output = '{\"ok\": true}' "
      "WHERE id = $1",
      {id});
  after = about(id);
  ASSERT_EQ(after.size(), 5u);
  EXPECT_TRUE(after[4].detail.contains("params_sha256")) << after[4].detail.dump();
  EXPECT_TRUE(after[4].detail.contains("output_sha256")) << after[4].detail.dump();
  EXPECT_FALSE(after[4].detail.contains("state"));

  auto forged = conn.exec(
      "INSERT INTO taskhost.runs (schema_id, schema_name, params, state, actor) "
      "SELECT schema_id, schema_name, params, 'succeeded', 'cli:alice' FROM taskhost.runs "
      "WHERE id = $1 RETURNING id::text",
      {id});
  auto inserted = about(forged.text(0, 0));
  ASSERT_EQ(inserted.size(), 1u);
  EXPECT_EQ(inserted[0].action, "run.changed");
  EXPECT_EQ(inserted[0].detail["state"]["to"], "succeeded");

  // A transition recorded beside the change explains it: audited once, as
  // that transition (with the actor it claims, which the entry keeps).
  {
    pg::Transaction tx(conn);
    tx.exec(
        "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor) "
        "VALUES ($1, 1, 'succeeded', 'failed', 'cli:mallory')",
        {id});
    tx.exec("UPDATE taskhost.runs SET state = 'failed' WHERE id = $1", {id});
    tx.commit();
  }
  after = about(id);
  ASSERT_EQ(after.size(), 6u);
  EXPECT_EQ(after[5].action, "run.failed");
  EXPECT_EQ(after[5].actor, "cli:mallory");
  // Heartbeats and progress are not outcomes.
  conn.exec("UPDATE taskhost.runs SET progress_done = 5, lease_expires_at = now() WHERE id = $1",
            {id});
  EXPECT_EQ(about(id).size(), 6u);
  EXPECT_TRUE(verify_audit(conn).ok());
}

// The hash chain proves nothing was changed; the sealers prove who appended.
// With the runtime role's password but not the host key, mallory appends in
// alice's name, opens a sealer of her own, guesses a token: each entry she
// appends is reported, while what the platform's sessions append verifies,
// before and after a host key rotation.
TEST_F(Roles, WhatTheDatabasePasswordAloneAppendsIsReported) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("taskhost-sealers-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  HostConfig config;
  config.host_key_file = dir / "host.key";
  const HostKeys keys = HostKeys::load(config);
  pg::Connection platform = db.connect();
  open_audit_sealer(platform, keys);
  auto noop = test::install_fixture(platform, "noop", "noop.so");
  const std::string id = submit_run(platform, noop, Json::object(), "cli:alice").run_id;
  auto v = verify_audit_sealers(conn, keys);
  EXPECT_TRUE(v.ok()) << v.why;
  EXPECT_EQ(v.entries, 2) << "schema.installed, run.submitted";

  auto forge = [&] {
    conn.exec(
        "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor, "
        "reason) VALUES ($1, 0, 'queued', 'queued', 'cli:alice', 'forged')",
        {id});
    return conn.exec("SELECT seq FROM taskhost.audit_chain_head()").integer(0, 0);
  };
  const int64_t forged = forge();
  v = verify_audit_sealers(conn, keys);
  EXPECT_EQ(v.broken_seq, forged);
  EXPECT_EQ(v.why, "entry " + std::to_string(forged) +
                       " (run.requeued by cli:alice) was not appended by a taskhost process: no "
                       "session holding a sealer signed with the host key wrote it (someone with "
                       "the database role did, whatever actor an entry names)");

  // A sealer of her own: its MAC is not one the host key makes.
  conn.exec("SELECT taskhost.audit_open_sealer(repeat('m', 64), $1, repeat('0', 64))",
            {keys.current_id()});
  forge();
  // A token she guesses names no sealer.
  conn.exec("SET taskhost.audit_sealer = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
  forge();
  // The platform's session goes on sealing.
  append_audit(platform, "cli:alice", "keys.rotated", std::nullopt, std::nullopt);
  const std::string three_unsealed = " and 2 more were not appended by a taskhost process";
  v = verify_audit_sealers(conn, keys);
  EXPECT_EQ(v.broken_seq, forged);
  EXPECT_EQ(v.entries, 6);
  EXPECT_NE(v.why.find(three_unsealed), std::string::npos) << v.why;

  // A rotation: the new key vouches for no sealer until the platform's get a
  // MAC under it; then the old key may go.
  const HostKeys rotating = HostKeys::for_rotation(config);
  HostConfig only_new;
  only_new.host_key_file = dir / "host.key.next";
  EXPECT_EQ(verify_audit_sealers(conn, HostKeys::load(only_new)).broken_seq, 1);
  EXPECT_EQ(sign_audit_sealers(platform, rotating), 1);
  HostKeys::finish_rotation(config);
  const HostKeys rotated = HostKeys::load(config);
  ASSERT_NE(rotated.current_id(), keys.current_id());
  v = verify_audit_sealers(conn, rotated);
  EXPECT_EQ(v.broken_seq, forged);
  EXPECT_NE(v.why.find(three_unsealed), std::string::npos) << v.why;
  EXPECT_TRUE(verify_audit(conn).ok()) << "the chain itself is intact";
  fs::remove_all(dir);
}

TEST_F(Roles, TheNormalPathAuditsEachChangeOnce) {
  auto noop = test::install_fixture(conn, "noop", "noop.so");
  const std::string id = submit_run(conn, noop, Json::object(), "cli:alice").run_id;
  pause_run(conn, id, "cli:bob", "hold");
  resume_run(conn, id, "cli:bob", "go");
  cancel_run(conn, id, "cli:bob", "no");
  retry_run(conn, id, "cli:bob", "yes");
  ASSERT_EQ(claim(conn, "worker:a", 1, std::chrono::seconds(60)).size(), 1u);
  Completion ok;
  ok.run_id = id;
  ok.attempt = 1;
  ok.succeeded = true;
  ok.reason = "plugin returned";
  complete(conn, "worker:a", {ok});
  std::vector<std::string> actions;
  for (const auto& e : about(id)) actions.push_back(e.action);
  EXPECT_EQ(actions,
            (std::vector<std::string>{"run.submitted", "run.paused", "run.resumed", "run.cancelled",
                                      "run.retried", "run.started", "run.succeeded"}));
}

// The provisioning function, called directly by the runtime role with
// whatever it likes: only schema roles, only allowed tables.
TEST_F(Roles, TheProvisioningFunctionGrantsOnlyAllowedTables) {
  db.connect_as_owner().exec_script(
      "CREATE TABLE public.allowed (x int); CREATE TABLE public.private (x int);"
      "GRANT SELECT, INSERT, UPDATE, DELETE ON public.allowed TO taskhost_provisioner "
      "WITH GRANT OPTION");
  auto provision = [&](const std::string& role, const std::string& tables) {
    conn.exec("SELECT taskhost.provision_schema_roles($1, $2::jsonb, NULL)", {role, tables});
  };
  provision("taskhost:ok@1.0.0", R"({"allowed": "write"})");
  EXPECT_TRUE(conn.exec("SELECT has_table_privilege('taskhost:ok@1.0.0', 'public.allowed', "
                        "'DELETE')")
                  .boolean(0, 0));
  refused(
      "SELECT taskhost.provision_schema_roles('taskhost:ok@1.0.0', "
      "'{\"private\": \"read\"}', NULL)",
      "capabilities.db.tables.private: public.private is not on the list of tables schemas "
      "may be granted");
  refused(
      "SELECT taskhost.provision_schema_roles('taskhost:ok@1.0.0', "
      "'{\"taskhost.webhook_secrets\": \"read\"}', NULL)",
      "taskhost.webhook_secrets is one of the platform's own tables, which no schema is ever "
      "granted");
  refused(
      "SELECT taskhost.provision_schema_roles('taskhost:ok@1.0.0', "
      "'{\"pg_catalog.pg_authid\": \"read\"}', NULL)",
      "pg_catalog.pg_authid is a system catalog");
  for (const char* role : {"taskhost_owner", "taskhost", "postgres", "taskhost:x@1:login"}) {
    try {
      provision(role, "{}");
      ADD_FAILURE() << role << " was provisioned";
    } catch (const pg::DbError& e) {
      EXPECT_NE(std::string(e.what()).find("is not a schema version's role"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(
      conn.exec("SELECT pg_has_role('taskhost_provisioner', 'taskhost:ok@1.0.0', 'MEMBER')")
          .boolean(0, 0))
      << "the provisioning role keeps no membership";
}

// Through provision_db_roles (what `schema install` calls), a schema that
// somehow names the platform's tables (the parser refuses it first).
TEST_F(Roles, ProvisioningRefusesThePlatformsTablesAndCatalogs) {
  std::vector<Diagnostic> errors;
  auto schema = parse_schema(
      "name: sneaky\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: " + std::string(64, 'a') +
          " }\ncapabilities:\n  db: { connection: default, tables: {} }\n",
      "sneaky.yaml", &errors);
  ASSERT_TRUE(schema) << format_diagnostics(errors);
  const auto target = database_target({}, db.conninfo(), "default");
  for (const char* table : {"taskhost.runs", "pg_catalog.pg_authid"}) {
    schema->capabilities.db->tables = {{table, Access::write}};
    try {
      provision_db_roles(*schema, target);
      ADD_FAILURE() << table << " was granted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::refused) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string("sneaky@1.0.0: capabilities.db.tables.") +
                                           table + ": "),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'taskhost:sneaky%'")
                .integer(0, 0),
            0)
      << "nothing made";
}

// The workers' automatic checkpoints: one per period whoever asks, and they
// catch a rewrite of the log and its head done as a superuser.
TEST_F(Roles, AutomaticCheckpointsCatchARewriteOfLogAndHead) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("taskhost-roles-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  AuditCheckpointConfig c;
  c.every = std::chrono::minutes(10);
  c.key = dir / "audit.pem";
  c.file = dir / "checkpoints.jsonl";
  for (int i = 0; i < 5; ++i) append_audit(conn, "tester", "test.entry", std::nullopt, "x");
  EXPECT_TRUE(write_audit_checkpoint_if_due(conn, c, "worker:a"));
  pg::Connection other = db.connect();
  EXPECT_FALSE(write_audit_checkpoint_if_due(other, c, "worker:b")) << "written 0 minutes ago";
  // A time set in the future by hand does not hold them back.
  conn.exec("UPDATE taskhost.audit_checkpoint_state SET written_at = now() + interval '1 year'");
  EXPECT_TRUE(write_audit_checkpoint_if_due(other, c, "worker:b"));
  EXPECT_TRUE(verify_audit_checkpoints(conn, c.key.string() + ".pub", c.file).ok());

  auto super = db.connect_as_superuser();
  super.exec("SET session_replication_role = replica");
  super.exec(
      "DO $$ DECLARE r record; prev text := repeat('0', 64); cur text; BEGIN "
      "  FOR r IN SELECT * FROM taskhost.audit_log ORDER BY seq LOOP "
      "    cur := taskhost.audit_hash(r.seq, prev, r.at, 'mallory', r.action, r.run_id, "
      "      r.subject, r.detail); "
      "    UPDATE taskhost.audit_log SET actor = 'mallory', prev_hash = prev, hash = cur "
      "      WHERE seq = r.seq; "
      "    prev := cur; "
      "  END LOOP; "
      "  UPDATE taskhost.audit_head SET hash = prev; END $$");
  EXPECT_TRUE(verify_audit(conn).ok()) << "a consistent rewrite";
  auto v = verify_audit_checkpoints(conn, c.key.string() + ".pub", c.file);
  EXPECT_EQ(v.broken_seq, 5) << v.why;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace taskhost
