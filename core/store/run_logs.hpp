#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store/pg.hpp"

namespace taskhost {

// A run's log (migration 0015): its plugin's lines, shipped in batches by the
// worker, and the host's line for each transition, numbered per run by seq.
// Where a change of a run (state, progress, an event, log lines) is
// announced, with the run id as payload (migration 0015's triggers).
inline constexpr const char* run_activity_channel = "taskhost_run_activity";

struct LogLine {
  int64_t seq = 0;
  int attempt = 0;
  std::string at, level, source, message;  // level: debug info warn error; source: plugin host
};

struct LogPage {
  std::vector<LogLine> lines;
  int64_t last_seq = 0;  // the newest line's seq, stored or not listed here
  int64_t dropped_lines = 0, dropped_bytes = 0;
};

struct LogQuery {
  std::optional<int> attempt;
  int64_t after_seq = 0;  // lines with a greater seq, oldest first
  int limit = 1000;
};

LogPage read_run_logs(pg::Connection& conn, const std::string& run_id, const LogQuery& q);

// A plugin's line before it is stored.
struct PendingLine {
  std::chrono::system_clock::time_point at;
  std::string level, message;
};

// Appends one attempt's plugin lines in one statement, bounded by
// max_lines/max_bytes per run; dropped_lines/dropped_bytes are lines the
// caller counted without sending. Returns whether the run's log is full
// (send counts only from then on), or nullopt when the attempt no longer
// owns the run (nothing stored).
std::optional<bool> append_run_logs(pg::Connection& conn, const std::string& run_id, int attempt,
                                    const std::vector<PendingLine>& lines, int64_t max_lines,
                                    uint64_t max_bytes, int64_t dropped_lines,
                                    int64_t dropped_bytes);

}  // namespace taskhost
