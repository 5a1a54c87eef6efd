#include "store/queue.hpp"

#include <algorithm>
#include <map>

namespace taskhost {
namespace {

const std::string active = "('running', 'pausing', 'cancelling')";

template <typename T, typename F>
std::string array_of(const std::vector<T>& items, F&& field) {
  std::vector<std::optional<std::string>> values;
  values.reserve(items.size());
  for (const auto& i : items) values.push_back(field(i));
  return pg::array_literal(values);
}

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

// The delay before retrying attempt `attempt` of run r: exponential (or
// fixed) from retry_initial_ms, capped at retry_max_ms, with "equal jitter"
// (50–100% of the delay) so that failed runs do not retry in lockstep.
std::string backoff_sql(const std::string& r) {
  return "(CASE WHEN " + r + ".retry_exponential THEN least(" + r + ".retry_max_ms, " + r +
         ".retry_initial_ms * power(2, greatest(" + r + ".attempt - 1, 0))) ELSE " + r +
         ".retry_initial_ms END * (0.5 + random() / 2)) * interval '1 millisecond'";
}

// The earlier run submitted with this key, which only the same parameters
// may get back (a key names one request, as Stripe's do).
Submitted lookup_by_key(pg::Connection& conn, const SubmitRequest& q) {
  auto r = conn.exec(
      "SELECT id, params = $3::jsonb, state FROM taskhost.runs "
      "WHERE schema_name = $1 AND idempotency_key = $2",
      {q.schema->schema.name, *q.idempotency_key, q.params.dump()});
  if (r.rows() == 0)
    throw Error(ErrorKind::environment, "idempotent submit found neither a new nor an old run");
  if (!r.boolean(0, 1))
    throw Error(ErrorKind::conflict,
                "idempotency key '" + *q.idempotency_key + "' was used for run " + r.text(0, 0) +
                    " of " + q.schema->schema.name + " with different parameters; use a new key");
  return {r.text(0, 0), false, run_state_from(r.text(0, 2))};
}

std::vector<Submitted> insert_runs(pg::Connection& conn, const std::vector<SubmitRequest>& reqs) {
  auto state = [](const SubmitRequest& q) {
    return needs_approval(q.schema->schema, q.dry_run) ? RunState::awaiting_approval
                                                       : RunState::queued;
  };
  auto r = conn.exec(
      "WITH input AS MATERIALIZED ("
      "  SELECT gen_random_uuid() AS id, * FROM unnest($1::bigint[], $2::text[], $3::jsonb[], "
      "    $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::bool[], $9::bigint[], "
      "    $10::int[], $11::text[], $12::uuid[], $13::text[], $15::text[], $16::bool[]) "
      "    WITH ORDINALITY AS i(schema_id, schema_name, params, actor, max_attempts, "
      "    retry_initial_ms, retry_max_ms, retry_exponential, timeout_ms, concurrency, "
      "    idempotency_key, parent_run_id, reason, state, dry_run, ord)),"
      "ins AS (INSERT INTO taskhost.runs (id, schema_id, schema_name, params, state, actor, "
      "    max_attempts, retry_initial_ms, retry_max_ms, retry_exponential, timeout_ms, "
      "    concurrency, idempotency_key, parent_run_id, dry_run) "
      "  SELECT id, schema_id, schema_name, params, state, actor, max_attempts, "
      "    retry_initial_ms, retry_max_ms, retry_exponential, timeout_ms, concurrency, "
      "    idempotency_key, parent_run_id, dry_run FROM input ORDER BY ord "
      "  ON CONFLICT (schema_name, idempotency_key) WHERE idempotency_key IS NOT NULL "
      "  DO NOTHING RETURNING id),"
      "tr AS (INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, "
      "    actor, reason) SELECT i.id, 0, NULL, i.state, i.actor, i.reason "
      "  FROM input i JOIN ins USING (id)) "
      "SELECT i.id, ins.id IS NOT NULL, (SELECT pg_notify($14, '')) "
      "FROM input i LEFT JOIN ins USING (id) ORDER BY i.ord",
      {array_of(reqs, [](const SubmitRequest& q) { return std::to_string(q.schema->id); }),
       array_of(reqs, [](const SubmitRequest& q) { return q.schema->schema.name; }),
       array_of(reqs, [](const SubmitRequest& q) { return q.params.dump(); }),
       array_of(reqs, [](const SubmitRequest& q) { return q.actor; }),
       array_of(reqs,
                [](const SubmitRequest& q) {
                  return std::to_string(q.schema->schema.retry.max_attempts);
                }),
       array_of(reqs, [](const SubmitRequest& q) { return ms(q.schema->schema.retry.initial); }),
       array_of(reqs, [](const SubmitRequest& q) { return ms(q.schema->schema.retry.max); }),
       array_of(reqs,
                [](const SubmitRequest& q) {
                  return std::string(q.schema->schema.retry.exponential ? "true" : "false");
                }),
       array_of(reqs, [](const SubmitRequest& q) { return ms(q.schema->schema.timeout); }),
       array_of(reqs,
                [](const SubmitRequest& q) -> std::optional<std::string> {
                  if (!q.schema->schema.concurrency) return std::nullopt;
                  return std::to_string(*q.schema->schema.concurrency);
                }),
       array_of(reqs, [](const SubmitRequest& q) { return q.idempotency_key; }),
       array_of(reqs, [](const SubmitRequest& q) { return q.parent_run_id; }),
       array_of(reqs, [](const SubmitRequest& q) { return q.reason; }), runs_channel,
       array_of(reqs, [&](const SubmitRequest& q) { return std::string(to_string(state(q))); }),
       array_of(reqs,
                [](const SubmitRequest& q) { return std::string(q.dry_run ? "true" : "false"); })});
  std::vector<Submitted> out;
  for (int i = 0; i < r.rows(); ++i) {
    const auto& q = reqs[static_cast<size_t>(i)];
    if (r.boolean(i, 1))
      out.push_back({r.text(i, 0), true, state(q)});
    else  // a concurrent or earlier submit with this key: a fresh snapshot sees it
      out.push_back(lookup_by_key(conn, q));
  }
  return out;
}

// The claim statement for at most $2 runs; extra narrows the candidates.
std::string claim_sql(const std::string& extra) {
  return "WITH picked AS (SELECT id FROM taskhost.runs WHERE state = 'queued' AND "
         "run_after <= now() " +
         extra +
         " ORDER BY run_after, queued_seq LIMIT $2 FOR UPDATE SKIP LOCKED),"
         "claimed AS (UPDATE taskhost.runs r SET state = 'running', attempt = r.attempt + 1, "
         "  started_at = now(), attempt_progress_base = coalesce(r.progress_done, 0), "
         "  lease_owner = $1, "
         "  lease_expires_at = now() + $3 * interval '1 millisecond', updated_at = now() "
         "  FROM picked WHERE r.id = picked.id "
         "  RETURNING r.id, r.schema_id, r.schema_name, r.attempt, r.params::text, r.timeout_ms, "
         "    r.checkpoint_seq, r.dry_run),"
         "tr AS (INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, "
         "  actor, reason) SELECT id, attempt, 'queued', 'running', $1, 'claimed' FROM claimed),"
         "sup AS (UPDATE taskhost.run_events e SET superseded = true FROM claimed c "
         "  WHERE e.run_id = c.id AND e.attempt < c.attempt AND e.checkpoint_seq = "
         "  c.checkpoint_seq AND NOT e.superseded) "
         "SELECT id, schema_id, schema_name, attempt, params, timeout_ms, dry_run FROM claimed";
}

void read_claimed(const pg::Result& r, std::vector<ClaimedRun>& out) {
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({r.text(i, 0), r.integer(i, 1), r.text(i, 2), static_cast<int>(r.integer(i, 3)),
                   Json::parse(r.text(i, 4)), std::chrono::milliseconds(r.integer(i, 5)),
                   r.boolean(i, 6)});
}

RunState state_of(pg::Transaction& tx, const std::string& id) {
  auto r = tx.exec("SELECT state FROM taskhost.runs WHERE id = $1 FOR UPDATE", {id});
  if (r.rows() == 0) throw Error(ErrorKind::not_found, "no run " + id);
  return run_state_from(r.text(0, 0));
}

// Before the runs row changes: the database audits a change that no
// transition of its transaction explains (migrations/0007_roles.sql).
void record(pg::Transaction& tx, const std::string& id, RunState from, RunState to,
            const std::string& actor, const std::string& reason) {
  tx.exec(
      "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor, reason) "
      "SELECT id, attempt, $2, $3, $4, $5 FROM taskhost.runs WHERE id = $1",
      {id, to_string(from), to_string(to), actor, reason});
}

[[noreturn]] void refuse(const std::string& what, const std::string& id, RunState s) {
  throw Error(ErrorKind::conflict, "cannot " + what + " run " + id + ": it is " + to_string(s));
}

// An attempt that ended paused was stopped as asked, not failed: it gives
// its attempt back to the retry budget.
std::string paused_gives_back(const std::string& to_state) {
  return "CASE WHEN " + to_state + " = 'paused' THEN 1 ELSE 0 END";
}

}  // namespace

bool needs_approval(const TaskSchema& schema, bool dry_run) {
  return schema.approval.required && !dry_run;
}

std::vector<Submitted> enqueue(pg::Connection& conn, const std::vector<SubmitRequest>& requests) {
  if (requests.empty()) return {};
  // One statement, so one round trip and one commit: runs, transitions and
  // the NOTIFY are atomic without an explicit transaction.
  return insert_runs(conn, requests);
}

Submitted enqueue(pg::Connection& conn, const SubmitRequest& request) {
  return enqueue(conn, std::vector<SubmitRequest>{request}).front();
}

Submitted enqueue_in(pg::Transaction& tx, const SubmitRequest& request) {
  return insert_runs(tx.connection(), {request}).front();
}

std::vector<ClaimedRun> claim(pg::Connection& conn, const std::string& owner, int limit,
                              std::chrono::milliseconds lease,
                              const std::optional<std::string>& only_run) {
  std::vector<ClaimedRun> out;
  // Each claim is one statement: one round trip, atomic on its own.
  if (only_run) {
    read_claimed(conn.exec(claim_sql("AND id = $4"), {owner, 1, lease.count(), *only_run}), out);
    return out;
  }
  // Schemas without a concurrency limit: the whole batch at once.
  read_claimed(conn.exec(claim_sql("AND concurrency IS NULL"), {owner, limit, lease.count()}), out);
  if (static_cast<int>(out.size()) == limit) return out;
  // Limited schemas: claims of one schema serialise on an advisory lock so
  // that concurrent workers never exceed its limit together.
  auto limited = conn.exec(
      "SELECT DISTINCT schema_name, concurrency FROM taskhost.runs "
      "WHERE state = 'queued' AND run_after <= now() AND concurrency IS NOT NULL");
  for (int i = 0; i < limited.rows() && static_cast<int>(out.size()) < limit; ++i) {
    const std::string name = limited.text(i, 0);
    pg::Transaction tx(conn);
    tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.concurrency:' || $1))", {name});
    auto running = tx.exec(
        "SELECT count(*) FROM taskhost.runs WHERE schema_name = $1 AND state IN " + active, {name});
    int64_t room = limited.integer(i, 1) - running.integer(0, 0);
    room = std::min<int64_t>(room, limit - static_cast<int64_t>(out.size()));
    if (room > 0)
      read_claimed(tx.exec(claim_sql("AND schema_name = $4 AND concurrency IS NOT NULL"),
                           {owner, room, lease.count(), name}),
                   out);
    tx.commit();
  }
  return out;
}

std::vector<std::string> complete(pg::Connection& conn, const std::string& owner,
                                  const std::vector<Completion>& cs) {
  if (cs.empty()) return {};
  auto r = conn.exec(
      "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::int[], $3::bool[], $4::bool[], "
      "    $5::text[], $6::text[], $7::text[], $8::bool[], $11::bool[]) AS i(id, attempt, "
      "    succeeded, retryable, error_code, error, reason, has_chain, in_process)),"
      "old AS (SELECT r.id, r.state, r.attempt, r.max_attempts, r.retry_exponential, "
      "    r.retry_initial_ms, r.retry_max_ms, i.succeeded, i.retryable, i.error_code, i.error, "
      "    i.reason, i.has_chain, i.in_process FROM taskhost.runs r JOIN input i ON r.id = i.id "
      "  AND r.attempt = i.attempt AND r.lease_owner = $9 AND r.state IN " +
          active +
          " FOR UPDATE OF r),"
          "next AS (SELECT o.*, CASE WHEN o.succeeded THEN 'succeeded' "
          "    WHEN o.state = 'cancelling' THEN 'cancelled' WHEN o.state = 'pausing' THEN 'paused' "
          "    WHEN o.retryable AND o.attempt < o.max_attempts THEN 'queued' ELSE 'failed' END "
          "  AS to_state FROM old o),"
          "upd AS (UPDATE taskhost.runs r SET state = n.to_state, updated_at = now(), "
          "    lease_owner = NULL, lease_expires_at = NULL, "
          "    max_attempts = r.max_attempts + " +
          paused_gives_back("n.to_state") +
          ", "
          "    error_code = CASE WHEN n.succeeded OR n.to_state = 'paused' THEN NULL "
          "      ELSE n.error_code END, "
          "    error = CASE WHEN n.succeeded OR n.to_state = 'paused' THEN NULL ELSE n.error END, "
          "    finished_at = CASE WHEN n.to_state IN ('succeeded', 'failed', 'cancelled') "
          "      THEN now() END, "
          "    stop_requested_at = NULL, "
          "    chain_fired = NOT (n.has_chain AND n.to_state IN ('succeeded', 'failed')), "
          "    run_after = CASE WHEN n.to_state = 'queued' THEN now() + " +
          backoff_sql("n") +
          " ELSE r.run_after END "
          "  FROM next n WHERE r.id = n.id RETURNING r.id, n.state AS from_state, n.to_state, "
          "    r.attempt, n.reason, n.in_process),"
          "tr AS (INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, "
          "    actor, reason) SELECT id, attempt, from_state, to_state, $9, "
          "    CASE WHEN to_state = 'queued' THEN reason || '; retry scheduled' ELSE reason END "
          "    || CASE WHEN in_process THEN '; isolation: none' ELSE '' END "
          "  FROM upd) "
          "SELECT id::text, to_state, (SELECT CASE WHEN count(*) > 0 THEN pg_notify($10, '') "
          "END FROM upd WHERE to_state = 'queued') FROM upd",
      {array_of(cs, [](const Completion& c) { return c.run_id; }),
       array_of(cs, [](const Completion& c) { return std::to_string(c.attempt); }),
       array_of(cs, [](const Completion& c) { return std::string(c.succeeded ? "t" : "f"); }),
       array_of(cs, [](const Completion& c) { return std::string(c.retryable ? "t" : "f"); }),
       array_of(cs, [](const Completion& c) { return c.error_code; }),
       array_of(cs, [](const Completion& c) { return c.error; }),
       array_of(cs, [](const Completion& c) { return c.reason; }),
       array_of(cs, [](const Completion& c) { return std::string(c.has_chain ? "t" : "f"); }),
       owner, runs_channel,
       array_of(cs, [](const Completion& c) { return std::string(c.in_process ? "t" : "f"); })});
  std::map<std::string, bool> done;
  for (int i = 0; i < r.rows(); ++i) done[r.text(i, 0)] = true;
  std::vector<std::string> fenced;
  for (const auto& c : cs)
    if (!done.count(c.run_id)) fenced.push_back(c.run_id);
  return fenced;
}

HeartbeatResult heartbeat(pg::Connection& conn, const std::string& owner,
                          const std::vector<std::string>& ids, std::chrono::milliseconds lease) {
  HeartbeatResult out;
  if (ids.empty()) return out;
  std::vector<std::optional<std::string>> values(ids.begin(), ids.end());
  auto r = conn.exec(
      "UPDATE taskhost.runs SET lease_expires_at = now() + $3 * interval '1 millisecond' "
      "WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND state IN " +
          active + " RETURNING id::text, state",
      {pg::array_literal(values), owner, lease.count()});
  std::map<std::string, std::string> held;
  for (int i = 0; i < r.rows(); ++i) held[r.text(i, 0)] = r.text(i, 1);
  for (const auto& id : ids) {
    auto it = held.find(id);
    if (it == held.end())
      out.lost.push_back(id);
    else if (it->second != "running")
      out.stop_requested.push_back(id);
  }
  return out;
}

int rescue(pg::Connection& conn, const std::string& actor, std::chrono::milliseconds grace) {
  pg::Transaction tx(conn);
  auto r = tx.exec(
      "WITH stale AS (SELECT id, state, CASE "
      "    WHEN lease_expires_at < now() THEN 'lease_expired' "
      "    WHEN state <> 'running' AND stop_requested_at < now() - $2 * interval '1 millisecond' "
      "      THEN 'stop_ignored' "
      "    ELSE 'timeout' END AS why "
      "  FROM taskhost.runs WHERE state IN " +
          active +
          " AND (lease_expires_at < now() "
          "    OR (state <> 'running' AND stop_requested_at < now() - $2 * interval '1 "
          "millisecond') "
          "    OR started_at + (timeout_ms + $2) * interval '1 millisecond' < now()) "
          "  ORDER BY lease_expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED),"
          "next AS (SELECT s.id, s.state, s.why, CASE WHEN s.state = 'cancelling' THEN 'cancelled' "
          "    WHEN s.state = 'pausing' THEN 'paused' "
          "    WHEN r.attempt < r.max_attempts THEN 'queued' ELSE 'failed' END AS to_state "
          "  FROM stale s JOIN taskhost.runs r USING (id)),"
          "upd AS (UPDATE taskhost.runs r SET state = n.to_state, updated_at = now(), "
          "    lease_owner = NULL, lease_expires_at = NULL, stop_requested_at = NULL, "
          "    max_attempts = r.max_attempts + " +
          paused_gives_back("n.to_state") +
          ", "
          "    error_code = CASE WHEN n.to_state <> 'paused' THEN n.why END, "
          "    error = CASE WHEN n.to_state = 'paused' THEN NULL "
          "      WHEN n.why = 'lease_expired' THEN 'the worker ' || r.lease_owner || "
          "      ' stopped renewing its lease (crashed, stopped or cut off)' "
          "      WHEN n.why = 'timeout' THEN 'ran past its timeout and did not stop' "
          "      ELSE 'ignored the stop request for longer than the grace period' END, "
          "    finished_at = CASE WHEN n.to_state IN ('failed', 'cancelled') THEN now() END, "
          "    run_after = CASE WHEN n.to_state = 'queued' THEN now() + " +
          backoff_sql("r") +
          " ELSE r.run_after END "
          "  FROM next n WHERE r.id = n.id RETURNING r.id, r.attempt, n.state AS from_state, "
          "    n.to_state, n.why),"
          "tr AS (INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, "
          "    actor, reason) SELECT id, attempt, from_state, to_state, $1, 'rescued: ' || why "
          "  FROM upd) "
          "SELECT count(*), count(*) FILTER (WHERE to_state = 'queued') FROM upd",
      {actor, grace.count()});
  if (r.integer(0, 1) > 0) tx.exec("SELECT pg_notify($1, '')", {runs_channel});
  tx.commit();
  return static_cast<int>(r.integer(0, 0));
}

bool control_applies(RunControl op, RunState s) {
  switch (op) {
    case RunControl::cancel:
      return s == RunState::queued || s == RunState::paused || s == RunState::awaiting_approval ||
             s == RunState::running || s == RunState::pausing;
    case RunControl::pause:
      return s == RunState::queued || s == RunState::running;
    case RunControl::resume:
      return s == RunState::paused;
    case RunControl::retry:
      return s == RunState::failed || s == RunState::cancelled;
  }
  return false;
}

RunState cancel_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason) {
  pg::Transaction tx(conn);
  RunState from = state_of(tx, id), to;
  if (!control_applies(RunControl::cancel, from)) refuse("cancel", id, from);
  if (from != RunState::running && from != RunState::pausing) {
    to = RunState::cancelled;
    record(tx, id, from, to, actor, reason);
    tx.exec(
        "UPDATE taskhost.runs SET state = 'cancelled', finished_at = now(), "
        "updated_at = now() WHERE id = $1",
        {id});
  } else {
    to = RunState::cancelling;
    record(tx, id, from, to, actor, reason);
    tx.exec(
        "UPDATE taskhost.runs SET state = 'cancelling', stop_requested_at = now(), "
        "updated_at = now() WHERE id = $1",
        {id});
    tx.exec("SELECT pg_notify($1, $2)", {control_channel, id});
  }
  tx.commit();
  return to;
}

