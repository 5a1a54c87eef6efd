#include "services/plugin_metrics.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/json_input.hpp"
#include "common/text.hpp"

namespace taskhost {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

}  // namespace

MetricSample check_metric_sample(const TaskSchema& schema, std::string_view name,
                                 std::string_view labels_json, double value) {
  MetricSample sample;
  for (const auto& m : schema.metrics)
    if (m.name == name) sample.spec = &m;
  if (!sample.spec) {
    std::vector<std::string> declared;
    for (const auto& m : schema.metrics) declared.push_back(m.name);
    throw Error(ErrorKind::invalid,
                "metric '" + printable(storable(name, 100)) + "' is not declared by schema " +
                    schema.name + " (declared: " + (declared.empty() ? "none" : join(declared)) +
                    ")");
  }
  const MetricSpec& spec = *sample.spec;
  const std::string where = "metric " + spec.name + ": ";
  Json labels = labels_json.empty() ? Json::object() : parse_json_input(labels_json, "labels");
  if (!labels.is_object()) throw Error(ErrorKind::invalid, where + "labels must be a JSON object");
  for (const auto& [label, v] : labels.items()) {
    auto it = spec.labels.find(label);
    if (it == spec.labels.end()) {
      std::vector<std::string> declared;
      for (const auto& [l, values] : spec.labels) declared.push_back(l);
      throw Error(ErrorKind::invalid,
                  where + "label '" + printable(storable(label, 100)) + "' is not declared (" +
                      (declared.empty() ? "it has no labels" : "declared: " + join(declared)) +
                      ")");
    }
    const std::vector<std::string>& values = it->second;
    if (!v.is_string() ||
        std::find(values.begin(), values.end(), v.get<std::string>()) == values.end())
      throw Error(ErrorKind::invalid,
                  where + "label " + label + " value " +
                      printable(storable(v.is_string() ? v.get<std::string>() : v.dump(), 100)) +
                      " is not declared (declared: " + join(values) + ")");
  }
  for (const auto& [label, values] : spec.labels)
    if (!labels.contains(label))
      throw Error(ErrorKind::invalid, where + "label " + label + " is missing");
  if (!std::isfinite(value))
    throw Error(ErrorKind::invalid, where + "the value must be a finite number");
  if (spec.counter && value < 0)
    throw Error(ErrorKind::invalid,
                where + "a counter only grows: " + std::to_string(value) + " is not an increment");
  sample.labels = std::move(labels);
  sample.value = value;
  return sample;
}

}  // namespace taskhost
