#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace taskhost {

// What one attempt of a plugin may use (README "The sandbox"). A schema's
// `limits` sets some; the host config's `sandbox.limits` the rest; the
// built-in defaults (default_limits) whatever neither sets.
struct ResourceLimits {
  std::optional<uint64_t> memory;      // bytes
  std::optional<uint64_t> cpu_time;    // seconds of CPU
  std::optional<uint64_t> open_files;  // file descriptors
  std::optional<uint64_t> tmp;         // bytes in the attempt's /tmp
  std::optional<uint64_t> processes;   // the plugin's threads (and processes)

  // Each field of this one where it is set, else base's.
  ResourceLimits over(const ResourceLimits& base) const;
  // The fields that are set, in the schema's words ({"memory": "2GiB", ...}).
  nlohmann::json to_json() const;
};

inline const ResourceLimits default_limits{
    .memory = 2ull << 30, .cpu_time = 3600, .open_files = 256, .tmp = 1ull << 30, .processes = 64};

// Parses "512MiB", "2GiB", "64KiB", "100B": one integer and a binary unit
// (B, KiB, MiB, GiB, TiB). std::nullopt for anything else or an overflow.
std::optional<uint64_t> parse_size(std::string_view text);
// The shortest text parse_size() reads back as n ("2GiB", "1536MiB").
std::string format_size(uint64_t n);

// Reads a limits mapping at field ("limits", "sandbox.limits"): sizes with
// units, cpu_time as a duration (whole seconds, at least 1s), counts as
// integers, each within what a plugin can still start with. Every problem
// goes to error(node, field, message); the fields read well are returned.
using LimitsError = std::function<void(const YAML::Node&, const std::string&, const std::string&)>;
ResourceLimits read_limits(const YAML::Node& n, const std::string& field, const LimitsError& error);

}  // namespace taskhost
