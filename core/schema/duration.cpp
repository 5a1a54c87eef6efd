#include "schema/duration.hpp"

#include <array>
#include <cctype>
#include <cstdint>

namespace taskhost {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t ms;
};
// Largest first; "ms" before "m" so the longer suffix matches first.
constexpr std::array<Unit, 5> units{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"ms", 1},
    {"m", 60'000},
    {"s", 1'000},
}};
constexpr std::array<int, 5> rank{0, 1, 4, 2, 3};  // order of appearance allowed

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t total = 0;
  int last_rank = -1;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (n > 1'000'000'000) return std::nullopt;
      n = n * 10 + (text[i++] - '0');
    }
    if (i == start) return std::nullopt;
    size_t u = 0;
    while (u < units.size() && text.substr(i, units[u].suffix.size()) != units[u].suffix) ++u;
    if (u == units.size() || rank[u] <= last_rank) return std::nullopt;
    last_rank = rank[u];
    i += units[u].suffix.size();
    total += n * units[u].ms;
  }
  return std::chrono::milliseconds(total);
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t left = d.count();
  if (left == 0) return "0s";
  std::string out;
  for (int r = 0; r < 5; ++r) {
    size_t u = 0;
    while (rank[u] != r) ++u;
    if (int64_t n = left / units[u].ms; n > 0) {
      out += std::to_string(n) + std::string(units[u].suffix);
      left -= n * units[u].ms;
    }
  }
  return out;
}

}  // namespace taskhost
