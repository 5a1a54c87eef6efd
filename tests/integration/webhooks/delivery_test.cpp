// Webhook delivery end to end: the outbox rows written with state changes,
// the dispatcher's signing, retry schedule (on a fake clock), 410, ordering,
// at-least-once redelivery and the SSRF guard, against a real HTTP receiver
// on loopback.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>

#include "common/curl.hpp"
#include "engine/submit.hpp"
#include "store/audit.hpp"
#include "store/metrics.hpp"
#include "store/queue.hpp"
#include "support/fixtures.hpp"
#include "support/http_receiver.hpp"
#include "support/test_database.hpp"
#include "webhooks/dispatcher.hpp"
#include "webhooks/secrets.hpp"
#include "webhooks/signature.hpp"

namespace taskhost {
namespace {

using namespace std::chrono_literals;
using test::HttpReceiver;
using test::HttpRequest;
using test::HttpResponse;

const std::string probe_params = "params: { mode: { type: string } }\n";

struct Webhooks : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  // The fake clock. Rows are due from their real insertion time: start a
  // minute ahead so everything the test inserts is due at once.
  SystemClock::time_point now = SystemClock::now() + 1min;
  std::string secret;

  DispatcherOptions options(bool allow_loopback = true) {
    DispatcherOptions o;
    o.clock = [this] { return now; };
    o.jitter = [] { return 0.5; };  // no jitter: the schedule exactly
    o.keys = test::host_keys();
    if (allow_loopback) o.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
    return o;
  }
  InstalledSchema install(const std::string& url, const std::string& events,
                          const std::string& name = "probe") {
    auto s = test::install_fixture(
        conn, name, "probe.so",
        probe_params + "hooks: { url: '" + url + "', events: [" + events + "] }\n");
    secret = create_webhook_secret(conn, test::host_keys(), name, "cli:test", false);
    return s;
  }
  std::string submit(const InstalledSchema& s, const std::string& mode = "all") {
    return submit_run(conn, s, {{"mode", mode}}, "cli:test").run_id;
  }
  Delivery delivery(int64_t id) {
    for (const auto& d : list_deliveries(conn, {}))
      if (d.id == id) return d;
    throw std::runtime_error("no delivery " + std::to_string(id));
  }
  std::vector<Delivery> all() {
    auto list = list_deliveries(conn, {});
    std::reverse(list.begin(), list.end());
    return list;
  }
  int drain(Dispatcher& d) {
    int total = 0;
    while (int n = d.dispatch_once()) total += n;
    return total;
  }
  // Whether a request carries a valid signature by `key` (Standard Webhooks).
  static bool signed_by(const HttpRequest& r, const std::string& key) {
    std::string expected = webhook_signature(key, r.headers.at("webhook-id"),
                                             std::stoll(r.headers.at("webhook-timestamp")), r.body);
    std::string sigs = " " + r.headers.at("webhook-signature") + " ";
    return sigs.find(" " + expected + " ") != std::string::npos;
  }
};

TEST_F(Webhooks, StateChangesArriveSignedAndInOrder) {
  HttpReceiver receiver;
  auto s =
      install(receiver.url(), "run.queued, run.started, run.progress, item.failed, run.succeeded");
  std::string id = submit(s);
  test::execute(db.conninfo(), id);

  Dispatcher d(conn, options());
  EXPECT_EQ(drain(d), 5);
  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 5u);
  std::vector<std::string> types;
  for (const auto& r : got) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/hook");
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_TRUE(signed_by(r, secret)) << r.headers.at("webhook-signature");
    EXPECT_EQ(std::stoll(r.headers.at("webhook-timestamp")),
              std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
    Json body = Json::parse(r.body);
    types.push_back(body["type"]);
    EXPECT_EQ(body["data"]["run_id"], id);
    EXPECT_EQ(body["data"]["schema"], "probe");
    EXPECT_EQ(body["data"]["version"], "1.0.0");
  }
  EXPECT_EQ(types, (std::vector<std::string>{"run.queued", "run.started", "item.failed",
                                             "run.progress", "run.succeeded"}))
      << "item.done is not subscribed; the run's events arrive in order";
  Json last = Json::parse(got.back().body)["data"];
  EXPECT_EQ(last["state"], "succeeded");
  EXPECT_EQ(last["attempt"], 1);
  EXPECT_TRUE(last["output"].is_object());
  EXPECT_EQ(Json::parse(got[2].body)["data"]["payload"]["error"], "no such claim");
  EXPECT_EQ(Json::parse(got[3].body)["data"]["done"], 2);
  for (const auto& dl : all()) {
    EXPECT_EQ(dl.state, "delivered");
    EXPECT_EQ(dl.attempts, 1);
    EXPECT_EQ(dl.last_status, 200);
  }
  EXPECT_EQ(drain(d), 0) << "nothing is sent twice";
  EXPECT_EQ(receiver.connections(), 1) << "one kept-alive connection for the batch";
}

