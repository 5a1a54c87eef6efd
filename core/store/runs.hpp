#pragma once

#include <optional>
#include <string>
#include <vector>

#include "schema/schema.hpp"
#include "store/pg.hpp"

namespace taskhost {

// A run's life: queued -> running -> succeeded | failed, with the engine's
// pause and cancel detours (running -> pausing -> paused -> queued,
// running -> cancelling -> cancelled, queued -> cancelled). A run whose
// schema requires approval starts awaiting_approval -> queued (approved) |
// rejected | cancelled.
enum class RunState {
  queued,
  running,
  pausing,
  paused,
  cancelling,
  cancelled,
  succeeded,
  failed,
  awaiting_approval,
  rejected
};

const char* to_string(RunState s);
RunState run_state_from(const std::string& s);  // throws Error(invalid)
bool is_final(RunState s);

// The one decision on a run that required approval.
struct Approval {
  std::string decision;  // approved, rejected
  std::string actor, reason, at;
};

struct Run {
  std::string id;
  int64_t schema_id = 0;
  std::string schema_name, schema_version;
  Json params;
  RunState state = RunState::queued;
  int attempt = 0;
  std::string actor;
  std::string created_at;
  std::optional<std::string> started_at, finished_at;
  std::optional<int64_t> progress_done, progress_total;
  Json checkpoint, output;  // null when unset
  std::optional<std::string> error_code, error;
  int max_attempts = 1;
  std::string run_after;
  std::optional<std::string> lease_owner, parent_run_id, idempotency_key;
  double elapsed_seconds = 0;    // of the current (or last) attempt, until now or its finish
  int64_t attempt_progress = 0;  // items that attempt did
  bool dry_run = false;          // every service write refused (README "Dry runs")
  bool approval_required = false;
  std::optional<Approval> approval;
};

struct Transition {
  int attempt = 0;
  std::optional<std::string> from;
  std::string to, actor, reason, at;
};

struct RunEvent {
  int attempt = 0;
  std::string name;
  Json payload;
  std::string at;
  int64_t id = 0;  // increasing: a stream's cursor
};

struct RunFilter {
  std::optional<std::string> schema;  // name
  std::optional<RunState> state;
  // Only runs of these schema versions (what the asking actor may view).
  std::optional<std::vector<int64_t>> schema_ids;
  // Keyset paging: runs listed after this one (newest first).
  std::optional<std::string> after_id;
  int limit = 50;
};

// Throws Error(invalid) unless id_or_prefix is a run id or a prefix of one
// (8 to 36 lower-case hex digits and dashes), naming what was given.
void check_run_id(const std::string& id_or_prefix);
// Accepts a full id or a unique prefix of at least 8 characters.
// Throws Error(not_found), or Error(invalid) for an ambiguous prefix or one
// check_run_id refuses.
Run get_run(pg::Connection& conn, const std::string& id_or_prefix);
// Newest first; without checkpoint and output (null), which get_run gives.
std::vector<Run> list_runs(pg::Connection& conn, const RunFilter& filter);
std::vector<Transition> run_transitions(pg::Connection& conn, const std::string& id);
// Live events in order (after the event after_id); events superseded by a
// resumed attempt are left out.
std::vector<RunEvent> run_events(pg::Connection& conn, const std::string& id, int limit,
                                 int64_t after_id = 0);

// The writes a plugin's host calls make during one attempt. Each is fenced
// by (id, attempt, an active state): a caller that no longer owns the attempt
// gets Error(conflict) and changes nothing.
class RunWriter {
 public:
  RunWriter(pg::Connection& conn, std::string run_id, int attempt)
      : conn_(conn), id_(std::move(run_id)), attempt_(attempt) {}

  void progress(uint64_t done, uint64_t total);
  // Stores the checkpoint and starts a new checkpoint sequence: events emitted
  // from here on are superseded if the attempt dies before the next one.
  void checkpoint(const std::string& json);
  Json checkpoint() const;
  // Events as {name, JSON payload}, in order, in one statement: each with the
  // checkpoint sequence as it is now.
  void emit(const std::vector<std::pair<std::string, std::string>>& events);
  void output(const std::string& json);
  void attach_file(const std::string& name, const std::string& content_type,
                   const std::string& content);
  // The state as stored now (other actors may have asked to pause/cancel).
  RunState state() const;

  int attempt() const { return attempt_; }

 private:
  // UPDATE ... SET assignments (parameters from $3) while this attempt owns the run.
  void update(const std::string& assignments, std::vector<pg::Param> values);

  pg::Connection& conn_;
  std::string id_;
  int attempt_;
};

struct RunFile {
  std::string name, content_type, sha256, created_at;
  int64_t size = 0;
};
std::vector<RunFile> run_files(pg::Connection& conn, const std::string& id);
// The content of one attached file. Throws Error(not_found).
std::string run_file_content(pg::Connection& conn, const std::string& id, const std::string& name);

}  // namespace taskhost
