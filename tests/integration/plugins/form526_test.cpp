// form526-resubmit end to end: the bundled plugin and schema, run through the
// real loader in the sandbox against s3rver and PostgreSQL with fake claims
// from the plugin's fixture loader; the hand-off checked as its recipient
// sees it (curl, unzip, zipfile, pdfinfo, pdftotext: form526_check.py).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "engine/submit.hpp"
#include "services/database.hpp"
#include "store/runs.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"
#include "support/worker_process.hpp"

extern char** environ;

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string plugin_dir = SOURCE_DIR "/plugins/form526-resubmit";
const std::string date = "2026-03-15";
constexpr int claims = 200, unknown = 3, missing = 5;  // missing: every 40th claim

std::string s3_port() {
  std::ifstream in(std::string(std::getenv("TASKHOST_TEST_HOME")) + "-s3rver/port");
  std::string port;
  in >> port;
  return port;
}

// Runs a shell command; its stdout, or a test failure naming it.
std::string shell(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int rc = ::pclose(p);
  if (status != nullptr)
    *status = WEXITSTATUS(rc);
  else
    EXPECT_EQ(rc, 0) << command << "\n" << out;
  return out;
}

std::string aws(const std::string& args, int* status = nullptr) {
  return shell(
      "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 "
      "aws --endpoint-url http://127.0.0.1:" +
          s3_port() + " " + args + " 2>&1",
      status);
}

std::map<std::string, std::map<std::string, std::string>> rows_by_id(const std::string& csv) {
  std::map<std::string, std::map<std::string, std::string>> out;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "submission_id,status,object_key,sha256,presigned_url,error");
  while (std::getline(in, line)) {
    // The fields the tests look at have no commas but the error, which is last.
    std::vector<std::string> f;
    size_t pos = 0;
    for (int i = 0; i < 5; ++i) {
      size_t comma = line.find(',', pos);
      f.push_back(line.substr(pos, comma - pos));
      pos = comma + 1;
    }
    f.push_back(line.substr(pos));
    EXPECT_EQ(out.count(f[0]), 0u) << "id " << f[0] << " twice";
    out[f[0]] = {
        {"status", f[1]}, {"object_key", f[2]}, {"sha256", f[3]}, {"url", f[4]}, {"error", f[5]}};
  }
  return out;
}

