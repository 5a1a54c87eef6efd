#pragma once

// The platform's facts for `/metrics`, read from the database so that every
// process reports the whole platform (migrations/0013_metrics.sql).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <utility>

#include "store/pg.hpp"

namespace taskhost {

// One folded counter: its name in metric_counts and up to three label values.
struct MetricCount {
  std::string metric;
  std::vector<std::string> labels;
  double value = 0;
};

struct RunsInState {
  std::string schema, state;
  int64_t count = 0;
};

// One sample of a plugin's metric (migrations/0016_plugin_metrics.sql).
struct PluginMetricRow {
  std::string schema, metric;
  bool counter = true;
  std::string help;
  std::vector<std::pair<std::string, std::string>> labels;  // by label name
  double value = 0;
};

struct PlatformMetrics {
  // runs_finished {schema, state}, run_retries {schema}, run_rescues
  // {schema, reason}, service_calls {service, operation, outcome},
  // run_duration_bucket {schema, le}, run_duration_sum / _count {schema},
  // webhook_deliveries {outcome}.
  std::vector<MetricCount> counts;
  std::vector<RunsInState> active;  // runs in a state that is not final
  int64_t queue_depth = 0;          // queued and due now
  std::optional<double> oldest_queued_seconds;
  int64_t deliveries_pending = 0, dead_letters = 0;
  int64_t audit_appends = 0;  // the chain's length
  // Plugins' own metrics, ordered by metric then schema.
  std::vector<PluginMetricRow> plugins;
};

// Folds the audit entries appended since the last fold (at most
// `max_entries` of them: a scrape's cost stays bounded however far behind
// the fold is; the rest wait for the next scrape) into the counters, then
// reads every fact in a few aggregate queries, each answered from an index
// (active runs, due runs, pending and dead deliveries are partial or leading
// index ranges). Run durations are counted into the cumulative buckets
// `duration_buckets` (seconds, ascending). Throws DbError.
// Adds value to a plugin's counter, or sets its gauge, as one statement
// (through taskhost.record_plugin_metric, the runtime's only way in). labels
// is a JSON object of label values, already checked against the schema.
// Throws DbError (a metric stored as the other kind, a negative increment).
void record_plugin_metric(pg::Connection& conn, const std::string& schema,
                          const std::string& metric, bool counter, const std::string& help,
                          const nlohmann::json& labels, double value);

PlatformMetrics read_platform_metrics(pg::Connection& conn,
                                      const std::vector<double>& duration_buckets,
                                      int64_t max_entries = 100000);

}  // namespace taskhost
