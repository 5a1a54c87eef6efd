#pragma once

#include <taskhost/plugin.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "sandbox/frame.hpp"
#include "sandbox/walls.hpp"

namespace taskhost::sandbox {

// The plugin process's side of the broker: a th_host_api whose entries turn
// each call into frames on the broker socket and wait for the result.
// should_stop() costs no round trip: the host pushes a stop frame, which any
// later read of the socket notices. Calls are serialised (the ABI allows
// calls only from the thread running run, but a misbehaving plugin must not
// interleave frames).
class Client {
 public:
  // granted: bit (1 << Method) per service the schema grants.
  Client(int fd, uint32_t granted) : fd_(fd), granted_(granted) {}
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  th_host_api api() const;
  th_host* host() { return reinterpret_cast<th_host*>(this); }

  // One call: sends it, serves the host's reads from in and its chunks into
  // out and reply, and returns the host's result code (its message in err).
  // Arguments over max_argument fail here with TH_ERR_INVALID, as the host
  // would refuse them.
  int call(const Call& c, th_source* in, th_sink* out, th_sink* reply, th_error* err);
  bool should_stop();
  // progress() is a hint (the host stores it a few times a second): sent at
  // most every progress_every, and the latest value always before any other
  // call, at done == total, and before run returns (flush_progress).
  int progress(uint64_t done, uint64_t total, th_error* err);
  int flush_progress(th_error* err);

 private:
  int exchange(const Call& c, th_source* in, th_sink* out, th_sink* reply, th_error* err);
  const char* read_file(int fd, th_sink* sink);
  // A frame the host sends outside a call can only be stop.
  void take_unsolicited(const Frame& f);

  int fd_;
  uint32_t granted_;
  bool stop_ = false;
  std::mutex mutex_;
  std::optional<std::pair<uint64_t, uint64_t>> pending_progress_;
  std::chrono::steady_clock::time_point progress_sent_{};
  Frame frame_;                 // each frame read, its buffer reused (under mutex_)
  std::vector<char> buf_;       // a source's bytes on their way to the host
  std::vector<char> file_buf_;  // a file's bytes on their way to the plugin's sink
};

// Waits for go and the plugin's image, finishes the walls, loads /plugin.so,
// says hello, waits for start, installs seccomp, runs the plugin against a
// Client and reports done. Never returns.
[[noreturn]] void plugin_process(Steps& steps, const Prepare& prepare);

}  // namespace taskhost::sandbox
