#include "schema/cron.hpp"

#include <array>
#include <charconv>
#include <sstream>
#include <vector>

namespace taskhost {
namespace {

struct Field {
  const char* name;
  int min;
  int max;
  std::array<const char*, 12> names;  // names[i] stands for min + i
};

constexpr std::array<Field, 5> fields{{
    {"minute", 0, 59, {}},
    {"hour", 0, 23, {}},
    {"day-of-month", 1, 31, {}},
    {"month",
     1,
     12,
     {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
    {"day-of-week", 0, 7, {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}};

std::optional<int> parse_value(const Field& f, std::string_view s) {
  for (size_t i = 0; i < f.names.size() && f.names[i] != nullptr; ++i) {
    std::string_view n = f.names[i];
    if (s.size() == n.size() && std::equal(s.begin(), s.end(), n.begin(),
                                           [](char a, char b) { return std::toupper(a) == b; }))
      return f.min + static_cast<int>(i);
  }
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < f.min || v > f.max)
    return std::nullopt;
  return v;
}

// Sets the bits of one field into bits[min..max]; returns an error or "".
std::string parse_field(const Field& f, std::string_view text, std::vector<bool>& bits) {
  bits.assign(static_cast<size_t>(f.max + 1), false);
  std::string_view rest = text;
  while (true) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    int step = 1;
    if (auto slash = item.find('/'); slash != std::string_view::npos) {
      auto s = item.substr(slash + 1);
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
      if (ec != std::errc() || ptr != s.data() + s.size() || step < 1 || step > f.max)
        return "bad step '" + std::string(s) + "'";
      item = item.substr(0, slash);
    }
    int lo = f.min, hi = f.max;
    if (item != "*") {
      auto dash = item.find('-');
      auto a = parse_value(f, item.substr(0, dash));
      auto b = dash == std::string_view::npos ? a : parse_value(f, item.substr(dash + 1));
      if (!a || !b)
        return "'" + std::string(item) + "' is not a value or range within " +
               std::to_string(f.min) + "-" + std::to_string(f.max);
      if (*a > *b) return "range '" + std::string(item) + "' runs backwards";
      lo = *a;
      // "5/15" means from 5 to the end in steps of 15.
      hi = (dash == std::string_view::npos && step > 1) ? f.max : *b;
    }
    for (int v = lo; v <= hi; v += step) bits[static_cast<size_t>(v)] = true;
    if (comma == std::string_view::npos) return "";
    rest = rest.substr(comma + 1);
  }
}

std::string_view expand_macro(std::string_view text) {
  if (text == "@hourly") return "0 * * * *";
  if (text == "@daily" || text == "@midnight") return "0 0 * * *";
  if (text == "@weekly") return "0 0 * * 0";
  if (text == "@monthly") return "0 0 1 * *";
  if (text == "@yearly" || text == "@annually") return "0 0 1 1 *";
  return text;
}

}  // namespace

std::optional<CronSpec> CronSpec::parse(std::string_view text, std::string* error) {
  std::istringstream in{std::string(expand_macro(text))};
  std::vector<std::string> parts;
  for (std::string p; in >> p;) parts.push_back(p);
  if (parts.size() != 5) {
    *error = "expected 5 fields (minute hour day-of-month month day-of-week), got " +
             std::to_string(parts.size());
    return std::nullopt;
  }
  CronSpec spec;
  std::vector<bool> bits;
  for (size_t i = 0; i < 5; ++i) {
    if (auto e = parse_field(fields[i], parts[i], bits); !e.empty()) {
      *error = std::string(fields[i].name) + " field: " + e;
      return std::nullopt;
    }
    for (size_t v = 0; v < bits.size(); ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0:
          spec.minutes.set(v);
          break;
        case 1:
          spec.hours.set(v);
          break;
        case 2:
          spec.days_of_month.set(v);
          break;
        case 3:
          spec.months.set(v);
          break;
        case 4:
          spec.days_of_week.set(v % 7);
          break;
      }
    }
  }
  spec.dom_restricted = parts[2] != "*";
  spec.dow_restricted = parts[4] != "*";
  return spec;
}

}  // namespace taskhost
