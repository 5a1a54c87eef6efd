#include "services/database.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <utility>

#include "common/base64.hpp"
#include "common/pattern.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"

namespace taskhost {
namespace {

// "schema.table" or "table" as a quoted SQL name.
std::string quoted_table(pg::Connection& conn, const std::string& table) {
  auto dot = table.find('.');
  if (dot == std::string::npos) return conn.identifier(table);
  return conn.identifier(table.substr(0, dot)) + "." + conn.identifier(table.substr(dot + 1));
}

std::optional<std::string> login_password(const DatabaseTarget& target, const DbRoles& roles) {
  if (!target.role_secret) return std::nullopt;
  return hex_lower(hmac_sha256(*target.role_secret, roles.login));
}

// A PostgreSQL error as the plugin sees it: insufficient privilege is a
// refusal, a statement's own mistakes (syntax, undefined names, bad data,
// constraint violations) are invalid, the rest (timeouts, lost connections,
// serialization failures) may pass on a retry.
Error plugin_error(const pg::DbError& e) {
  const std::string& state = e.sqlstate();
  ErrorKind kind = ErrorKind::environment;
  if (state == "42501")
    kind = ErrorKind::refused;
  else if (state.rfind("42", 0) == 0 || state.rfind("22", 0) == 0 || state.rfind("23", 0) == 0 ||
           state.rfind("0A", 0) == 0 || state.rfind("25", 0) == 0)
    kind = ErrorKind::invalid;
  return Error(kind, std::string(e.what()) + (state.empty() ? "" : " (SQLSTATE " + state + ")"));
}

std::vector<pg::Param> statement_params(const Json& request) {
  std::vector<pg::Param> params;
  auto it = request.find("params");
  if (it == request.end()) return params;
  if (!it->is_array()) throw Error(ErrorKind::invalid, "db: 'params' must be an array");
  // A scalar as text: null, a string, a number or a boolean.
  auto scalar = [](const Json& v) -> std::optional<std::optional<std::string>> {
    if (v.is_null()) return std::optional<std::string>();
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number() || v.is_boolean()) return v.dump();
    return std::nullopt;
  };
  for (const auto& p : *it) {
    if (auto text = scalar(p)) {
      params.emplace_back(std::move(*text));
    } else if (p.is_array()) {  // an array literal, for batches: unnest($1::int[])
      std::vector<std::optional<std::string>> items;
      for (const auto& v : p) {
        auto item = scalar(v);
        if (!item) throw Error(ErrorKind::invalid, "db: an array parameter holds scalars only");
        items.push_back(std::move(*item));
      }
      params.emplace_back(pg::array_literal(items));
    } else if (p.is_object() && p.contains("base64") && p["base64"].is_string()) {
      auto bytes = base64_decode(p["base64"].get<std::string>());
      if (!bytes) throw Error(ErrorKind::invalid, "db: a binary parameter is not base64");
      params.push_back(pg::Param::binary(std::move(*bytes), p.value("type", 17u)));
    } else {
      throw Error(ErrorKind::invalid,
                  "db: a parameter must be text, a number, a boolean, null, an array of "
                  "those or {base64, type}");
    }
  }
  return params;
}

const std::string& savepoint_name(const Json& request) {
  static const Pattern name_re("[a-z_][a-z0-9_]{0,62}");
  const std::string& name = string_field(request, "db", "name");
  if (!name_re.matches(name))
    throw Error(ErrorKind::invalid, "db: a savepoint name is [a-z_][a-z0-9_]*, got '" +
                                        printable(storable(name, 70)) + "'");
  return name;
}

}  // namespace

DbRoles db_roles(const TaskSchema& schema) {
  std::string run = "taskhost:" + schema.ref();
  return {run, run + ":login"};
}

