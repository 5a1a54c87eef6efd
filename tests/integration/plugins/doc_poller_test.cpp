// doc-poller end to end with real parts: the bundled plugin in the sandbox,
// PostgreSQL with the plugin's own tables (loaded by the plugin's fixture
// loader), and a fake Lighthouse Benefits Documents server written here that
// follows the documented JSON, whose token endpoint verifies each client
// assertion (RS256 by the configured key, aud, expiry, unique jti). What the
// server answered is the test's expectation: every state, count and metric
// is checked against it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "api/metrics.hpp"
#include "engine/submit.hpp"
#include "services/database.hpp"
#include "store/runs.hpp"
#include "support/client_assertion.hpp"
#include "support/fixtures.hpp"
#include "support/http_receiver.hpp"
#include "support/test_database.hpp"
#include "support/worker_process.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::HttpRequest;
using test::HttpResponse;

constexpr const char* status_path = "/services/benefits-documents/v1/uploads/status";
constexpr const char* token_path = "/oauth2/token";
constexpr const char* client_id = "doc-poller-test-client";

// What the fake API says about a request id: ids from 9000000 are unknown,
// and of the others the last digit decides (60% SUCCESS, 10% FAILED, 20%
// IN_PROGRESS, 10% unknown).
struct Verdict {
  std::string status;  // "" = unknown
  std::string step;
};
Verdict verdict(int64_t id) {
  if (id >= 9000000) return {"", ""};
  switch (id % 10) {
    case 6: {
      static const char* steps[] = {"CLAIMS_EVIDENCE", "BENEFITS_GATEWAY_SERVICE", "SOMETHING_NEW"};
      return {"FAILED", steps[(id / 10) % 3]};
    }
    case 7:
    case 8:
      return {"IN_PROGRESS", ""};
    case 9:
      return {"", ""};
    default:
      return {"SUCCESS", ""};
  }
}

// The fake server. Scenario knobs say which batch (by an id it holds)
// misbehaves how; answered records what it said in each 200/404 answer.
class FakeLighthouse {
 public:
  explicit FakeLighthouse(const fs::path& key_file)
      : key_(key_file), server_([this](const HttpRequest& r) { return answer(r); }) {}

  std::string base() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  const fs::path& key_file() const { return key_.file(); }

  std::mutex mutex;
  // knobs
  std::set<int64_t> slow_batches, throttled_batches, failing_batches, kill_batches;
  std::chrono::milliseconds slow{1500};
  int token_uses = 1000;  // status calls a token is good for
  std::function<void()> on_kill_batch;
  // what happened
  std::map<int64_t, Verdict> answered;  // request id -> what a 200 said
  std::vector<std::string> assertion_problems;
  int tokens = 0, status_calls = 0, unauthorized = 0;

