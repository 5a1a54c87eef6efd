#include "store/runs.hpp"

#include <array>

#include "common/pattern.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"

namespace taskhost {
namespace {

constexpr std::array<const char*, 10> state_names = {
    "queued",    "running", "pausing",           "paused",  "cancelling", "cancelled",
    "succeeded", "failed",  "awaiting_approval", "rejected"};

// States in which an attempt owns the run.
const std::string active_states = "('running', 'pausing', 'cancelling')";

// The SELECT of runs; a listing leaves out the checkpoint and the output
// (up to a megabyte each), which only `runs show` prints.
std::string run_columns(bool large) {
  return std::string(
             "SELECT r.id, r.schema_id, s.name, s.version, r.params::text, r.state, r.attempt, "
             "r.actor, r.created_at::text, r.started_at::text, r.finished_at::text, "
             "r.progress_done, r.progress_total, ") +
         (large ? "r.checkpoint::text, r.output::text, " : "NULL, NULL, ") +
         "r.error_code, r.error, "
         "extract(epoch FROM coalesce(r.finished_at, now()) - coalesce(r.started_at, now()))"
         "::float8, r.max_attempts, r.run_after::text, r.lease_owner, r.parent_run_id::text, "
         "r.idempotency_key, coalesce(r.progress_done, 0) - r.attempt_progress_base, "
         "r.dry_run, r.approval_required, ap.decision, ap.actor, ap.reason, ap.at::text "
         "FROM taskhost.runs r JOIN taskhost.task_schemas s ON s.id = r.schema_id "
         "LEFT JOIN taskhost.run_approvals ap ON ap.run_id = r.id ";
}

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
    run.max_attempts = static_cast<int>(r.integer(i, 18));
    run.run_after = r.text(i, 19);
    run.lease_owner = r.optional(i, 20);
    run.parent_run_id = r.optional(i, 21);
    run.idempotency_key = r.optional(i, 22);
    run.attempt_progress = r.integer(i, 23);
    run.dry_run = r.boolean(i, 24);
    run.approval_required = r.boolean(i, 25);
    if (!r.null(i, 26))
      run.approval = Approval{r.text(i, 26), r.text(i, 27), r.text(i, 28), r.text(i, 29)};
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
                  "' (expected awaiting_approval, queued, running, pausing, paused, "
                  "cancelling, cancelled, succeeded, failed or rejected)");
}

bool is_final(RunState s) {
  return s == RunState::succeeded || s == RunState::failed || s == RunState::cancelled ||
         s == RunState::rejected;
}

void check_run_id(const std::string& id_or_prefix) {
  // Hex and dashes only: the prefix goes into LIKE, where % and _ are wildcards.
  static const Pattern id_re("[0-9a-f-]{8,36}");
  if (!id_re.matches(id_or_prefix))
    throw Error(ErrorKind::invalid,
                "run id '" + printable(storable(id_or_prefix, 40)) +
                    "' is not a run id or a prefix of one: give 8 to 36 lower-case hex digits "
                    "and dashes");
}

Run get_run(pg::Connection& conn, const std::string& id_or_prefix) {
  check_run_id(id_or_prefix);
  auto runs = read_runs(
      conn.exec(run_columns(true) + "WHERE r.id::text LIKE $1 || '%' LIMIT 2", {id_or_prefix}));
  if (runs.empty()) throw Error(ErrorKind::not_found, "no run " + id_or_prefix);
  if (runs.size() > 1)
    throw Error(ErrorKind::invalid,
                "run id prefix " + id_or_prefix + " is ambiguous; give more of it");
  return runs.front();
}

