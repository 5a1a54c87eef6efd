#include "store/metrics.hpp"

#include <cstdio>

namespace taskhost {
namespace {

// A service call's outcome as the audit records it is "ok", a result such
// as "HTTP 404", "SELECT 3" or "COPY 10", "denied", or an error's text:
// counted as ok, denied or error (an error's text would make a label of
// unbounded values).
const char* const call_outcome =
    "CASE WHEN e.detail->>'outcome' = 'denied' THEN 'denied' "
    "  WHEN e.detail->>'outcome' = 'ok' "
    "    OR e.detail->>'outcome' ~ '^(HTTP [0-9]{3}|[A-Z]+( [A-Z]+)*( [0-9]+)*)$' THEN 'ok' "
    "  ELSE 'error' END";

void fold(pg::Connection& conn, const std::vector<double>& buckets, int64_t max_entries) {
  pg::Transaction tx(conn);
  // The lock serializes folders: the second one waits and then reads the
  // first one's mark, so no entry is counted twice.
  const int64_t from = tx.exec("SELECT seq FROM taskhost.metric_fold FOR UPDATE").integer(0, 0);
  const int64_t head = tx.exec("SELECT seq FROM taskhost.audit_chain_head()").integer(0, 0);
  // An entry's seq is taken under the chain head's lock, held until its
  // transaction commits, so every entry up to the committed head is visible.
  const int64_t to = std::min(head, from + max_entries);
  if (to <= from) return;
  std::vector<std::optional<std::string>> les;
  for (double b : buckets) les.push_back(std::to_string(b));
  tx.exec(
      "WITH e AS (SELECT a.seq, a.at, a.action, a.detail, coalesce(r.schema_name, '') AS schema, "
      "    extract(epoch FROM a.at - r.started_at) AS seconds "
      "  FROM taskhost.audit_log a LEFT JOIN taskhost.runs r ON r.id = a.run_id "
      "  WHERE a.seq > $1 AND a.seq <= $2), "
      // A run's duration: from the start of its latest attempt to the entry
      // that finished it (none for a run cancelled before it started).
      "finished AS (SELECT * FROM e WHERE action IN ('run.succeeded', 'run.failed', "
      "  'run.cancelled')), "
      "timed AS (SELECT * FROM finished WHERE seconds >= 0), "
      "c AS ("
      "  SELECT 'runs_finished' AS metric, ARRAY[schema, substr(action, 5)] AS labels, "
      "    count(*)::float8 AS value FROM finished GROUP BY 2 "
      "  UNION ALL SELECT 'run_retries', ARRAY[schema], count(*) FROM e "
      "    WHERE action IN ('run.requeued', 'run.retried') GROUP BY 2 "
      "  UNION ALL SELECT 'run_rescues', ARRAY[schema, substr(detail->>'reason', 10)], count(*) "
      "    FROM e WHERE action LIKE 'run.%' AND detail->>'reason' LIKE 'rescued: %' GROUP BY 2 "
      "  UNION ALL SELECT 'service_calls', ARRAY[split_part(action, '.', 2), "
      "    substr(action, length(split_part(action, '.', 2)) + 10), " +
          std::string(call_outcome) +
          "], count(*) FROM e WHERE action LIKE 'service.%.%' GROUP BY 2 "
          "  UNION ALL SELECT 'run_duration_bucket', ARRAY[schema, le::text], count(*) "
          "    FROM timed CROSS JOIN unnest($3::float8[]) AS le WHERE seconds <= le GROUP BY 2 "
          "  UNION ALL SELECT 'run_duration_sum', ARRAY[schema], sum(seconds) FROM timed "
          "    GROUP BY 2 "
          "  UNION ALL SELECT 'run_duration_count', ARRAY[schema], count(*) FROM timed "
          "    GROUP BY 2) "
          "INSERT INTO taskhost.metric_counts (metric, labels, value) "
          "SELECT metric, labels, value FROM c "
          "ON CONFLICT (metric, labels) DO UPDATE "
          "  SET value = taskhost.metric_counts.value + EXCLUDED.value",
      {from, to, pg::array_literal(les)});
  tx.exec("UPDATE taskhost.metric_fold SET seq = $1", {to});
  tx.commit();
}

}  // namespace

void record_plugin_metric(pg::Connection& conn, const std::string& schema,
                          const std::string& metric, bool counter, const std::string& help,
                          const nlohmann::json& labels, double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  conn.exec("SELECT taskhost.record_plugin_metric($1, $2, $3::jsonb, $4, $5, $6::float8)",
            {schema, metric, labels.dump(), std::string(counter ? "counter" : "gauge"), help,
             std::string(text)});
}

PlatformMetrics read_platform_metrics(pg::Connection& conn, const std::vector<double>& buckets,
                                      int64_t max_entries) {
  fold(conn, buckets, max_entries);
  PlatformMetrics m;
  auto results = conn.pipeline({
      {"SELECT metric, labels[1], labels[2], labels[3], value FROM taskhost.metric_counts", {}},
      {"SELECT schema_name, state, count(*) FROM taskhost.runs "
       "WHERE state IN ('queued', 'running', 'pausing', 'paused', 'cancelling') GROUP BY 1, 2",
       {}},
      {"SELECT count(*), extract(epoch FROM now() - min(run_after)) FROM taskhost.runs "
       "WHERE state = 'queued' AND run_after <= now()",
       {}},
      {"SELECT (SELECT count(*) FROM taskhost.webhook_deliveries WHERE state = 'pending'), "
       "(SELECT count(*) FROM taskhost.webhook_deliveries WHERE state = 'dead'), "
       "(SELECT seq FROM taskhost.audit_chain_head())",
       {}},
      {"SELECT schema_name, metric, kind, help, labels::text, value FROM taskhost.plugin_metrics "
       "ORDER BY metric, schema_name, labels",
       {}},
  });
  for (auto& r : results)
    if (!r.ok()) r.raise();
  const auto& counts = results[0];
  for (int i = 0; i < counts.rows(); ++i) {
    MetricCount c{counts.text(i, 0), {}, std::stod(counts.text(i, 4))};
    for (int col = 1; col <= 3 && !counts.null(i, col); ++col)
      c.labels.push_back(counts.text(i, col));
    m.counts.push_back(std::move(c));
  }
  const auto& active = results[1];
  for (int i = 0; i < active.rows(); ++i)
    m.active.push_back({active.text(i, 0), active.text(i, 1), active.integer(i, 2)});
  m.queue_depth = results[2].integer(0, 0);
  if (!results[2].null(0, 1)) m.oldest_queued_seconds = std::stod(results[2].text(0, 1));
  m.deliveries_pending = results[3].integer(0, 0);
  m.dead_letters = results[3].integer(0, 1);
  m.audit_appends = results[3].integer(0, 2);
  const auto& plugins = results[4];
  for (int i = 0; i < plugins.rows(); ++i) {
    PluginMetricRow row{plugins.text(i, 0),
                        plugins.text(i, 1),
                        plugins.text(i, 2) == "counter",
                        plugins.text(i, 3),
                        {},
                        std::stod(plugins.text(i, 5))};
    const nlohmann::json labels = nlohmann::json::parse(plugins.text(i, 4));
    for (const auto& [k, v] : labels.items()) row.labels.emplace_back(k, v.get<std::string>());
    m.plugins.push_back(std::move(row));
  }
  return m;
}

}  // namespace taskhost