 private:
  HttpResponse answer(const HttpRequest& r) {
    std::unique_lock lock(mutex);
    if (r.target == token_path) {
      std::string problem = key_.check(r.body, client_id, base() + token_path);
      if (!problem.empty()) {
        assertion_problems.push_back(problem);
        return {401, {{"Content-Type", "application/json"}}, {}, R"({"error":"invalid_client"})"};
      }
      token_ = "canary-lighthouse-token-" + std::to_string(++tokens);
      uses_ = 0;
      return {200,
              {{"Content-Type", "application/json"}},
              {},
              Json{{"access_token", token_}, {"token_type", "Bearer"}, {"expires_in", 300}}.dump()};
    }
    if (r.target != status_path || r.method != "POST") return {404, {}, {}, ""};
    ++status_calls;
    const auto auth = r.headers.count("authorization") ? r.headers.at("authorization") : "";
    if (token_.empty() || auth != "Bearer " + token_ || ++uses_ > token_uses) {
      ++unauthorized;
      return {401, {{"Content-Type", "application/json"}}, {}, R"({"message":"Invalid token."})"};
    }
    Json body = Json::parse(r.body, nullptr, false);
    if (body.is_discarded() || !body["data"]["requestIds"].is_array())
      return {400, {}, {}, R"({"errors":[{"title":"bad request"}]})"};
    std::vector<int64_t> ids = body["data"]["requestIds"];
    if (ids.empty() || ids.size() > 100) return {400, {}, {}, R"({"errors":[{"title":"size"}]})"};
    const int64_t key = ids.front();
    if (kill_batches.count(key)) {
      kill_batches.erase(key);
      lock.unlock();
      if (on_kill_batch) on_kill_batch();
      return {200, {}, 2s, "{}"};  // never read: the worker is gone
    }
    if (slow_batches.count(key)) return {200, {}, slow, "{}"};
    if (throttled_batches.erase(key)) return {429, {{"Retry-After", "1"}}, {}, ""};
    if (failing_batches.erase(key)) return {500, {}, {}, "internal error"};

    Json statuses = Json::array(), not_found = Json::array();
    for (int64_t id : ids) {
      Verdict v = verdict(id);
      answered[id] = v;
      if (v.status.empty()) {
        not_found.push_back(id);
        continue;
      }
      Json s = {{"requestId", id}, {"status", v.status}, {"time", {{"startTime", 1764000000}}}};
      s["steps"] = Json::array({{{"name", "CLAIMS_EVIDENCE"}, {"status", "IN_PROGRESS"}}});
      if (v.status != "IN_PROGRESS") s["time"]["endTime"] = 1764000600;
      if (v.status == "FAILED")
        s["error"] = {{"detail", "Upload rejected by downstream system"}, {"step", v.step}};
      statuses.push_back(s);
    }
    if (statuses.empty())
      return {
          404,
          {{"Content-Type", "application/json"}},
          {},
          R"({"errors":[{"status":"404","title":"Not Found","detail":"no request ids found"}]})"};
    return {200,
            {{"Content-Type", "application/json"}},
            {},
            Json{{"data", {{"statuses", statuses}, {"requestIdsNotFound", not_found}}}}.dump()};
  }

  test::ClientAssertionKey key_;
  std::string token_;
  int uses_ = 0;
  test::HttpReceiver server_;
};

