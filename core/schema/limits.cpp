#include "schema/limits.hpp"

#include <array>
#include <charconv>

#include "schema/duration.hpp"

namespace taskhost {
namespace {

struct SizeUnit {
  std::string_view suffix;
  int shift;
};
// Longest suffix first so that "B" never matches the end of "GiB".
constexpr std::array<SizeUnit, 5> size_units{
    {{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}};

// The smallest limits a plugin process can still load and run under.
constexpr uint64_t min_memory = 64ull << 20;
constexpr uint64_t min_open_files = 16;
constexpr uint64_t max_count = 1u << 20;

std::optional<uint64_t> count(std::string_view s, uint64_t min) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < min || v > max_count)
    return std::nullopt;
  return v;
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  for (const auto& u : size_units) {
    if (!text.ends_with(u.suffix)) continue;
    std::string_view digits = text.substr(0, text.size() - u.suffix.size());
    uint64_t n = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() ||
        n > (~uint64_t{0} >> u.shift))
      return std::nullopt;
    return n << u.shift;
  }
  return std::nullopt;
}

std::string format_size(uint64_t n) {
  size_t u = size_units.size() - 1;
  while (u > 0 && n != 0 && n % (uint64_t{1} << size_units[u - 1].shift) == 0) --u;
  return std::to_string(n >> size_units[u].shift) + std::string(size_units[u].suffix);
}

ResourceLimits ResourceLimits::over(const ResourceLimits& base) const {
  return {memory ? memory : base.memory, cpu_time ? cpu_time : base.cpu_time,
          open_files ? open_files : base.open_files, tmp ? tmp : base.tmp,
          processes ? processes : base.processes};
}

nlohmann::json ResourceLimits::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (memory) j["memory"] = format_size(*memory);
  if (cpu_time) j["cpu_time"] = format_duration(std::chrono::seconds(*cpu_time));
  if (open_files) j["open_files"] = *open_files;
  if (tmp) j["tmp"] = format_size(*tmp);
  if (processes) j["processes"] = *processes;
  return j;
}

ResourceLimits read_limits(const YAML::Node& n, const std::string& field,
                           const LimitsError& error) {
  ResourceLimits l;
  if (!n.IsMap()) {
    error(n, field, "expected a mapping of memory, cpu_time, open_files, tmp, processes");
    return l;
  }
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string key = it->first.Scalar();
    const std::string f = field + "." + key;
    const YAML::Node v = it->second;
    if (!v.IsScalar()) {
      error(v, f, "expected a single value");
      continue;
    }
    const std::string& s = v.Scalar();
    if (key == "memory" || key == "tmp") {
      auto size = parse_size(s);
      const uint64_t min = key == "memory" ? min_memory : uint64_t{1} << 20;
      if (!size || *size < min)
        error(v, f,
              "expected a size of at least " + format_size(min) + " like 512MiB or 2GiB, got '" +
                  s + "'");
      else
        (key == "memory" ? l.memory : l.tmp) = *size;
    } else if (key == "cpu_time") {
      auto d = parse_duration(s);
      if (!d || *d < std::chrono::seconds(1) || d->count() % 1000 != 0)
        error(v, f, "expected a duration in whole seconds like 30s, 10m, 1h, got '" + s + "'");
      else
        l.cpu_time = static_cast<uint64_t>(d->count() / 1000);
    } else if (key == "open_files" || key == "processes") {
      const uint64_t min = key == "open_files" ? min_open_files : 1;
      auto c = count(s, min);
      if (!c)
        error(v, f,
              "expected an integer from " + std::to_string(min) + " to " +
                  std::to_string(max_count) + ", got '" + s + "'");
      else
        (key == "open_files" ? l.open_files : l.processes) = *c;
    } else {
      error(it->first, f,
            "unknown key (expected one of: memory, cpu_time, open_files, tmp, "
            "processes)");
    }
  }
  return l;
}

}  // namespace taskhost
