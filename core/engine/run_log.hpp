#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/host_config.hpp"
#include "store/pg.hpp"
#include "store/run_logs.hpp"

namespace taskhost {

// One attempt's plugin log on its way to the store (store/run_logs.hpp).
// Lines are appended in batches: by a thread of its own every `every`, by
// the logging thread itself when a batch is full (so a plugin that logs
// faster than the store takes it waits, and memory stays bounded), and at
// the attempt's end (close()). A worker that dies loses what it had not
// appended: at most `every` of lines, and never more than one batch.
// Thread-safe.
class RunLog {
 public:
  static constexpr size_t batch_lines = 1000;
  static constexpr size_t batch_bytes = 1 << 20;

  RunLog(pg::Pool& pool, std::string run_id, int attempt, HostConfig::RunLogLimits limits,
         std::chrono::milliseconds every = std::chrono::seconds(1));
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // level: debug, info, warn or error; message already storable and redacted.
  void add(const char* level, std::string message);
  // Appends what is pending and stops the thread; nothing is added after.
  void close();

 private:
  void flush();

  pg::Pool& pool_;
  const std::string run_id_;
  const int attempt_;
  const HostConfig::RunLogLimits limits_;
  const std::chrono::milliseconds every_;

  std::mutex mutex_;  // guards the fields below
  std::condition_variable wake_;
  std::vector<PendingLine> pending_;
  size_t pending_bytes_ = 0;
  bool full_ = false;    // the run's log is full: lines are counted only
  bool fenced_ = false;  // the attempt lost the run: nothing is sent
  bool closed_ = false;
  int64_t counted_lines_ = 0, counted_bytes_ = 0;  // dropped here, not yet reported

  std::mutex flush_mutex_;  // one append at a time, so lines keep their order
  std::thread thread_;
};

}  // namespace taskhost