class DocPoller : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("doc-poller-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(dir_);
    api_.emplace(dir_ / "client.pem");
    conn_.emplace(db_.connect());
    superuser_.emplace(db_.connect_as_superuser());
    // The bundled schema as the build stamped it, granted the fake server
    // instead of api.va.gov; installed as `schema install` does.
    std::string yaml = test::slurp(BUNDLED_SCHEMA_DIR "/doc-poller.yaml");
    const std::string real = "https://api.va.gov/services/benefits-documents/";
    for (size_t at; (at = yaml.find(real)) != std::string::npos;)  // the grant, the default URL
      yaml.replace(at, real.size(), api_->base() + "/services/benefits-documents/");
    // Runs only when a test submits one (a worker process would fire cron ticks).
    const std::string schedule = "schedule: \"15 * * * *\"\n";
    ASSERT_NE(yaml.find(schedule), std::string::npos);
    yaml.erase(yaml.find(schedule), schedule.size());
    std::vector<Diagnostic> errors;
    auto s = parse_schema(yaml, "doc-poller.yaml", &errors);
    ASSERT_TRUE(s) << format_diagnostics(errors);
    const auto target = database_target({}, db_.conninfo(), "default");
    apply_data_migrations(*s, target, BUNDLED_PLUGIN_DIR);
    provision_db_roles(*s, target);
    install_schema(*conn_, *s, "test");
    schema_ = find_schema(*conn_, SchemaRef::parse("doc-poller"));

    ::setenv("DOC_POLLER_CLIENT_ID", client_id, 1);
    config_.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
    HttpCredentialConfig lighthouse;
    lighthouse.kind = HttpCredentialConfig::Kind::private_key_jwt;
    lighthouse.token_url = api_->base() + token_path;
    lighthouse.client_id = {"http_credentials.lighthouse.client_id", "DOC_POLLER_CLIENT_ID",
                            std::nullopt};
    lighthouse.private_key = {"http_credentials.lighthouse.private_key", std::nullopt,
                              api_->key_file()};
    config_.http_credentials["lighthouse"] = lighthouse;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The plugin's fixture loader, as its README runs it.
  void load_fixtures(int rows) {
    superuser_->exec("SET doc_poller.rows = " + std::to_string(rows));
    superuser_->exec(test::slurp(SOURCE_DIR "/plugins/doc-poller/fixtures/load.sql"));
  }
  // Pending documents the API does not know at all (a batch of them is a 404).
  void add_unknown_documents(int n) {
    superuser_->exec(
        "INSERT INTO lighthouse_document_uploads (form526_submission_id, document_type, "
        "lighthouse_document_request_id, uploaded_at) "
        "SELECT (SELECT min(id) FROM form526_submissions), 'veteran_upload', 9000000 + g, "
        "now() - interval '1 hour' FROM generate_series(1, $1::int) g",
        {std::to_string(n)});
  }
  int64_t count(const std::string& sql) { return superuser_->exec(sql).integer(0, 0); }
  // The request id that opens the nth batch (0-based) of size batch.
  int64_t first_of_batch(int n, int batch) {
    return count(
        "SELECT lighthouse_document_request_id FROM lighthouse_document_uploads "
        "ORDER BY id OFFSET " +
        std::to_string(n * batch) + " LIMIT 1");
  }

  taskhost::Run poll(Json params = Json::object(), bool dry_run = false) {
    const std::string id =
        submit_run(*conn_, schema_, params, "cli:test", std::nullopt, dry_run).run_id;
    return test::execute(db_.conninfo(), id, BUNDLED_PLUGIN_DIR, config_);
  }

  std::map<std::string, double> scrape() {
    std::map<std::string, double> out;
    std::istringstream lines(api::ApiMetrics().render(*conn_));
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("taskhost_plugin_", 0) != 0) continue;
      const size_t space = line.rfind(' ');
      out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
  }
  static double sum(const std::map<std::string, double>& m, const std::string& prefix) {
    double total = 0;
    for (const auto& [k, v] : m)
      if (k.rfind(prefix, 0) == 0) total += v;
    return total;
  }

  // The server's answers against the table: every answered document moved
  // exactly as the answer said, nothing else did.
  void expect_table_follows_answers() {
    std::lock_guard lock(api_->mutex);
    int64_t success = 0, failed = 0;
    for (const auto& [id, v] : api_->answered) {
      success += v.status == "SUCCESS";
      failed += v.status == "FAILED";
    }
    EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'completed'"),
              success);
    EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'failed'"),
              failed);
    EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads "
                    "WHERE status_last_polled_at IS NOT NULL"),
              static_cast<int64_t>(api_->answered.size()));
    EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'failed' AND "
                    "(error_step IS NULL OR error_detail <> 'Upload rejected by downstream system' "
                    "OR processing_ended_at <> to_timestamp(1764000600))"),
              0);
    EXPECT_EQ(
        count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'completed' "
              "AND (processing_started_at <> to_timestamp(1764000000) "
              "OR processing_ended_at <> to_timestamp(1764000600) OR error_step IS NOT NULL)"),
        0);
  }

  std::vector<Json> events(const std::string& name) {
    std::vector<Json> out;
    auto r =
        superuser_->exec("SELECT payload::text FROM taskhost.run_events WHERE name = $1", {name});
    for (int i = 0; i < r.rows(); ++i) out.push_back(Json::parse(r.text(i, 0)));
    return out;
  }

  test::TestDatabase db_;
  std::optional<pg::Connection> conn_, superuser_;
  std::optional<FakeLighthouse> api_;
  InstalledSchema schema_;
  HostConfig config_;
  fs::path dir_;
  static inline int counter_ = 0;
};

