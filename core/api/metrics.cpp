#include "api/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <limits>
#include <map>

#include "store/metrics.hpp"

namespace taskhost::api {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Seconds; plugins run from moments to hours.
const std::vector<double> run_buckets = {0.1, 1, 10, 60, 300, 900, 3600, 14400, 86400};
const std::vector<double> request_buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

ClientMetric sample(const std::vector<std::pair<std::string, std::string>>& labels, MetricType type,
                    double value) {
  ClientMetric m;
  for (const auto& [name, v] : labels) m.label.push_back({name, v});
  if (type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return m;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  return {std::move(name), std::move(help), type, {}};
}

// The folded counters of one metric, with these label names in order.
MetricFamily counter(const PlatformMetrics& p, const std::string& metric, std::string name,
                     std::string help, const std::vector<std::string>& label_names) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Counter);
  for (const auto& c : p.counts) {
    if (c.metric != metric || c.labels.size() != label_names.size()) continue;
    std::vector<std::pair<std::string, std::string>> labels;
    for (size_t i = 0; i < label_names.size(); ++i)
      labels.emplace_back(label_names[i], c.labels[i]);
    f.metric.push_back(sample(labels, MetricType::Counter, c.value));
  }
  return f;
}

MetricFamily run_durations(const PlatformMetrics& p) {
  struct Folded {
    std::map<double, double> buckets;  // le -> cumulative count
    double sum = 0, count = 0;
  };
  std::map<std::string, Folded> by_schema;
  for (const auto& c : p.counts) {
    if (c.metric == "run_duration_bucket" && c.labels.size() == 2)
      by_schema[c.labels[0]].buckets[std::stod(c.labels[1])] = c.value;
    else if (c.metric == "run_duration_sum" && c.labels.size() == 1)
      by_schema[c.labels[0]].sum = c.value;
    else if (c.metric == "run_duration_count" && c.labels.size() == 1)
      by_schema[c.labels[0]].count = c.value;
  }
  MetricFamily f =
      family("taskhost_run_duration_seconds",
             "Finished runs' durations, from the start of the attempt that finished them",
             MetricType::Histogram);
  for (const auto& [schema, folded] : by_schema) {
    ClientMetric m;
    m.label.push_back({"schema", schema});
    m.histogram.sample_count = static_cast<uint64_t>(folded.count);
    m.histogram.sample_sum = folded.sum;
    for (double le : run_buckets) {
      auto it = folded.buckets.find(le);
      m.histogram.bucket.push_back(
          {static_cast<uint64_t>(it == folded.buckets.end() ? 0 : it->second), le});
    }
    m.histogram.bucket.push_back(
        {m.histogram.sample_count, std::numeric_limits<double>::infinity()});
    f.metric.push_back(std::move(m));
  }
  return f;
}

MetricFamily gauge(std::string name, std::string help, double value) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Gauge);
  f.metric.push_back(sample({}, MetricType::Gauge, value));
  return f;
}

}  // namespace

ApiMetrics::ApiMetrics()
    : registry_(std::make_unique<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("taskhost_api_requests_total")
                    .Help("HTTP API requests answered by this process, by route and status")
                    .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("taskhost_api_request_duration_seconds")
                   .Help("Time to answer an HTTP API request in this process, by route")
                   .Register(*registry_)) {}

void ApiMetrics::observe(const std::string& route, const std::string& method, int status,
                         double seconds) {
  requests_.Add({{"route", route}, {"method", method}, {"status", std::to_string(status)}})
      .Increment();
  latency_.Add({{"route", route}, {"method", method}}, request_buckets).Observe(seconds);
}

std::string ApiMetrics::render(pg::Connection& db) const {
  const PlatformMetrics p = read_platform_metrics(db, run_buckets);
  std::vector<MetricFamily> families;

  MetricFamily runs =
      family("taskhost_runs", "Runs in a state that is not final, by schema", MetricType::Gauge);
  for (const auto& a : p.active)
    runs.metric.push_back(
        sample({{"schema", a.schema}, {"state", a.state}}, MetricType::Gauge, a.count));
  families.push_back(std::move(runs));
  families.push_back(counter(p, "runs_finished", "taskhost_runs_finished_total",
                             "Runs that reached a final state (again, after a retry), by schema",
                             {"schema", "state"}));
  families.push_back(run_durations(p));
  families.push_back(gauge("taskhost_queue_depth", "Queued runs that are due now",
                           static_cast<double>(p.queue_depth)));
  families.push_back(gauge("taskhost_queue_oldest_age_seconds",
                           "How long the longest-waiting due run has waited (0: none waits)",
                           p.oldest_queued_seconds.value_or(0)));
  families.push_back(counter(p, "run_retries", "taskhost_run_retries_total",
                             "Runs queued again for another attempt (automatic or asked)",
                             {"schema"}));
  families.push_back(counter(p, "run_rescues", "taskhost_run_rescues_total",
                             "Runs taken back from a worker (lease expired, timeout, stop ignored)",
                             {"schema", "reason"}));
  families.push_back(counter(p, "webhook_deliveries", "taskhost_webhook_deliveries_total",
                             "Webhook delivery attempts by outcome (failed: retried later)",
                             {"outcome"}));
  families.push_back(gauge("taskhost_webhook_deliveries_pending",
                           "Webhook deliveries waiting to be sent",
                           static_cast<double>(p.deliveries_pending)));
  families.push_back(gauge("taskhost_webhook_dead_letters",
                           "Webhook deliveries given up on, until redelivered",
                           static_cast<double>(p.dead_letters)));
  families.push_back(counter(p, "service_calls", "taskhost_service_calls_total",
                             "Plugins' service calls by service, operation and outcome",
                             {"service", "operation", "outcome"}));
  MetricFamily audit = family("taskhost_audit_appends_total", "Entries appended to the audit log",
                              MetricType::Counter);
  audit.metric.push_back(sample({}, MetricType::Counter, static_cast<double>(p.audit_appends)));
  families.push_back(std::move(audit));

  // Plugins' metrics: taskhost_plugin_NAME{schema, declared labels}.
  for (size_t i = 0; i < p.plugins.size();) {
    const PluginMetricRow& first = p.plugins[i];
    MetricFamily f = family("taskhost_plugin_" + first.metric, first.help,
                            first.counter ? MetricType::Counter : MetricType::Gauge);
    for (; i < p.plugins.size() && p.plugins[i].metric == first.metric; ++i) {
      const PluginMetricRow& row = p.plugins[i];
      std::vector<std::pair<std::string, std::string>> labels = {{"schema", row.schema}};
      labels.insert(labels.end(), row.labels.begin(), row.labels.end());
      f.metric.push_back(sample(labels, f.type, row.value));
    }
    families.push_back(std::move(f));
  }

  for (auto& f : registry_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace taskhost::api
