#pragma once

#include <string_view>

#include "schema/schema.hpp"

namespace taskhost {

// One sample a plugin records (th_host_api.metric), checked against its
// schema's `metrics:`: a declared metric, every declared label given one of
// its declared values and no other label, a finite value (for a counter an
// increment, not negative).
struct MetricSample {
  const MetricSpec* spec = nullptr;
  Json labels;  // {label: value}, exactly the declared labels
  double value = 0;
};

// Throws Error(invalid) naming the metric, label or value refused and what
// the schema declares.
MetricSample check_metric_sample(const TaskSchema& schema, std::string_view name,
                                 std::string_view labels_json, double value);

}  // namespace taskhost