DatabaseTarget database_target(const HostConfig& config, const std::string& platform_conninfo,
                               const std::string& connection) {
  if (auto it = config.databases.find(connection); it != config.databases.end()) {
    DatabaseTarget t{connection, it->second.url.resolve(), std::nullopt,
                     it->second.statement_timeout};
    if (it->second.role_secret) t.role_secret = it->second.role_secret->resolve();
    return t;
  }
  if (config.databases.empty() && connection == "default")
    return {connection, platform_conninfo, std::nullopt, DatabaseConfig().statement_timeout, true};
  std::string known;
  for (const auto& [name, _] : config.databases) known += (known.empty() ? "" : ", ") + name;
  throw Error(ErrorKind::invalid,
              "no database connection named '" + connection + "' in the host config (" +
                  (known.empty() ? "it names none, so only 'default', the platform's database"
                                 : "databases: " + known) +
                  ")");
}

namespace {

// The login role's SCRAM verifier, or none.
std::optional<std::string> password_verifier(pg::Connection& conn, const DatabaseTarget& target,
                                             const DbRoles& roles) {
  auto p = login_password(target, roles);
  if (!p) return std::nullopt;
  std::unique_ptr<char, decltype(&PQfreemem)> verifier(
      PQencryptPasswordConn(conn.raw(), p->c_str(), roles.login.c_str(), "scram-sha-256"),
      &PQfreemem);
  if (!verifier) throw Error(ErrorKind::environment, "cannot hash the login role's password");
  return std::string(verifier.get());
}

void provision_in_platform(const TaskSchema& schema, const DbRoles& roles,
                           const DatabaseTarget& target) {
  pg::Connection conn(target.conninfo);
  Json tables = Json::object();
  for (const auto& [table, access] : schema.capabilities.db->tables)
    tables[table] = access == Access::read ? "read" : "write";
  try {
    conn.exec("SELECT taskhost.provision_schema_roles($1, $2::jsonb, $3)",
              {roles.run, tables.dump(), password_verifier(conn, target, roles)});
  } catch (const pg::DbError& e) {
    // The function's messages name the field; say where and in which database.
    const std::string where = schema.ref() + ": " + e.primary() + " in database connection '" +
                              target.connection + "'" +
                              (e.hint().empty() ? "" : " (" + e.hint() + ")");
    if (e.sqlstate() == "42P01" || e.sqlstate() == "22023") throw Error(ErrorKind::invalid, where);
    if (e.sqlstate() == "42501") throw Error(ErrorKind::refused, where);
    throw;
  }
}

}  // namespace

