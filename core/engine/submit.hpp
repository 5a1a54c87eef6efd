#pragma once

#include <optional>
#include <string>

#include "store/queue.hpp"

namespace taskhost {

// Validates params against the schema (defaults filled) and queues a run
// bound to that exact version; see enqueue() for idempotency keys. Throws
// Error(invalid) listing every parameter problem.
Submitted submit_run(pg::Connection& conn, const InstalledSchema& schema, const Json& params,
                     const std::string& actor,
                     const std::optional<std::string>& idempotency_key = std::nullopt);

}  // namespace taskhost
