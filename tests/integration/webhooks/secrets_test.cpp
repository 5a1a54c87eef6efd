// Webhook secrets: created once, rotated with an overlap, audited without
// the secret.
#include "webhooks/secrets.hpp"

#include <gtest/gtest.h>

#include "store/audit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

struct WebhookSecrets : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  InstalledSchema noop = test::install_fixture(conn, "noop", "noop.so");
};

TEST_F(WebhookSecrets, CreateOnceThenRotateWithOverlap) {
  const std::string first =
      create_webhook_secret(conn, test::host_keys(), "noop", "cli:alice", false);
  EXPECT_EQ(first.rfind("whsec_", 0), 0u);
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(), "noop"), std::vector<std::string>{first});
  EXPECT_EQ(test::kind_of([&] {
              create_webhook_secret(conn, test::host_keys(), "noop", "cli:alice", false);
            }),
            ErrorKind::conflict)
      << "a second secret without --rotate";

  const std::string second =
      create_webhook_secret(conn, test::host_keys(), "noop", "cli:bob", true);
  EXPECT_NE(second, first);
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(), "noop"),
            (std::vector<std::string>{second, first}))
      << "both sign during the overlap, newest first";
  // Once the overlap has passed, only the new one signs.
  create_webhook_secret(conn, test::host_keys(), "noop", "cli:bob", true, std::chrono::hours(0));
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(), "noop").size(), 2u)
      << "second (now retired at once) is gone";
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(), "noop")[1], first);
}

TEST_F(WebhookSecrets, AuditedWithoutTheSecret) {
  const std::string a = create_webhook_secret(conn, test::host_keys(), "noop", "cli:alice", false);
  const std::string b = create_webhook_secret(conn, test::host_keys(), "noop", "cli:bob", true);
  AuditFilter f;
  f.action = "webhook_secret.";
  auto entries = list_audit(conn, f);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].action, "webhook_secret.created");
  EXPECT_EQ(entries[0].actor, "cli:alice");
  EXPECT_EQ(entries[1].action, "webhook_secret.rotated");
  EXPECT_EQ(entries[1].subject, "noop");
  EXPECT_TRUE(entries[1].detail.contains("previous_retires_at"));
  // The canary: neither secret, nor its key part, appears anywhere in the log.
  auto text = conn.exec("SELECT string_agg(t::text, '') FROM taskhost.audit_log t").text(0, 0);
  for (const auto& s : {a, b}) EXPECT_EQ(text.find(s.substr(6)), std::string::npos);
}

// The canary: after secrets are made (and one from before 0008 is sealed),
// no table of the database holds one in clear.
TEST_F(WebhookSecrets, NoTableHoldsASecretInClear) {
  auto other = test::install_fixture(conn, "other", "noop.so");
  std::vector<std::string> secrets = {
      create_webhook_secret(conn, test::host_keys(), "noop", "cli:alice", false),
      create_webhook_secret(conn, test::host_keys(), "noop", "cli:alice", true)};
  // A secret stored in clear before migration 0008, then sealed as `migrate` does.
  const std::string old = "whsec_" + std::string("c2VjcmV0LWZyb20tYmVmb3JlLTAwMDctY2FuYXJ5");
  db.connect_as_owner().exec(
      "INSERT INTO taskhost.webhook_secrets (schema_name, secret, created_by) "
      "VALUES ('other', $1, 'cli:old')",
      {old});
  EXPECT_TRUE(webhook_secrets_in_clear(conn));
  EXPECT_EQ(reseal_webhook_secrets(conn, test::host_keys(), "cli:ops"), 1);
  EXPECT_FALSE(webhook_secrets_in_clear(conn));
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(), "other"), std::vector<std::string>{old});
  secrets.push_back(old);

  auto super = db.connect_as_superuser();
  auto tables = super.exec(
      "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
      "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')");
  ASSERT_GT(tables.rows(), 10);
  for (int i = 0; i < tables.rows(); ++i)
    for (const auto& secret : secrets)
      EXPECT_EQ(super
                    .exec("SELECT count(*) FROM " + tables.text(i, 0) +
                              " t WHERE t::text LIKE '%' || $1 || '%'",
                          {secret.substr(6)})
                    .integer(0, 0),
                0)
          << "a secret in clear in " << tables.text(i, 0);
}

// Keys rotate: everything is re-sealed with the new key, which opens it
// without the old one; a key that sealed nothing here opens nothing.
TEST_F(WebhookSecrets, RotatingTheHostKeyReseals) {
  const std::string secret =
      create_webhook_secret(conn, test::host_keys(test::host_key_a), "noop", "cli:alice", false);
  auto rotated = test::host_keys(test::host_key_b, {test::host_key_a});
  EXPECT_EQ(reseal_webhook_secrets(conn, rotated, "cli:ops"), 1);
  EXPECT_EQ(reseal_webhook_secrets(conn, rotated, "cli:ops"), 0) << "nothing left to re-seal";
  EXPECT_EQ(webhook_secrets(conn, test::host_keys(test::host_key_b), "noop"),
            std::vector<std::string>{secret});
  EXPECT_EQ(conn.exec("SELECT key_id FROM taskhost.webhook_secrets").text(0, 0),
            rotated.current_id());
  try {
    webhook_secrets(conn, test::host_keys(test::host_key_a), "noop");
    ADD_FAILURE() << "the old key alone opened a re-sealed secret";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sealed with host key " + rotated.current_id() +
                                         ", which this host does not have"),
              std::string::npos)
        << e.what();
  }
  // Moved to another schema's row, a sealed secret does not open.
  test::install_fixture(conn, "other", "noop.so");
  db.connect_as_owner().exec(
      "INSERT INTO taskhost.webhook_secrets (schema_name, key_id, sealed, created_by) "
      "SELECT 'other', key_id, sealed, 'cli:mallory' FROM taskhost.webhook_secrets");
  EXPECT_EQ(test::kind_of([&] { webhook_secrets(conn, rotated, "other"); }),
            ErrorKind::environment);
  AuditFilter f;
  f.action = "host_key.resealed";
  EXPECT_EQ(list_audit(conn, f).size(), 1u);
}

TEST_F(WebhookSecrets, AnUnknownSchemaHasNone) {
  EXPECT_EQ(test::kind_of([&] {
              create_webhook_secret(conn, test::host_keys(), "nope", "cli:alice", false);
            }),
            ErrorKind::not_found);
  EXPECT_TRUE(webhook_secrets(conn, test::host_keys(), "nope").empty());
}

}  // namespace
}  // namespace taskhost
