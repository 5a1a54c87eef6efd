#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace taskhost {

// Parses "500ms", "30s", "5m", "1h30m", "2d": one or more <integer><unit>
// terms, units ms s m h d, each unit at most once, largest first.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The shortest text parse_duration() reads back as d ("1h30m", "0s").
std::string format_duration(std::chrono::milliseconds d);

}  // namespace taskhost