TEST_F(DocPoller, EveryAnswerAppliedOnceErrorsRecordedTheRunGoesOn) {
  load_fixtures(1000);
  add_unknown_documents(50);  // the last batch: all unknown, a 404
  const int batch = 50;
  {
    std::lock_guard lock(api_->mutex);
    api_->slow_batches = {first_of_batch(2, batch)};       // past the timeout, every try
    api_->throttled_batches = {first_of_batch(4, batch)};  // 429 + Retry-After, then fine
    api_->failing_batches = {first_of_batch(6, batch)};    // 500, then fine
    api_->token_uses = 7;  // the token "expires" every seventh call: renewed mid-run
  }
  taskhost::Run r;
  const std::string logs = test::capture_logs([&] {
    r = poll({{"batch_size", batch}, {"request_timeout_ms", 500}});
  });
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& totals = r.output["totals"];
  EXPECT_EQ(totals["batches"], 21);
  EXPECT_EQ(totals["failed_batches"], 1) << "only the slow one";

  {
    std::lock_guard lock(api_->mutex);
    EXPECT_EQ(api_->assertion_problems, std::vector<std::string>{});
    EXPECT_GE(api_->tokens, 3) << "tokens renewed after the 401s";
    EXPECT_EQ(api_->answered.size(), 1000u) << "all but the slow batch (50), plus 50 unknown";
  }
  expect_table_follows_answers();
  // The slow batch's rows were not touched; its failure was logged with its ids.
  const int64_t slow = first_of_batch(2, batch);
  EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE "
                  "lighthouse_document_request_id = " +
                  std::to_string(slow) + " AND status_last_polled_at IS NULL"),
            1);
  EXPECT_NE(logs.find("failed (timeout: "), std::string::npos) << logs;
  EXPECT_NE(logs.find(std::to_string(slow) + ","), std::string::npos);
  // Unknown ids: counted and recorded, never failed.
  EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE "
                  "lighthouse_document_request_id >= 9000000 AND status = 'pending' AND "
                  "last_status_response ? 'requestIdNotFound'"),
            50);

  // Metrics, as /metrics shows them after the run.
  auto m = scrape();
  const int64_t completed =
      count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'completed'");
  const int64_t failed =
      count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'failed'");
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_completed_total{"), completed);
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_failed_total{"), failed);
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_polled_total{"), 1000);
  EXPECT_EQ(totals["unknown_ids"], m[R"(taskhost_plugin_unknown_ids_total{schema="doc-poller"})"]);
  EXPECT_GT(m[R"(taskhost_plugin_unknown_ids_total{schema="doc-poller"})"], 50);
  EXPECT_EQ(m[R"(taskhost_plugin_polling_errors_total{schema="doc-poller",reason="timeout"})"], 1);
  EXPECT_EQ(
      count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'failed' AND "
            "error_step = 'SOMETHING_NEW'"),
      m[R"(taskhost_plugin_documents_failed_total{schema="doc-poller",document_type="veteran_upload",step="other"})"] +
          m[R"(taskhost_plugin_documents_failed_total{schema="doc-poller",document_type="bdd_instructions",step="other"})"] +
          m[R"(taskhost_plugin_documents_failed_total{schema="doc-poller",document_type="form_0781",step="other"})"] +
          m[R"(taskhost_plugin_documents_failed_total{schema="doc-poller",document_type="form_0781a",step="other"})"]);
  EXPECT_NEAR(
      m[R"(taskhost_plugin_last_success_timestamp_seconds{schema="doc-poller"})"],
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(),
      120);

  // Neither the key, an assertion nor a token reached a table, log or output.
  auto dump = superuser_->exec(
      "SELECT string_agg(t, '') FROM (SELECT row_to_json(a)::text AS t FROM taskhost.audit_log a "
      "UNION ALL SELECT row_to_json(e)::text FROM taskhost.run_events e "
      "UNION ALL SELECT last_status_response::text FROM lighthouse_document_uploads "
      "WHERE last_status_response IS NOT NULL) x");
  const std::string everything = dump.text(0, 0) + logs + r.output.dump();
  const std::string pem = test::slurp(api_->key_file());
  for (const std::string& canary : {std::string("canary-lighthouse-token"), std::string("eyJhbGci"),
                                    pem.substr(pem.find('\n') + 1, 64)})
    EXPECT_EQ(everything.find(canary), std::string::npos) << canary;
}

TEST_F(DocPoller, StaleFlaggedOnceClaimsReportedOnceAndASecondRunSkipsFreshPolls) {
  load_fixtures(400);
  taskhost::Run first = poll();
  ASSERT_EQ(first.state, RunState::succeeded) << first.error.value_or("");
  EXPECT_EQ(first.output["totals"]["batches"], 4);

  // Stale: pending, uploaded more than 24 h ago; each flagged with one event.
  const int64_t stale = count(
      "SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'pending' AND "
      "uploaded_at < now() - interval '24 hours'");
  ASSERT_GT(stale, 0);
  EXPECT_EQ(first.output["stale_flagged"], stale);
  auto stale_events = events("document.stale");
  EXPECT_EQ(static_cast<int64_t>(stale_events.size()), stale);
  int with_step = 0;
  for (const Json& e : stale_events) {
    for (const char* k : {"document_id", "form526_submission_id", "document_type",
                          "lighthouse_document_request_id", "uploaded_at", "last_step"})
      EXPECT_TRUE(e.contains(k)) << k << " in " << e.dump();
    with_step += e["last_step"] == "CLAIMS_EVIDENCE";  // the API's last step, when it knew the id
  }
  EXPECT_GT(with_step, 0);

  // The claim report: every submission with a failed or stale document, or
  // an old BDD claim without a completed bdd_instructions.
  const std::string csv = run_file_content(*conn_, first.id, "claim-report.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "submission_id,document_type,status,step,detail,uploaded_at");
  const int64_t problem_claims = count(R"(
    SELECT count(DISTINCT s) FROM (
      SELECT form526_submission_id AS s FROM lighthouse_document_uploads
      WHERE status = 'failed' OR (status = 'pending' AND uploaded_at < now() - interval '24 hours')
      UNION SELECT id FROM form526_submissions f WHERE form->>'bdd' = 'true'
        AND created_at < now() - interval '24 hours' AND NOT EXISTS (
          SELECT 1 FROM lighthouse_document_uploads d WHERE d.form526_submission_id = f.id
            AND d.document_type = 'bdd_instructions' AND d.status = 'completed')) p)");
  ASSERT_GT(problem_claims, 0);
  EXPECT_EQ(first.output["claims_with_problem"], problem_claims);
  EXPECT_EQ(first.output["newly_failing_claims"], problem_claims);
  EXPECT_EQ(static_cast<int64_t>(events("claim.document_problem").size()), problem_claims);
  EXPECT_NE(csv.find(",failed,BENEFITS_GATEWAY_SERVICE,Upload rejected by downstream system,"),
            std::string::npos);
  EXPECT_NE(csv.find(",stale,,,"), std::string::npos);
  auto m = scrape();
  EXPECT_EQ(m[R"(taskhost_plugin_claims_with_problem{schema="doc-poller"})"], problem_claims);
  EXPECT_EQ(sum(m, "taskhost_plugin_stale_documents{"), stale);

  // A second run at once: nothing is due (polled within the hour), no
  // document is flagged or claim announced again.
  taskhost::Run second = poll();
  ASSERT_EQ(second.state, RunState::succeeded) << second.error.value_or("");
  EXPECT_EQ(second.output["totals"]["batches"], 0);
  EXPECT_EQ(second.output["stale_flagged"], 0);
  EXPECT_EQ(second.output["newly_failing_claims"], 0);
  EXPECT_EQ(second.output["claims_with_problem"], problem_claims);
  EXPECT_EQ(static_cast<int64_t>(events("document.stale").size()), stale);
  EXPECT_EQ(static_cast<int64_t>(events("claim.document_problem").size()), problem_claims);
  EXPECT_EQ(sum(scrape(), "taskhost_plugin_documents_polled_total{"), 400);
}

// A dry run asks the API (its POST is declared safe) and says what a real
// run would change, but changes, flags and announces nothing.
TEST_F(DocPoller, ADryRunAsksTheApiAndWritesNothing) {
  load_fixtures(300);
  taskhost::Run r = poll({{"batch_size", 50}}, true);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.output["dry_run"], true);
  std::lock_guard lock(api_->mutex);
  int64_t success = 0, failed = 0;
  for (const auto& [id, v] : api_->answered) {
    success += v.status == "SUCCESS";
    failed += v.status == "FAILED";
  }
  ASSERT_GT(success, 0);
  EXPECT_EQ(r.output["totals"]["completed"], success);
  EXPECT_EQ(r.output["totals"]["failed"], failed);
  EXPECT_GT(r.output["stale_flagged"].get<int64_t>(), 0) << "how many a real run would flag";
  EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads WHERE status <> 'pending' "
                  "OR status_last_polled_at IS NOT NULL OR stale_flagged_at IS NOT NULL"),
            0);
  EXPECT_EQ(count("SELECT count(*) FROM doc_poller_reported_claims"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM taskhost.run_events"), 0);
}

TEST_F(DocPoller, TheRunFailsOnlyWhenEveryBatchFailed) {
  load_fixtures(120);
  {
    std::lock_guard lock(api_->mutex);
    for (int b = 0; b < 3; ++b) api_->slow_batches.insert(first_of_batch(b, 50));
  }
  taskhost::Run r = poll({{"batch_size", 50}, {"request_timeout_ms", 200}});
  EXPECT_EQ(r.state, RunState::queued) << "retryable: the schema retries it";
  EXPECT_NE(r.error.value_or("").find("every batch failed (3)"), std::string::npos)
      << r.error.value_or("");
  EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads "
                  "WHERE status_last_polled_at IS NOT NULL"),
            0);
  EXPECT_EQ(sum(scrape(), "taskhost_plugin_polling_errors_total{"), 3);
}

