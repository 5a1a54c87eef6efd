#include "store/pg.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <mutex>

namespace taskhost::pg {

std::string array_literal(const std::vector<std::optional<std::string>>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    if (!items[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

namespace {

void log_notice(void*, const char* message) {
  std::string m(message);
  while (!m.empty() && m.back() == '\n') m.pop_back();
  spdlog::debug("postgres: {}", m);
}

// The error of a failed result, or of the connection when there is none.
DbError error_of(PGconn* conn, const PGresult* r) {
  auto field = [r](int code) {
    const char* v = r ? PQresultErrorField(r, code) : nullptr;
    return std::string(v ? v : "");
  };
  std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return DbError(field(PG_DIAG_SQLSTATE), "database: " + msg, field(PG_DIAG_MESSAGE_PRIMARY),
                 field(PG_DIAG_MESSAGE_HINT));
}

Result check(PGconn* conn, PGresult* r) {
  Result result(r);
  auto status = PQresultStatus(r);
  if (r == nullptr || (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK))
    throw error_of(conn, r);
  return result;
}

}  // namespace

int64_t Result::affected() const {
  const char* n = PQcmdTuples(r_.get());
  return *n ? std::stoll(n) : 0;
}

std::string with_settings(const std::string& conninfo,
                          const std::vector<std::pair<std::string, std::string>>& settings) {
  if (settings.empty()) return conninfo;
  char* error = nullptr;
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> parsed(
      PQconninfoParse(conninfo.c_str(), &error), &PQconninfoFree);
  if (!parsed) {
    std::string why = error ? error : "out of memory";
    PQfreemem(error);
    throw Error(ErrorKind::invalid, "the database URL cannot be read: " + why);
  }
  // options holds -c name=value words; a space or backslash in a value is
  // escaped with a backslash. The string is rebuilt as keyword='value' pairs.
  auto quoted = [](const std::string& v, const std::string& specials) {
    std::string out;
    for (char c : v) {
      if (specials.find(c) != std::string::npos) out += '\\';
      out += c;
    }
    return out;
  };
  std::string options, out;
  for (auto* o = parsed.get(); o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string(o->keyword) == "options") {
      options = o->val;
      continue;
    }
    out += std::string(o->keyword) + "='" + quoted(o->val, "'\\") + "' ";
  }
  for (const auto& [name, value] : settings)
    options += (options.empty() ? "" : " ") + ("-c " + name + "=" + quoted(value, " \\"));
  return out + "options='" + quoted(options, "'\\") + "'";
}

namespace {

struct SessionSetup {
  std::mutex mutex;
  std::string role;
  std::function<void(Connection&)> setup;
};
SessionSetup& session_setup() {
  static SessionSetup s;
  return s;
}

PGconn* connect(const std::string& conninfo,
                const std::vector<std::pair<std::string, std::string>>& overrides) {
  // dbname first, expanded as a connection string; later keywords win.
  std::vector<const char*> keys{"dbname"}, values{conninfo.c_str()};
  for (const auto& [k, v] : overrides) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  return PQconnectdbParams(keys.data(), values.data(), 1);
}
}  // namespace

Connection::Connection(const std::string& conninfo,
                       const std::vector<std::pair<std::string, std::string>>& overrides)
    : conn_(connect(conninfo, overrides), &PQfinish) {
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    std::string msg = conn_ ? PQerrorMessage(conn_.get()) : "out of memory";
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    std::string where = conn_ ? std::string(PQdb(conn_.get())) + " on " +
                                    (PQhost(conn_.get()) ? PQhost(conn_.get()) : "?")
                              : "?";
    throw Error(ErrorKind::environment, "cannot connect to database " + where + ": " + msg);
  }
  PQsetNoticeProcessor(conn_.get(), &log_notice, nullptr);
  std::function<void(Connection&)> setup;
  {
    auto& s = session_setup();
    std::lock_guard lock(s.mutex);
    if (s.setup && s.role == PQuser(conn_.get())) setup = s.setup;
  }
  if (setup) setup(*this);
}

void set_session_setup(std::string role, std::function<void(Connection&)> setup) {
  auto& s = session_setup();
  std::lock_guard lock(s.mutex);
  s.role = std::move(role);
  s.setup = std::move(setup);
}

Result Connection::exec(const std::string& sql, std::initializer_list<Param> params) {
  return exec(sql, std::vector<Param>(params));
}

namespace {
// Parameters as PQexecParams and PQsendQueryParams take them.
struct Bound {
  explicit Bound(const std::vector<Param>& params)
      : n(static_cast<int>(params.size())), values(n), types(n), lengths(n), formats(n) {
    for (int i = 0; i < n; ++i) {
      values[i] = params[i].c_str();
      types[i] = params[i].binary_oid();  // 0 lets the server infer a text value's type
      lengths[i] = params[i].size();
      formats[i] = params[i].binary_oid() != 0;
    }
  }
  int n;
  std::vector<const char*> values;
  std::vector<Oid> types;
  std::vector<int> lengths, formats;
};
}  // namespace

bool Result::ok() const {
  const auto status = PQresultStatus(r_.get());
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

void Result::raise() const {
  if (PQresultStatus(r_.get()) == PGRES_PIPELINE_ABORTED)
    throw DbError("", "database: not run, an earlier statement of its pipeline failed");
  throw error_of(nullptr, r_.get());
}

std::vector<Result> Connection::pipeline(const std::vector<Statement>& statements) {
  PGconn* c = conn_.get();
  if (PQenterPipelineMode(c) != 1) check(c, nullptr);
  bool sent = true;
  for (const auto& s : statements) {
    Bound b(s.params);
    sent = sent && PQsendQueryParams(c, s.sql.c_str(), b.n, b.types.data(), b.values.data(),
                                     b.lengths.data(), b.formats.data(), 0) == 1;
  }
  sent = sent && PQpipelineSync(c) == 1;
  std::vector<Result> results;
  // Every statement's result, then the end of its results (NULL); then the
  // sync. Read them all, even after a failure, to leave the pipeline whole.
  for (size_t i = 0; sent && i < statements.size(); ++i) {
    PGresult* r = PQgetResult(c);
    if (r == nullptr) break;  // the connection failed
    const auto status = PQresultStatus(r);
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      // The session waits for COPY data with the rest of the pipeline behind
      // it, and libpq has no way back from there: start a new session.
      PQclear(r);
      PQreset(c);
      if (PQpipelineStatus(c) != PQ_PIPELINE_OFF) PQexitPipelineMode(c);
      throw DbError("0A000",
                    "database: COPY to or from the client is not a statement (use "
                    "copy_in); the session was reset");
    }
    results.emplace_back(r);
    while (PGresult* extra = PQgetResult(c)) PQclear(extra);
  }
  while (PGresult* r = PQgetResult(c)) {
    const bool synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
    PQclear(r);
    if (synced) break;
  }
  PQexitPipelineMode(c);
  if (!sent || results.size() < statements.size()) check(c, nullptr);
  return results;
}

Result Connection::exec(const std::string& sql, const std::vector<Param>& params) {
  Bound b(params);
  PGresult* r = PQexecParams(conn_.get(), sql.c_str(), b.n, b.types.data(), b.values.data(),
                             b.lengths.data(), b.formats.data(), 0);
  const auto status = PQresultStatus(r);
  if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT) {
    // A COPY with the client as one end would leave the session waiting for
    // data: end it (no rows go in, those coming out are dropped) and refuse.
    PQclear(r);
    if (status == PGRES_COPY_IN) PQputCopyEnd(conn_.get(), "refused by the host");
    char* row = nullptr;
    while (status == PGRES_COPY_OUT && PQgetCopyData(conn_.get(), &row, 0) > 0) PQfreemem(row);
    while (PGresult* rest = PQgetResult(conn_.get())) PQclear(rest);
    throw DbError("0A000", "database: COPY to or from the client is not a statement (use copy_in)");
  }
  return check(conn_.get(), r);
}

int64_t Connection::copy_in(const std::string& sql,
                            const std::function<size_t(char*, size_t)>& read) {
  PGconn* c = conn_.get();
  PGresult* started = PQexec(c, sql.c_str());
  if (PQresultStatus(started) != PGRES_COPY_IN) {
    check(c, started);  // throws the server's error
    throw DbError("", "database: not a COPY FROM STDIN statement");
  }
  PQclear(started);
  std::exception_ptr failed;
  // One CopyData message per read. The server parses a message only once it
  // has all of it, so small messages let it work while the source fills the
  // next (256 KiB messages made a generated 1M-row load 1.5x slower).
  std::vector<char> buf(32 << 10);
  try {
    for (size_t got; (got = read(buf.data(), buf.size())) > 0;)
      if (PQputCopyData(c, buf.data(), static_cast<int>(got)) != 1)
        break;  // the connection failed: PQgetResult below says why
  } catch (...) {
    failed = std::current_exception();
  }
  PQputCopyEnd(c, failed ? "the data source failed" : nullptr);
  std::optional<Result> done;
  while (PGresult* r = PQgetResult(c)) {
    if (failed || done) {
      PQclear(r);
      continue;
    }
    try {
      done.emplace(check(c, r));
    } catch (...) {
      while (PGresult* rest = PQgetResult(c)) PQclear(rest);
      throw;
    }
  }
  if (failed) std::rethrow_exception(failed);
  if (!done) check(c, nullptr);
  return done->affected();
}

std::string Connection::identifier(const std::string& name) {
  std::unique_ptr<char, decltype(&PQfreemem)> quoted(
      PQescapeIdentifier(conn_.get(), name.data(), name.size()), &PQfreemem);
  if (!quoted) throw Error(ErrorKind::invalid, "not an identifier: " + name);
  return quoted.get();
}

void Connection::exec_script(const std::string& sql) {
  check(conn_.get(), PQexec(conn_.get(), sql.c_str()));
}

Transaction::Transaction(Connection& c) : conn_(c) { conn_.exec("BEGIN"); }

Transaction::~Transaction() {
  if (done_) return;
  try {
    conn_.exec("ROLLBACK");
  } catch (const std::exception& e) {
    spdlog::warn("rollback failed: {}", e.what());
  }
}

void Transaction::commit() {
  conn_.exec("COMMIT");
  done_ = true;
}

Pool::Lease Pool::acquire() {
  std::unique_lock lock(mutex_);
  freed_.wait(lock, [&] { return !idle_.empty() || open_ < size_; });
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(conn));
  }
  ++open_;
  lock.unlock();
  try {
    return Lease(*this, std::make_unique<Connection>(conninfo_));
  } catch (...) {
    lock.lock();
    --open_;
    freed_.notify_one();
    throw;
  }
}

void Pool::release(std::unique_ptr<Connection> conn) {
  std::lock_guard lock(mutex_);
  // A bad connection, or one left inside a failed transaction, is not reused.
  if (conn->ok() && PQtransactionStatus(conn->raw()) == PQTRANS_IDLE)
    idle_.push_back(std::move(conn));
  else
    --open_;
  freed_.notify_one();
}

}  // namespace taskhost::pg
