#pragma once

#include <optional>
#include <string>

#include "store/queue.hpp"

namespace taskhost {

// Validates params against the schema (defaults filled) and queues a run
// bound to that exact version (awaiting approval where the schema requires
// it, unless a dry run); see enqueue() for idempotency keys. Throws
// Error(invalid) listing every parameter problem.
Submitted submit_run(pg::Connection& conn, const InstalledSchema& schema, const Json& params,
                     const std::string& actor,
                     const std::optional<std::string>& idempotency_key = std::nullopt,
                     bool dry_run = false);

// The same for inline execution: the new run is claimed for owner in the
// submit's own transaction, so no worker can take it first. No claim when the
// idempotency key matched an earlier run or the run awaits approval.
struct InlineSubmitted {
  Submitted submitted;
  std::optional<ClaimedRun> claimed;
};
InlineSubmitted submit_inline(pg::Connection& conn, const InstalledSchema& schema,
                              const Json& params, const std::string& actor,
                              const std::optional<std::string>& idempotency_key,
                              const std::string& owner, std::chrono::milliseconds lease,
                              bool dry_run = false);

}  // namespace taskhost
