#include "webhooks/outbox.hpp"

#include "store/audit.hpp"

namespace taskhost {

namespace {

// A time point as a SQL timestamptz expression over a bigint parameter of
// microseconds since the epoch: exact, and the same for a fake clock.
std::string micros(SystemClock::time_point t) {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count());
}
std::string at(const std::string& param) {
  return "('epoch'::timestamptz + " + param + "::bigint * interval '1 microsecond')";
}

// Of taskhost.webhook_deliveries d.
const std::string columns =
    "d.id, d.message_id, d.schema_name, d.run_id::text, d.url, d.event, d.body, d.state, "
    "d.attempts, d.last_status, d.last_error, taskhost.iso_utc(d.created_at), "
    "taskhost.iso_utc(d.next_attempt_at), taskhost.iso_utc(d.finished_at)";

std::vector<Delivery> deliveries(const pg::Result& r) {
  std::vector<Delivery> out;
  for (int i = 0; i < r.rows(); ++i) {
    Delivery d;
    d.id = r.integer(i, 0);
    d.message_id = r.text(i, 1);
    d.schema_name = r.text(i, 2);
    d.run_id = r.text(i, 3);
    d.url = r.text(i, 4);
    d.event = r.text(i, 5);
    d.body = r.text(i, 6);
    d.state = r.text(i, 7);
    d.attempts = static_cast<int>(r.integer(i, 8));
    if (!r.null(i, 9)) d.last_status = static_cast<int>(r.integer(i, 9));
    d.last_error = r.optional(i, 10);
    d.created_at = r.text(i, 11);
    d.next_attempt_at = r.optional(i, 12);
    d.finished_at = r.optional(i, 13);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

std::vector<ClaimedStream> claim_streams(pg::Connection& conn, SystemClock::time_point now,
                                         int limit, int per_stream,
                                         std::chrono::milliseconds lease) {
  const std::string t = at("$1");
  pg::Transaction tx(conn);
  auto streams = tx.exec(
      "WITH due AS (SELECT run_id, url FROM taskhost.webhook_streams "
      "  WHERE due_at <= " +
          t + " AND (lease_expires_at IS NULL OR lease_expires_at <= " + t +
          ") "
          "  ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
          "UPDATE taskhost.webhook_streams s "
          "SET lease_expires_at = " +
          t +
          " + $3 * interval '1 millisecond' "
          "FROM due WHERE s.run_id = due.run_id AND s.url = due.url "
          "RETURNING s.run_id::text, s.url, s.version",
      {micros(now), limit, static_cast<int64_t>(lease.count())});
  std::vector<ClaimedStream> out;
  if (streams.rows() == 0) return out;
  std::vector<std::optional<std::string>> runs, urls;
  for (int i = 0; i < streams.rows(); ++i) {
    out.push_back({streams.text(i, 0), streams.text(i, 1), streams.integer(i, 2), {}});
    runs.push_back(streams.text(i, 0));
    urls.push_back(streams.text(i, 1));
  }
  auto rows = deliveries(
      tx.exec("SELECT " + columns +
                  " FROM unnest($1::uuid[], $2::text[]) AS s(run_id, url) "
                  "CROSS JOIN LATERAL (SELECT * FROM taskhost.webhook_deliveries p "
                  "  WHERE p.run_id = s.run_id AND p.url = s.url AND p.state = 'pending' "
                  "  ORDER BY p.id LIMIT $3) d ORDER BY d.id",
              {pg::array_literal(runs), pg::array_literal(urls), per_stream}));
  tx.commit();
  for (auto& d : rows)
    for (auto& s : out)
      if (s.run_id == d.run_id && s.url == d.url) {
        s.deliveries.push_back(std::move(d));
        break;
      }
  return out;
}

void record_outcomes(pg::Connection& conn, SystemClock::time_point now,
                     const std::vector<StreamOutcome>& outcomes) {
  std::vector<std::optional<std::string>> ids, delivered, status, error, retry, dead, gone;
  std::vector<std::optional<std::string>> runs, urls, versions, due;
  for (const auto& so : outcomes) {
    runs.push_back(so.stream->run_id);
    urls.push_back(so.stream->url);
    versions.push_back(std::to_string(so.stream->version));
    std::optional<std::string> stream_due;
    for (const auto& o : so.attempts) {
      ids.push_back(std::to_string(o.id));
      delivered.push_back(o.delivered ? "t" : "f");
      status.push_back(o.status ? std::optional(std::to_string(*o.status)) : std::nullopt);
      error.push_back(o.error.empty() ? std::nullopt : std::optional(o.error));
      retry.push_back(o.retry_at ? std::optional(micros(*o.retry_at)) : std::nullopt);
      dead.push_back(!o.delivered && !o.retry_at ? "t" : "f");
      if (o.retry_at) stream_due = micros(*o.retry_at);
      if (o.gone) gone.push_back(std::to_string(o.id));
    }
    due.push_back(stream_due);
  }
  pg::Transaction tx(conn);
  tx.exec(
      "WITH o AS (SELECT * FROM unnest($1::bigint[], $2::bool[], $3::int[], $4::text[], "
      "  $5::bigint[], $6::bool[]) AS o(id, delivered, status, error, retry, dead)), "
      "u AS (UPDATE taskhost.webhook_deliveries d SET attempts = d.attempts + 1, "
      "  state = CASE WHEN o.delivered THEN 'delivered' WHEN o.dead THEN 'dead' "
      "               ELSE 'pending' END, "
      "  next_attempt_at = " +
          at("o.retry") +
          ", last_status = o.status, last_error = o.error, "
          "  finished_at = CASE WHEN o.delivered OR o.dead THEN " +
          at("$7") +
          " END "
          "FROM o WHERE d.id = o.id AND d.state = 'pending' "
          "RETURNING CASE WHEN o.delivered THEN 'delivered' WHEN o.dead THEN 'dead' "
          "  ELSE 'failed' END AS outcome) "
          // Attempts by outcome for /metrics (migrations/0013_metrics.sql).
          "INSERT INTO taskhost.metric_counts (metric, labels, value) "
          "SELECT 'webhook_deliveries', ARRAY[outcome], count(*) FROM u GROUP BY outcome "
          "ON CONFLICT (metric, labels) DO UPDATE "
          "  SET value = taskhost.metric_counts.value + EXCLUDED.value",
      {pg::array_literal(ids), pg::array_literal(delivered), pg::array_literal(status),
       pg::array_literal(error), pg::array_literal(retry), pg::array_literal(dead), micros(now)});
  if (!gone.empty()) {
    // 410 Gone: the consumer asks us to stop. Its queued deliveries become
    // dead letters, and so will new ones until an operator redelivers.
    auto r = tx.exec(
        "WITH g AS (INSERT INTO taskhost.webhook_disabled_endpoints (url, reason) "
        "  SELECT DISTINCT url, 'answered 410 Gone' FROM taskhost.webhook_deliveries "
        "  WHERE id = ANY($1::bigint[]) ON CONFLICT (url) DO NOTHING RETURNING url), "
        "dead AS (UPDATE taskhost.webhook_deliveries d SET state = 'dead', "
        "  last_error = 'endpoint disabled: answered 410 Gone', "
        "  finished_at = " +
            at("$2") +
            " FROM g WHERE d.url = g.url AND d.state = 'pending') "
            "SELECT url FROM g",
        {pg::array_literal(gone), micros(now)});
    for (int i = 0; i < r.rows(); ++i)
      append_audit(conn, "webhooks", "webhook.endpoint_disabled", std::nullopt, r.text(i, 0),
                   {{"reason", "answered 410 Gone"}});
  }
  // A stream that gained a delivery since the claim (version moved) stays
  // due even if this transaction cannot see the new row yet.
  tx.exec(
      "WITH o AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[]) "
      "  AS o(run_id, url, version, due)) "
      "UPDATE taskhost.webhook_streams s SET lease_expires_at = NULL, due_at = CASE "
      "  WHEN o.due IS NOT NULL THEN " +
          at("o.due") +
          "  WHEN s.version <> o.version OR EXISTS (SELECT 1 FROM taskhost.webhook_deliveries d "
          "    WHERE d.run_id = s.run_id AND d.url = s.url AND d.state = 'pending') THEN " +
          at("$5") +
          "  END "
          "FROM o WHERE s.run_id = o.run_id AND s.url = o.url",
      {pg::array_literal(runs), pg::array_literal(urls), pg::array_literal(versions),
       pg::array_literal(due), micros(now)});
  tx.commit();
}

std::vector<Delivery> list_deliveries(pg::Connection& conn, const DeliveryFilter& filter) {
  return deliveries(conn.exec("SELECT " + columns +
                                  " FROM taskhost.webhook_deliveries d "
                                  "WHERE ($1 = false OR state = 'dead') "
                                  "AND ($2::uuid IS NULL OR run_id = $2::uuid) "
                                  "ORDER BY id DESC LIMIT $3",
                              {filter.dead_only, filter.run_id, filter.limit}));
}

void redeliver(pg::Connection& conn, int64_t id, const std::string& actor) {
  pg::Transaction tx(conn);
  // A dead letter starts afresh; a delivery waiting out its backoff keeps
  // its attempt count and goes now.
  auto r = tx.exec(
      "WITH old AS (SELECT id, state FROM taskhost.webhook_deliveries WHERE id = $1 FOR UPDATE) "
      "UPDATE taskhost.webhook_deliveries d SET state = 'pending', "
      "  attempts = CASE WHEN old.state = 'pending' THEN d.attempts ELSE 0 END, "
      "  next_attempt_at = NULL, finished_at = NULL "
      "FROM old WHERE d.id = old.id RETURNING d.url, d.message_id, d.run_id::text, old.state",
      {id});
  if (r.rows() == 0) throw Error(ErrorKind::not_found, "no webhook delivery " + std::to_string(id));
  const std::string url = r.text(0, 0), run = r.text(0, 2);
  append_audit(conn, actor, "webhook.redelivered", run, r.text(0, 1),
               {{"delivery", id}, {"url", url}, {"was", r.text(0, 3)}});
  if (tx.exec("DELETE FROM taskhost.webhook_disabled_endpoints WHERE url = $1", {url}).affected() >
      0)
    append_audit(conn, actor, "webhook.endpoint_enabled", std::nullopt, url);
  // Due now, even if the stream was waiting for this delivery's retry.
  tx.exec("SELECT taskhost.webhook_stream_due($1::uuid, $2)", {run, url});
  tx.exec("UPDATE taskhost.webhook_streams SET due_at = now() WHERE run_id = $1::uuid AND url = $2",
          {run, url});
  tx.commit();
}

}  // namespace taskhost