TEST_F(Webhooks, NoHooksNoRows_RolledBackChangeNoRow) {
  HttpReceiver receiver;
  auto quiet = test::install_fixture(conn, "quiet", "probe.so", probe_params);
  submit(quiet);
  auto s = install(receiver.url(), "run.queued");
  {
    pg::Transaction tx(conn);
    submit(s);
  }  // rolled back
  EXPECT_TRUE(all().empty());
  submit(s);
  EXPECT_EQ(all().size(), 1u);
}

TEST_F(Webhooks, RetryScheduleOnAFakeClockThenDeadLetter) {
  HttpReceiver receiver([](const HttpRequest&) { return HttpResponse{503, {}, 0ms, {}}; });
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  Dispatcher d(conn, options());
  const auto start = now;
  const std::vector<std::chrono::seconds> waits = {5s, 5min, 30min, 2h, 5h, 10h, 10h};
  ASSERT_EQ(d.dispatch_once(), 1) << "the first attempt is immediate";
  for (size_t i = 0; i < waits.size(); ++i) {
    auto dl = all().at(0);
    EXPECT_EQ(dl.state, "pending");
    EXPECT_EQ(dl.attempts, static_cast<int>(i + 1));
    EXPECT_EQ(dl.last_status, 503);
    EXPECT_EQ(dl.last_error, "answered HTTP 503");
    now += waits[i] - 1s;
    EXPECT_EQ(d.dispatch_once(), 0) << "not before its time, wait " << i;
    now += 1s;
    EXPECT_EQ(d.dispatch_once(), 1) << "due after " << waits[i].count() << " s";
  }
  auto dead = all().at(0);
  EXPECT_EQ(dead.state, "dead");
  EXPECT_EQ(dead.attempts, 8);
  EXPECT_TRUE(dead.finished_at.has_value());
  now += 100h;
  EXPECT_EQ(d.dispatch_once(), 0);
  EXPECT_EQ(receiver.requests().size(), 8u);
  std::set<std::string> ids;
  for (const auto& r : receiver.requests()) ids.insert(r.headers.at("webhook-id"));
  EXPECT_EQ(ids.size(), 1u) << "every attempt carries the same webhook-id";
  EXPECT_EQ(list_deliveries(conn, {true, std::nullopt, 10}).size(), 1u) << "a dead letter";
  EXPECT_EQ(now - start, 100h + 5s + 5min + 30min + 2h + 5h + 10h + 10h);
  // What /metrics reports: each attempt by its outcome, and the dead letter.
  const auto m = read_platform_metrics(conn, {1});
  std::map<std::string, double> attempts;
  for (const auto& c : m.counts)
    if (c.metric == "webhook_deliveries") attempts[c.labels.at(0)] = c.value;
  EXPECT_EQ(attempts, (std::map<std::string, double>{{"failed", 7}, {"dead", 1}}));
  EXPECT_EQ(m.dead_letters, 1);
  EXPECT_EQ(m.deliveries_pending, 0);
}

TEST_F(Webhooks, JitterStaysWithinTenPercent) {
  EXPECT_EQ(retry_delay(1, 0.0), 4500ms);
  EXPECT_EQ(retry_delay(1, 0.999999).value().count(), 5499);
  EXPECT_EQ(retry_delay(7, 0.5), std::chrono::milliseconds(10h));
  EXPECT_EQ(retry_delay(8, 0.5), std::nullopt);
  EXPECT_EQ(retry_delay(0, 0.5), std::nullopt);
}

TEST_F(Webhooks, RetryAfterIsHonoured) {
  EXPECT_EQ(parse_retry_after(" 120\r\n", now), 120s);
  EXPECT_EQ(
      parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", SystemClock::from_time_t(1445412480 - 60)),
      60s);
  EXPECT_EQ(parse_retry_after("soon", now), std::nullopt);

  HttpReceiver receiver([](const HttpRequest&) {
    return HttpResponse{429, {{"Retry-After", "600"}}, 0ms, {}};
  });
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  Dispatcher d(conn, options());
  ASSERT_EQ(d.dispatch_once(), 1);
  now += 5min;
  EXPECT_EQ(d.dispatch_once(), 0) << "the schedule says 5 s, the receiver 10 minutes";
  now += 5min;
  EXPECT_EQ(d.dispatch_once(), 1);
}

