// Plugins' metrics end to end: a probe plugin records through the ABI (in
// the sandbox and in the host), the host checks each sample against the
// schema's declarations and stores it, and /metrics shows it with the
// schema as a label, as promtool reads it. Plugins built for ABI 1.0 still
// load and run.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "api/metrics.hpp"
#include "common/diagnostic.hpp"
#include "engine/submit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

const std::string declared = R"(params: { rounds: { type: integer, default: 1 } }
metrics:
  items_total:
    type: counter
    help: Items handled by kind and outcome
    labels: { kind: [a, b], outcome: [ok, failed] }
  backlog: { type: gauge, help: Items waiting }
)";

// "name{label=value,...}" (labels sorted) -> value, from a scrape.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// promtool's lint of a scrape: "" when it finds nothing to say.
std::string promtool_check(const std::string& scrape) {
  const fs::path file =
      fs::temp_directory_path() / ("th-plugin-metrics-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(file) << scrape;
  FILE* p = ::popen(("promtool check metrics < " + file.string() + " 2>&1").c_str(), "r");
  std::string said;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) said.append(buf, n);
  const int rc = ::pclose(p);
  fs::remove(file);
  return rc == 0 ? said : "promtool failed: " + said;
}

struct PluginMetrics : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();

  taskhost::Run run(const InstalledSchema& s, const Json& params, const HostConfig& config = {}) {
    return test::execute(db.conninfo(), submit_run(conn, s, params, "test").run_id,
                         test::fixture_dir, config);
  }
  std::map<std::string, double> scrape() {
    // What GET /metrics answers: a new ApiMetrics is a new serve process.
    const std::string text = api::ApiMetrics().render(conn);
    EXPECT_EQ(promtool_check(text), "");
    return samples(text);
  }
};

TEST_F(PluginMetrics, DeclaredSamplesAreStoredAndExposedTheRestRefused) {
  auto s = test::install_fixture(conn, "metered", "metrics_probe.so", declared);
  taskhost::Run r = run(s, {{"rounds", 3}});
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& refused = r.output["refused"];
  test::expect_refused(refused, "undeclared_metric", TH_ERR_INVALID,
                       "metric 'secrets_total' is not declared by schema metered (declared: "
                       "items_total, backlog)");
  test::expect_refused(
      refused, "undeclared_label", TH_ERR_INVALID,
      "metric items_total: label 'user' is not declared (declared: kind, outcome)");
  test::expect_refused(refused, "undeclared_value", TH_ERR_INVALID,
                       "metric items_total: label kind value request-4711 is not declared "
                       "(declared: a, b)");
  test::expect_refused(refused, "missing_label", TH_ERR_INVALID,
                       "metric items_total: label outcome is missing");
  test::expect_refused(refused, "negative_increment", TH_ERR_INVALID,
                       "metric items_total: a counter only grows");
  test::expect_refused(refused, "not_finite", TH_ERR_INVALID,
                       "metric backlog: the value must be a finite number");

  auto m = scrape();
  EXPECT_EQ((m[R"(taskhost_plugin_items_total{schema="metered",kind="a",outcome="ok"})"]), 6);
  EXPECT_EQ((m[R"(taskhost_plugin_items_total{schema="metered",kind="b",outcome="failed"})"]), 1);
  EXPECT_EQ(m[R"(taskhost_plugin_backlog{schema="metered"})"], 5);
  size_t series = 0;
  for (const auto& [k, v] : m) series += k.rfind("taskhost_plugin_", 0) == 0;
  EXPECT_EQ(series, 3u) << "nothing refused was stored";
}

TEST_F(PluginMetrics, CountersContinueAcrossRunsProcessesAndRunners) {
  auto sandboxed = test::install_fixture(conn, "metered", "metrics_probe.so", declared);
  ASSERT_EQ(run(sandboxed, {{"rounds", 2}}).state, RunState::succeeded);
  HostConfig allow;
  allow.allow_in_process = true;
  auto in_host = test::install_fixture(conn, "metered-host", "metrics_probe.so",
                                       declared + "isolation: none\n");
  ASSERT_EQ(run(in_host, {{"rounds", 1}}, allow).state, RunState::succeeded);
  ASSERT_EQ(run(sandboxed, {{"rounds", 1}}).state, RunState::succeeded);
  auto m = scrape();
  EXPECT_EQ((m[R"(taskhost_plugin_items_total{schema="metered",kind="a",outcome="ok"})"]), 6);
  EXPECT_EQ((m[R"(taskhost_plugin_items_total{schema="metered-host",kind="a",outcome="ok"})"]), 2);
  EXPECT_EQ((m[R"(taskhost_plugin_items_total{schema="metered",kind="b",outcome="failed"})"]), 2);
}

