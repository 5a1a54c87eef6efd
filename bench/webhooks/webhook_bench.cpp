// Webhook deliveries per second to a loopback receiver: 1 KiB bodies, signed,
// with 1, 2 and 4 dispatchers (as many workers would run), each sending 64
// streams at once. Deliveries are spread over runs, 10 per run (a stream
// each, sent in order). Median of 3 rounds.
// Usage: webhook_bench CONNINFO [DELIVERIES]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "engine/submit.hpp"
#include "store/migrate.hpp"
#include "store/schemas.hpp"
#include "support/http_receiver.hpp"
#include "webhooks/dispatcher.hpp"
#include "webhooks/secrets.hpp"
#include "webhooks/signature.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Deliveries per second for `dispatchers` threads draining every pending row.
double round(const std::string& conninfo, const HostKeys& keys, int dispatchers) {
  std::vector<std::thread> threads;
  auto t = Clock::now();
  for (int i = 0; i < dispatchers; ++i)
    threads.emplace_back([&] {
      pg::Connection conn(conninfo);
      DispatcherOptions o;
      o.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
      o.keys = keys;
      Dispatcher d(conn, o);
      while (d.dispatch_once() > 0) {
      }
    });
  for (auto& th : threads) th.join();
  pg::Connection conn(conninfo);
  auto r = conn.exec(
      "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FROM "
      "taskhost.webhook_deliveries");
  if (r.integer(0, 0) != r.integer(0, 1)) std::fprintf(stderr, "not all delivered!\n");
  return static_cast<double>(r.integer(0, 1)) / seconds_since(t);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: webhook_bench CONNINFO [DELIVERIES]\n");
    return 2;
  }
  const std::string conninfo = argv[1];
  const int n = argc > 2 ? std::atoi(argv[2]) : 20000;
  spdlog::set_level(spdlog::level::warn);
  pg::Connection conn(conninfo);
  pg::Connection owner(conninfo + " user=taskhost_owner");
  migrate(owner, bundled_migrations());
  HostConfig host;
  host.host_key_file = std::filesystem::temp_directory_path() / "taskhost-webhook-bench.key";
  const HostKeys keys = HostKeys::load(host);

  test::HttpReceiver receiver([](const test::HttpRequest&) {
    return test::HttpResponse{204, {}, {}, {}};
  });
  std::vector<Diagnostic> errors;
  auto schema = parse_schema(
      "name: bench\nversion: 1.0.0\nplugin: { path: noop.so, sha256: any }\n"
      "hooks: { url: '" +
          receiver.url() + "', events: [bench.event] }\n",
      "bench.yaml", &errors);
  install_schema(conn, *schema, "bench");
  auto installed = find_schema(conn, SchemaRef::parse("bench"));
  const std::string secret = create_webhook_secret(conn, keys, "bench", "bench", false);
  std::vector<std::string> runs;
  for (int i = 0; i < n / 10; ++i)
    runs.push_back(submit_run(conn, installed, Json::object(), "bench").run_id);
  // 1 KiB bodies, as a run event's would be.
  conn.exec(
      "INSERT INTO taskhost.webhook_deliveries (schema_name, run_id, url, event, body) "
      "SELECT 'bench', ($1::uuid[])[1 + g % array_length($1::uuid[], 1)], $2, 'bench.event', "
      "  jsonb_build_object('type', 'bench.event', 'data', jsonb_build_object('seq', g, "
      "    'pad', repeat('x', 1024 - 60)))::text "
      "FROM generate_series(1, $3) g",
      {pg::array_literal({runs.begin(), runs.end()}), receiver.url(), n});

  auto t = Clock::now();
  const int signs = 100000;
  for (int i = 0; i < signs; ++i)
    webhook_signature(secret, "msg_0123456789abcdef0123456789abcdef", 1700000000 + i,
                      std::string(1024, 'x'));
  std::printf("signing one 1 KiB body                         %8.2f us\n",
              seconds_since(t) / signs * 1e6);

  for (int dispatchers : {1, 2, 4}) {
    std::vector<double> rates;
    for (int r = 0; r < 3; ++r) {
      conn.exec(
          "UPDATE taskhost.webhook_deliveries SET state = 'pending', attempts = 0, "
          "finished_at = NULL, last_status = NULL");
      conn.exec("SELECT taskhost.webhook_stream_due(id, $1) FROM unnest($2::uuid[]) id",
                {receiver.url(), pg::array_literal({runs.begin(), runs.end()})});
      conn.exec("VACUUM ANALYZE taskhost.webhook_deliveries");
      rates.push_back(round(conninfo, keys, dispatchers));
    }
    std::sort(rates.begin(), rates.end());
    std::printf("deliveries, %d dispatcher%s (batch 64)             %8.0f /s  (%d x 1 KiB)\n",
                dispatchers, dispatchers == 1 ? " " : "s", rates[1], n);
  }
  std::printf("receiver: %zu requests on %d connections\n", receiver.requests().size(),
              receiver.connections());
  return 0;
}
