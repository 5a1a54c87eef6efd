// Object storage as a plugin sees it: the s3_probe fixture runs through the
// real loader and worker, against s3rver and against the local default, and
// every call lands on the audit log. Credentials are canaries that must not
// appear in any table, log line or output.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <filesystem>
#include <fstream>

#include "engine/submit.hpp"
#include "store/audit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

const std::string schema_yaml =
    "params: { bucket: { type: string } }\n"
    "capabilities:\n"
    "  s3:\n"
    "    - { bucket: taskhost-test, prefix: in/, access: readwrite }\n"
    "    - { bucket: taskhost-test, prefix: shared/, access: read }\n";

// s3rver checks only the access key (S3RVER), so the secret can be a canary.
const char* canary_secret = "canary-secret-8b2e91c4";

struct ObjectStoragePlugin : ::testing::TestWithParam<std::string> {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  fs::path dir = fs::temp_directory_path() / ("taskhost-os-" + std::to_string(::getpid()));
  HostConfig config;

  void SetUp() override {
    config.object_store_dir = dir;
    if (GetParam() == "s3") {
      std::ifstream in(std::string(std::getenv("TASKHOST_TEST_HOME")) + "-s3rver/port");
      std::string port;
      in >> port;
      ::setenv("TEST_S3_KEY", "S3RVER", 1);
      ::setenv("TEST_S3_SECRET", canary_secret, 1);
      S3BucketConfig b;
      b.endpoint = "http://127.0.0.1:" + port;
      b.path_style = true;
      b.access_key_id = {"s3.taskhost-test.access_key_id", "TEST_S3_KEY", std::nullopt};
      b.secret_access_key = {"s3.taskhost-test.secret_access_key", "TEST_S3_SECRET", std::nullopt};
      config.s3["taskhost-test"] = b;
    }
  }
  void TearDown() override { fs::remove_all(dir); }
};

TEST_P(ObjectStoragePlugin, EveryCallThroughTheLoaderCheckedAndAudited) {
  auto schema = test::install_fixture(conn, "s3probe", "s3_probe.so", schema_yaml);
  std::string id = submit_run(conn, schema, {{"bucket", "taskhost-test"}}, "cli:test").run_id;

  taskhost::Run r;
  const std::string logs =
      test::capture_logs([&] { r = test::execute(db.conninfo(), id, test::fixture_dir, config); });

  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& out = r.output;
  EXPECT_EQ(out["put"], 14);
  EXPECT_EQ(out["get"], "%PDF-1.7 claim");
  EXPECT_EQ(out["head"]["size"], 14);
  EXPECT_EQ(out["big"]["sent"], 9u << 20);
  EXPECT_EQ(out["big"]["received"], 9u << 20);
  EXPECT_TRUE(out["big"]["streamed"]);
  EXPECT_EQ(out["list"], (Json{"in/big.bin", "in/claim 526+ü.pdf", "in/copy.pdf"}));
  EXPECT_TRUE(out["removed"]);
  EXPECT_FALSE(out["presign"].get<std::string>().empty());

  const Json& refused = out["refused"];
  test::expect_refused(
      refused, "write_outside_prefix", TH_ERR_PERMISSION,
      "permission denied: schema s3probe has no s3 write grant for taskhost-test/out/x.pdf");
  test::expect_refused(refused, "write_read_only", TH_ERR_PERMISSION,
                       "granted: readwrite taskhost-test/in/*, read taskhost-test/shared/*");
  test::expect_refused(refused, "dot_dot", TH_ERR_INVALID, "has an empty, '.' or '..' segment");
  test::expect_refused(refused, "empty_segment", TH_ERR_INVALID,
                       "has an empty, '.' or '..' segment");
  test::expect_refused(refused, "control_char", TH_ERR_INVALID, "contains a control character");
  test::expect_refused(refused, "other_bucket", TH_ERR_PERMISSION,
                       "nothing granted in that bucket");
  test::expect_refused(refused, "missing", TH_ERR_NOT_FOUND, "in/missing.pdf");
  test::expect_refused(refused, "copy_out", TH_ERR_PERMISSION,
                       "write grant for taskhost-test/out/y.pdf");

  AuditFilter f;
  f.action = "service.";
  f.run_id = id;
  auto entries = list_audit(conn, f);
  std::map<std::string, int> actions;
  for (const auto& e : entries)
    ++actions[e.action + " " + e.detail["outcome"].get<std::string>().substr(0, 6)];
  EXPECT_EQ(actions["service.s3.put ok"], 2);
  EXPECT_EQ(actions["service.s3.put denied"], 2);
  EXPECT_EQ(actions["service.s3.copy denied"], 1);
  EXPECT_EQ(actions["service.s3.get ok"], 2);
  EXPECT_EQ(entries.at(0).actor, "plugin:s3probe@1.0.0");
  EXPECT_EQ(entries.at(0).subject, "taskhost-test/in/claim 526+ü.pdf");
  EXPECT_EQ(entries.at(0).detail["bytes"], 14);
  bool big_bytes = false;
  for (const auto& e : entries) big_bytes = big_bytes || e.detail["bytes"] == (9u << 20);
  EXPECT_TRUE(big_bytes) << "the bytes moved are on the record";

  // The canary: the secret is nowhere — not in a table, a log line, the output.
  auto dump = db.connect_as_superuser().exec(
      "SELECT string_agg(t::text, '') FROM (SELECT row_to_json(a)::text AS t FROM "
      "taskhost.audit_log a "
      "UNION ALL SELECT row_to_json(r)::text FROM taskhost.runs r "
      "UNION ALL SELECT row_to_json(e)::text FROM taskhost.run_events e "
      "UNION ALL SELECT row_to_json(x)::text FROM taskhost.run_transitions x) all_rows");
  const std::string everything = dump.text(0, 0) + logs + out.dump();
  EXPECT_EQ(everything.find(canary_secret), std::string::npos);
  EXPECT_NE(logs.find("s3probe"), std::string::npos) << "the logs were captured";
}

INSTANTIATE_TEST_SUITE_P(Stores, ObjectStoragePlugin, ::testing::Values("s3", "local"),
                         [](const auto& info) { return info.param; });

TEST(ObjectStorageNotGranted, ThePluginSeesNoService) {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema =
      test::install_fixture(conn, "nos3", "s3_probe.so", "params: { bucket: { type: string } }\n");
  std::string id = submit_run(conn, schema, {{"bucket", "taskhost-test"}}, "cli:test").run_id;
  taskhost::Run r = test::execute(db.conninfo(), id);
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error.value_or("").find("the schema grants no object storage"), std::string::npos)
      << r.error.value_or("");
}

}  // namespace
}  // namespace taskhost
