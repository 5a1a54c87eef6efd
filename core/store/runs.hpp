#pragma once

#include <optional>
#include <string>
#include <vector>

#include "schema/schema.hpp"
#include "store/pg.hpp"

namespace taskhost {

// A run's life: queued -> running -> succeeded | failed, with the engine's
// pause and cancel detours (running -> pausing -> paused -> queued,
// running -> cancelling -> cancelled, queued -> cancelled).
enum class RunState { queued, running, pausing, paused, cancelling, cancelled, succeeded, failed };

const char* to_string(RunState s);
RunState run_state_from(const std::string& s);  // throws Error(invalid)
bool is_final(RunState s);

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
  double elapsed_seconds = 0;  // since start (or until finish)
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
};

struct RunFilter {
  std::optional<std::string> schema;  // name
  std::optional<RunState> state;
  int limit = 50;
};

// Records a new queued run and its first transition. Returns its id.
std::string insert_run(pg::Transaction& tx, int64_t schema_id, const Json& params,
                       const std::string& actor);

// Accepts a full id or a unique prefix of at least 8 characters.
// Throws Error(not_found) or Error(invalid) for an ambiguous prefix.
Run get_run(pg::Connection& conn, const std::string& id_or_prefix);
std::vector<Run> list_runs(pg::Connection& conn, const RunFilter& filter);
std::vector<Transition> run_transitions(pg::Connection& conn, const std::string& id);
std::vector<RunEvent> run_events(pg::Connection& conn, const std::string& id, int limit);

// The writes of the attempt that runs a run. Each is fenced by (id, attempt,
// an active state): a caller that no longer owns the attempt gets
// Error(conflict) and changes nothing.
class RunWriter {
 public:
  RunWriter(pg::Connection& conn, std::string run_id, std::string actor)
      : conn_(conn), id_(std::move(run_id)), actor_(std::move(actor)) {}

  // queued -> running with attempt + 1. Returns the new attempt number.
  int start();
  void progress(uint64_t done, uint64_t total);
  void checkpoint(const std::string& json);
  Json checkpoint() const;
  void emit(const std::string& name, const std::string& json);
  void output(const std::string& json);
  // The state as stored now (other actors may have asked to pause/cancel).
  RunState state() const;
  // Ends the attempt: to is succeeded, failed, cancelled or paused.
  void finish(RunState to, const std::optional<std::string>& error_code,
              const std::optional<std::string>& error, const std::string& reason);

  int attempt() const { return attempt_; }

 private:
  // UPDATE ... SET assignments (parameters from $3) while this attempt owns the run.
  void update(const std::string& assignments, std::vector<pg::Param> values);

  pg::Connection& conn_;
  std::string id_, actor_;
  int attempt_ = 0;
};

}  // namespace taskhost