std::vector<Run> list_runs(pg::Connection& conn, const RunFilter& f) {
  std::optional<std::string> ids;
  if (f.schema_ids) {
    std::vector<std::optional<std::string>> items;
    for (int64_t id : *f.schema_ids) items.push_back(std::to_string(id));
    ids = pg::array_literal(items);
  }
  if (f.after_id) check_run_id(*f.after_id);
  return read_runs(conn.exec(
      run_columns(false) +
          "WHERE ($1::text IS NULL OR s.name = $1) AND ($2::text IS NULL OR r.state = $2) AND "
          "($4::bigint[] IS NULL OR r.schema_id = ANY($4::bigint[])) AND "
          "($5::uuid IS NULL OR (r.created_at, r.id) < "
          "  (SELECT a.created_at, a.id FROM taskhost.runs a WHERE a.id = $5::uuid)) "
          "ORDER BY r.created_at DESC, r.id DESC LIMIT $3",
      {f.schema, f.state ? std::optional<std::string>(to_string(*f.state)) : std::nullopt, f.limit,
       ids, f.after_id}));
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

std::vector<RunEvent> run_events(pg::Connection& conn, const std::string& id, int limit,
                                 int64_t after_id) {
  auto r = conn.exec(
      "SELECT attempt, name, payload::text, at::text, id FROM taskhost.run_events "
      "WHERE run_id = $1 AND NOT superseded AND id > $3 ORDER BY id LIMIT $2",
      {id, limit, after_id});
  std::vector<RunEvent> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({static_cast<int>(r.integer(i, 0)), r.text(i, 1), Json::parse(r.text(i, 2)),
                   r.text(i, 3), r.integer(i, 4)});
  return out;
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

void RunWriter::checkpoint(const std::string& json) {
  update("checkpoint = $3::jsonb, checkpoint_seq = checkpoint_seq + 1", {json});
}

Json RunWriter::checkpoint() const {
  auto r = conn_.exec("SELECT checkpoint::text FROM taskhost.runs WHERE id = $1", {id_});
  return r.rows() == 0 ? Json() : json_or_null(r, 0, 0);
}

void RunWriter::emit(const std::vector<std::pair<std::string, std::string>>& events) {
  if (events.empty()) return;
  std::vector<std::optional<std::string>> names, payloads;
  for (const auto& [name, json] : events) {
    names.emplace_back(name);
    payloads.emplace_back(json);
  }
  // Inserted only while this attempt owns the run, in one statement.
  require_owned(
      conn_.exec("INSERT INTO taskhost.run_events (run_id, attempt, name, payload, checkpoint_seq) "
                 "SELECT r.id, r.attempt, e.name, e.payload::jsonb, r.checkpoint_seq "
                 "FROM taskhost.runs r, unnest($3::text[], $4::text[]) WITH ORDINALITY "
                 "AS e(name, payload, n) "
                 "WHERE r.id = $1 AND r.attempt = $2 AND r.state IN " +
                     active_states + " ORDER BY e.n",
                 {id_, attempt_, pg::array_literal(names), pg::array_literal(payloads)}),
      id_, attempt_);
}

void RunWriter::output(const std::string& json) { update("output = $3::jsonb", {json}); }

RunState RunWriter::state() const {
  auto r = conn_.exec("SELECT state FROM taskhost.runs WHERE id = $1", {id_});
  return run_state_from(r.text(0, 0));
}

void RunWriter::attach_file(const std::string& name, const std::string& content_type,
                            const std::string& content) {
  static const Pattern name_re("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  if (!name_re.matches(name))
    throw Error(ErrorKind::invalid, "file name '" + printable(storable(name, 140)) +
                                        "' must be 1-128 letters, digits, '.', '_' or '-'");
  require_owned(
      conn_.exec(
          "INSERT INTO taskhost.run_files (run_id, name, content_type, content, sha256, "
          "attempt) SELECT id, $3, $4, $5, $6, attempt FROM taskhost.runs "
          "WHERE id = $1 AND attempt = $2 AND state IN " +
              active_states +
              " ON CONFLICT (run_id, name) DO UPDATE SET content_type = "
              "excluded.content_type, content = excluded.content, sha256 = "
              "excluded.sha256, attempt = excluded.attempt, created_at = now()",
          {id_, attempt_, name, content_type, pg::Param::binary(content), sha256_hex(content)}),
      id_, attempt_);
}

std::vector<RunFile> run_files(pg::Connection& conn, const std::string& id) {
  auto r = conn.exec(
      "SELECT name, content_type, sha256, created_at::text, octet_length(content) "
      "FROM taskhost.run_files WHERE run_id = $1 ORDER BY name",
      {id});
  std::vector<RunFile> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.integer(i, 4)});
  return out;
}

std::string run_file_content(pg::Connection& conn, const std::string& id, const std::string& name) {
  auto r = conn.exec(
      "SELECT encode(content, 'hex') FROM taskhost.run_files WHERE run_id = $1 AND name = $2",
      {id, name});
  if (r.rows() == 0) throw Error(ErrorKind::not_found, "run " + id + " has no file " + name);
  const std::string hex = r.text(0, 0);
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

}  // namespace taskhost