void provision_db_roles(const TaskSchema& schema, const DatabaseTarget& target) {
  const DbRoles roles = db_roles(schema);
  if (roles.login.size() > 63)
    throw Error(ErrorKind::invalid, schema.ref() +
                                        ": name@version is too long for a PostgreSQL role ('" +
                                        roles.login + "' is over 63 bytes)");
  if (target.platform) return provision_in_platform(schema, roles, target);
  pg::Connection conn(target.conninfo);
  const std::string run = conn.identifier(roles.run), login = conn.identifier(roles.login);
  pg::Transaction tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.role:' || $1))", {roles.run});
  for (const auto& [name, attributes] :
       {std::pair{roles.run, run + " NOLOGIN"}, std::pair{roles.login, login + " LOGIN NOINHERIT"}})
    if (tx.exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {name}).rows() == 0)
      tx.exec("CREATE ROLE " + attributes);
  std::string password = "NULL";
  if (auto v = password_verifier(conn, target, roles))
    password = "'" + *v + "'";  // SCRAM verifiers have no quotes
  tx.exec("ALTER ROLE " + login + " LOGIN NOINHERIT PASSWORD " + password);
  // DROP OWNED revokes what the roles hold here; a non-superuser installer
  // needs their privileges for it, which CREATEROLE lets it grant itself.
  if (tx.exec("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").boolean(0, 0) == false)
    tx.exec("GRANT " + run + ", " + login + " TO CURRENT_USER");
  tx.exec("DROP OWNED BY " + run + ", " + login);
  // Memberships of the login role other than run would widen it.
  auto others = tx.exec(
      "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
      "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = $1) AND r.rolname <> $2",
      {roles.login, roles.run});
  for (int i = 0; i < others.rows(); ++i)
    tx.exec("REVOKE " + conn.identifier(others.text(i, 0)) + " FROM " + login);
  tx.exec("GRANT " + run + " TO " + login);
  for (const auto& [table, access] : schema.capabilities.db->tables) {
    auto found = tx.exec(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass($1)",
        {table});
    if (found.rows() == 0)
      throw Error(ErrorKind::invalid, schema.ref() + ": capabilities.db.tables." + table +
                                          ": no such table in database connection '" +
                                          target.connection + "'");
    if (const std::string n = found.text(0, 0);
        n == "taskhost" || n == "information_schema" || n.rfind("pg_", 0) == 0)
      throw Error(ErrorKind::refused, schema.ref() + ": capabilities.db.tables." + table + ": " +
                                          n + "." + found.text(0, 1) +
                                          " is a platform table or a system catalog, which no "
                                          "schema is ever granted");
    const std::string ns = conn.identifier(found.text(0, 0));
    const std::string name = ns + "." + conn.identifier(found.text(0, 1));
    tx.exec("GRANT USAGE ON SCHEMA " + ns + " TO " + run);
    if (access == Access::read) {
      tx.exec("GRANT SELECT ON " + name + " TO " + run);
      continue;
    }
    tx.exec("GRANT SELECT, INSERT, UPDATE, DELETE ON " + name + " TO " + run);
    auto sequences = tx.exec(
        "SELECT s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
        "WHERE d.refobjid = to_regclass($1) AND d.deptype = 'a' AND s.relkind = 'S'",
        {table});
    for (int i = 0; i < sequences.rows(); ++i)
      tx.exec("GRANT USAGE ON SEQUENCE " + sequences.text(i, 0) + " TO " + run);
  }
  tx.commit();
}

namespace {

// The file's text, once its bytes are the reviewed ones.
std::string read_migration(const TaskSchema& schema, const DataMigration& m,
                           const std::filesystem::path& plugin_dir) {
  constexpr std::uintmax_t max_size = 4 << 20;
  const auto file = plugin_dir / m.path;
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec)
    throw Error(ErrorKind::environment,
                schema.ref() + ": data migration " + file.string() + ": " + ec.message());
  if (size > max_size)
    throw Error(ErrorKind::invalid,
                schema.ref() + ": data migration " + file.string() + " is over 4 MiB");
  std::ifstream in(file, std::ios::binary);
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof())
    throw Error(ErrorKind::environment,
                schema.ref() + ": cannot read data migration " + file.string());
  if (const auto digest = sha256_hex(body); digest != m.sha256)
    throw Error(ErrorKind::refused, schema.ref() + ": data migration " + file.string() +
                                        " has SHA-256 " + digest + ", not the reviewed " +
                                        m.sha256);
  return body;
}

bool apply_in_platform(pg::Connection& conn, const DataMigration& m, const std::string& body) {
  return conn.exec("SELECT taskhost.apply_data_migration($1, $2, $3)", {m.path, m.sha256, body})
      .boolean(0, 0);
}

bool apply_in_configured(pg::Connection& conn, const DataMigration& m, const std::string& body) {
  pg::Transaction tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.data_migration'))");
  tx.exec(
      "CREATE TABLE IF NOT EXISTS public.taskhost_data_migrations (path text PRIMARY KEY, "
      "sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT "
      "NULL)");
  auto applied =
      tx.exec("SELECT sha256 FROM public.taskhost_data_migrations WHERE path = $1", {m.path});
  if (applied.rows() > 0) {
    if (applied.text(0, 0) != m.sha256) {
      const std::string message =
          "it was applied with SHA-256 " + applied.text(0, 0) + " and now has " + m.sha256;
      throw pg::DbError("22023", message, message,
                        "an applied migration never changes: add a new file");
    }
    return false;
  }
  conn.exec_script(body);
  tx.exec(
      "INSERT INTO public.taskhost_data_migrations (path, sha256, applied_by) VALUES ($1, $2, "
      "session_user)",
      {m.path, m.sha256});
  tx.commit();
  return true;
}

}  // namespace

