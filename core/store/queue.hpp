#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store/pg.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"

namespace taskhost {

// The PostgreSQL-backed run queue. PostgreSQL is the coordination engine:
// claims use FOR UPDATE SKIP LOCKED, ownership is a lease renewed by
// heartbeats, and every write of an attempt is fenced by (run id, attempt,
// lease owner) so a worker that lost its lease changes nothing.

// Channels: a new or re-queued run wakes workers; a stop request tells the
// worker running the run.
inline constexpr const char* runs_channel = "taskhost_runs";
inline constexpr const char* control_channel = "taskhost_control";

struct SubmitRequest {
  const InstalledSchema* schema = nullptr;
  Json params;  // validated, defaults filled
  std::string actor;
  std::optional<std::string> idempotency_key;
  std::optional<std::string> parent_run_id;
  std::string reason = "submitted";
  // Served with every service write refused; needs no approval.
  bool dry_run = false;
};

struct Submitted {
  std::string run_id;
  bool created = true;                // false: an earlier submit with the same key won
  RunState state = RunState::queued;  // of a created run
};

// Whether a run of schema starts awaiting approval.
bool needs_approval(const TaskSchema& schema, bool dry_run);

// Inserts queued runs (awaiting_approval where the schema requires approval
// and the run is no dry run), their first transitions and a NOTIFY in one
// transaction. A request whose (schema name, idempotency key) exists already
// returns that run instead (safe under concurrent submits).
std::vector<Submitted> enqueue(pg::Connection& conn, const std::vector<SubmitRequest>& requests);
Submitted enqueue(pg::Connection& conn, const SubmitRequest& request);
// The same inside a caller's transaction (chains, cron); the caller commits.
Submitted enqueue_in(pg::Transaction& tx, const SubmitRequest& request);

// A run a worker now owns for one attempt.
struct ClaimedRun {
  std::string id;
  int64_t schema_id = 0;
  std::string schema_name;
  int attempt = 0;
  Json params;
  std::chrono::milliseconds timeout{0};
  bool dry_run = false;
};

// Claims up to limit runnable queued runs for owner with a lease: queued ->
// running, attempt + 1, transition recorded, events a dead attempt emitted
// after its last checkpoint superseded. Honors each schema's concurrency.
// only_run restricts the claim to one run (inline execution).
std::vector<ClaimedRun> claim(pg::Connection& conn, const std::string& owner, int limit,
                              std::chrono::milliseconds lease,
                              const std::optional<std::string>& only_run = std::nullopt);

// How an attempt ended, as the executor saw it.
struct Completion {
  std::string run_id;
  int attempt = 0;
  bool succeeded = false;
  bool retryable = false;  // for failures: may another attempt help?
  std::optional<std::string> error_code, error;
  std::string reason;
  bool has_chain = false;   // the schema has on_success/on_failure steps
  bool in_process = false;  // isolation: none: its transition says so, on the audit record
};

// Records outcomes in one transaction. A failure with attempts left goes back
// to queued after backoff with jitter; a pending pause or cancel wins over
// the plugin's outcome unless it succeeded. Returns the runs whose
// completion was fenced out (the owner lost them).
std::vector<std::string> complete(pg::Connection& conn, const std::string& owner,
                                  const std::vector<Completion>& completions);

struct HeartbeatResult {
  std::vector<std::string> lost;            // no longer owned: stop them
  std::vector<std::string> stop_requested;  // pausing or cancelling
};
// Extends the leases of the runs owner holds.
HeartbeatResult heartbeat(pg::Connection& conn, const std::string& owner,
                          const std::vector<std::string>& run_ids, std::chrono::milliseconds lease);

// Takes back runs whose owner is gone or that overstay: an expired lease
// (crash, partition) re-queues the run or fails it when attempts are used up;
// a stop request ignored for longer than grace, or a timeout exceeded by
// grace, ends the attempt. Returns how many runs it changed.
int rescue(pg::Connection& conn, const std::string& actor, std::chrono::milliseconds grace);

// Operator requests. Each records its transition with actor and reason and
// throws Error(conflict) when the run's state does not allow it:
// control_applies is that rule, for those that offer the request (the
// portal's buttons) as for the requests themselves.
enum class RunControl { cancel, pause, resume, retry };
bool control_applies(RunControl op, RunState state);
RunState cancel_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason);
RunState pause_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                   const std::string& reason);
RunState resume_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason);
// A failed or cancelled run goes back to queued with a fresh attempt budget;
// it resumes from its last checkpoint. A run never approved is not retried.
RunState retry_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                   const std::string& reason);
// The decision on a run awaiting approval: approved -> queued, rejected ->
// rejected (final), recorded once with actor and reason. Who may decide is
// the caller's check (app/); the database refuses the run's submitter
// (Error(refused)) and a run not awaiting approval (Error(conflict)).
RunState approve_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                     const std::string& reason);
RunState reject_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason);

}  // namespace taskhost
