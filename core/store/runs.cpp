#include "store/runs.hpp"

#include <array>

namespace taskhost {
namespace {

constexpr std::array<const char*, 8> state_names = {
    "queued", "running", "pausing", "paused", "cancelling", "cancelled", "succeeded", "failed"};

// States in which an attempt owns the run.
const std::string active_states = "('running', 'pausing', 'cancelling')";

const char* run_columns =
    "SELECT r.id, r.schema_id, s.name, s.version, r.params::text, r.state, r.attempt, r.actor, "
    "r.created_at::text, r.started_at::text, r.finished_at::text, r.progress_done, "
    "r.progress_total, r.checkpoint::text, r.output::text, r.error_code, r.error, "
    "extract(epoch FROM coalesce(r.finished_at, now()) - coalesce(r.started_at, now()))::float8 "
    "FROM taskhost.runs r JOIN taskhost.task_schemas s ON s.id = r.schema_id ";

Json json_or_null(const pg::Result& r, int row, int col) {
  return r.null(row, col) ? Json() : Json::parse(r.text(row, col));
}

std::vector<Run> read_runs(const pg::Result& r) {
  std::vector<Run> out;
  for (int i = 0; i < r.rows(); ++i) {
    Run run;
    run.id = r.text(i, 0);
    run.schema_id = r.integer(i, 1);
    run.schema_name = r.text(i, 2);
    run.schema_version = r.text(i, 3);
    run.params = Json::parse(r.text(i, 4));
    run.state = run_state_from(r.text(i, 5));
    run.attempt = static_cast<int>(r.integer(i, 6));
    run.actor = r.text(i, 7);
    run.created_at = r.text(i, 8);
    run.started_at = r.optional(i, 9);
    run.finished_at = r.optional(i, 10);
    if (!r.null(i, 11)) run.progress_done = r.integer(i, 11);
    if (!r.null(i, 12)) run.progress_total = r.integer(i, 12);
    run.checkpoint = json_or_null(r, i, 13);
    run.output = json_or_null(r, i, 14);
    run.error_code = r.optional(i, 15);
    run.error = r.optional(i, 16);
    run.elapsed_seconds = std::stod(r.text(i, 17));
    out.push_back(std::move(run));
  }
  return out;
}

}  // namespace

const char* to_string(RunState s) { return state_names[static_cast<size_t>(s)]; }

RunState run_state_from(const std::string& s) {
  for (size_t i = 0; i < state_names.size(); ++i)
    if (s == state_names[i]) return static_cast<RunState>(i);
  throw Error(ErrorKind::invalid,
              "unknown run state '" + s +
                  "' (expected queued, running, pausing, paused, cancelling, cancelled, "
                  "succeeded or failed)");
}

bool is_final(RunState s) {
  return s == RunState::succeeded || s == RunState::failed || s == RunState::cancelled;
}

std::string insert_run(pg::Transaction& tx, int64_t schema_id, const Json& params,
                       const std::string& actor) {
  auto r = tx.exec(
      "INSERT INTO taskhost.runs (schema_id, params, state, actor) VALUES ($1, $2, 'queued', $3) "
      "RETURNING id",
      {schema_id, params.dump(), actor});
  std::string id = r.text(0, 0);
  tx.exec(
      "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor, reason) "
      "VALUES ($1, 0, NULL, 'queued', $2, 'submitted')",
      {id, actor});
  return id;
}

Run get_run(pg::Connection& conn, const std::string& id_or_prefix) {
  if (id_or_prefix.size() < 8)
    throw Error(ErrorKind::invalid,
                "run id '" + id_or_prefix + "' is too short: give at least 8 characters");
  auto runs = read_runs(conn.exec(
      run_columns + std::string("WHERE r.id::text LIKE $1 || '%' LIMIT 2"), {id_or_prefix}));
  if (runs.empty()) throw Error(ErrorKind::not_found, "no run " + id_or_prefix);
  if (runs.size() > 1)
    throw Error(ErrorKind::invalid,
                "run id prefix " + id_or_prefix + " is ambiguous; give more of it");
  return runs.front();
}

std::vector<Run> list_runs(pg::Connection& conn, const RunFilter& f) {
  return read_runs(
      conn.exec(run_columns + std::string("WHERE ($1::text IS NULL OR s.name = $1) AND "
                                          "($2::text IS NULL OR r.state = $2) "
                                          "ORDER BY r.created_at DESC, r.id LIMIT $3"),
                {f.schema, f.state ? std::optional<std::string>(to_string(*f.state)) : std::nullopt,
                 f.limit}));
}

std::vector<Transition> run_transitions(pg::Connection& conn, const std::string& id) {
  auto r = conn.exec(
      "SELECT attempt, from_state, to_state, actor, reason, at::text FROM taskhost.run_transitions "
      "WHERE run_id = $1 ORDER BY id",
      {id});
  std::vector<Transition> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({static_cast<int>(r.integer(i, 0)), r.optional(i, 1), r.text(i, 2), r.text(i, 3),
                   r.text(i, 4), r.text(i, 5)});
  return out;
}

std::vector<RunEvent> run_events(pg::Connection& conn, const std::string& id, int limit) {
  auto r = conn.exec(
      "SELECT attempt, name, payload::text, at::text FROM taskhost.run_events "
      "WHERE run_id = $1 ORDER BY id LIMIT $2",
      {id, limit});
  std::vector<RunEvent> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back(
        {static_cast<int>(r.integer(i, 0)), r.text(i, 1), Json::parse(r.text(i, 2)), r.text(i, 3)});
  return out;
}

int RunWriter::start() {
  pg::Transaction tx(conn_);
  auto r = tx.exec(
      "UPDATE taskhost.runs SET state = 'running', attempt = attempt + 1, started_at = now(), "
      "updated_at = now() WHERE id = $1 AND state = 'queued' RETURNING attempt",
      {id_});
  if (r.rows() == 0)
    throw Error(ErrorKind::conflict, "run " + id_ + " is not queued, so it cannot start");
  attempt_ = static_cast<int>(r.integer(0, 0));
  tx.exec(
      "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor, reason) "
      "VALUES ($1, $2, 'queued', 'running', $3, 'started')",
      {id_, attempt_, actor_});
  tx.commit();
  return attempt_;
}

namespace {

void require_owned(const pg::Result& r, const std::string& id, int attempt) {
  if (r.affected() == 0)
    throw Error(ErrorKind::conflict, "run " + id + " attempt " + std::to_string(attempt) +
                                         " no longer owns the run; the write was discarded");
}

}  // namespace

void RunWriter::update(const std::string& assignments, std::vector<pg::Param> values) {
  values.insert(values.begin(), {id_, attempt_});
  require_owned(conn_.exec("UPDATE taskhost.runs SET " + assignments +
                               ", updated_at = now() WHERE id = $1 AND attempt = $2 AND state IN " +
                               active_states,
                           values),
                id_, attempt_);
}

void RunWriter::progress(uint64_t done, uint64_t total) {
  update("progress_done = $3, progress_total = $4", {done, total});
}

void RunWriter::checkpoint(const std::string& json) { update("checkpoint = $3::jsonb", {json}); }

Json RunWriter::checkpoint() const {
  auto r = conn_.exec("SELECT checkpoint::text FROM taskhost.runs WHERE id = $1", {id_});
  return r.rows() == 0 ? Json() : json_or_null(r, 0, 0);
}

void RunWriter::emit(const std::string& name, const std::string& json) {
  // Inserted only while this attempt owns the run, in one statement.
  require_owned(conn_.exec("INSERT INTO taskhost.run_events (run_id, attempt, name, payload) "
                           "SELECT id, attempt, $3, $4::jsonb FROM taskhost.runs "
                           "WHERE id = $1 AND attempt = $2 AND state IN " +
                               active_states,
                           {id_, attempt_, name, json}),
                id_, attempt_);
}

void RunWriter::output(const std::string& json) { update("output = $3::jsonb", {json}); }

RunState RunWriter::state() const {
  auto r = conn_.exec("SELECT state FROM taskhost.runs WHERE id = $1", {id_});
  return run_state_from(r.text(0, 0));
}

void RunWriter::finish(RunState to, const std::optional<std::string>& error_code,
                       const std::optional<std::string>& error, const std::string& reason) {
  pg::Transaction tx(conn_);
  auto r = tx.exec(
      "WITH old AS (SELECT id, state FROM taskhost.runs WHERE id = $1 FOR UPDATE) "
      "UPDATE taskhost.runs r SET state = $3, error_code = $4, error = $5, updated_at = now(), "
      "finished_at = CASE WHEN $3 = 'paused' THEN NULL ELSE now() END FROM old "
      "WHERE r.id = old.id AND r.attempt = $2 AND old.state IN " +
          active_states + " RETURNING old.state",
      {id_, attempt_, to_string(to), error_code, error});
  require_owned(r, id_, attempt_);
  tx.exec(
      "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor, reason) "
      "VALUES ($1, $2, $3, $4, $5, $6)",
      {id_, attempt_, r.text(0, 0), to_string(to), actor_, reason});
  tx.commit();
}

}  // namespace taskhost