RunState pause_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                   const std::string& reason) {
  pg::Transaction tx(conn);
  RunState from = state_of(tx, id), to;
  if (!control_applies(RunControl::pause, from)) refuse("pause", id, from);
  if (from == RunState::queued) {
    to = RunState::paused;
    record(tx, id, from, to, actor, reason);
    tx.exec("UPDATE taskhost.runs SET state = 'paused', updated_at = now() WHERE id = $1", {id});
  } else {
    to = RunState::pausing;
    record(tx, id, from, to, actor, reason);
    tx.exec(
        "UPDATE taskhost.runs SET state = 'pausing', stop_requested_at = now(), "
        "updated_at = now() WHERE id = $1",
        {id});
    tx.exec("SELECT pg_notify($1, $2)", {control_channel, id});
  }
  tx.commit();
  return to;
}

RunState resume_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason) {
  pg::Transaction tx(conn);
  RunState from = state_of(tx, id);
  if (!control_applies(RunControl::resume, from)) refuse("resume", id, from);
  record(tx, id, from, RunState::queued, actor, reason);
  tx.exec(
      "UPDATE taskhost.runs SET state = 'queued', run_after = now(), updated_at = now(), "
      "error = NULL, error_code = NULL WHERE id = $1",
      {id});
  tx.exec("SELECT pg_notify($1, '')", {runs_channel});
  tx.commit();
  return RunState::queued;
}