TEST_F(Webhooks, ReceiverDownThenBack) {
  int port;
  {
    HttpReceiver probe_port;
    port = probe_port.port();
  }  // nothing listens there now
  auto s = install("http://127.0.0.1:" + std::to_string(port) + "/hook", "run.queued");
  submit(s);
  Dispatcher d(conn, options());
  ASSERT_EQ(d.dispatch_once(), 1);
  auto failed = all().at(0);
  EXPECT_EQ(failed.state, "pending");
  EXPECT_FALSE(failed.last_status.has_value());
  EXPECT_NE(failed.last_error.value_or("").find("onnect"), std::string::npos)
      << failed.last_error.value_or("");

  HttpReceiver back(nullptr, port);
  now += 5s;
  ASSERT_EQ(d.dispatch_once(), 1);
  ASSERT_EQ(back.requests().size(), 1u);
  EXPECT_EQ(back.requests()[0].headers.at("webhook-id"), failed.message_id);
  EXPECT_EQ(all().at(0).state, "delivered");
  EXPECT_EQ(all().at(0).attempts, 2);
}

TEST_F(Webhooks, SlowReceiverTimesOut) {
  HttpReceiver receiver([](const HttpRequest&) { return HttpResponse{200, {}, 3000ms, {}}; });
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  auto o = options();
  o.timeout = 300ms;
  Dispatcher d(conn, o);
  ASSERT_EQ(d.dispatch_once(), 1);
  EXPECT_EQ(all().at(0).state, "pending");
  EXPECT_EQ(all().at(0).last_error, "no answer within 300 ms");
}

TEST_F(Webhooks, GoneDisablesTheEndpointUntilRedelivered) {
  std::atomic<int> status = 410;
  HttpReceiver receiver([&](const HttpRequest&) { return HttpResponse{status, {}, 0ms, {}}; });
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  Dispatcher d(conn, options());
  EXPECT_EQ(drain(d), 1);
  EXPECT_EQ(all().at(0).state, "dead") << "410 is final";
  EXPECT_EQ(all().at(0).last_error, "answered 410 Gone: endpoint disabled");
  std::string second = submit(s);
  EXPECT_EQ(all().at(1).state, "dead") << "the endpoint is disabled: straight to the dead letters";
  EXPECT_EQ(all().at(1).last_error, "endpoint disabled: answered 410 Gone");
  EXPECT_EQ(drain(d), 0);
  EXPECT_EQ(receiver.requests().size(), 1u);
  AuditFilter f;
  f.action = "webhook.";
  EXPECT_EQ(list_audit(conn, f).at(0).action, "webhook.endpoint_disabled");

  status = 200;
  redeliver(conn, all().at(1).id, "cli:ops");
  EXPECT_EQ(drain(d), 1);
  EXPECT_EQ(all().at(1).state, "delivered");
  EXPECT_EQ(Json::parse(receiver.requests().back().body)["data"]["run_id"], second);
  submit(s);
  EXPECT_EQ(drain(d), 1) << "the endpoint is enabled again";
  auto audit = list_audit(conn, f);
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[1].action, "webhook.redelivered");
  EXPECT_EQ(audit[1].actor, "cli:ops");
  EXPECT_EQ(audit[2].action, "webhook.endpoint_enabled");
  EXPECT_EQ(test::kind_of([&] { redeliver(conn, 999999, "cli:ops"); }), ErrorKind::not_found);
}

// An operator need not wait out a backoff: a pending delivery goes now,
// keeping its attempt count.
TEST_F(Webhooks, APendingDeliveryIsSentNowWhenRedelivered) {
  std::atomic<int> status = 503;
  HttpReceiver receiver([&](const HttpRequest&) { return HttpResponse{status, {}, 0ms, {}}; });
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  Dispatcher d(conn, options());
  EXPECT_EQ(drain(d), 1);
  ASSERT_EQ(all().at(0).state, "pending");
  EXPECT_TRUE(all().at(0).next_attempt_at.has_value()) << "waiting out its backoff";
  EXPECT_EQ(drain(d), 0);

  status = 200;
  redeliver(conn, all().at(0).id, "cli:ops");
  EXPECT_EQ(drain(d), 1);
  EXPECT_EQ(all().at(0).state, "delivered");
  EXPECT_EQ(all().at(0).attempts, 2);
  EXPECT_EQ(receiver.requests().size(), 2u);
}

