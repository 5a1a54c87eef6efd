#include "webhooks/secrets.hpp"

#include "store/audit.hpp"
#include "store/schemas.hpp"
#include "webhooks/signature.hpp"

namespace taskhost {

std::string create_webhook_secret(pg::Connection& conn, const std::string& schema_name,
                                  const std::string& actor, bool rotate,
                                  std::chrono::hours overlap) {
  pg::Transaction tx(conn);
  find_schema(conn, {schema_name, std::nullopt});  // throws not_found
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.webhook_secret:' || $1))",
          {schema_name});
  auto retired = tx.exec(
      "UPDATE taskhost.webhook_secrets SET retires_at = now() + $2 * interval '1 hour' "
      "WHERE schema_name = $1 AND retires_at IS NULL AND $3 "
      "RETURNING to_char(retires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
      {schema_name, static_cast<int64_t>(overlap.count()), rotate});
  if (!rotate && tx.exec("SELECT 1 FROM taskhost.webhook_secrets WHERE schema_name = $1 AND "
                         "retires_at IS NULL",
                         {schema_name})
                         .rows() > 0)
    throw Error(ErrorKind::conflict,
                schema_name + " already has a webhook secret; --rotate replaces it");
  const std::string secret = new_webhook_secret();
  tx.exec(
      "INSERT INTO taskhost.webhook_secrets (schema_name, secret, created_by) VALUES ($1, $2, $3)",
      {schema_name, secret, actor});
  Json detail = Json::object();
  if (retired.rows() > 0) detail["previous_retires_at"] = retired.text(0, 0);
  append_audit(tx.connection(), actor,
               retired.rows() > 0 ? "webhook_secret.rotated" : "webhook_secret.created",
               std::nullopt, schema_name, detail);
  tx.commit();
  return secret;
}

std::vector<std::string> webhook_secrets(pg::Connection& conn, const std::string& schema_name) {
  auto r = conn.exec(
      "SELECT secret FROM taskhost.webhook_secrets WHERE schema_name = $1 "
      "AND (retires_at IS NULL OR retires_at > now()) ORDER BY id DESC",
      {schema_name});
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  return out;
}

}  // namespace taskhost
