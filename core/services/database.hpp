#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "schema/schema.hpp"
#include "services/object_store.hpp"  // ByteSource, ByteSink
#include "services/service_call.hpp"
#include "store/pg.hpp"

namespace taskhost {

// The two PostgreSQL roles of one schema version with a db grant:
//   run    "taskhost:NAME@VERSION", NOLOGIN, with exactly the granted
//          privileges: read = SELECT; write = SELECT, INSERT, UPDATE, DELETE
//          and USAGE on the sequences the table owns; USAGE on their schemas.
//   login  "taskhost:NAME@VERSION:login", LOGIN NOINHERIT, a member of run
//          and of nothing else, with no privilege of its own.
// Runs log in as `login` and SET LOCAL ROLE to `run` in every transaction:
// a plugin that resets its role is left as a role that may do nothing, and
// one that sets another role is refused by PostgreSQL (not a member).
struct DbRoles {
  std::string run, login;
};
DbRoles db_roles(const TaskSchema& schema);

// Where a grant's connection name leads.
struct DatabaseTarget {
  std::string connection;  // the name, for messages
  std::string conninfo;    // holds credentials: never logged
  std::optional<std::string> role_secret;
  std::chrono::milliseconds statement_timeout;
  // The platform's own database: roles are made by its provisioning
  // function (migrations/0007_roles.sql), not by the connecting role.
  bool platform = false;
};
// The config's database by that name or, when the config names none, the
// platform's own database as "default". Throws Error(invalid) otherwise.
DatabaseTarget database_target(const HostConfig& config, const std::string& platform_conninfo,
                               const std::string& connection);

// Creates the schema's roles in its database if missing and gives them
// exactly the grant (revoking anything else they hold there), in one
// transaction; `schema install` calls it before recording the schema. In
// the platform's database through taskhost.provision_schema_roles (the
// runtime role cannot create roles); in a configured one as its URL's role.
// Throws Error(invalid) naming a granted table that does not exist,
// Error(refused) for one in the platform's schema or the system catalogs or
// (platform) one the provisioning role may not grant.
void provision_db_roles(const TaskSchema& schema, const DatabaseTarget& target);

// Applies the schema's capabilities.db.migrations (files under plugin_dir,
// each checked against its pinned SHA-256) in order, each once per database
// (by path; a file applied with another digest is refused), before its roles
// are made. In the platform's database through taskhost.apply_data_migration
// (as taskhost_data, which owns what they make and nothing of the
// platform's); in a configured one as its URL's role, recorded in
// public.taskhost_data_migrations. Returns the paths applied now.
std::vector<std::string> apply_data_migrations(const TaskSchema& schema,
                                               const DatabaseTarget& target,
                                               const std::filesystem::path& plugin_dir);

// A run's database: statements run on its own connection as the schema's
// login role, each inside a transaction as the run role with the target's
// statement_timeout. PostgreSQL enforces the grant; SQLSTATE 42501 reaches
// the plugin as a refusal (TH_ERR_PERMISSION).
//   query {sql, params?: [text | number | boolean | null | [those] |
//                         {base64, type?}]}
//                         -> {columns: [{name, type}], rows: [[text|null]],
//                             command, affected}
//   begin / commit / rollback {}          the plugin's transaction; outside
//                                          it, each statement commits alone
//   savepoint / release / rollback_to {name}
//   copy_in {table, columns}  in          -> {rows}   PostgreSQL's COPY
//                                          text format, table granted write
// In a dry run every transaction is READ ONLY with its snapshot taken before
// the plugin's first statement (so it cannot be turned read-write again):
// PostgreSQL itself refuses any write, whatever the SQL; copy_in is refused
// before it starts.
class DatabaseService {
 public:
  DatabaseService(std::string schema, DbRoles roles, DbGrant grant, DatabaseTarget target,
                  ServiceAudit audit, bool dry_run = false);
  Json call(const std::string& op, const Json& request, const ByteSource& in, const ByteSink& out);

 private:
  Json perform(const std::string& op, const Json& request, const ByteSource& in,
               ServiceCall& record);
  // Runs f inside the plugin's transaction, or inside one of its own that
  // commits when f returns.
  template <typename F>
  auto in_transaction(F&& f);
  // What every transaction of the host starts with: BEGIN, the run role,
  // the statement timeout.
  std::vector<pg::Connection::Statement> opening(pg::Connection& conn) const;
  void begin();
  // A statement outside the plugin's transaction, in one of its own.
  pg::Result alone(const std::string& sql, std::vector<pg::Param> params);
  // Inside the plugin's transaction: fails the call if a statement left the
  // run role or the transaction.
  void check_after(const pg::Result& r);
  Error role_changed() const;
  pg::Connection& connection();

  std::string schema_;
  DbRoles roles_;
  DbGrant grant_;
  DatabaseTarget target_;
  ServiceAudit audit_;
  bool dry_run_;
  std::optional<pg::Connection> conn_;
  bool plugin_transaction_ = false;
};

}  // namespace taskhost
