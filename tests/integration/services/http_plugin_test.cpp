// Outbound HTTP as a plugin sees it: the http_probe fixture runs through the
// real loader and worker against a real HTTP server on loopback (allowlisted
// by the host config); the credentials are canaries that the server must
// receive and no table, log line or output may contain.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <atomic>
#include <filesystem>
#include <mutex>

#include "engine/submit.hpp"
#include "store/audit.hpp"
#include "support/client_assertion.hpp"
#include "support/fixtures.hpp"
#include "support/http_receiver.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

using test::HttpRequest;
using test::HttpResponse;

const char* bearer_canary = "canary-bearer-61c0a9";
const char* client_secret_canary = "canary-client-secret-7d12";

TEST(HttpPlugin, EveryCallThroughTheLoaderCheckedInjectedAndAudited) {
  std::atomic<int> bulk_calls = 0, busy_calls = 0, token_calls = 0;
  test::HttpReceiver server([&](const HttpRequest& r) -> HttpResponse {
    const std::string auth = r.headers.count("authorization") ? r.headers.at("authorization") : "";
    if (r.target == "/token") {
      ++token_calls;
      bool ok =
          r.body.find(std::string("client_secret=") + client_secret_canary) != std::string::npos;
      return {ok ? 200 : 401,
              {{"Content-Type", "application/json"}},
              {},
              R"({"access_token": "tok-1", "expires_in": 3600})"};
    }
    if (r.target.rfind("/oauth-api/", 0) == 0)
      return {auth == "Bearer tok-1" ? 200 : 401, {}, {}, "oauth " + r.target.substr(11)};
    if (r.target.rfind("/public/", 0) == 0) {
      if (r.target == "/public/redirect") return {302, {{"Location", "/public/target"}}, {}, ""};
      if (r.target == "/public/away")
        return {302, {{"Location", "http://localhost:1/elsewhere"}}, {}, ""};
      return {200, {}, {}, "landed at " + r.target};
    }
    if (auth != std::string("Bearer ") + bearer_canary) return {401, {}, {}, "no token"};
    if (r.target == "/api/bulk")
      return ++bulk_calls == 1 ? HttpResponse{503, {}, {}, "busy"}
                               : HttpResponse{200, {}, {}, "bulk " + r.body};
    if (r.target == "/api/busy")
      return ++busy_calls == 1 ? HttpResponse{429, {{"Retry-After", "1"}}, {}, ""}
                               : HttpResponse{200, {}, {}, "ok"};
    return {200, {{"Content-Type", "text/plain"}}, {}, "all good"};
  });
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema = test::install_fixture(conn, "httpprobe", "http_probe.so",
                                      "params: { base: { type: string } }\n"
                                      "capabilities:\n"
                                      "  http:\n"
                                      "    - { base_url: '" +
                                          base +
                                          "/api/', credential: docs }\n"
                                          "    - { base_url: '" +
                                          base +
                                          "/oauth-api/', credential: idp }\n"
                                          "    - { base_url: '" +
                                          base + "/public/' }\n");
  ::setenv("TEST_DOCS_TOKEN", bearer_canary, 1);
  ::setenv("TEST_IDP_ID", "probe-client", 1);
  ::setenv("TEST_IDP_SECRET", client_secret_canary, 1);
  HostConfig config;
  config.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
  HttpCredentialConfig docs;
  docs.secret = {"http_credentials.docs.token", "TEST_DOCS_TOKEN", std::nullopt};
  config.http_credentials["docs"] = docs;
  HttpCredentialConfig idp;
  idp.kind = HttpCredentialConfig::Kind::oauth2;
  idp.token_url = base + "/token";
  idp.client_id = {"http_credentials.idp.client_id", "TEST_IDP_ID", std::nullopt};
  idp.client_secret = {"http_credentials.idp.client_secret", "TEST_IDP_SECRET", std::nullopt};
  config.http_credentials["idp"] = idp;

  std::string id = submit_run(conn, schema, {{"base", base}}, "cli:test").run_id;
  taskhost::Run r;
  const std::string logs =
      test::capture_logs([&] { r = test::execute(db.conninfo(), id, test::fixture_dir, config); });

  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& out = r.output;
  EXPECT_EQ(out["status"], (Json{{"code", 200}, {"body", "all good"}, {"type", "text/plain"}}));
  EXPECT_EQ(out["bulk"]["code"], 200);
  EXPECT_EQ(out["bulk"]["body"], R"(bulk {"ids":[1,2,3]})");
  EXPECT_EQ(bulk_calls, 2) << "the idempotent POST was retried after a 503";
  EXPECT_EQ(out["busy"], 200);
  EXPECT_EQ(busy_calls, 2) << "429 with Retry-After: 1 was retried";
  EXPECT_EQ(out["oauth"], (Json{"oauth a", "oauth b"}));
  EXPECT_EQ(token_calls, 1) << "the OAuth2 token is cached";
  EXPECT_EQ(out["redirect"], "landed at /public/target");

  const Json& refused = out["refused"];
  test::expect_refused(refused, "outside_base", TH_ERR_PERMISSION,
                       "permission denied: schema httpprobe has no http grant for " + base +
                           "/admin with credential docs (granted: ");
  test::expect_refused(refused, "dot_dot", TH_ERR_PERMISSION,
                       "no http grant for " + base + "/admin with credential docs (granted: ");
  test::expect_refused(refused, "wrong_credential", TH_ERR_PERMISSION, "with credential idp");
  test::expect_refused(refused, "unknown_credential", TH_ERR_PERMISSION, "with credential nope");
  test::expect_refused(refused, "redirect_away", TH_ERR_PERMISSION,
                       "to another origin (http://localhost:1) refused");
  test::expect_refused(refused, "set_authorization", TH_ERR_INVALID,
                       "header Authorization is set by the host");
  test::expect_refused(refused, "userinfo", TH_ERR_INVALID, "a URL with user:password is refused");
  EXPECT_EQ(refused["userinfo"].dump().find("pw@"), std::string::npos);
  test::expect_refused(refused, "too_large", TH_ERR_IO, "larger than 4 bytes");

  auto calls = test::service_calls(conn, id, "http");
  const auto& entries = calls.entries;
  std::string seen;
  for (const auto& e : entries) seen += e.subject.value_or("") + " " + e.detail.dump() + "\n";
  EXPECT_EQ(calls.outcomes["HTTP 200"], 6) << seen;
  EXPECT_EQ(calls.outcomes["denied"], 5) << seen;
  EXPECT_EQ(entries.at(0).subject,
            "GET http://127.0.0.1:" + std::to_string(server.port()) + "/api/status");
  EXPECT_EQ(entries.at(0).actor, "plugin:httpprobe@1.0.0");

  auto dump = db.connect_as_superuser().exec(
      "SELECT string_agg(t, '') FROM (SELECT row_to_json(a)::text AS t FROM taskhost.audit_log a "
      "UNION ALL SELECT row_to_json(r)::text FROM taskhost.runs r "
      "UNION ALL SELECT row_to_json(e)::text FROM taskhost.run_events e) all_rows");
  const std::string everything = dump.text(0, 0) + logs + out.dump();
  for (const char* canary : {bearer_canary, client_secret_canary})
    EXPECT_EQ(everything.find(canary), std::string::npos) << canary;
}