TEST_F(Webhooks, OneRunsEventsWaitForTheEarlierOne) {
  std::atomic<int> calls = 0;
  HttpReceiver receiver([&](const HttpRequest&) {
    return HttpResponse{++calls == 1 ? 500 : 200, {}, 0ms, {}};
  });
  auto s = install(receiver.url(), "run.queued, run.cancelled");
  std::string run = submit(s);
  cancel_run(conn, run, "cli:test", "not needed");
  Dispatcher d(conn, options());
  EXPECT_EQ(drain(d), 1) << "run.cancelled waits while run.queued is pending";
  now += 5s;
  EXPECT_EQ(drain(d), 2);
  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(Json::parse(got[1].body)["type"], "run.queued");
  EXPECT_EQ(Json::parse(got[2].body)["type"], "run.cancelled");
  EXPECT_EQ(Json::parse(got[2].body)["data"]["reason"], "not needed");
}

TEST_F(Webhooks, ALongStreamGoesOutInOrderOneAfterAnother) {
  HttpReceiver receiver;
  auto s = install(receiver.url(), "item.done");
  std::string run = submit(s);
  conn.exec(
      "INSERT INTO taskhost.run_events (run_id, attempt, name, payload) "
      "SELECT $1, 0, 'item.done', jsonb_build_object('item', g) FROM generate_series(1, 150) g",
      {run});
  Dispatcher d(conn, options());
  EXPECT_EQ(d.dispatch_once(), 100) << "up to 100 of one stream per claim";
  EXPECT_EQ(d.dispatch_once(), 50);
  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 150u);
  for (int i = 0; i < 150; ++i)
    ASSERT_EQ(Json::parse(got[i].body)["data"]["payload"]["item"], i + 1);
  EXPECT_EQ(receiver.connections(), 1);
  EXPECT_EQ(d.dispatch_once(), 0);
  EXPECT_TRUE(conn.exec("SELECT due_at FROM taskhost.webhook_streams").null(0, 0))
      << "the stream is idle";
}

TEST_F(Webhooks, ADispatcherThatDiesIsReplacedWithTheSameMessageId) {
  HttpReceiver receiver;
  auto s = install(receiver.url(), "run.queued");
  submit(s);
  // A dispatcher claims the delivery (and may have sent it) but never records
  // the outcome: it crashed.
  auto claimed = claim_streams(conn, now, 10, 10, 45s);
  ASSERT_EQ(claimed.size(), 1u);
  ASSERT_EQ(claimed[0].deliveries.size(), 1u);
  Dispatcher d(conn, options());
  EXPECT_EQ(d.dispatch_once(), 0) << "leased to the other dispatcher";
  now += 45s;
  ASSERT_EQ(d.dispatch_once(), 1);
  EXPECT_EQ(receiver.requests().at(0).headers.at("webhook-id"),
            claimed[0].deliveries[0].message_id);
  EXPECT_EQ(all().at(0).attempts, 1) << "attempts counts recorded attempts";
  EXPECT_EQ(all().at(0).state, "delivered");
}

TEST_F(Webhooks, DuringRotationBothSecretsSign) {
  HttpReceiver receiver;
  auto s = install(receiver.url(), "run.queued");
  const std::string old_secret = secret;
  const std::string new_secret =
      create_webhook_secret(conn, test::host_keys(), "probe", "cli:test", true);
  submit(s);
  Dispatcher d(conn, options());
  ASSERT_EQ(d.dispatch_once(), 1);
  auto r = receiver.requests().at(0);
  EXPECT_TRUE(signed_by(r, old_secret));
  EXPECT_TRUE(signed_by(r, new_secret));
  EXPECT_EQ(r.headers.at("webhook-signature")
                .find(webhook_signature(new_secret, r.headers.at("webhook-id"),
                                        std::stoll(r.headers.at("webhook-timestamp")), r.body)),
            0u)
      << "newest first";
}

