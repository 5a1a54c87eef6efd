#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "app/actor.hpp"
#include "store/pg.hpp"

namespace taskhost::app {

// API keys (migrations/0011_api_keys.sql): "th_<12 hex id>_<secret>", the
// secret 32 random bytes in base64url, shown once. Stored as
// HMAC-SHA256(pepper, secret); compared in constant time.
struct ApiKey {
  std::string id, actor;
  std::vector<std::string> roles;
  std::string created_at, created_by;
  std::optional<std::string> expires_at, last_used_at, revoked_at;
};

struct NewApiKey {
  ApiKey key;
  std::string token;  // the whole key, to show once
};

// Roles a key may hold.
const std::vector<std::string>& api_roles();

// Made by an admin; audited as api_key.created with the key's actor.
NewApiKey create_api_key(pg::Connection& db, const std::string& pepper, const Actor& by,
                         const std::string& actor, const std::vector<std::string>& roles,
                         std::optional<std::chrono::seconds> expires_in);
std::vector<ApiKey> list_api_keys(pg::Connection& db, const Actor& by);
// Audited as api_key.revoked. Throws Error(not_found).
void revoke_api_key(pg::Connection& db, const Actor& by, const std::string& id);

// The actor a presented key stands for ("api:<actor>"), or std::nullopt for
// a malformed, unknown, revoked or expired key (the caller says 401 alike,
// so a key's existence does not leak). Records the last use, at most once a
// minute per key.
std::optional<Actor> authenticate_api_key(pg::Connection& db, const std::string& pepper,
                                          const std::string& token);
// The key id of a presented token, for logs (never the secret).
std::string api_key_id(const std::string& token);

}  // namespace taskhost::app
