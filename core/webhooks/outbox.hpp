#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/pg.hpp"

namespace taskhost {

// The webhook outbox (migrations/0005_webhook_outbox.sql): rows written by
// triggers with the state changes they announce, sent by dispatchers.

using SystemClock = std::chrono::system_clock;

struct Delivery {
  int64_t id = 0;
  std::string message_id;  // webhook-id: the same on every attempt
  std::string schema_name, run_id, url, event, body;
  std::string state;  // pending, delivered, dead
  int attempts = 0;
  std::optional<int> last_status;
  std::optional<std::string> last_error;
  std::string created_at;  // ISO 8601, UTC, as the others
  std::optional<std::string> next_attempt_at, finished_at;
};

// The pending deliveries of one (run, url), oldest first: they are sent in
// this order, each only after the one before it was delivered.
struct ClaimedStream {
  std::string run_id, url;
  int64_t version = 0;  // as claimed; see record_outcomes
  std::vector<Delivery> deliveries;
};

// Claims up to `limit` due streams, leased until now + lease, with up to
// `per_stream` of each one's pending deliveries. A dispatcher that dies
// leaves the lease to expire, and its deliveries are sent again with the
// same message ids.
std::vector<ClaimedStream> claim_streams(pg::Connection& conn, SystemClock::time_point now,
                                         int limit, int per_stream,
                                         std::chrono::milliseconds lease);

// What one attempt came to.
struct DeliveryOutcome {
  int64_t id = 0;
  bool delivered = false;  // a 2xx answer
  bool gone = false;       // 410: disable the endpoint
  std::optional<int> status;
  std::string error;
  std::optional<SystemClock::time_point> retry_at;  // failed: nullopt when no attempts are left
};

struct StreamOutcome {
  const ClaimedStream* stream = nullptr;
  std::vector<DeliveryOutcome> attempts;  // in stream order; only the last can have failed
};

// Records outcomes in one transaction and hands the streams back: due at
// the failed delivery's retry time, or at once while deliveries remain, or
// idle. A 410 disables the endpoint and moves its pending deliveries to the
// dead letters (audited).
void record_outcomes(pg::Connection& conn, SystemClock::time_point now,
                     const std::vector<StreamOutcome>& outcomes);

struct DeliveryFilter {
  bool dead_only = false;
  std::optional<std::string> run_id;
  int limit = 100;
};
// Newest first.
std::vector<Delivery> list_deliveries(pg::Connection& conn, const DeliveryFilter& filter);

// Sends a dead (or delivered) delivery again, with its message id and a fresh
// retry schedule, and re-enables its endpoint if a 410 had disabled it.
// Audited. Throws Error(not_found), or Error(conflict) while it is pending.
void redeliver(pg::Connection& conn, int64_t id, const std::string& actor);

}  // namespace taskhost
