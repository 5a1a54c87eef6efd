#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "config/host_keys.hpp"
#include "store/pg.hpp"

namespace taskhost {

// Creates the webhook secret of an installed schema name, or with rotate
// replaces the current one, which keeps signing for `overlap` more. Stored
// sealed with the current host key; audited (without the secret). Returns the
// new secret: the only time it is shown. Throws Error(not_found) for an
// unknown schema, Error(conflict) when a secret exists and rotate is false.
std::string create_webhook_secret(pg::Connection& conn, const HostKeys& keys,
                                  const std::string& schema_name, const std::string& actor,
                                  bool rotate, std::chrono::hours overlap = std::chrono::hours(24));

// The secrets that sign deliveries for schema_name now, newest first.
// Throws Error(environment) when one does not open with these keys.
std::vector<std::string> webhook_secrets(pg::Connection& conn, const HostKeys& keys,
                                         const std::string& schema_name);

// Whether secrets stored before they were sealed (migration 0008) remain.
bool webhook_secrets_in_clear(pg::Connection& conn);

// Seals every stored secret with the current host key: those in clear, and
// those sealed by another key (opened with it). One transaction, audited as
// host_key.resealed. Returns the secrets re-sealed.
int reseal_webhook_secrets(pg::Connection& conn, const HostKeys& keys, const std::string& actor);

}  // namespace taskhost
