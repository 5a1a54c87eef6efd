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
    d.next_attempt_at = r.text(i, 12);
    d.finished_at = r.optional(i, 13);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

std::vector<Delivery> claim_deliveries(pg::Connection& conn, SystemClock::time_point now, int limit,
                                       std::chrono::milliseconds lease) {
  const std::string t = at("$1");
  return deliveries(conn.exec(
      "WITH due AS (SELECT d.id FROM taskhost.webhook_deliveries d "
      "  WHERE d.state = 'pending' AND d.next_attempt_at <= " +
          t + "    AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= " + t +
          ") "
          "    AND NOT EXISTS (SELECT 1 FROM taskhost.webhook_deliveries p WHERE p.state = "
          "'pending' "
          "                    AND p.run_id = d.run_id AND p.url = d.url AND p.id < d.id) "
          "  ORDER BY d.next_attempt_at, d.id LIMIT $2 FOR UPDATE SKIP LOCKED) "
          "UPDATE taskhost.webhook_deliveries d SET attempts = d.attempts + 1, "
          "  lease_expires_at = " +
          t +
          " + $3 * interval '1 millisecond' "
          "FROM due WHERE d.id = due.id RETURNING " +
          columns,
      {micros(now), limit, static_cast<int64_t>(lease.count())}));
}

void record_outcomes(pg::Connection& conn, SystemClock::time_point now,
                     const std::vector<DeliveryOutcome>& outcomes) {
  std::vector<std::optional<std::string>> ids, delivered, status, error, retry, gone;
  for (const auto& o : outcomes) {
    ids.push_back(std::to_string(o.id));
    delivered.push_back(o.delivered ? "t" : "f");
    status.push_back(o.status ? std::optional(std::to_string(*o.status)) : std::nullopt);
    error.push_back(o.error.empty() ? std::nullopt : std::optional(o.error));
    retry.push_back(o.retry_at ? std::optional(micros(*o.retry_at)) : std::nullopt);
    if (o.gone) gone.push_back(std::to_string(o.id));
  }
  const std::string t = at("$6");
  pg::Transaction tx(conn);
  tx.exec(
      "WITH o AS (SELECT * FROM unnest($1::bigint[], $2::bool[], $3::int[], $4::text[], "
      "                                $5::bigint[]) AS o(id, delivered, status, error, retry)) "
      "UPDATE taskhost.webhook_deliveries d SET "
      "  state = CASE WHEN o.delivered THEN 'delivered' WHEN o.retry IS NULL THEN 'dead' "
      "               ELSE 'pending' END, "
      "  next_attempt_at = coalesce(" +
          at("o.retry") +
          ", d.next_attempt_at), "
          "  lease_expires_at = NULL, last_status = o.status, last_error = o.error, "
          "  finished_at = CASE WHEN o.delivered OR o.retry IS NULL THEN " +
          t +
          " END "
          "FROM o WHERE d.id = o.id AND d.state = 'pending'",
      {pg::array_literal(ids), pg::array_literal(delivered), pg::array_literal(status),
       pg::array_literal(error), pg::array_literal(retry), micros(now)});
  if (!gone.empty()) {
    // 410 Gone: the consumer asks us to stop. Its queued deliveries become
    // dead letters, and so will new ones until an operator redelivers.
    auto r = tx.exec(
        "WITH g AS (INSERT INTO taskhost.webhook_disabled_endpoints (url, reason) "
        "  SELECT DISTINCT url, 'answered 410 Gone' FROM taskhost.webhook_deliveries "
        "  WHERE id = ANY($1::bigint[]) ON CONFLICT (url) DO NOTHING RETURNING url), "
        "dead AS (UPDATE taskhost.webhook_deliveries d SET state = 'dead', "
        "  last_error = 'endpoint disabled: answered 410 Gone', lease_expires_at = NULL, "
        "  finished_at = " +
            at("$2") +
            " FROM g WHERE d.url = g.url AND d.state = 'pending') "
            "SELECT url FROM g",
        {pg::array_literal(gone), micros(now)});
    for (int i = 0; i < r.rows(); ++i)
      append_audit(conn, "webhooks", "webhook.endpoint_disabled", std::nullopt, r.text(i, 0),
                   {{"reason", "answered 410 Gone"}});
  }
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
  auto r = tx.exec(
      "UPDATE taskhost.webhook_deliveries SET state = 'pending', attempts = 0, "
      "next_attempt_at = now(), lease_expires_at = NULL, finished_at = NULL "
      "WHERE id = $1 AND state <> 'pending' RETURNING url, message_id, run_id::text",
      {id});
  if (r.rows() == 0) {
    bool exists =
        tx.exec("SELECT 1 FROM taskhost.webhook_deliveries WHERE id = $1", {id}).rows() > 0;
    if (exists)
      throw Error(ErrorKind::conflict,
                  "delivery " + std::to_string(id) + " is pending already; it will be sent");
    throw Error(ErrorKind::not_found, "no webhook delivery " + std::to_string(id));
  }
  const std::string url = r.text(0, 0);
  append_audit(conn, actor, "webhook.redelivered", r.text(0, 2), r.text(0, 1),
               {{"delivery", id}, {"url", url}});
  if (tx.exec("DELETE FROM taskhost.webhook_disabled_endpoints WHERE url = $1", {url}).affected() >
      0)
    append_audit(conn, actor, "webhook.endpoint_enabled", std::nullopt, url);
  tx.exec("SELECT pg_notify('taskhost_webhooks', '')");
  tx.commit();
}

}  // namespace taskhost