TEST_F(Webhooks, WithoutASecretNothingIsSentAndTheReasonIsRecorded) {
  HttpReceiver receiver;
  auto s = test::install_fixture(
      conn, "unsigned", "probe.so",
      probe_params + "hooks: { url: '" + receiver.url() + "', events: [run.queued] }\n");
  submit(s);
  Dispatcher d(conn, options());
  ASSERT_EQ(d.dispatch_once(), 1);
  EXPECT_EQ(receiver.connections(), 0);
  EXPECT_EQ(all().at(0).last_error,
            "schema unsigned has no webhook secret: create one with `taskhost webhook-key "
            "unsigned`");
}

TEST_F(Webhooks, TheHostsDefaultUrlHearsSchemasWithoutHooks) {
  HttpReceiver receiver, own;
  auto plain = test::install_fixture(conn, "plain", "probe.so", probe_params);
  auto hooked = install(own.url(), "run.succeeded");
  create_webhook_secret(conn, test::host_keys(), "plain", "cli:test", false);
  submit(plain);
  EXPECT_TRUE(all().empty()) << "no default URL on this connection";

  pg::Connection with_default(
      pg::with_settings(db.conninfo(), {{"taskhost.webhook_default_url", receiver.url()}}));
  std::string id = submit_run(with_default, plain, {{"mode", "all"}}, "cli:test").run_id;
  submit_run(with_default, hooked, {{"mode", "all"}}, "cli:test");
  auto rows = all();
  ASSERT_EQ(rows.size(), 1u) << "a schema with hooks keeps its own (run.queued not subscribed)";
  EXPECT_EQ(rows[0].url, receiver.url());
  EXPECT_EQ(rows[0].event, "run.queued");
  Dispatcher d(conn, options());
  EXPECT_EQ(drain(d), 1);
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(Json::parse(receiver.requests()[0].body)["data"]["run_id"], id);
  EXPECT_EQ(own.requests().size(), 0u);
}

// Every non-public destination is refused before a socket is opened, however
// it is spelled, unless allowlisted.
TEST_F(Webhooks, SsrfGuardRefusesNonPublicDestinations) {
  HttpReceiver receiver;
  const std::string port = std::to_string(receiver.port());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://127.0.0.1:" + port + "/hook", "is loopback"},
      {"http://localhost:" + port + "/hook", "is loopback"},
      {"http://2130706433:" + port + "/hook", "127.0.0.1 is loopback"},  // decimal
      {"http://0x7f.1:" + port + "/hook", "127.0.0.1 is loopback"},
      {"http://[::1]:" + port + "/hook", "::1 is loopback"},
      {"http://[::ffff:127.0.0.1]:" + port + "/hook", "is IPv4-mapped"},
      {"http://10.1.2.3:" + port + "/hook", "10.1.2.3 is private"},
      {"http://172.16.0.1:" + port + "/hook", "is private"},
      {"http://192.168.1.1:" + port + "/hook", "is private"},
      {"http://169.254.169.254/latest/meta-data", "169.254.169.254 is link-local"},
      {"http://100.64.0.1:" + port + "/hook", "is CGNAT"},
      {"http://[fd00::1]:" + port + "/hook", "fd00::1 is unique-local"},
      {"http://[fe80::1]:" + port + "/hook", "is link-local"},
      {"http://0.0.0.0:" + port + "/hook", "is this-network"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto s = install(cases[i].first, "run.queued", "ssrf" + std::to_string(i));
    submit(s);
  }
  Dispatcher d(conn, options(false));
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(drain(d), static_cast<int>(cases.size()));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << "refused, not timed out";
  auto list = all();
  ASSERT_EQ(list.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].first);
    EXPECT_EQ(list[i].state, "pending");
    EXPECT_NE(list[i].last_error.value_or("").find("destination refused"), std::string::npos)
        << list[i].last_error.value_or("");
    EXPECT_NE(list[i].last_error.value_or("").find(cases[i].second), std::string::npos)
        << list[i].last_error.value_or("");
  }
  EXPECT_EQ(receiver.connections(), 0) << "the loopback listener saw no connection";

  // Allowlisted, the same loopback destination is reached.
  now += 5s;
  Dispatcher allowed(conn, options(true));
  allowed.dispatch_once();
  EXPECT_GE(receiver.connections(), 1);
  EXPECT_EQ(list_deliveries(conn, {}).size(), cases.size());
  EXPECT_EQ(all().at(0).state, "delivered");
  EXPECT_EQ(all().at(2).state, "delivered") << "decimal spelling of 127.0.0.1";
}

}  // namespace
}  // namespace taskhost
