#include "webhooks/secrets.hpp"

#include "common/base64.hpp"
#include "store/audit.hpp"
#include "store/schemas.hpp"
#include "webhooks/signature.hpp"

namespace taskhost {
namespace {

// The associated data of a schema's secret: sealed for it, it opens for it alone.
std::string context(const std::string& schema_name) {
  return "taskhost.webhook_secret\n" + schema_name;
}

// The sealed bytes, selected as `sealed` below.
constexpr const char* sealed_column = "translate(encode(sealed, 'base64'), E'\\n', '')";

std::string sealed_bytes(const pg::Result& r, int row, int col) {
  return base64_decode(r.text(row, col)).value_or("");
}

}  // namespace

std::string create_webhook_secret(pg::Connection& conn, const HostKeys& keys,
                                  const std::string& schema_name, const std::string& actor,
                                  bool rotate, std::chrono::hours overlap) {
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
  auto sealed = keys.seal(secret, context(schema_name));
  tx.exec(
      "INSERT INTO taskhost.webhook_secrets (schema_name, key_id, sealed, created_by) "
      "VALUES ($1, $2, $3, $4)",
      {schema_name, sealed.key_id, pg::Param::binary(std::move(sealed.bytes), 17), actor});
  Json detail = Json::object();
  if (retired.rows() > 0) detail["previous_retires_at"] = retired.text(0, 0);
  append_audit(tx.connection(), actor,
               retired.rows() > 0 ? "webhook_secret.rotated" : "webhook_secret.created",
               std::nullopt, schema_name, detail);
  tx.commit();
  return secret;
}

std::vector<std::string> webhook_secrets(pg::Connection& conn, const HostKeys& keys,
                                         const std::string& schema_name) {
  auto r = conn.exec(
      std::string("SELECT key_id, ") + sealed_column +
          " FROM taskhost.webhook_secrets WHERE schema_name = $1 "
          "AND sealed IS NOT NULL AND (retires_at IS NULL OR retires_at > now()) ORDER BY id DESC",
      {schema_name});
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back(keys.open(r.text(i, 0), sealed_bytes(r, i, 1), context(schema_name)));
  return out;
}

bool webhook_secrets_in_clear(pg::Connection& conn) {
  return conn.exec("SELECT 1 FROM taskhost.webhook_secrets WHERE secret IS NOT NULL LIMIT 1")
             .rows() > 0;
}

int reseal_webhook_secrets(pg::Connection& conn, const HostKeys& keys, const std::string& actor) {
  pg::Transaction tx(conn);
  auto rows = tx.exec(
      std::string("SELECT id, schema_name, secret, key_id, ") + sealed_column +
          " FROM taskhost.webhook_secrets WHERE key_id IS DISTINCT FROM $1 ORDER BY id FOR UPDATE",
      {keys.current_id()});
  Json from = Json::object();
  for (int i = 0; i < rows.rows(); ++i) {
    const std::string schema_name = rows.text(i, 1);
    const std::string secret =
        rows.null(i, 2) ? keys.open(rows.text(i, 3), sealed_bytes(rows, i, 4), context(schema_name))
                        : rows.text(i, 2);
    auto sealed = keys.seal(secret, context(schema_name));
    tx.exec(
        "UPDATE taskhost.webhook_secrets SET secret = NULL, key_id = $2, sealed = $3 "
        "WHERE id = $1",
        {rows.integer(i, 0), sealed.key_id, pg::Param::binary(std::move(sealed.bytes), 17)});
    const std::string was = rows.null(i, 3) ? "clear" : rows.text(i, 3);
    from[was] = from.value(was, 0) + 1;
  }
  if (rows.rows() > 0)
    append_audit(tx.connection(), actor, "host_key.resealed", std::nullopt, "webhook_secrets",
                 {{"to", keys.current_id()}, {"from", from}});
  tx.commit();
  return rows.rows();
}

}  // namespace taskhost