RunState retry_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                   const std::string& reason) {
  pg::Transaction tx(conn);
  RunState from = state_of(tx, id);
  if (!control_applies(RunControl::retry, from)) refuse("retry", id, from);
  auto approval = tx.exec(
      "SELECT r.approval_required AND a.run_id IS NULL FROM taskhost.runs r "
      "LEFT JOIN taskhost.run_approvals a ON a.run_id = r.id AND a.decision = 'approved' "
      "WHERE r.id = $1",
      {id});
  if (approval.boolean(0, 0))
    throw Error(ErrorKind::conflict, "cannot retry run " + id +
                                         ": it was cancelled before anyone approved it; submit "
                                         "it again to ask for an approval");
  record(tx, id, from, RunState::queued, actor, reason);
  // A fresh budget: as many attempts as the schema allows, after those used.
  tx.exec(
      "UPDATE taskhost.runs r SET state = 'queued', run_after = now(), updated_at = now(), "
      "finished_at = NULL, error = NULL, error_code = NULL, "
      "max_attempts = r.attempt + coalesce((s.spec->'retry'->>'max_attempts')::int, 1) "
      "FROM taskhost.task_schemas s WHERE s.id = r.schema_id AND r.id = $1",
      {id});
  tx.exec("SELECT pg_notify($1, '')", {runs_channel});
  tx.commit();
  return RunState::queued;
}

