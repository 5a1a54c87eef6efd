#pragma once

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace taskhost::pg {

// A failed statement. sqlstate is PostgreSQL's five-character error code.
class DbError : public Error {
 public:
  DbError(std::string sqlstate, const std::string& message, std::string primary = "",
          std::string hint = "")
      : Error(ErrorKind::environment, message),
        sqlstate_(std::move(sqlstate)),
        primary_(std::move(primary)),
        hint_(std::move(hint)) {}
  const std::string& sqlstate() const { return sqlstate_; }
  bool unique_violation() const { return sqlstate_ == "23505"; }
  // The server's message alone (no severity, context or hint), and its hint:
  // for errors raised by the platform's own functions, which say where.
  const std::string& primary() const { return primary_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string sqlstate_, primary_, hint_;
};

// One statement parameter, sent as text of a type the server infers; an
// empty Param is SQL NULL.
class Param {
 public:
  // Bytes sent as they are (binary format) as a value of type `oid`
  // (17: bytea).
  static Param binary(std::string bytes, unsigned oid = 17) {
    Param p(std::move(bytes));
    p.binary_oid_ = oid;
    return p;
  }
  Param(std::nullopt_t) {}
  Param(std::string v) : value_(std::move(v)) {}
  Param(const char* v) : value_(v) {}
  Param(int64_t v) : value_(std::to_string(v)) {}
  Param(int v) : value_(std::to_string(v)) {}
  Param(uint64_t v) : value_(std::to_string(v)) {}
  Param(bool v) : value_(v ? "true" : "false") {}
  Param(std::optional<std::string> v) : value_(std::move(v)) {}
  const char* c_str() const { return value_ ? value_->c_str() : nullptr; }
  int size() const { return value_ ? static_cast<int>(value_->size()) : 0; }
  unsigned binary_oid() const { return binary_oid_; }  // 0: text

 private:
  std::optional<std::string> value_;
  unsigned binary_oid_ = 0;
};

// The rows of a completed statement. Columns are read as text.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const { return PQntuples(r_.get()); }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string text(int row, int col) const { return PQgetvalue(r_.get(), row, col); }
  std::optional<std::string> optional(int row, int col) const {
    return null(row, col) ? std::nullopt : std::optional<std::string>(text(row, col));
  }
  int64_t integer(int row, int col) const { return std::stoll(text(row, col)); }
  bool boolean(int row, int col) const { return text(row, col) == "t"; }
  // Rows changed by INSERT/UPDATE/DELETE (and copied by COPY).
  int64_t affected() const;
  int columns() const { return PQnfields(r_.get()); }
  std::string column_name(int col) const { return PQfname(r_.get(), col); }
  unsigned column_type(int col) const { return PQftype(r_.get(), col); }
  // The command tag, e.g. "SELECT 3", "INSERT 0 1", "SET".
  std::string command() const { return PQcmdStatus(r_.get()); }
  // Whether the statement succeeded; if not, raise() throws its DbError.
  bool ok() const;
  [[noreturn]] void raise() const;

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> r_;
};

// A PostgreSQL array literal of text, for a $n::type[] parameter (batched
// statements use unnest); std::nullopt elements are NULL.
std::string array_literal(const std::vector<std::optional<std::string>>& items);

// The connection string (URL or keyword=value) with session settings every
// connection made from it applies, e.g. taskhost.webhook_default_url from
// the host config, which database triggers read with current_setting().
std::string with_settings(const std::string& conninfo,
                          const std::vector<std::pair<std::string, std::string>>& settings);

class Connection;

// From now on, every connection this process opens that logs in as `role`
// first runs setup (the host makes each session of its runtime role an audit
// sealer, store/audit.hpp); a setup that throws fails the connection. Other
// roles (a schema's own, the owner, a superuser) are left alone.
void set_session_setup(std::string role, std::function<void(Connection&)> setup);

// An open session. Not thread-safe: one thread uses a Connection at a time.
class Connection {
 public:
  // Connects; throws Error(environment) naming the target but never the
  // password.
  explicit Connection(const std::string& conninfo) : Connection(conninfo, {}) {}
  // The same target with some parameters replaced, e.g. {"user", "..."}.
  Connection(const std::string& conninfo,
             const std::vector<std::pair<std::string, std::string>>& overrides);

  // Runs one parameterized statement ($1, $2, ...). Throws DbError.
  Result exec(const std::string& sql, std::initializer_list<Param> params = {});
  Result exec(const std::string& sql, const std::vector<Param>& params);
  // One statement of a pipeline.
  struct Statement {
    std::string sql;
    std::vector<Param> params;
  };
  // Runs the statements in one round trip (libpq's pipeline mode) and
  // returns one result per statement; once one failed, the rest did not run
  // (their results fail too). Throws DbError only if the connection fails.
  std::vector<Result> pipeline(const std::vector<Statement>& statements);
  // Runs a script of several statements without parameters (migrations).
  void exec_script(const std::string& sql);
  // Runs `COPY ... FROM STDIN` with the data read from `read(buf, capacity)`
  // (bytes written, 0 at the end). If read throws, the COPY is aborted and
  // the exception passes on. Returns the rows copied; throws DbError.
  int64_t copy_in(const std::string& sql, const std::function<size_t(char*, size_t)>& read);

  // name quoted as an SQL identifier ("a""b"), for statements composed by
  // the host where a parameter cannot stand (role and table names).
  std::string identifier(const std::string& name);

  // False once the server went away; the connection must then be replaced.
  bool ok() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  PGconn* raw() { return conn_.get(); }

 private:
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn_;
};

// BEGIN on construction, ROLLBACK on destruction unless commit() was called.
class Transaction {
 public:
  explicit Transaction(Connection& c);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Result exec(const std::string& sql, std::initializer_list<Param> params = {}) {
    return conn_.exec(sql, params);
  }
  void commit();
  Connection& connection() { return conn_; }

 private:
  Connection& conn_;
  bool done_ = false;
};

// At most `size` connections shared by threads, opened on first need. A
// connection that went bad is dropped when handed back, so the next
// acquire() reconnects.
class Pool {
 public:
  Pool(std::string conninfo, int size) : conninfo_(std::move(conninfo)), size_(size) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  class Lease {
   public:
    Lease(Pool& pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (conn_) pool_.release(std::move(conn_));
    }
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }

   private:
    Pool& pool_;
    std::unique_ptr<Connection> conn_;
  };

  // Waits for a free connection; throws Error(environment) if connecting fails.
  Lease acquire();
  const std::string& conninfo() const { return conninfo_; }

 private:
  void release(std::unique_ptr<Connection> conn);

  std::string conninfo_;
  int size_;
  std::mutex mutex_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Connection>> idle_;
  int open_ = 0;
};

}  // namespace taskhost::pg
