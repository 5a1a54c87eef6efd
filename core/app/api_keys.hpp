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

// Portal sign-ins (migrations/0014_portal_sessions.sql): an API key
// exchanged for a cookie value "<16 hex id>.<secret>". A session is a row,
// not a signed value, so that signing out ends it at once and so does
// revoking (or the expiry of) its key; only HMAC-SHA256(pepper, secret) is
// stored. Its CSRF token is HMAC-derived from the secret: nothing more to
// store, and only a holder of the cookie's secret (and the pepper) has it.
struct PortalSession {
  std::string id, cookie, csrf_token, expires_at;
  Actor actor;
};

// Starts a session for a live key, ending after `lifetime` or with the key,
// whichever is first; std::nullopt when the key is refused (as
// authenticate_api_key). Audited as session.started with the key's actor.
std::optional<PortalSession> start_portal_session(pg::Connection& db, const std::string& pepper,
                                                  const std::string& token,
                                                  std::chrono::seconds lifetime);
// The live session a cookie value names, or std::nullopt.
std::optional<PortalSession> find_portal_session(pg::Connection& db, const std::string& pepper,
                                                 const std::string& cookie);
// Signs out: the session ends now. Audited as session.ended.
void end_portal_session(pg::Connection& db, const PortalSession& session);

}  // namespace taskhost::app
