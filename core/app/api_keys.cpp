#include "app/api_keys.hpp"

#include <openssl/rand.h>

#include <algorithm>

#include "common/base64.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"
#include "store/audit.hpp"

namespace taskhost::app {
namespace {

std::string random_bytes(size_t n) {
  std::string b(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(b.data()), static_cast<int>(n)) != 1)
    throw Error(ErrorKind::environment, "no random bytes for an API key");
  return b;
}

// base64url without padding: no character a header or URL would mangle.
std::string base64url(const std::string& bytes) {
  std::string s = base64_encode(bytes);
  std::replace(s.begin(), s.end(), '+', '-');
  std::replace(s.begin(), s.end(), '/', '_');
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

std::vector<std::string> text_array(const std::string& literal) {
  // {a,b}: role names are [a-z_]+, so no quoting to undo.
  std::vector<std::string> out;
  std::string cur;
  for (char c : literal.substr(1, literal.size() - 2)) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

struct Token {
  std::string id, secret;
};

std::optional<Token> parse(const std::string& token) {
  // th_ + 12 hex + _ + 43 base64url characters.
  if (token.size() != 3 + 12 + 1 + 43 || token.compare(0, 3, "th_") != 0 || token[15] != '_')
    return std::nullopt;
  Token t{token.substr(3, 12), token.substr(16)};
  if (t.id.find_first_not_of("0123456789abcdef") != std::string::npos) return std::nullopt;
  return t;
}

const char* columns =
    "SELECT id, actor, roles::text, created_at::text, created_by, expires_at::text, "
    "last_used_at::text, revoked_at::text FROM taskhost.api_keys ";

ApiKey read_key(const pg::Result& r, int i) {
  return {r.text(i, 0), r.text(i, 1),     text_array(r.text(i, 2)), r.text(i, 3),
          r.text(i, 4), r.optional(i, 5), r.optional(i, 6),         r.optional(i, 7)};
}

}  // namespace

const std::vector<std::string>& api_roles() {
  static const std::vector<std::string> roles{"viewer", "operator", "admin"};
  return roles;
}

NewApiKey create_api_key(pg::Connection& db, const std::string& pepper, const Actor& by,
                         const std::string& actor, const std::vector<std::string>& roles,
                         std::optional<std::chrono::seconds> expires_in) {
  require_admin(by, "API keys");
  if (actor.empty() || actor.size() > 64 ||
      actor.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") != std::string::npos)
    throw Error(ErrorKind::invalid, "actor: expected 1 to 64 of a-z 0-9 . _ -, got '" +
                                        printable(storable(actor, 70)) + "'");
  if (roles.empty()) throw Error(ErrorKind::invalid, "roles: a key needs at least one role");
  for (const auto& r : roles)
    if (std::find(api_roles().begin(), api_roles().end(), r) == api_roles().end())
      throw Error(ErrorKind::invalid, "roles: '" + printable(storable(r, 70)) +
                                          "' is not a role (viewer, operator, admin)");
  const std::string id = hex_lower(random_bytes(6)), secret = base64url(random_bytes(32));
  std::vector<std::optional<std::string>> role_items(roles.begin(), roles.end());
  pg::Transaction tx(db);
  auto r = tx.exec(
      "INSERT INTO taskhost.api_keys (id, actor, roles, secret_hmac, created_by, expires_at) "
      "VALUES ($1, $2, $3::text[], $4, $5, now() + make_interval(secs => $6::float8)) "
      "RETURNING created_at::text, expires_at::text",
      {id, actor, pg::array_literal(role_items), hex_lower(hmac_sha256(pepper, secret)), by.name,
       expires_in ? std::optional<std::string>(std::to_string(expires_in->count()))
                  : std::nullopt});
  const auto expires_at = r.optional(0, 1);
  append_audit(db, by.name, "api_key.created", std::nullopt, "api_key:" + id,
               Json{{"actor", "api:" + actor},
                    {"roles", roles},
                    {"expires_at", expires_at ? Json(*expires_at) : Json()}});
  tx.commit();
  return {{id, actor, roles, r.text(0, 0), by.name, r.optional(0, 1), std::nullopt, std::nullopt},
          "th_" + id + "_" + secret};
}

std::vector<ApiKey> list_api_keys(pg::Connection& db, const Actor& by) {
  require_admin(by, "API keys");
  auto r = db.exec(std::string(columns) + "ORDER BY created_at DESC, id");
  std::vector<ApiKey> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(read_key(r, i));
  return out;
}

void revoke_api_key(pg::Connection& db, const Actor& by, const std::string& id) {
  require_admin(by, "API keys");
  pg::Transaction tx(db);
  auto r = tx.exec(
      "UPDATE taskhost.api_keys SET revoked_at = now(), revoked_by = $2 "
      "WHERE id = $1 AND revoked_at IS NULL RETURNING actor",
      {id, by.name});
  if (r.rows() == 0)
    throw Error(ErrorKind::not_found, "no live API key " + printable(storable(id, 20)));
  append_audit(db, by.name, "api_key.revoked", std::nullopt, "api_key:" + id,
               Json{{"actor", "api:" + r.text(0, 0)}});
  tx.commit();
}

std::optional<Actor> authenticate_api_key(pg::Connection& db, const std::string& pepper,
                                          const std::string& token) {
  auto t = parse(token);
  if (!t) return std::nullopt;
  auto r = db.exec(
      "SELECT actor, roles::text, secret_hmac FROM taskhost.api_keys "
      "WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
      {t->id});
  // The HMAC is computed either way, so an unknown id costs what a known one does.
  const std::string presented = hex_lower(hmac_sha256(pepper, t->secret));
  if (r.rows() == 0 || !constant_time_equal(presented, r.text(0, 2))) return std::nullopt;
  db.exec(
      "UPDATE taskhost.api_keys SET last_used_at = now() WHERE id = $1 AND "
      "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
      {t->id});
  auto roles = text_array(r.text(0, 1));
  return Actor{"api:" + r.text(0, 0), {roles.begin(), roles.end()}};
}

std::string api_key_id(const std::string& token) {
  auto t = parse(token);
  return t ? t->id : "(malformed)";
}

// ---- portal sessions -------------------------------------------------------

namespace {

std::string csrf_token(const std::string& pepper, const std::string& secret) {
  return base64url(hmac_sha256(pepper, "csrf:" + secret));
}

}  // namespace

std::optional<PortalSession> start_portal_session(pg::Connection& db, const std::string& pepper,
                                                  const std::string& token,
                                                  std::chrono::seconds lifetime) {
  auto actor = authenticate_api_key(db, pepper, token);
  if (!actor) return std::nullopt;
  const std::string id = hex_lower(random_bytes(8)), secret = base64url(random_bytes(32));
  pg::Transaction tx(db);
  // Sessions a day past their end are of no use to anyone: sign-ins sweep them.
  tx.exec("DELETE FROM taskhost.portal_sessions WHERE expires_at < now() - interval '1 day'");
  auto r = tx.exec(
      "INSERT INTO taskhost.portal_sessions (id, key_id, secret_hmac, expires_at) "
      "SELECT $1, k.id, $3, LEAST(now() + make_interval(secs => $4::float8), k.expires_at) "
      "FROM taskhost.api_keys k WHERE k.id = $2 RETURNING expires_at::text",
      {id, api_key_id(token), hex_lower(hmac_sha256(pepper, secret)),
       std::to_string(lifetime.count())});
  append_audit(db, actor->name, "session.started", std::nullopt, "session:" + id,
               Json{{"api_key", api_key_id(token)}, {"expires_at", r.text(0, 0)}});
  tx.commit();
  return PortalSession{id, id + "." + secret, csrf_token(pepper, secret), r.text(0, 0), *actor};
}

std::optional<PortalSession> find_portal_session(pg::Connection& db, const std::string& pepper,
                                                 const std::string& cookie) {
  // 16 hex + . + 43 base64url characters.
  if (cookie.size() != 16 + 1 + 43 || cookie[16] != '.') return std::nullopt;
  const std::string id = cookie.substr(0, 16), secret = cookie.substr(17);
  if (id.find_first_not_of("0123456789abcdef") != std::string::npos) return std::nullopt;
  auto r = db.exec(
      "SELECT s.secret_hmac, s.expires_at::text, k.actor, k.roles::text "
      "FROM taskhost.portal_sessions s JOIN taskhost.api_keys k ON k.id = s.key_id "
      "WHERE s.id = $1 AND s.ended_at IS NULL AND s.expires_at > now() "
      "AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())",
      {id});
  const std::string presented = hex_lower(hmac_sha256(pepper, secret));
  if (r.rows() == 0 || !constant_time_equal(presented, r.text(0, 0))) return std::nullopt;
  auto roles = text_array(r.text(0, 3));
  return PortalSession{id, cookie, csrf_token(pepper, secret), r.text(0, 1),
                       Actor{"api:" + r.text(0, 2), {roles.begin(), roles.end()}}};
}

void end_portal_session(pg::Connection& db, const PortalSession& session) {
  pg::Transaction tx(db);
  tx.exec("UPDATE taskhost.portal_sessions SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
          {session.id});
  append_audit(db, session.actor.name, "session.ended", std::nullopt, "session:" + session.id,
               Json::object());
  tx.commit();
}

}  // namespace taskhost::app
