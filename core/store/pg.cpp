#include "store/pg.hpp"

#include <spdlog/spdlog.h>

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

Result check(PGconn* conn, PGresult* r) {
  Result result(r);
  auto status = PQresultStatus(r);
  if (r == nullptr || (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    throw DbError(state ? state : "", "database: " + msg);
  }
  return result;
}

}  // namespace

int64_t Result::affected() const {
  const char* n = PQcmdTuples(r_.get());
  return *n ? std::stoll(n) : 0;
}

namespace {
std::mutex settings_mutex;
std::vector<std::pair<std::string, std::string>> session_settings;
}  // namespace

void set_session_setting(const std::string& name, const std::string& value) {
  std::lock_guard lock(settings_mutex);
  for (auto& [k, v] : session_settings)
    if (k == name) {
      v = value;
      return;
    }
  session_settings.emplace_back(name, value);
}

Connection::Connection(const std::string& conninfo)
    : conn_(PQconnectdb(conninfo.c_str()), &PQfinish) {
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    std::string msg = conn_ ? PQerrorMessage(conn_.get()) : "out of memory";
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    std::string where = conn_ ? std::string(PQdb(conn_.get())) + " on " +
                                    (PQhost(conn_.get()) ? PQhost(conn_.get()) : "?")
                              : "?";
    throw Error(ErrorKind::environment, "cannot connect to database " + where + ": " + msg);
  }
  PQsetNoticeProcessor(conn_.get(), &log_notice, nullptr);
  std::lock_guard lock(settings_mutex);
  for (const auto& [name, value] : session_settings)
    exec("SELECT set_config($1, $2, false)", {name, value});
}

Result Connection::exec(const std::string& sql, std::initializer_list<Param> params) {
  return exec(sql, std::vector<Param>(params));
}

Result Connection::exec(const std::string& sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  return check(conn_.get(), PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                         nullptr, values.data(), nullptr, nullptr, 0));
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
