#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address_policy.hpp"
#include "config/host_keys.hpp"
#include "webhooks/outbox.hpp"

namespace taskhost {

struct DispatcherOptions {
  std::vector<AddressRange> allow_destinations;  // non-public ranges we may reach
  int batch = 64;                                // streams (run, url) sent at once
  std::chrono::milliseconds timeout{15'000};     // a slower answer is a failure
  std::function<SystemClock::time_point()> clock = [] { return SystemClock::now(); };
  std::function<double()> jitter;  // uniform in [0, 1); random when empty
  HostKeys keys;                   // open the schemas' stored secrets
};

// The wait after failed attempt `attempts` (1-based) of a delivery: 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (the first attempt is immediate), each
// within ±10 % by jitter in [0, 1). std::nullopt after the 8th attempt: the
// delivery becomes a dead letter.
std::optional<std::chrono::milliseconds> retry_delay(int attempts, double jitter);

// Sends webhook deliveries: POSTs each body signed per Standard Webhooks with
// every current secret of its schema. Up to `batch` streams at once over
// reused connections; within a stream one delivery after another, each
// after the one before it succeeded. 2xx delivers; any other answer, a
// timeout or a refused destination is retried on the schedule, with
// Retry-After honoured, and holds back the rest of its stream; 410 disables
// the endpoint.
class Dispatcher {
 public:
  Dispatcher(pg::Connection& conn, DispatcherOptions options);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Sends what is due now and records the outcomes. Returns how many
  // deliveries were attempted.
  int dispatch_once();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Sends what is due until nothing is, or `budget` has passed: for a process
// that is no worker (`run --inline`) announcing its own changes. What fails
// stays queued for the workers' retries. Returns the deliveries attempted.
int drain_webhooks(pg::Connection& conn, const DispatcherOptions& options,
                   std::chrono::seconds budget);

// A dispatcher's life in a worker: its own connection, woken by the outbox
// triggers' NOTIFY (or every second), reconnecting after failures, until
// `stop` is set.
void run_dispatcher(const std::string& conninfo, DispatcherOptions options,
                    const std::atomic<bool>& stop);

}  // namespace taskhost
