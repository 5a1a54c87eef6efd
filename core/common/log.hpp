#pragma once

#include <string>

namespace taskhost {

enum class LogFormat { text, json };

// Points spdlog's default logger at stderr, as human-readable lines or as
// JSON lines ({"time","level","msg"}). level is an spdlog level name.
// Called once from main(); throws Error(invalid) for an unknown level.
void setup_logging(LogFormat format, const std::string& level);

}  // namespace taskhost