struct Form526 : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  fs::path dir =
      fs::temp_directory_path() / ("taskhost-form526-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::string parent = "t" + std::to_string(::getpid()) + "-" +
                       ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::string input_key = parent + "/failed-526-ids.csv";
  std::string folder = parent + "/remediation/03.15.26-Form21-526EZ/";
  HostConfig config;
  InstalledSchema schema;
  Json expected;

  void SetUp() override {
    fs::create_directories(dir);
    // As `schema install` does: the plugin's tables, its roles, the schema.
    std::vector<Diagnostic> errors;
    auto s = load_schema_file(BUNDLED_SCHEMA_DIR "/form526-resubmit.yaml", &errors);
    ASSERT_TRUE(s) << format_diagnostics(errors);
    const auto target = database_target({}, db.conninfo(), "default");
    apply_data_migrations(*s, target, BUNDLED_PLUGIN_DIR);
    provision_db_roles(*s, target);
    install_schema(conn, *s, "test");
    schema = find_schema(conn, SchemaRef::parse("form526-resubmit"));
    shell("python3 " + plugin_dir + "/fixtures/make_claims.py --count " + std::to_string(claims) +
          " --unknown " + std::to_string(unknown) + " --missing-every 40 --attachment-bytes 8192 " +
          "--out " + dir.string());
    std::ifstream claims_sql(dir / "claims.sql");
    db.connect_as_owner().exec_script(std::string(std::istreambuf_iterator<char>(claims_sql), {}));
    expected = Json::parse(std::ifstream(dir / "expected.json"));
    ASSERT_EQ(expected["missing_attachment"].size(), static_cast<size_t>(missing));

    for (const char* b : {"form526-input", "form526-uploads", "form526-handoff"}) {
      int status = 0;
      aws(std::string("s3 mb s3://") + b, &status);  // may exist from another test
      S3BucketConfig c;
      c.endpoint = "http://127.0.0.1:" + s3_port();
      c.path_style = true;
      c.access_key_id = {"key", "TEST_S3_KEY", std::nullopt};
      c.secret_access_key = {"secret", "TEST_S3_KEY", std::nullopt};
      config.s3[b] = c;
    }
    ::setenv("TEST_S3_KEY", "S3RVER", 1);
    aws("s3 cp --recursive --quiet " + (dir / "uploads").string() +
        " s3://form526-uploads/uploads/");
  }
  void TearDown() override { fs::remove_all(dir); }

  void put_input(const std::string& csv) {
    std::ofstream(dir / "input.csv", std::ios::trunc) << csv;
    aws("s3 cp --quiet " + (dir / "input.csv").string() + " s3://form526-input/" + input_key);
  }
  std::string fixture_input() {
    std::ifstream in(dir / "input.csv");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string submit(Json params = Json::object()) {
    params["input"] = input_key;
    params["batch_label"] = date;
    params["handoff_parent"] = parent;
    return submit_run(conn, schema, params, "cli:test").run_id;
  }
  // The hand-off as its recipient checks it; "" when every check passed.
  std::string check(const std::string& result_csv) {
    std::ofstream(dir / "result.csv", std::ios::trunc) << result_csv;
    fs::create_directories(dir / "check");
    int status = 0;
    std::string out = shell(
        SOURCE_DIR "/tests/integration/plugins/form526_check.py " + (dir / "result.csv").string() +
            " " + (dir / "expected.json").string() + " " + date + " " + (dir / "check").string(),
        &status);
    return status == 0 ? "" : out;
  }
  std::map<std::string, int> item_events(const std::string& id) {
    std::map<std::string, int> n;
    for (const auto& e : run_events(conn, id, 100000))
      if (e.name.rfind("item.", 0) == 0) ++n[e.name];
    return n;
  }
};

TEST_F(Form526, ABatchOf200EndToEndThenARerunSkipsEveryBundle) {
  // Header, 203 ids (lines 2-204), then a blank line, a duplicate and three
  // lines that cannot be read.
  put_input(fixture_input() + "\n4100001,again\nabc,x\n\"4100002,unclosed\n-5,negative\n");
  const std::string id = submit();
  taskhost::Run r = test::execute(db.conninfo(), id, BUNDLED_PLUGIN_DIR, config);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.output["uploaded"], claims - missing) << r.output.dump();
  EXPECT_EQ(r.output["failed"], missing);
  EXPECT_EQ(r.output["not_found"], unknown);
  EXPECT_EQ(r.output["remaining"], 0);
  EXPECT_EQ(r.output["duplicates"], 1);
  ASSERT_EQ(r.output["malformed_count"], 3);
  EXPECT_EQ(r.output["malformed"][0]["line"], 207);
  EXPECT_EQ(r.output["malformed"][0]["error"], "submission_id 'abc' is not a positive integer");
  EXPECT_EQ(r.output["malformed"][1]["line"], 208);
  EXPECT_EQ(r.output["malformed"][1]["error"], "a quote is not closed on this line");
  EXPECT_EQ(r.output["malformed"][2]["line"], 209);

  const std::string result = run_file_content(conn, id, "result.csv");
  EXPECT_EQ(aws("s3 cp s3://form526-handoff/" + folder + "03.15.26_result_failed-526-ids.csv -"),
            result)
      << "the result is written beside the manifest too";
  const auto rows = rows_by_id(result);
  EXPECT_EQ(rows.size(), static_cast<size_t>(claims + unknown));
  for (const auto& m : expected["missing_attachment"]) {
    const auto& row = rows.at(std::to_string(m.get<int64_t>()));
    EXPECT_EQ(row.at("status"), "failed");
    EXPECT_NE(row.at("error").find("is missing"), std::string::npos) << row.at("error");
  }
  for (const auto& u : expected["unknown"])
    EXPECT_EQ(rows.at(std::to_string(u.get<int64_t>())).at("status"), "not_found");
  EXPECT_EQ(check(result), "");

  const std::string manifest =
      aws("s3 cp s3://form526-handoff/" + folder + "03.15.26_manifest_failed-526-ids.csv -");
  EXPECT_EQ(std::count(manifest.begin(), manifest.end(), '\n'), claims - missing + 1);
  int status = 0;
  EXPECT_EQ(aws("s3 ls s3://form526-handoff/" + folder + "_parts/", &status).find("part-"),
            std::string::npos)
      << "the work files are gone";
  const auto events = item_events(id);
  EXPECT_EQ(events.at("item.uploaded"), claims - missing);
  EXPECT_EQ(events.at("item.failed"), missing);
  EXPECT_EQ(events.at("item.not_found"), unknown);

  // Another operator starts the same input again: every bundle is there with
  // the same digest, so nothing is uploaded twice.
  const std::string again = submit();
  taskhost::Run r2 = test::execute(db.conninfo(), again, BUNDLED_PLUGIN_DIR, config);
  ASSERT_EQ(r2.state, RunState::succeeded) << r2.error.value_or("");
  EXPECT_EQ(r2.output["skipped_existing"], claims - missing);
  EXPECT_EQ(r2.output["uploaded"], 0);
  for (const auto& [sid, row] : rows_by_id(run_file_content(conn, again, "result.csv")))
    EXPECT_EQ(row.at("sha256"), rows.at(sid).at("sha256")) << sid;
}