std::vector<std::string> apply_data_migrations(const TaskSchema& schema,
                                               const DatabaseTarget& target,
                                               const std::filesystem::path& plugin_dir) {
  std::vector<std::string> applied;
  if (!schema.capabilities.db || schema.capabilities.db->migrations.empty()) return applied;
  std::vector<std::string> bodies;  // all checked before any is applied
  for (const auto& m : schema.capabilities.db->migrations)
    bodies.push_back(read_migration(schema, m, plugin_dir));
  pg::Connection conn(target.conninfo);
  // A migration is a schema's code: it must not read this session's audit
  // sealer token (store/audit.hpp), and it appends nothing to need it.
  if (target.platform) conn.exec("RESET taskhost.audit_sealer");
  for (size_t i = 0; i < bodies.size(); ++i) {
    const DataMigration& m = schema.capabilities.db->migrations[i];
    try {
      if (target.platform ? apply_in_platform(conn, m, bodies[i])
                          : apply_in_configured(conn, m, bodies[i]))
        applied.push_back(m.path);
    } catch (const pg::DbError& e) {
      const std::string where = schema.ref() + ": data migration " + m.path + ": " + e.primary() +
                                " in database connection '" + target.connection + "'" +
                                (e.hint().empty() ? "" : " (" + e.hint() + ")");
      throw Error(e.sqlstate() == "42501" ? ErrorKind::refused : ErrorKind::invalid, where);
    }
  }
  return applied;
}

DatabaseService::DatabaseService(std::string schema, DbRoles roles, DbGrant grant,
                                 DatabaseTarget target, ServiceAudit audit, bool dry_run)
    : schema_(std::move(schema)),
      roles_(std::move(roles)),
      grant_(std::move(grant)),
      target_(std::move(target)),
      audit_(std::move(audit)),
      dry_run_(dry_run) {}

pg::Connection& DatabaseService::connection() {
  if (!conn_) {
    std::vector<std::pair<std::string, std::string>> as{{"user", roles_.login},
                                                        {"application_name", "taskhost"}};
    if (auto p = login_password(target_, roles_)) as.emplace_back("password", *p);
    try {
      conn_.emplace(target_.conninfo, as);
    } catch (const Error& e) {
      throw Error(e.kind(), std::string(e.what()) + " (as role " + roles_.login +
                                (target_.role_secret ? ""
                                                     : "; if the server asks for a password, "
                                                       "set databases." +
                                                           target_.connection + ".role_secret") +
                                ")");
    }
  }
  return *conn_;
}

std::vector<pg::Connection::Statement> DatabaseService::opening(pg::Connection& conn) const {
  std::vector<pg::Connection::Statement> out = {
      {dry_run_ ? "BEGIN READ ONLY" : "BEGIN", {}},
      {"SET LOCAL ROLE " + conn.identifier(roles_.run), {}},
      {"SET LOCAL statement_timeout = " + std::to_string(target_.statement_timeout.count()), {}}};
  // A statement takes the transaction's snapshot, after which PostgreSQL
  // refuses SET TRANSACTION READ WRITE.
  if (dry_run_) out.push_back({"SELECT 1", {}});
  return out;
}

void DatabaseService::begin() {
  pg::Connection& conn = connection();
  for (const auto& r : conn.pipeline(opening(conn)))
    if (!r.ok()) {
      if (PQtransactionStatus(conn.raw()) != PQTRANS_IDLE) conn.exec_script("ROLLBACK");
      r.raise();
    }
}