TEST_F(PluginMetrics, TheRuntimeRoleOnlyAddsToCountersThroughTheFunction) {
  auto s = test::install_fixture(conn, "metered", "metrics_probe.so", declared);
  ASSERT_EQ(run(s, {{"rounds", 1}}).state, RunState::succeeded);
  for (const char* sql :
       {"UPDATE taskhost.plugin_metrics SET value = 0", "DELETE FROM taskhost.plugin_metrics",
        "INSERT INTO taskhost.plugin_metrics (schema_name, metric, labels, kind, "
        "help, value) VALUES ('x', 'y_total', '{}', 'counter', '', 1)"}) {
    try {
      conn.exec(sql);
      ADD_FAILURE() << "allowed: " << sql;
    } catch (const pg::DbError& e) {
      EXPECT_EQ(e.sqlstate(), "42501") << sql << ": " << e.what();
    }
  }
  EXPECT_THROW(conn.exec("SELECT taskhost.record_plugin_metric('metered', 'items_total', "
                         "'{\"kind\":\"a\",\"outcome\":\"ok\"}', 'counter', '', -5)"),
               pg::DbError);
  EXPECT_THROW(conn.exec("SELECT taskhost.record_plugin_metric('metered', 'items_total', "
                         "'{\"kind\":\"a\",\"outcome\":\"ok\"}', 'gauge', '', 0)"),
               pg::DbError)
      << "a counter cannot be reset by calling it a gauge";
  EXPECT_EQ(
      conn.exec("SELECT value FROM taskhost.plugin_metrics WHERE labels->>'kind' = 'a'").text(0, 0),
      "2");
}

TEST_F(PluginMetrics, SchemasDeclareBoundedMetrics) {
  std::vector<Diagnostic> errors;
  auto parse = [&](const std::string& metrics) {
    errors.clear();
    parse_schema(
        "name: m\nversion: 1.0.0\nplugin: { path: m.so, sha256: any }\nmetrics:\n" + metrics,
        "m.yaml", &errors);
    return format_diagnostics(errors);
  };
  EXPECT_EQ(parse("  done_total: { type: counter, help: h, labels: { kind: [a, b] } }\n"), "");
  EXPECT_NE(parse("  done: { type: counter, help: h }\n")
                .find("metrics.done: a counter's name ends in _total"),
            std::string::npos);
  EXPECT_NE(parse("  done_total: { type: gauge, help: h }\n")
                .find("metrics.done_total: only a counter's name ends in _total"),
            std::string::npos);
  EXPECT_NE(parse("  x_total: { type: counter, help: h, labels: { user_id: any } }\n")
                .find("metrics.x_total.labels.user_id: expected the label's values, a list"),
            std::string::npos);
  EXPECT_NE(parse("  x_total: { type: counter, help: h, labels: { schema: [a] } }\n")
                .find("the host sets the label schema"),
            std::string::npos);
  EXPECT_NE(parse("  x_total: { type: histogram, help: h }\n")
                .find("metrics.x_total.type: expected counter or gauge, got 'histogram'"),
            std::string::npos);
}

// A plugin built against ABI 1.0 (no pgp, dry_run or metric in its view of
// the table) loads and runs in the sandbox and in the host.
TEST_F(PluginMetrics, APluginBuiltForAbi10StillRuns) {
  HostConfig allow;
  allow.allow_in_process = true;
  for (const std::string isolation : {"process", "none"}) {
    auto s = test::install_fixture(conn, "legacy-" + isolation, "abi_1_0.so",
                                   "isolation: " + isolation + "\n");
    taskhost::Run r = run(s, Json::object(), allow);
    ASSERT_EQ(r.state, RunState::succeeded) << isolation << ": " << r.error.value_or("");
    EXPECT_EQ(r.output["built_for"], "1.0");
    EXPECT_EQ(r.output["host_abi"],
              std::to_string(TH_ABI_MAJOR) + "." + std::to_string(TH_ABI_MINOR));
  }
}

}  // namespace
}  // namespace taskhost