TEST_F(Form526, ADryRunWritesNothing) {
  put_input(fixture_input());
  const std::string id = submit({{"dry_run", true}});
  taskhost::Run r = test::execute(db.conninfo(), id, BUNDLED_PLUGIN_DIR, config);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.output["would_upload"], claims - missing);
  EXPECT_EQ(r.output["failed"], missing);
  EXPECT_EQ(r.output["not_found"], unknown);
  int status = 0;
  EXPECT_EQ(aws("s3 ls --recursive s3://form526-handoff/" + parent + "/", &status), "");
  const auto rows = rows_by_id(run_file_content(conn, id, "result.csv"));
  EXPECT_EQ(rows.size(), static_cast<size_t>(claims + unknown));
  EXPECT_EQ(rows.begin()->second.at("status"), "would_upload");
  EXPECT_EQ(rows.begin()->second.at("url"), "");
  EXPECT_EQ(rows.begin()->second.at("sha256").size(), 64u) << "rendered and zipped all the same";
}

TEST_F(Form526, MaxFailuresStopsTheBatchAndKeepsWhatItDid) {
  put_input(fixture_input());
  const std::string id = submit({{"max_failures", 2}});
  taskhost::Run r = test::execute(db.conninfo(), id, BUNDLED_PLUGIN_DIR, config);
  ASSERT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error.value_or("").find("max_failures 2 exceeded: 3 ids failed or not found"),
            std::string::npos)
      << r.error.value_or("");
  EXPECT_EQ(r.attempt, 1) << "permanent: not retried";
  const auto rows = rows_by_id(run_file_content(conn, id, "result.csv"));
  EXPECT_LT(rows.size(), static_cast<size_t>(claims + unknown));
  EXPECT_EQ(r.output["remaining"], claims + unknown - static_cast<int>(rows.size()));
}

TEST_F(Form526, AnInputWithoutTheColumnFailsNamingTheLine) {
  put_input("\nid,note\n4100001,x\n");
  taskhost::Run r = test::execute(db.conninfo(), submit(), BUNDLED_PLUGIN_DIR, config);
  ASSERT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error.value_or(""), "input form526-input/" + input_key +
                                      ": line 2: the header has no submission_id column");
}

TEST_F(Form526, AWorkerKilledMidBatchIsResumedAndEveryIdIsInTheResultOnce) {
  std::string yaml = "s3:\n";
  for (const char* b : {"form526-input", "form526-uploads", "form526-handoff"})
    yaml += std::string("  ") + b + ": { endpoint: 'http://127.0.0.1:" + s3_port() +
            "', path_style: true, access_key_id: { env: TEST_S3_KEY }, "
            "secret_access_key: { env: TEST_S3_KEY } }\n";
  std::ofstream(dir / "host.yaml") << yaml;
  put_input(fixture_input());
  const std::string id = submit();

  test::WorkerProcess a(db.conninfo(), "worker-a", {"--config", (dir / "host.yaml").string()},
                        BUNDLED_PLUGIN_DIR);
  auto done = [&] { return get_run(conn, id).progress_done.value_or(0); };
  for (auto end = std::chrono::steady_clock::now() + 120s;
       done() < 60 && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(20ms);
  ASSERT_GE(done(), 60);
  ASSERT_EQ(get_run(conn, id).state, RunState::running) << "killed mid-batch";
  a.signal(SIGKILL);
  EXPECT_EQ(a.wait(), 128 + SIGKILL);

  test::WorkerProcess b(db.conninfo(), "worker-b", {"--config", (dir / "host.yaml").string()},
                        BUNDLED_PLUGIN_DIR);
  for (auto end = std::chrono::steady_clock::now() + 180s;
       !is_final(get_run(conn, id).state) && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(100ms);
  taskhost::Run r = get_run(conn, id);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.attempt, 2);
  const std::string result = run_file_content(conn, id, "result.csv");
  const auto rows = rows_by_id(result);
  EXPECT_EQ(rows.size(), static_cast<size_t>(claims + unknown));
  std::map<std::string, int> statuses;
  for (const auto& [sid, row] : rows) ++statuses[row.at("status")];
  EXPECT_EQ(statuses["uploaded"] + statuses["skipped_existing"], claims - missing);
  EXPECT_EQ(check(result), "");
  // The live per-id events: each id exactly once across both attempts.
  std::map<std::string, int> per_id;
  for (const auto& e : run_events(conn, id, 100000))
    if (e.name.rfind("item.", 0) == 0) ++per_id[e.payload["submission_id"].dump()];
  EXPECT_EQ(per_id.size(), static_cast<size_t>(claims + unknown));
  for (const auto& [sid, n] : per_id) EXPECT_EQ(n, 1) << sid;
}

}  // namespace
}  // namespace taskhost
