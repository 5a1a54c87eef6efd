// doc-poller against a naive poller, both polling the same pending document
// uploads from a fake Lighthouse status endpoint that answers each request
// after 5 ms (plus a token endpoint verifying the client assertion).
//   doc-poller: the bundled plugin, sandboxed, run by a worker as in
//     production: batches of 100, one bulk request and one UPDATE each.
//   naive: what the seed's anchor job did, written here: one request and one
//     UPDATE per row (libcurl keeping its connection alive, libpq).
// Each round resets every row to pending first. Reports wall time, HTTP
// requests and SQL statements per run (the plugin's statements are its
// audited service.db calls), median of the rounds, and the ratios.
// Usage: doc_poller_bench CONNINFO SUPERUSER_CONNINFO ROWS NAIVE_ROWS ROUNDS
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/submit.hpp"
#include "engine/worker.hpp"
#include "services/database.hpp"
#include "store/queue.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"
#include "support/client_assertion.hpp"
#include "support/http_receiver.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

constexpr auto answer_delay = std::chrono::milliseconds(5);
constexpr const char* status_path = "/services/benefits-documents/v1/uploads/status";
constexpr const char* client_id = "doc-poller-bench";

std::string verdict(int64_t id) {
  switch (id % 10) {
    case 6:
      return "FAILED";
    case 7:
    case 8:
      return "IN_PROGRESS";
    case 9:
      return "";
    default:
      return "SUCCESS";
  }
}