// private_key_jwt: the token endpoint checks each client assertion (RS256
// by the configured key, aud = the token URL, unexpired, jti unused). The
// API revokes the first token after one call; the host renews it on the 401
// and the plugin sees only the answer to the request sent again, never the
// 401's body. Neither the key, an assertion nor a token reaches the plugin,
// a table or a log.
TEST(HttpPlugin, PrivateKeyJwtTokensRenewedAfterA401TheRetriedAnswerIsTheOnlyOne) {
  test::ClientAssertionKey key(std::filesystem::temp_directory_path() / "th-http-jwt-key.pem");
  std::mutex mutex;
  std::vector<std::string> assertion_problems, tokens_issued;
  std::string base;
  int api_calls = 0;
  test::HttpReceiver server([&](const HttpRequest& r) -> HttpResponse {
    std::lock_guard lock(mutex);
    if (r.target == "/token") {
      std::string problem = key.check(r.body, "probe-client", base + "/token");
      if (!problem.empty()) {
        assertion_problems.push_back(problem);
        return {401, {}, {}, R"({"error":"invalid_client"})"};
      }
      tokens_issued.push_back("canary-jwt-token-" + std::to_string(tokens_issued.size() + 1));
      return {200,
              {{"Content-Type", "application/json"}},
              {},
              Json{{"access_token", tokens_issued.back()}, {"expires_in", 3600}}.dump()};
    }
    if (r.target.rfind("/oauth-api/", 0) == 0) {
      const std::string auth =
          r.headers.count("authorization") ? r.headers.at("authorization") : "";
      // Only the newest token is good, and the first one is revoked after one call.
      const bool revoked = ++api_calls == 2;
      if (tokens_issued.empty() || auth != "Bearer " + tokens_issued.back() || revoked)
        return {401, {}, {}, "token-rejected-body "};
      return {200, {}, {}, "oauth " + r.target.substr(11)};
    }
    return {404, {}, {}, ""};
  });
  base = "http://127.0.0.1:" + std::to_string(server.port());

  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema = test::install_fixture(conn, "httpprobe", "http_probe.so",
                                      "params: { base: { type: string } }\n"
                                      "capabilities:\n"
                                      "  http:\n"
                                      "    - { base_url: '" +
                                          base +
                                          "/api/', credential: docs }\n"
                                          "    - { base_url: '" +
                                          base +
                                          "/oauth-api/', credential: idp }\n"
                                          "    - { base_url: '" +
                                          base + "/public/' }\n");
  ::setenv("TEST_DOCS_TOKEN", bearer_canary, 1);
  ::setenv("TEST_JWT_CLIENT", "probe-client", 1);
  HostConfig config;
  config.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
  HttpCredentialConfig docs;
  docs.secret = {"http_credentials.docs.token", "TEST_DOCS_TOKEN", std::nullopt};
  config.http_credentials["docs"] = docs;
  HttpCredentialConfig idp;
  idp.kind = HttpCredentialConfig::Kind::private_key_jwt;
  idp.token_url = base + "/token";
  idp.client_id = {"http_credentials.idp.client_id", "TEST_JWT_CLIENT", std::nullopt};
  idp.private_key = {"http_credentials.idp.private_key", std::nullopt, key.file()};
  config.http_credentials["idp"] = idp;

  std::string id = submit_run(conn, schema, {{"base", base}}, "cli:test").run_id;
  taskhost::Run r;
  const std::string logs =
      test::capture_logs([&] { r = test::execute(db.conninfo(), id, test::fixture_dir, config); });

  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(assertion_problems, std::vector<std::string>{});
  EXPECT_EQ(tokens_issued.size(), 2u) << "one token, then one renewal after the 401";
  EXPECT_EQ(api_calls, 3);
  EXPECT_EQ(r.output["oauth"], (Json{"oauth a", "oauth b"}))
      << "the 401's body must not reach the plugin";

  const std::string pem = test::slurp(key.file());
  const std::string pem_body = pem.substr(pem.find('\n') + 1, 64);
  auto dump = db.connect_as_superuser().exec(
      "SELECT string_agg(t, '') FROM (SELECT row_to_json(a)::text AS t FROM taskhost.audit_log a "
      "UNION ALL SELECT row_to_json(r)::text FROM taskhost.runs r "
      "UNION ALL SELECT row_to_json(e)::text FROM taskhost.run_events e) all_rows");
  const std::string everything = dump.text(0, 0) + logs + r.output.dump();
  for (const std::string& canary : {std::string("canary-jwt-token-"), pem_body, std::string("eyJ")})
    EXPECT_EQ(everything.find(canary), std::string::npos) << canary;
}

TEST(HttpPlugin, LoopbackIsRefusedUnlessAllowlisted) {
  test::HttpReceiver server;
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema = test::install_fixture(conn, "httpprobe", "http_probe.so",
                                      "params: { base: { type: string } }\n"
                                      "capabilities: { http: [ { base_url: '" +
                                          base + "/api/', credential: docs } ] }\n");
  ::setenv("TEST_DOCS_TOKEN", bearer_canary, 1);
  HostConfig config;  // nothing allowlisted
  HttpCredentialConfig docs;
  docs.secret = {"http_credentials.docs.token", "TEST_DOCS_TOKEN", std::nullopt};
  config.http_credentials["docs"] = docs;
  std::string id = submit_run(conn, schema, {{"base", base}}, "cli:test").run_id;
  taskhost::Run r = test::execute(db.conninfo(), id, test::fixture_dir, config);
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error.value_or("").find("destination refused: 127.0.0.1 is loopback"),
            std::string::npos)
      << r.error.value_or("");
  EXPECT_EQ(server.connections(), 0);
}

}  // namespace
}  // namespace taskhost