template <typename F>
auto DatabaseService::in_transaction(F&& f) {
  if (plugin_transaction_) return f();
  begin();
  try {
    auto result = f();
    connection().exec("COMMIT");
    return result;
  } catch (...) {
    if (conn_ && conn_->ok() && PQtransactionStatus(conn_->raw()) != PQTRANS_IDLE)
      conn_->exec_script("ROLLBACK");
    throw;
  }
}

pg::Result DatabaseService::alone(const std::string& sql, std::vector<pg::Param> params) {
  pg::Connection& conn = connection();
  // One round trip: the opening, the statement, a check that the role is
  // still the run role (casting the role's name to a number fails, which
  // aborts the transaction), the commit.
  auto statements = opening(conn);
  const size_t statement = statements.size(), check = statement + 1;
  statements.push_back({sql, std::move(params)});
  statements.push_back(
      {"SELECT CASE WHEN current_user = $1 THEN 0 ELSE current_user::text::int END", {roles_.run}});
  statements.push_back({"COMMIT", {}});
  auto results = conn.pipeline(statements);
  auto failed =
      std::find_if(results.begin(), results.end(), [](const pg::Result& r) { return !r.ok(); });
  if (failed == results.end()) return std::move(results[statement]);
  if (PQtransactionStatus(conn.raw()) != PQTRANS_IDLE) conn.exec_script("ROLLBACK");
  const std::string command = results[statement].ok() ? results[statement].command() : "";
  if (command == "COMMIT" || command == "ROLLBACK")
    throw Error(ErrorKind::invalid,
                "db: the statement ended the transaction; use begin(), commit() and rollback()");
  if (failed - results.begin() == static_cast<ptrdiff_t>(check)) throw role_changed();
  failed->raise();
}

Error DatabaseService::role_changed() const {
  return Error(ErrorKind::refused, "permission denied: schema " + schema_ +
                                       " runs its statements as role " + roles_.run +
                                       "; a statement that changes the role is refused (the "
                                       "transaction was rolled back)");
}

void DatabaseService::check_after(const pg::Result& r) {
  pg::Connection& conn = *conn_;
  if (PQtransactionStatus(conn.raw()) != PQTRANS_INTRANS) {
    plugin_transaction_ = false;
    throw Error(ErrorKind::invalid,
                "db: the statement ended the transaction; use begin(), commit() and rollback()");
  }
  const std::string command = r.command();
  if (command != "SET" && command != "RESET") return;
  // SET/RESET ROLE (or SET statement_timeout) would leave what the host set:
  // put the timeout back, and refuse a role change.
  auto check = conn.exec("SELECT current_user = $1, set_config('statement_timeout', $2, true)",
                         {roles_.run, std::to_string(target_.statement_timeout.count())});
  if (check.boolean(0, 0)) return;
  conn.exec_script("ROLLBACK");
  plugin_transaction_ = false;
  throw role_changed();
}

Json DatabaseService::call(const std::string& op, const Json& request, const ByteSource& in,
                           const ByteSink&) {
  ServiceCall record{"db", op, target_.connection, 0, "ok"};
  return audited(audit_, record, [&] {
    try {
      return perform(op, request, in, record);
    } catch (const pg::DbError& e) {
      if (dry_run_ && e.sqlstate() == "25006")  // read_only_sql_transaction
        throw dry_run_refusal("db " + op + " (" + e.primary() + ")");
      if (!conn_ || conn_->ok()) throw plugin_error(e);
      // The next call connects afresh; the server rolled back what was open.
      conn_.reset();
      const bool open = std::exchange(plugin_transaction_, false);
      throw Error(ErrorKind::environment,
                  std::string("db: the connection to the database was lost") +
                      (open ? " and the open transaction with it" : "") + " (" + e.what() + ")");
    }
  });
}

