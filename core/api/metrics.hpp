#pragma once

// `/metrics`: the Prometheus text format. The platform's facts (runs, queue,
// webhook deliveries, service calls, audit) come from the database at scrape
// time (store/metrics.hpp), so any serve process reports the whole platform;
// API requests are this process's own, counted as they are answered.
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "store/pg.hpp"

namespace taskhost::api {

class ApiMetrics {
 public:
  ApiMetrics();
  // One answered request: its route as the table writes it ("/v1/runs/{id}",
  // never the raw path, so the series stay few; "unmatched" for none), its
  // method, status and time taken. Thread-safe.
  void observe(const std::string& route, const std::string& method, int status, double seconds);
  // The whole scrape. Throws DbError when the database cannot answer.
  std::string render(pg::Connection& db) const;

 private:
  std::unique_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
};

}  // namespace taskhost::api
