#include "engine/run_log.hpp"

#include <spdlog/spdlog.h>

namespace taskhost {

RunLog::RunLog(pg::Pool& pool, std::string run_id, int attempt, HostConfig::RunLogLimits limits,
               std::chrono::milliseconds every)
    : pool_(pool), run_id_(std::move(run_id)), attempt_(attempt), limits_(limits), every_(every) {
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!closed_) {
      wake_.wait_for(lock, every_, [&] { return closed_; });
      if (closed_) break;
      lock.unlock();
      flush();
      lock.lock();
    }
  });
}

RunLog::~RunLog() { close(); }

void RunLog::add(const char* level, std::string message) {
  bool full_batch;
  {
    std::lock_guard lock(mutex_);
    if (closed_ || fenced_) return;
    if (full_) {
      ++counted_lines_;
      counted_bytes_ += static_cast<int64_t>(message.size());
      return;
    }
    pending_bytes_ += message.size();
    pending_.push_back({std::chrono::system_clock::now(), level, std::move(message)});
    full_batch = pending_.size() >= batch_lines || pending_bytes_ >= batch_bytes;
  }
  if (full_batch) flush();
}

void RunLog::close() {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
  }
  wake_.notify_all();
  thread_.join();
  flush();
}

void RunLog::flush() {
  std::lock_guard order(flush_mutex_);
  std::vector<PendingLine> lines;
  int64_t lines_dropped, bytes_dropped;
  {
    std::lock_guard lock(mutex_);
    if (fenced_ || (pending_.empty() && counted_lines_ == 0)) return;
    lines.swap(pending_);
    pending_bytes_ = 0;
    lines_dropped = counted_lines_;
    bytes_dropped = counted_bytes_;
    counted_lines_ = counted_bytes_ = 0;
  }
  std::optional<bool> full;
  try {
    full = append_run_logs(*pool_.acquire(), run_id_, attempt_, lines, limits_.max_lines,
                           limits_.max_bytes, lines_dropped, bytes_dropped);
  } catch (const std::exception& e) {
    // The store is away: keep the lines for the next try, the oldest going
    // once two batches wait (the worker's memory is not the store).
    std::lock_guard lock(mutex_);
    lines.insert(lines.end(), std::make_move_iterator(pending_.begin()),
                 std::make_move_iterator(pending_.end()));
    pending_ = std::move(lines);
    counted_lines_ += lines_dropped;
    counted_bytes_ += bytes_dropped;
    size_t lost = pending_.size() > 2 * batch_lines ? pending_.size() - 2 * batch_lines : 0;
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(lost));
    pending_bytes_ = 0;
    for (const auto& l : pending_) pending_bytes_ += l.message.size();
    spdlog::warn("run {} attempt {}: log lines not stored yet{}: {}", run_id_, attempt_,
                 lost ? " (" + std::to_string(lost) + " lost)" : std::string(), e.what());
    return;
  }
  std::lock_guard lock(mutex_);
  if (!full) {
    fenced_ = true;
    pending_.clear();
  } else if (*full) {
    full_ = true;
    // What arrived meanwhile is past the bound too.
    for (const auto& l : pending_) {
      ++counted_lines_;
      counted_bytes_ += static_cast<int64_t>(l.message.size());
    }
    pending_.clear();
    pending_bytes_ = 0;
  }
}

}  // namespace taskhost
