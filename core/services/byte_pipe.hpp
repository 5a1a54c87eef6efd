#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

namespace taskhost {

// Bytes from one thread to another with at most about `capacity` buffered,
// so a stream of any size passes through in bounded memory (OpenPGP
// decryption, transfers). The writer blocks while it is full, the reader
// while it is empty; either side may abort.
class BytePipe {
 public:
  explicit BytePipe(size_t capacity = 1 << 20) : capacity_(capacity) {}

  // Blocks while full; false once the pipe was aborted.
  bool write(const char* data, size_t n) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return aborted_ || data_.size() < capacity_; });
    if (aborted_) return false;
    data_.append(data, n);
    changed_.notify_all();
    return true;
  }
  // Blocks while empty; 0 at the end (or once aborted).
  size_t read(char* buf, size_t capacity) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return aborted_ || closed_ || !data_.empty(); });
    if (aborted_) return 0;
    const size_t n = std::min(capacity, data_.size());
    std::memcpy(buf, data_.data(), n);
    data_.erase(0, n);
    changed_.notify_all();
    return n;
  }
  // The writer is done: reads drain what is left, then return 0.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
  }
  // Either side gives up: both stop at once.
  void abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    changed_.notify_all();
  }

 private:
  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string data_;
  bool closed_ = false, aborted_ = false;
};

}  // namespace taskhost