// A worker killed in the middle of a run (SIGKILL while a status request is
// in flight): another worker takes the run over when the lease expires,
// resumes after the last checkpoint and finishes; every document moved
// once and every counter counts it once.
TEST_F(DocPoller, AWorkerKilledMidRunTheNextFinishesNothingCountedTwice) {
  load_fixtures(600);
  const fs::path config = dir_ / "taskhost.yml";
  std::ofstream(config) << "allow_destinations: [127.0.0.0/8]\n"
                           "http_credentials:\n"
                           "  lighthouse:\n"
                           "    type: private_key_jwt\n"
                           "    token_url: '"
                        << api_->base() << token_path
                        << "'\n"
                           "    client_id: { env: DOC_POLLER_CLIENT_ID }\n"
                           "    private_key: { file: '"
                        << api_->key_file().string() << "' }\n";
  ::setenv("TASKHOST_CONFIG", config.c_str(), 1);
  const std::string id = submit_run(*conn_, schema_, {{"batch_size", 50}}, "cli:test").run_id;
  std::optional<test::WorkerProcess> a;
  {
    std::lock_guard lock(api_->mutex);
    api_->kill_batches = {first_of_batch(5, 50)};
    api_->on_kill_batch = [&] { a->signal(SIGKILL); };
  }
  a.emplace(db_.conninfo(), "worker-a", std::vector<std::string>{}, BUNDLED_PLUGIN_DIR);
  // Killed by the server when batch 5 arrives; if it never does, the test fails, not hangs.
  auto asked = [&] {
    std::lock_guard lock(api_->mutex);
    return api_->kill_batches.empty();
  };
  for (int i = 0; i < 600 && !asked(); ++i) std::this_thread::sleep_for(100ms);
  const bool killed_by_server = asked();
  if (!killed_by_server) a->signal(SIGKILL);
  EXPECT_EQ(a->wait(), 128 + SIGKILL);
  ASSERT_TRUE(killed_by_server) << "batch 5 was never asked for";
  const int64_t done_before = count(
      "SELECT count(*) FROM lighthouse_document_uploads WHERE status_last_polled_at IS NOT NULL");
  EXPECT_EQ(done_before, 250) << "five batches applied before the kill";

  test::WorkerProcess b(db_.conninfo(), "worker-b", {}, BUNDLED_PLUGIN_DIR);
  const auto deadline = std::chrono::steady_clock::now() + 180s;  // a loaded CI machine
  taskhost::Run r;
  while (std::chrono::steady_clock::now() < deadline) {
    r = get_run(*conn_, id);
    if (r.state == RunState::succeeded || r.state == RunState::failed) break;
    std::this_thread::sleep_for(200ms);
  }
  b.stop();
  ::unsetenv("TASKHOST_CONFIG");
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.attempt, 2);
  expect_table_follows_answers();
  EXPECT_EQ(count("SELECT count(*) FROM lighthouse_document_uploads "
                  "WHERE status_last_polled_at IS NULL"),
            0);
  auto m = scrape();
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_polled_total{"), 600);
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_completed_total{"),
            count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'completed'"));
  EXPECT_EQ(sum(m, "taskhost_plugin_documents_failed_total{"),
            count("SELECT count(*) FROM lighthouse_document_uploads WHERE status = 'failed'"));
  // The stale flags and claim events of the one run that got that far.
  EXPECT_EQ(static_cast<int64_t>(events("document.stale").size()),
            count("SELECT count(*) FROM lighthouse_document_uploads WHERE stale_flagged_at IS NOT "
                  "NULL"));
}

}  // namespace
}  // namespace taskhost