namespace {

// Records the decision and moves the run on, in one transaction. The
// database's triggers (migrations/0012) refuse the submitter and a run that
// was not awaiting approval even if this check is skipped.
RunState decide(pg::Connection& conn, const std::string& id, const std::string& actor,
                const std::string& reason, bool approve) {
  pg::Transaction tx(conn);
  RunState from = state_of(tx, id);
  if (from != RunState::awaiting_approval) refuse(approve ? "approve" : "reject", id, from);
  const RunState to = approve ? RunState::queued : RunState::rejected;
  try {
    tx.exec(
        "INSERT INTO taskhost.run_approvals (run_id, decision, actor, reason) "
        "VALUES ($1, $2, $3, $4)",
        {id, approve ? "approved" : "rejected", actor, reason});
  } catch (const pg::DbError& e) {
    if (e.sqlstate() == "42501")
      throw Error(ErrorKind::refused, "permission denied: " + e.primary());
    throw;
  }
  record(tx, id, from, to, actor, reason);
  if (approve) {
    tx.exec(
        "UPDATE taskhost.runs SET state = 'queued', run_after = now(), updated_at = now() "
        "WHERE id = $1",
        {id});
    tx.exec("SELECT pg_notify($1, '')", {runs_channel});
  } else {
    tx.exec(
        "UPDATE taskhost.runs SET state = 'rejected', finished_at = now(), updated_at = now() "
        "WHERE id = $1",
        {id});
  }
  tx.commit();
  return to;
}

}  // namespace

RunState approve_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                     const std::string& reason) {
  return decide(conn, id, actor, reason, true);
}

RunState reject_run(pg::Connection& conn, const std::string& id, const std::string& actor,
                    const std::string& reason) {
  return decide(conn, id, actor, reason, false);
}

}  // namespace taskhost