Json DatabaseService::perform(const std::string& op, const Json& request, const ByteSource& in,
                              ServiceCall& record) {
  const bool transaction_op = op == "commit" || op == "rollback" || op == "savepoint" ||
                              op == "release" || op == "rollback_to";
  if (transaction_op && !plugin_transaction_)
    throw Error(ErrorKind::invalid, "db: " + op + " needs an open transaction (begin() first)");
  if (op == "query") {
    const std::string& sql = string_field(request, "db", "sql");
    record.resource += ": " + sql.substr(0, 200);
    auto params = statement_params(request);
    pg::Result r = plugin_transaction_ ? [&] {
      pg::Result r = connection().exec(sql, params);
      check_after(r);
      return r;
    }()
                                       : alone(sql, std::move(params));
    Json columns = Json::array(), rows = Json::array();
    for (int c = 0; c < r.columns(); ++c)
      columns.push_back({{"name", r.column_name(c)}, {"type", r.column_type(c)}});
    for (int i = 0; i < r.rows(); ++i) {
      Json row = Json::array();
      for (int c = 0; c < r.columns(); ++c)
        row.push_back(r.null(i, c) ? Json() : Json(r.text(i, c)));
      rows.push_back(std::move(row));
    }
    record.outcome = r.command();
    return Json{
        {"columns", columns}, {"rows", rows}, {"command", r.command()}, {"affected", r.affected()}};
  }
  if (op == "copy_in") {
    const std::string& table = string_field(request, "db", "table");
    record.resource += ": " + table;
    auto granted = grant_.tables.find(table);
    if (granted == grant_.tables.end() || !allows(granted->second, Access::write)) {
      std::string list;
      for (const auto& [t, a] : grant_.tables)
        list += (list.empty() ? "" : ", ") + t + " " + access_name(a);
      throw not_granted(schema_, "db write", "table " + table, list, "granted: none");
    }
    if (dry_run_) throw dry_run_refusal("db copy_in into " + table);
    auto columns = request.find("columns");
    if (columns == request.end() || !columns->is_array() || columns->empty())
      throw Error(ErrorKind::invalid, "db: 'columns' must be a non-empty array of column names");
    pg::Connection& conn = connection();
    std::string list;
    for (const auto& c : *columns) {
      if (!c.is_string() || c.get<std::string>().empty())
        throw Error(ErrorKind::invalid, "db: a column name must be a non-empty string");
      list += (list.empty() ? "" : ", ") + conn.identifier(c.get<std::string>());
    }
    const std::string sql = "COPY " + quoted_table(conn, table) + " (" + list + ") FROM STDIN";
    int64_t rows = in_transaction([&] {
      return connection().copy_in(sql, [&](char* buf, size_t cap) {
        size_t n = in(buf, cap);
        record.bytes += n;
        return n;
      });
    });
    record.outcome = "COPY " + std::to_string(rows);
    return Json{{"rows", rows}};
  }
  if (op == "begin") {
    if (plugin_transaction_) throw Error(ErrorKind::invalid, "db: a transaction is already open");
    begin();
    plugin_transaction_ = true;
    return Json::object();
  }
  if (op == "commit") {
    plugin_transaction_ = false;
    if (connection().exec("COMMIT").command() == "ROLLBACK")
      throw Error(ErrorKind::invalid,
                  "db: a statement of the transaction had failed, so it was rolled back");
    return Json::object();
  }
  if (op == "rollback") {
    plugin_transaction_ = false;
    connection().exec("ROLLBACK");
    return Json::object();
  }
  if (op == "savepoint" || op == "release" || op == "rollback_to") {
    const std::string& name = savepoint_name(request);
    record.resource += ": " + name;
    const char* verb = op == "savepoint" ? "SAVEPOINT "
                       : op == "release" ? "RELEASE SAVEPOINT "
                                         : "ROLLBACK TO SAVEPOINT ";
    connection().exec(verb + connection().identifier(name));
    return Json::object();
  }
  throw Error(ErrorKind::invalid, "db: unknown operation '" + op + "'");
}

}  // namespace taskhost
