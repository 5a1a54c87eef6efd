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
  const std::string first = create_webhook_secret(conn, "noop", "cli:alice", false);
  EXPECT_EQ(first.rfind("whsec_", 0), 0u);
  EXPECT_EQ(webhook_secrets(conn, "noop"), std::vector<std::string>{first});
  EXPECT_EQ(test::kind_of([&] { create_webhook_secret(conn, "noop", "cli:alice", false); }),
            ErrorKind::conflict)
      << "a second secret without --rotate";

  const std::string second = create_webhook_secret(conn, "noop", "cli:bob", true);
  EXPECT_NE(second, first);
  EXPECT_EQ(webhook_secrets(conn, "noop"), (std::vector<std::string>{second, first}))
      << "both sign during the overlap, newest first";
  // Once the overlap has passed, only the new one signs.
  create_webhook_secret(conn, "noop", "cli:bob", true, std::chrono::hours(0));
  EXPECT_EQ(webhook_secrets(conn, "noop").size(), 2u) << "second (now retired at once) is gone";
  EXPECT_EQ(webhook_secrets(conn, "noop")[1], first);
}

TEST_F(WebhookSecrets, AuditedWithoutTheSecret) {
  const std::string a = create_webhook_secret(conn, "noop", "cli:alice", false);
  const std::string b = create_webhook_secret(conn, "noop", "cli:bob", true);
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

TEST_F(WebhookSecrets, AnUnknownSchemaHasNone) {
  EXPECT_EQ(test::kind_of([&] { create_webhook_secret(conn, "nope", "cli:alice", false); }),
            ErrorKind::not_found);
  EXPECT_TRUE(webhook_secrets(conn, "nope").empty());
}

}  // namespace
}  // namespace taskhost
