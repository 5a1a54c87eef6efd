#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "store/pg.hpp"

namespace taskhost {

// Creates the webhook secret of an installed schema name, or with rotate
// replaces the current one, which keeps signing for `overlap` more. Audited
// (without the secret). Returns the new secret: the only time it is shown.
// Throws Error(not_found) for an unknown schema, Error(conflict) when a
// secret exists and rotate is false.
std::string create_webhook_secret(pg::Connection& conn, const std::string& schema_name,
                                  const std::string& actor, bool rotate,
                                  std::chrono::hours overlap = std::chrono::hours(24));

// The secrets that sign deliveries for schema_name now, newest first.
std::vector<std::string> webhook_secrets(pg::Connection& conn, const std::string& schema_name);

}  // namespace taskhost