// The documented answer for these ids.
std::string answer(const std::vector<int64_t>& ids, int* status) {
  Json statuses = Json::array(), not_found = Json::array();
  for (int64_t id : ids) {
    const std::string v = verdict(id);
    if (v.empty()) {
      not_found.push_back(id);
      continue;
    }
    Json s = {{"requestId", id}, {"status", v}, {"time", {{"startTime", 1764000000}}}};
    if (v != "IN_PROGRESS") s["time"]["endTime"] = 1764000600;
    if (v == "FAILED") s["error"] = {{"detail", "rejected downstream"}, {"step", "BGS"}};
    statuses.push_back(s);
  }
  if (statuses.empty()) {
    *status = 404;
    return R"({"errors":[{"status":"404","title":"Not Found"}]})";
  }
  *status = 200;
  return Json{{"data", {{"statuses", statuses}, {"requestIdsNotFound", not_found}}}}.dump();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Figures {
  double seconds = 0;
  int64_t requests = 0, statements = 0, completed = 0;
};

void reset(pg::Connection& su) {
  su.exec(
      "UPDATE lighthouse_document_uploads SET status = 'pending', error_step = NULL, "
      "error_detail = NULL, status_last_polled_at = NULL, processing_started_at = NULL, "
      "processing_ended_at = NULL, last_status_response = NULL, stale_flagged_at = NULL");
  su.exec("TRUNCATE doc_poller_reported_claims");
  su.exec("VACUUM ANALYZE lighthouse_document_uploads");
}

int64_t completed(pg::Connection& su) {
  return su.exec("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'completed'")
      .integer(0, 0);
}

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// The naive poller: every pending row, one request and one UPDATE each.
Figures naive(pg::Connection& db, const std::string& url, int64_t limit,
              std::atomic<int64_t>& requests) {
  Figures f;
  const int64_t before = requests;
  auto t = Clock::now();
  auto rows = db.exec(
      "SELECT id, lighthouse_document_request_id FROM lighthouse_document_uploads "
      "WHERE status = 'pending' ORDER BY id LIMIT $1",
      {std::to_string(limit)});
  f.statements = 1;
  CURL* easy = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Authorization: Bearer naive-token");
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
  for (int i = 0; i < rows.rows(); ++i) {
    const std::string request_id = rows.text(i, 1);
    const std::string body = R"({"data":{"requestIds":[)" + request_id + "]}}";
    std::string reply;
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &reply);
    if (curl_easy_perform(easy) != CURLE_OK) throw std::runtime_error("naive: request failed");
    Json j = Json::parse(reply);
    std::string status = "pending", step, detail;
    if (j.contains("data") && !j["data"]["statuses"].empty()) {
      const Json& s = j["data"]["statuses"][0];
      status = s["status"] == "SUCCESS"  ? "completed"
               : s["status"] == "FAILED" ? "failed"
                                         : "pending";
      if (s.contains("error")) {
        step = s["error"]["step"];
        detail = s["error"]["detail"];
      }
    }
    db.exec(
        "UPDATE lighthouse_document_uploads SET status = $2, error_step = nullif($3, ''), "
        "error_detail = nullif($4, ''), status_last_polled_at = now(), "
        "last_status_response = $5::jsonb WHERE id = $1",
        {rows.text(i, 0), status, step, detail, reply});
    ++f.statements;
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  f.seconds = std::chrono::duration<double>(Clock::now() - t).count();
  f.requests = requests - before;
  return f;
}

// One doc-poller run, executed by a worker in this process (sandboxed).
Figures plugin_run(pg::Connection& conn, pg::Connection& su, const std::string& conninfo,
                   const InstalledSchema& schema, const HostConfig& config,
                   std::atomic<int64_t>& requests) {
  Figures f;
  const std::string id = submit_run(conn, schema, Json::object(), "bench").run_id;
  const int64_t before = requests;
  auto t = Clock::now();
  WorkerOptions o;
  o.config = config;
  o.conninfo = conninfo;
  o.plugin_dir = BUNDLED_PLUGIN_DIR;
  o.id = "bench-worker";
  o.concurrency = 1;
  auto claimed = claim(conn, o.id, 1, o.lease, id);
  o.only_run = claimed.front();
  Worker(o).run();
  f.seconds = std::chrono::duration<double>(Clock::now() - t).count();
  f.requests = requests - before;
  Run r = get_run(conn, id);
  if (r.state != RunState::succeeded)
    throw std::runtime_error("doc-poller run " + id + ": " + r.error.value_or("?"));
  f.statements = su.exec(
                       "SELECT count(*) FROM taskhost.audit_log WHERE run_id = $1 "
                       "AND action LIKE 'service.db.%'",
                       {id})
                     .integer(0, 0);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: doc_poller_bench CONNINFO SUPERUSER_CONNINFO ROWS NAIVE_ROWS ROUNDS\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  // The sandbox helper is found beside the running executable; this is not taskhost.
  ::setenv("TASKHOST_SANDBOX_HELPER", SANDBOX_HELPER, 1);
  const std::string conninfo = argv[1];
  const int rows = std::stoi(argv[3]), naive_rows = std::stoi(argv[4]), rounds = std::stoi(argv[5]);
  const fs::path dir = fs::temp_directory_path() / ("doc-poller-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);

  std::atomic<int64_t> requests = 0;
  test::ClientAssertionKey key(dir / "client.pem");
  std::string base;
  test::HttpReceiver server([&](const test::HttpRequest& r) -> test::HttpResponse {
    ++requests;
    if (r.target == "/oauth2/token") {
      if (!key.check(r.body, client_id, base + "/oauth2/token").empty()) return {401, {}, {}, ""};
      return {200, {}, {}, R"({"access_token":"bench-token","expires_in":3600})"};
    }
    std::vector<int64_t> ids = Json::parse(r.body)["data"]["requestIds"];
    test::HttpResponse res;
    res.delay = answer_delay;
    res.body = answer(ids, &res.status);
    return res;
  });
  base = "http://127.0.0.1:" + std::to_string(server.port());

  pg::Connection conn(conninfo), su(argv[2]);
  // The bundled schema, granted the fake endpoint, installed as `schema install` does.
  std::string yaml = [] {
    std::ifstream in(BUNDLED_SCHEMA_DIR "/doc-poller.yaml");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  const std::string real = "https://api.va.gov/services/benefits-documents/";
  for (size_t at; (at = yaml.find(real)) != std::string::npos;)  // the grant, the default URL
    yaml.replace(at, real.size(), base + "/services/benefits-documents/");
  // Each bench's server has its own port, so its schema is a version of its own.
  const std::string version = "version: 1.0.0+";
  yaml.insert(yaml.find(version) + version.size(), "bench." + std::to_string(server.port()) + ".");
  std::vector<Diagnostic> errors;
  auto s = parse_schema(yaml, "doc-poller.yaml", &errors);
  if (!s) throw std::runtime_error(format_diagnostics(errors));
  const auto target = database_target({}, conninfo, "default");
  apply_data_migrations(*s, target, BUNDLED_PLUGIN_DIR);
  provision_db_roles(*s, target);
  install_schema(conn, *s, "bench");
  const InstalledSchema schema = find_schema(conn, SchemaRef::parse(s->ref()));

  if (su.exec("SELECT count(*) FROM lighthouse_document_uploads").integer(0, 0) != rows) {
    su.exec(
        "TRUNCATE lighthouse_document_uploads, doc_poller_reported_claims, "
        "form526_submissions CASCADE");
    su.exec("SET doc_poller.rows = " + std::to_string(rows));
    std::ifstream in(SOURCE_DIR "/plugins/doc-poller/fixtures/load.sql");
    su.exec(std::string(std::istreambuf_iterator<char>(in), {}));
  }

  ::setenv("DOC_POLLER_BENCH_CLIENT", client_id, 1);
  HostConfig config;
  config.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
  HttpCredentialConfig c;
  c.kind = HttpCredentialConfig::Kind::private_key_jwt;
  c.token_url = base + "/oauth2/token";
  c.client_id = {"client_id", "DOC_POLLER_BENCH_CLIENT", std::nullopt};
  c.private_key = {"private_key", std::nullopt, key.file()};
  config.http_credentials["lighthouse"] = c;

  std::printf(
      "%d pending rows (naive: the first %d), fake endpoint answering in %lld ms, "
      "median of %d\n",
      rows, naive_rows, static_cast<long long>(answer_delay.count()), rounds);
  std::vector<double> p_time, n_time;
  Figures p, n;
  for (int i = 0; i < rounds; ++i) {
    reset(su);
    p = plugin_run(conn, su, conninfo, schema, config, requests);
    p.completed = completed(su);
    p_time.push_back(p.seconds);
    reset(su);
    n = naive(su, base + status_path, naive_rows, requests);
    n.completed = completed(su);
    n_time.push_back(n.seconds);
    std::printf("  round %d: doc-poller %.2f s, naive %.2f s\n", i + 1, p.seconds, n.seconds);
  }
  // The naive poller's figures for all rows, from its own (linear) rate.
  const double scale = static_cast<double>(rows) / naive_rows;
  const double n_seconds = median(n_time) * scale;
  const double n_requests = static_cast<double>(n.requests) * scale;
  const double n_statements = static_cast<double>(n.statements - 1) * scale + 1;
  std::printf("%-12s %12s %14s %14s %12s\n", "", "wall s", "HTTP requests", "SQL statements",
              "completed");
  std::printf("%-12s %12.2f %14lld %14lld %12lld\n", "doc-poller", median(p_time),
              static_cast<long long>(p.requests), static_cast<long long>(p.statements),
              static_cast<long long>(p.completed));
  std::printf("%-12s %12.2f %14.0f %14.0f %12lld%s\n", "naive", n_seconds, n_requests, n_statements,
              static_cast<long long>(n.completed),
              naive_rows < rows ? "  (measured on the first rows, scaled)" : "");
  std::printf(
      "ratios: %.0fx fewer HTTP requests, %.0fx fewer SQL statements, %.0fx fewer round "
      "trips, %.1fx faster\n",
      n_requests / p.requests, n_statements / p.statements,
      (n_requests + n_statements) / (p.requests + p.statements), n_seconds / median(p_time));
  fs::remove_all(dir);
  return 0;
}
