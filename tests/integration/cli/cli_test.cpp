// The taskhost binary as an operator uses it: real process, real database.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/sha256.hpp"
#include "support/fixtures.hpp"
#include "support/http_receiver.hpp"
#include "support/test_database.hpp"

extern char** environ;

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Output {
  int exit_code;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

using test::slurp;

struct Cli : ::testing::Test {
  test::TestDatabase db;
  fs::path tmp =
      fs::temp_directory_path() / ("taskhost-cli-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());

  void SetUp() override { fs::create_directories(tmp); }
  void TearDown() override { fs::remove_all(tmp); }

  Output run(const std::vector<std::string>& args,
             const std::string& plugin_dir = BUNDLED_PLUGIN_DIR) {
    return run_as(db.conninfo(), args, plugin_dir);
  }
  Output run_as(const std::string& url, const std::vector<std::string>& args,
                const std::string& plugin_dir = BUNDLED_PLUGIN_DIR) {
    std::string cmd = std::string(TASKHOST_BIN) + " --database-url " + quote(url) +
                      " --plugin-dir " + quote(plugin_dir);
    for (const auto& a : args) cmd += " " + quote(a);
    cmd += " >" + quote((tmp / "out").string()) + " 2>" + quote((tmp / "err").string()) +
           " </dev/null";
    int status = std::system(cmd.c_str());
    return {WEXITSTATUS(status), slurp(tmp / "out"), slurp(tmp / "err")};
  }

  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(tmp / name) << text;
    return tmp / name;
  }
};

TEST_F(Cli, HelpListsEveryCommandAndExitCodes) {
  auto r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"migrate", "db start", "schema install", "schema list", "schema show",
                        "schema rm", "run NAME[@VERSION]", "runs list", "runs show",
                        "plugin inspect", "exit codes: 0 ok, 1 run failed"})
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
  r = run({"run", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--params-file"), std::string::npos);
  EXPECT_NE(r.out.find("--wait"), std::string::npos);
}

TEST_F(Cli, UsageErrorsExitTwo) {
  EXPECT_EQ(run({}).exit_code, 2);
  auto r = run({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos);
  r = run({"schema", "show"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "taskhost: schema show: missing NAME[@VERSION] (see taskhost schema show --help)\n");
  r = run({"runs", "show"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "taskhost: runs show: missing RUN_ID (see taskhost runs show --help)\n");
  EXPECT_EQ(run({"runs", "list", "--limit", "many"}).exit_code, 2);
}

TEST_F(Cli, InstallRunAndInspectHello) {
  auto r = run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string hello = test::bundled_ref("hello.yaml");
  EXPECT_EQ(r.out, hello + ": installed\n");
  EXPECT_EQ(run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"}).out,
            hello + ": unchanged\n");

  r = run({"run", "hello", "-p", "name=CI", "-p", "count=4", "--inline", "--wait", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json run_json = Json::parse(r.out);
  EXPECT_EQ(run_json["state"], "succeeded");
  EXPECT_EQ(run_json["output"]["greeting"], "Hello, CI!");
  EXPECT_EQ(run_json["progress"], (Json{{"done", 4}, {"total", 4}}));
  const std::string id = run_json["id"];

  r = run({"runs", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)[0]["id"], id);
  r = run({"runs", "show", id.substr(0, 8)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("state   succeeded (attempt 1)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("queued -> running"), std::string::npos);
  EXPECT_NE(r.out.find("item.done"), std::string::npos);

  r = run({"run", "hello", "--inline"});  // human output
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("state   succeeded"), std::string::npos);
  EXPECT_NE(r.out.find("output  {\"attempt\":1,\"count\":3,\"greeting\":\"Hello, world!\"}"),
            std::string::npos)
      << r.out;

  r = run({"schema", "show", "hello", "--json"});
  EXPECT_EQ(Json::parse(r.out)["params"]["count"]["default"], 3);
  r = run({"schema", "list"});
  EXPECT_NE(r.out.find("hello"), std::string::npos);

  r = run({"plugin", "inspect", BUNDLED_PLUGIN_DIR "/hello.so", "--load", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json info = Json::parse(r.out);
  EXPECT_EQ(info["name"], "hello");
  EXPECT_EQ(info["abi"], "1.3");
  EXPECT_EQ(info["sha256"].get<std::string>().size(), 64u);
}

TEST_F(Cli, InvalidInputNamesWhatIsWrong) {
  auto bad = write("bad.yaml",
                   "name: bad\nversion: 1.0.0\nplugin: { path: x.so, sha256: any }\ntimeot: 5m\n");
  auto r = run({"schema", "install", bad.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(bad.string() + ":4:1: timeot: unknown key; did you mean 'timeout'?"),
            std::string::npos)
      << r.err;

  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  r = run({"run", "hello", "-p", "count=0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("params.count: expected an integer from 1 to 10000, got 0"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Json::parse(run({"runs", "list", "--json"}).out).size(), 0u);

  r = run({"run", "nope"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("no schema named nope is installed"), std::string::npos);
  EXPECT_EQ(run({"runs", "show", "00000000-0000"}).exit_code, 3);

  auto params = write("p.json", "[1, 2]");
  r = run({"run", "hello", "--params-file", params.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("expected a JSON object"), std::string::npos);
}

TEST_F(Cli, AFailedRunExitsOneWithWait) {
  auto schema = write("err.yaml",
                      "name: err\nversion: 1.0.0\nplugin: { path: returns_error.so, "
                      "sha256: any }\n");
  EXPECT_EQ(run({"schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR).exit_code, 5)
      << "sha256: any needs --dev";
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR).exit_code, 0);
  auto r = run({"--dev", "run", "err", "--inline", "--wait"}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("error   permanent: input file is malformed at line 7"), std::string::npos)
      << r.out;
  r = run({"--dev", "run", "err", "--inline"}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 0) << "without --wait the exit code reports submission";
}

TEST_F(Cli, SchemaInstallChecksThePluginAndDryRunChangesNothing) {
  auto wrong = write("wrong.yaml", "name: w\nversion: 1.0.0\nplugin: { path: hello.so, sha256: " +
                                       std::string(64, 'a') + " }\n");
  auto r = run({"schema", "install", wrong.string()});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("but the schema pins aaaa"), std::string::npos) << r.err;
  r = run({"schema", "install", "--dry-run", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  EXPECT_EQ(r.out, test::bundled_ref("hello.yaml") + ": would install\n");
  EXPECT_EQ(run({"schema", "list", "--json"}).out, "[]\n");
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  r = run({"schema", "rm", "hello"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run({"run", "hello"}).exit_code, 3);
}

TEST_F(Cli, SchemaInstallMakesTheDatabaseRolesFirst) {
  auto schema =
      write("db.yaml",
            "name: dbcli\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: any }\n"
            "capabilities:\n  db: { connection: default, tables: { cli_claims: write } }\n");
  auto r = run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("dbcli@1.0.0: capabilities.db.tables.cli_claims: no such table in "
                       "database connection 'default'"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(run({"schema", "list", "--json"}).out, "[]\n") << "nothing recorded";

  db.connect_as_owner().exec_script(
      "CREATE TABLE public.cli_claims (id int);"
      "GRANT ALL ON public.cli_claims TO taskhost_provisioner WITH GRANT OPTION");
  r = run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(db.connect()
                  .exec("SELECT has_table_privilege('taskhost:dbcli@1.0.0', 'public.cli_claims', "
                        "'INSERT')")
                  .boolean(0, 0));
  r = run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.out, "dbcli@1.0.0: unchanged\n") << "installing again is harmless";

  auto elsewhere =
      write("elsewhere.yaml",
            "name: dbelsewhere\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: "
            "any }\ncapabilities:\n  db: { connection: warehouse, tables: { t: read } }\n");
  r = run({"--dev", "schema", "install", elsewhere.string()}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no database connection named 'warehouse' in the host config (it names "
                       "none, so only 'default', the platform's database)"),
            std::string::npos)
      << r.err;
  auto inline_url = write("inline.yml", "databases:\n  warehouse:\n    url: postgresql://x\n");
  r = run({"--config", inline_url.string(), "--dev", "schema", "install", elsewhere.string()},
          FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(":3:10: databases.warehouse.url: secret values are never written here"),
            std::string::npos)
      << r.err;
  auto bad_timeout = write("timeout.yml",
                           "databases:\n  warehouse:\n    url: { env: X }\n"
                           "    statement_timeout: soon\n");
  r = run({"--config", bad_timeout.string(), "--dev", "schema", "install", elsewhere.string()},
          FIXTURE_PLUGIN_DIR);
  EXPECT_NE(r.err.find(":4:24: databases.warehouse.statement_timeout: expected a duration"),
            std::string::npos)
      << r.err;
}

// The plugin's own tables come with it: its data migrations run at install,
// before its roles are made, once.
TEST_F(Cli, SchemaInstallAppliesThePluginsDataMigrations) {
  const fs::path plugins = tmp / "plugins";
  fs::create_directories(plugins);
  fs::copy_file(fs::path(FIXTURE_PLUGIN_DIR) / "db_probe.so", plugins / "db_probe.so");
  const std::string sql = "CREATE TABLE cli_ledger (id int PRIMARY KEY, cents bigint);\n";
  std::ofstream(plugins / "ledger.sql") << sql;
  auto schema = write("ledger.yaml",
                      "name: ledger\nversion: 1.0.0\nplugin: { path: db_probe.so, sha256: any }\n"
                      "capabilities:\n  db:\n    connection: default\n"
                      "    tables: { cli_ledger: write }\n"
                      "    migrations: [ { path: ledger.sql, sha256: " +
                          sha256_hex(sql) + " } ]\n");
  auto r = run({"--dev", "schema", "install", schema.string()}, plugins.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ledger@1.0.0: applied data migration ledger.sql\nledger@1.0.0: installed\n");
  EXPECT_TRUE(db.connect()
                  .exec("SELECT has_table_privilege('taskhost:ledger@1.0.0', 'public.cli_ledger', "
                        "'INSERT')")
                  .boolean(0, 0));
  r = run({"--dev", "schema", "install", schema.string()}, plugins.string());
  EXPECT_EQ(r.out, "ledger@1.0.0: unchanged\n");

  std::ofstream(plugins / "ledger.sql") << "DROP TABLE cli_ledger;\n";
  auto changed =
      write("ledger2.yaml", slurp(schema).replace(slurp(schema).find("1.0.0"), 5, "1.0.1"));
  r = run({"--dev", "schema", "install", changed.string()}, plugins.string());
  EXPECT_EQ(r.exit_code, 5) << "the file is not the reviewed one: " << r.err;
  EXPECT_NE(r.err.find("ledger@1.0.1: data migration " + (plugins / "ledger.sql").string() +
                       " has SHA-256 "),
            std::string::npos)
      << r.err;
}

// Roles from the host config's cli section, checked against the schema's
// permissions (hello: run and control by operator or admin, view by viewer
// too) and the platform's own operations (admin).
TEST_F(Cli, TheCliUserHasTheRolesTheHostConfigGives) {
  ASSERT_EQ(run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"}).exit_code, 0);
  const std::string id = run({"run", "hello"}).out.substr(4, 36);
  auto viewer = write("viewer.yml", "cli: { roles: { '*': [viewer] } }\n");
  auto r = run({"--config", viewer.string(), "runs", "show", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run({"--config", viewer.string(), "runs", "cancel", id});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("may not control runs of " + test::bundled_ref("hello.yaml") +
                       " (permissions.control: operator, admin)"),
            std::string::npos)
      << r.err;
  r = run({"--config", viewer.string(), "run", "hello"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("(roles: viewer) may not run runs of " + test::bundled_ref("hello.yaml")),
            std::string::npos)
      << r.err;
  for (const std::vector<std::string>& admin_only :
       {std::vector<std::string>{"audit", "list"},
        {"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"},
        {"webhooks", "list"},
        {"audit", "verify"}}) {
    std::vector<std::string> args{"--config", viewer.string()};
    args.insert(args.end(), admin_only.begin(), admin_only.end());
    r = run(args);
    EXPECT_EQ(r.exit_code, 5) << admin_only[0] << " " << admin_only[1];
    EXPECT_NE(r.err.find("is for the admin role"), std::string::npos) << r.err;
  }
  auto nobody = write("nobody.yml", "cli: { roles: { someone-else: [admin] } }\n");
  r = run({"--config", nobody.string(), "runs", "show", id});
  EXPECT_EQ(r.exit_code, 3) << "a run it may not view is one it cannot see: " << r.err;
  EXPECT_EQ(run({"--config", nobody.string(), "runs", "list", "--json"}).out, "[]\n");
  auto operator_ = write("operator.yml", "cli: { roles: { '*': [operator] } }\n");
  r = run({"--config", operator_.string(), "runs", "cancel", id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto bad = write("bad.yml", "cli: { roles: { '*': operator } }\n");
  r = run({"--config", bad.string(), "runs", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(":1:22: cli.roles.*: expected a list of roles"), std::string::npos) << r.err;
}

TEST_F(Cli, JsonLogsAreOneObjectPerLine) {
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  auto r = run({"--log-format", "json", "run", "hello", "--inline", "-p", "name=\"quoted\"\n"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.err);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    Json j = Json::parse(line);  // throws if a line is not JSON
    EXPECT_TRUE(j.contains("level") && j.contains("msg") && j.contains("time_ms"));
  }
  EXPECT_GE(n, 3);
  EXPECT_NE(r.err.find("greeted \\\"quoted\\\"\\n 3 times"), std::string::npos) << r.err;
}

TEST_F(Cli, ControlsARunThroughItsStates) {
  auto schema = write("probe.yaml",
                      "name: probe\nversion: 1.0.0\nplugin: { path: probe.so, sha256: any }\n"
                      "params:\n  mode: { type: string }\n  items: { type: integer }\n"
                      "  delay_ms: { type: integer }\n");
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "--dev");
    return run(args, FIXTURE_PLUGIN_DIR);
  };
  ASSERT_EQ(cli({"schema", "install", schema.string()}).exit_code, 0);
  const std::vector<std::string> slow = {
      "run",     "probe", "-p",         "mode=slow",         "-p",
      "items=3", "-p",    "delay_ms=1", "--idempotency-key", "k1"};

  // Nothing executes it (no worker), so it stays queued for the controls.
  auto r = cli(slow);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = r.out.substr(4, 36);
  EXPECT_EQ(r.out, "run " + id + " queued\n");
  EXPECT_EQ(cli(slow).out, "run " + id + " exists (idempotency key)\n");
  auto other = slow;
  other[5] = "items=4";
  r = cli(other);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.err, "taskhost: idempotency key 'k1' was used for run " + id +
                       " of probe with different parameters; use a new key\n");
  r = cli({"runs", "show", id});
  EXPECT_NE(r.out.find("\nevents: none\n"), std::string::npos) << r.out;

  EXPECT_EQ(cli({"runs", "pause", id}).out, "run " + id + " paused\n");
  r = cli({"runs", "pause", id});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("cannot pause run " + id + ": it is paused"), std::string::npos) << r.err;
  EXPECT_EQ(cli({"runs", "resume", id}).out, "run " + id + " queued\n");
  EXPECT_EQ(cli({"runs", "cancel", id, "--reason", "wrong batch"}).out,
            "run " + id + " cancelled\n");
  EXPECT_EQ(cli({"runs", "retry", id}).out, "run " + id + " queued\n");

  // A worker for exactly this run, then its output and file.
  r = cli({"run", "probe", "-p", "mode=slow", "-p", "items=3", "-p", "delay_ms=1", "--inline",
           "--wait", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string done = Json::parse(r.out)["id"];
  r = cli({"runs", "output", done, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json out = Json::parse(r.out);
  EXPECT_EQ(out["output"]["items"], 3);
  ASSERT_EQ(out["files"].size(), 1u);
  EXPECT_EQ(out["files"][0]["name"], "result.csv");
  EXPECT_EQ(out["files"][0]["size"], 27);
  EXPECT_EQ(cli({"runs", "output", done, "--file", "result.csv"}).out,
            "item,status\n1,ok\n2,ok\n3,ok\n");
  auto saved = tmp / "saved.csv";
  EXPECT_EQ(cli({"runs", "output", done, "--file", "result.csv", "-o", saved.string()}).exit_code,
            0);
  EXPECT_EQ(slurp(saved), "item,status\n1,ok\n2,ok\n3,ok\n");
  EXPECT_EQ(cli({"runs", "output", done, "--file", "nope.csv"}).exit_code, 3);

  r = cli({"runs", "show", id});
  EXPECT_NE(r.out.find("wrong batch"), std::string::npos) << "the reason is on the record";
  EXPECT_NE(r.out.find("paused -> queued"), std::string::npos) << r.out;
}

TEST_F(Cli, AuditListExportAndVerify) {
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  auto r = run({"run", "hello", "--inline", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = Json::parse(r.out)["id"];

  r = run({"audit", "list", "--run", id.substr(0, 8), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json entries = Json::parse(r.out);
  // submitted, started, the output the plugin set (audited by the database
  // with its digest), succeeded
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0]["action"], "run.submitted");
  EXPECT_EQ(entries[0]["actor"].get<std::string>().rfind("cli:", 0), 0u);
  EXPECT_EQ(entries[2]["action"], "run.changed");
  EXPECT_TRUE(entries[2]["detail"].contains("output_sha256")) << entries[2].dump();
  EXPECT_EQ(entries[3]["action"], "run.succeeded");

  // Text columns line up under their headers, whatever the values' widths.
  r = run({"audit", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    std::istringstream lines(r.out);
    std::string header, row;
    std::getline(lines, header);
    const size_t action_at = header.find("ACTION"), subject_at = header.find("SUBJECT");
    int rows = 0;
    while (std::getline(lines, row)) {
      ++rows;
      ASSERT_GT(row.size(), subject_at) << row;
      EXPECT_EQ(row.substr(action_at - 2, 2), "  ") << row;
      EXPECT_EQ(row.substr(subject_at - 2, 2), "  ") << row;
      EXPECT_NE(row[subject_at], ' ') << row;
    }
    EXPECT_EQ(rows, 5);
  }
  // An action group without its trailing dot matches at a dot boundary.
  r = run({"audit", "list", "--action", "run", "--json"});
  EXPECT_EQ(Json::parse(r.out).size(), 4u)
      << r.out;  // run.submitted, .started, .changed (output), .succeeded
  EXPECT_EQ(Json::parse(run({"audit", "list", "--action", "ru", "--json"}).out).size(), 0u);
  r = run({"audit", "list", "--action", "run%"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--action: 'run%' is not an action"), std::string::npos) << r.err;

  r = run({"audit", "list", "--since", "yesterday-ish"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--since: 'yesterday-ish' is not a time"), std::string::npos) << r.err;
  r = run({"audit", "list", "--since", "2000-01-01", "--until", "2000-01-02", "--json"});
  EXPECT_EQ(r.out, "[]\n");

  r = run({"audit", "export", "--action", "schema."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json line = Json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(line["action"], "schema.installed");
  EXPECT_EQ(line["subject"], test::bundled_ref("hello.yaml"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);

  r = run({"audit", "verify"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "audit log intact: 5 entries\n");
  const std::string key = (tmp / "audit.pem").string(), cps = (tmp / "cp.jsonl").string();
  r = run({"audit", "checkpoint", "--key", key, "--out", cps});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "checkpoint at entry 5 signed with " + key + "\n");
  r = run({"audit", "verify", "--checkpoints", cps, "--public-key", key + ".pub"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "signed checkpoints hold: 1\naudit log intact: 5 entries\n");
  EXPECT_EQ(run({"audit", "verify", "--checkpoints", cps}).exit_code, 2);
  // The runtime role's password without the host key: an entry in alice's
  // name, from a session that holds no sealer.
  db.connect().exec(
      "SELECT taskhost.audit_append(ARRAY[ROW('cli:alice', 'keys.rotated', NULL, NULL, '{}')"
      "::taskhost.audit_entry])");
  r = run({"audit", "verify"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "audit log broken at entry 6: entry 6 (keys.rotated by cli:alice) was not appended "
            "by a taskhost process: no session holding a sealer signed with the host key wrote "
            "it (someone with the database role did, whatever actor an entry names)\n");
  auto super = db.connect_as_superuser();
  super.exec("SET session_replication_role = replica");
  super.exec("UPDATE taskhost.audit_log SET actor = 'someone else' WHERE seq = 2");
  r = run({"audit", "verify"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "audit log broken at entry 2: entry 2 does not match its hash: its content was "
            "changed\n");
}

TEST_F(Cli, WebhookKeyPrintsTheSecretOnce) {
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  auto r = run({"webhook-key", "hello"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string first = r.out;
  EXPECT_EQ(first.rfind("whsec_", 0), 0u);
  EXPECT_EQ(first.find('\n'), first.size() - 1) << "stdout is the secret alone";
  EXPECT_EQ(r.err.find(first.substr(6, 20)), std::string::npos) << "never logged";
  EXPECT_EQ(run({"webhook-key", "hello"}).exit_code, 4);
  r = run({"webhook-key", "hello", "--rotate"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out, first);
  EXPECT_EQ(run({"webhook-key", "nope"}).exit_code, 3);
}

TEST_F(Cli, WebhookDeliveriesAndTheHostConfig) {
  auto schema = write("hooked.yaml",
                      "name: hooked\nversion: 1.0.0\nplugin: { path: hello.so, sha256: any }\n"
                      "hooks: { url: 'https://hooks.example/in', events: [run.queued] }\n");
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}).exit_code, 0);
  const std::string id = run({"run", "hooked"}).out.substr(4, 36);
  auto r = run({"webhooks", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json list = Json::parse(r.out);
  ASSERT_EQ(list.size(), 1u) << "queued with the run, nothing delivers it (no worker)";
  EXPECT_EQ(list[0]["event"], "run.queued");
  EXPECT_EQ(list[0]["run_id"], id);
  EXPECT_EQ(list[0]["state"], "pending");
  EXPECT_EQ(list[0]["url"], "https://hooks.example/in");
  EXPECT_EQ(Json::parse(run({"webhooks", "list", "--failed", "--json"}).out).size(), 0u);
  const std::string delivery = std::to_string(list[0]["id"].get<int64_t>());
  r = run({"webhooks", "redeliver", delivery});
  EXPECT_EQ(r.exit_code, 0) << "a pending delivery is sent now: " << r.err;
  EXPECT_EQ(r.out, "delivery " + delivery + " is due now\n");
  EXPECT_EQ(run({"webhooks", "redeliver", "999999"}).exit_code, 3);
  EXPECT_EQ(run({"webhooks", "redeliver", "x1"}).exit_code, 2);

  auto bad = write("taskhost.yml", "allow_destinations:\n  - 127.0.0.0/8\n  - 10.0.0.0/33\n");
  r = run({"--config", bad.string(), "worker"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(bad.string() + ":3:5: allow_destinations[1]: "), std::string::npos) << r.err;
  auto unknown = write("unknown.yml", "allow_destination: [127.0.0.0/8]\n");
  r = run({"--config", unknown.string(), "worker"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(":1:1: allow_destination: unknown setting"), std::string::npos) << r.err;
}

TEST_F(Cli, AnInlineRunAnnouncesItselfWithoutAWorker) {
  test::HttpReceiver receiver;
  auto schema =
      write("hooked.yaml",
            "name: hooked\nversion: 1.0.0\nplugin: { path: hello.so, sha256: any }\n"
            "params: { name: { type: string, default: ops }, count: { type: integer, "
            "default: 1 } }\n"
            "hooks: { url: '" +
                receiver.url() + "', events: [run.queued, run.started, run.succeeded] }\n");
  auto config = write("taskhost.yml", "allow_destinations: [127.0.0.0/8]\n");
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}).exit_code, 0);
  ASSERT_EQ(run({"webhook-key", "hooked"}).exit_code, 0);
  auto r = run({"--dev", "--config", config.string(), "run", "hooked", "--inline", "--wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto got = receiver.requests();
  ASSERT_EQ(got.size(), 3u) << "delivered before the command returned";
  std::vector<std::string> types;
  for (const auto& req : got) types.push_back(Json::parse(req.body)["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"run.queued", "run.started", "run.succeeded"}));
  EXPECT_EQ(Json::parse(run({"webhooks", "list", "--json"}).out)[0]["state"], "delivered");
}

TEST_F(Cli, AnUnmigratedSharedDatabaseIsRefused) {
  db.connect_as_owner().exec("DROP SCHEMA taskhost CASCADE");
  auto r = run({"schema", "list"});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("run `taskhost migrate`"), std::string::npos) << r.err;
  // The runtime role may not create the platform's objects; the owner does.
  EXPECT_EQ(run({"migrate"}).exit_code, 6);
  r = run_as(db.owner_conninfo(), {"migrate"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run({"schema", "list"}).exit_code, 0);
}

TEST_F(Cli, VersionAndCommandGroups) {
  auto r = run({"--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("taskhost ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(" (plugin ABI 1.3)\n"), std::string::npos) << r.out;
  EXPECT_EQ(run({"version"}).out, r.out);

  r = run({"runs"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "taskhost runs: which one?\n");
  for (const char* sub :
       {"runs list", "runs show RUN_ID", "runs cancel RUN_ID", "runs retry RUN_ID"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub << "\n" << r.out;
  EXPECT_EQ(r.out.find("schema list"), std::string::npos) << "only the group";
  r = run({"runs", "frob"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "taskhost runs: unknown subcommand 'frob'\n");
  r = run({"runs", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("runs output RUN_ID"), std::string::npos) << r.out;
}

TEST_F(Cli, SchemaShowLabelsItsDigests) {
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  Json j = Json::parse(run({"schema", "show", "hello", "--json"}).out);
  auto r = run({"schema", "show", "hello"});
  EXPECT_NE(r.out.find("# schema file sha256:  " + j["digest"].get<std::string>() + "\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("# plugin hello.so pinned to sha256: " +
                       j["plugin"]["sha256"].get<std::string>() + "\n"),
            std::string::npos)
      << r.out;
}

// Inspecting or installing a plugin runs none of its code; --load does, and
// says so in its help.
TEST_F(Cli, PluginInspectRunsNoneOfThePluginsCode) {
  const auto mark = tmp / "constructor-ran";
  ::setenv("TASKHOST_TEST_CTOR_MARK", mark.c_str(), 1);
  auto r = run({"plugin", "inspect", FIXTURE_PLUGIN_DIR "/ctor_writes.so"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sha256       "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libc.so.6"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("name "), std::string::npos) << r.out;
  auto schema = write(
      "ctor.yaml", "name: ctor\nversion: 1.0.0\nplugin: { path: ctor_writes.so, sha256: any }\n");
  r = run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(mark)) << "the plugin's constructor ran in the CLI";

  r = run({"plugin", "inspect", "--help"});
  EXPECT_NE(r.out.find("sandbox"), std::string::npos) << r.out;
  r = run({"plugin", "inspect", FIXTURE_PLUGIN_DIR "/ctor_writes.so", "--load"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("name         ctor_writes\n"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(mark)) << "the plugin's constructor ran outside the sandbox";
  ::unsetenv("TASKHOST_TEST_CTOR_MARK");

  r = run({"plugin", "inspect", "/etc/passwd"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.err,
            "taskhost: plugin /etc/passwd refused: it is not an ELF file (a plugin is a shared "
            "library, .so)\n");
}

// What a reviewer approves: the handshake's fields, the forbidden imports
// flagged, and the lines of a schema that pin exactly this build.
TEST_F(Cli, PluginReviewFlagsForbiddenImportsAndShowsThePinningLines) {
  const std::string so = FIXTURE_PLUGIN_DIR "/escape.so";
  auto r = run({"plugin", "inspect", so, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string digest = Json::parse(r.out).at("sha256");
  auto pinning = write("pins.yaml",
                       "name: escape\nversion: 1.0.0\nplugin:\n  path: escape.so\n"
                       "  sha256: \"" +
                           digest + "\"\n");
  r = run({"plugin", "review", so, pinning.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("name         escape\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("abi          1."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sha256       " + digest + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("flagged    execve: starts a program or process"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("flagged    socket: network"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pinned by    " + pinning.string() + ":5:   sha256: \"" + digest),
            std::string::npos)
      << r.out;

  // A plugin that imports nothing forbidden says so; a schema pinning
  // another build fails the review.
  auto other =
      write("other.yaml", "plugin: { path: hello.so, sha256: \"" + std::string(64, 'a') + "\" }\n");
  r = run({"plugin", "review", FIXTURE_PLUGIN_DIR "/ctor_writes.so", other.string(), "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const Json review = Json::parse(r.out);
  EXPECT_EQ(review.at("flagged"), Json::array()) << r.out;
  EXPECT_EQ(review.at("not_pinned_by"), Json::array({other.string()})) << r.out;
  EXPECT_NE(std::find(review.at("imports").begin(), review.at("imports").end(), "getenv"),
            review.at("imports").end())
      << r.out;
}

// `plugin new`: the scaffold with its name filled in, and names refused.
TEST_F(Cli, PluginNewMakesAProjectNamedForThePlugin) {
  auto r = run({"plugin", "new", "claim-tally2", "--dir", (tmp / "p").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f :
       {"CMakeLists.txt", "README.md", "claim-tally2.cpp", "claim-tally2.yaml", "test.sh"})
    EXPECT_TRUE(fs::exists(tmp / "p" / f)) << f;
  std::ifstream in(tmp / "p" / "claim-tally2.cpp");
  const std::string source((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(source.find("struct ClaimTally2 {"), std::string::npos);
  EXPECT_NE(source.find("\"claim-tally2\""), std::string::npos);
  EXPECT_EQ(source.find("@NAME@"), std::string::npos);
  EXPECT_TRUE((fs::status(tmp / "p" / "test.sh").permissions() & fs::perms::owner_exec) !=
              fs::perms::none);

  r = run({"plugin", "new", "claim-tally2", "--dir", (tmp / "p").string()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("exists and is not empty"), std::string::npos) << r.err;
  for (const char* bad : {"Claim", "2fast", "a--b", "a-", "a_b", "../x"}) {
    r = run({"plugin", "new", bad, "--dir", (tmp / "q").string()});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.err.find("is not a plugin name"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp / "q"));
}

// Issue: with a worker running, `run --inline` lost its run to the worker
// and reported "not queued" although the run succeeded elsewhere.
TEST_F(Cli, AnInlineRunIsExecutedByTheProcessThatAskedForIt) {
  ASSERT_EQ(run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"}).exit_code, 0);
  std::vector<std::string> args = {TASKHOST_BIN,   "--database-url",   db.conninfo(),
                                   "--plugin-dir", BUNDLED_PLUGIN_DIR, "--log-level",
                                   "warn",         "worker",           "--id",
                                   "w-busy",       "--concurrency",    "8"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t worker = 0;
  ASSERT_EQ(posix_spawn(&worker, TASKHOST_BIN, nullptr, nullptr, argv.data(), environ), 0);
  for (int i = 0; i < 5; ++i) {
    auto r = run({"run", "hello", "--inline", "--wait", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    Json j = Json::parse(r.out);
    EXPECT_EQ(j["state"], "succeeded");
    Json shown = Json::parse(run({"runs", "show", j["id"], "--json"}).out);
    EXPECT_NE(shown["transitions"][1]["actor"], "w-busy") << shown["transitions"];
  }
  ::kill(worker, SIGTERM);
  int status = 0;
  ::waitpid(worker, &status, 0);
}

// A retryable failure of an inline run leaves it queued: say so, and how to
// go on.
TEST_F(Cli, AnInlineRunQueuedForARetrySaysWhatComesNext) {
  auto schema = write("throws.yaml",
                      "name: thrower\nversion: 1.0.0\nplugin: { path: throws.so, sha256: any }\n"
                      "retry: { max_attempts: 2, backoff: fixed, initial: 1h }\n");
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR).exit_code, 0);
  auto r = run({"--dev", "run", "thrower", "--inline", "--wait"}, FIXTURE_PLUGIN_DIR);
  EXPECT_EQ(r.exit_code, 1);
  const std::string id = r.out.substr(4, 36);
  EXPECT_NE(r.out.find("state   queued (attempt 1)"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("run " + id + " failed attempt 1 of 2 and is queued for a retry after "),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("a worker executes it (`taskhost worker`), or cancel it (`taskhost runs "
                       "cancel " +
                       id + "`)"),
            std::string::npos)
      << r.err;
}

// ---- hostile input (issue 12, section 4) -------------------------------------

TEST_F(Cli, HostileParametersAreValidationErrors) {
  auto schema = write("num.yaml",
                      "name: num\nversion: 1.0.0\nplugin: { path: hello.so, sha256: any }\n"
                      "params:\n  ratio: { type: number }\n  name: { type: string }\n");
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}).exit_code, 0);
  // 100,000 nested arrays segfaulted the recursive JSON parse.
  auto deep =
      write("deep.json", "{\"name\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  auto r = run({"--dev", "run", "num", "--params-file", deep.string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--params-file " + deep.string() + ": nested deeper than 64 levels"),
            std::string::npos)
      << r.err;
  r = run({"--dev", "run", "num", "-p", "ratio=1e400"});  // was stored as null
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("params.ratio: '1e400' is out of range"), std::string::npos) << r.err;
  r = run({"--dev", "run", "num", "-p", "name=caf\xE9"});  // was type_error.316, exit 7
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("-p name: is not valid UTF-8 (at byte 9)"), std::string::npos) << r.err;
  auto nul = write("nul.json", R"({"name": "a\u0000b"})");  // was a database error, exit 6
  r = run({"--dev", "run", "num", "--params-file", nul.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("a string holds a NUL character"), std::string::npos) << r.err;
  r = run({"--dev", "run", "num", "-p", "nmae=x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("params.nmae: unknown parameter for num@1.0.0; did you mean 'name'?"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Json::parse(run({"runs", "list", "--json"}).out).size(), 0u);
}

TEST_F(Cli, HostileSchemaFilesAreLocatedErrors) {
  const std::string head = "name: h\nversion: 1.0.0\nplugin: { path: hello.so, sha256: any }\n";
  auto r = run({"--dev", "schema", "install",
                write("utf8.yaml", head + "description: \"caf\xE9\"\n").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("utf8.yaml:4:18: the text holds not valid UTF-8"), std::string::npos)
      << r.err;
  r = run({"--dev", "schema", "install",
           write("nul.yaml", head + "description: \"a\\0b\"\n").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nul.yaml:4:14: description: holds a NUL character"), std::string::npos)
      << r.err;
  r = run({"--dev", "schema", "install", write("two.yaml", head + "---\n" + head).string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("two.yaml:4:1: a second YAML document"), std::string::npos) << r.err;
  r = run(
      {"--dev", "schema", "install",
       write("big.yaml", head + "description: '" + std::string(2 << 20, 'x') + "'\n").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("over the limit of 1048576 bytes"), std::string::npos) << r.err;
  std::string many = head;
  for (int i = 0; i < 5000; ++i) many += "k" + std::to_string(i) + ": 1\n";
  r = run({"--dev", "schema", "install", write("many.yaml", many).string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("many.yaml: ... and 4900 more problems"), std::string::npos)
      << r.err.substr(r.err.size() > 500 ? r.err.size() - 500 : 0);
  // At most 100 problems are printed, each one line naming the file (however long its path).
  EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 110) << r.err.substr(0, 2000);
  r = run({"--dev", "schema", "install",
           write("hook.yaml", head + "hooks: { url: 'http://h:99999/', events: [run.failed] }\n")
               .string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("hook.yaml:4:15: hooks.url: expected an http(s) URL"), std::string::npos)
      << r.err;
  EXPECT_EQ(run({"schema", "list", "--json"}).out, "[]\n");
}

TEST_F(Cli, RunIdPrefixesAreHexAndDashesOnly) {
  run({"schema", "install", BUNDLED_SCHEMA_DIR "/hello.yaml"});
  const std::string id = Json::parse(run({"run", "hello", "--json"}).out)["id"];
  // LIKE made % and _ wildcards: this resolved the run.
  auto r = run({"runs", "show", id.substr(0, 7) + "%"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("run id '" + id.substr(0, 7) + "%' is not a run id or a prefix of one"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(run({"runs", "cancel", "________"}).exit_code, 2);
  EXPECT_EQ(run({"webhooks", "list", "--run", "%"}).exit_code, 2);
  EXPECT_EQ(run({"runs", "show", id.substr(0, 8)}).exit_code, 0);
}

TEST_F(Cli, PluginTextIsBoundedAndPrintedEscaped) {
  // In-process: the host's own caps, without the sandbox's frame limit in
  // front of them.
  auto schema = write("hostile.yaml",
                      "name: hostile\nversion: 1.0.0\nplugin: { path: hostile.so, sha256: any }\n"
                      "isolation: none\n");
  auto config = write("taskhost.yml", "sandbox: { allow_in_process: true }\n");
  ASSERT_EQ(run({"--dev", "schema", "install", schema.string()}, FIXTURE_PLUGIN_DIR).exit_code, 0);
  auto r =
      run({"--dev", "--config", config.string(), "run", "hostile", "--inline", "--wait", "--json"},
          FIXTURE_PLUGIN_DIR);
  ASSERT_EQ(r.exit_code, 1) << r.err;
  // The text log: the plugin's newline and escapes do not reach the terminal.
  EXPECT_NE(r.err.find("forged\\n2026-01-01 00:00:00.000 error fake line \\x1B]0;owned\\x07"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\x1B'), std::string::npos);
  Json run_json = Json::parse(r.out);
  EXPECT_EQ(run_json["state"], "failed");
  const Json& answers = run_json["output"];
  EXPECT_EQ(answers["big_event"], "event payload is 102408 bytes, over the limit of 65536 bytes");
  EXPECT_NE(answers["long_event_name"].get<std::string>().find("at most 128 bytes"),
            std::string::npos);
  EXPECT_EQ(answers["nul_event"],
            "event payload: a string holds a NUL character (\\u0000), which cannot be stored");
  EXPECT_EQ(answers["deep_checkpoint"], "checkpoint: nested deeper than 64 levels");
  EXPECT_EQ(answers["big_output"], "output is 2097160 bytes, over the limit of 1048576 bytes");
  // The error is stored as valid UTF-8, bounded; `runs show` escapes it.
  const std::string error = run_json["error"];
  EXPECT_EQ(error.substr(0, 19), "bad \xEF\xBF\xBD utf-8 \x1B[31m");
  EXPECT_LE(error.size(), 8192u);
  r = run({"runs", "show", run_json["id"]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("error   permanent: bad \xEF\xBF\xBD utf-8 \\x1B[31mred\\nforged line"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find('\x1B'), std::string::npos);
}

TEST_F(Cli, TheHostConfigCheckReportsEveryProblem) {
  auto config = write("taskhost.yml",
                      "allow_destinations: [127.0.0.0/8]\nallow_destinations: [0.0.0.0/0]\n"
                      "webhooks: { default_url: 'http://[::1' }\nobject_store: /tmp\n");
  auto r = run({"--config", config.string(), "worker"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(config.string() + ":2:1: allow_destinations: duplicate key"),
            std::string::npos)
      << r.err;
  config = write("taskhost2.yml",
                 "webhooks: { default_url: 'http://[::1' }\nobject_stor_dir: /tmp\n"
                 "sftp: { esi: { address: x } }\n");
  r = run({"--config", config.string(), "worker"});
  EXPECT_EQ(r.exit_code, 2);
  for (const char* problem :
       {":1:26: webhooks.default_url: expected an http(s) URL",
        ":2:1: object_stor_dir: unknown setting; did you mean 'object_store_dir'?",
        "sftp.esi.user: required", "sftp.esi.private_key: required"})
    EXPECT_NE(r.err.find(problem), std::string::npos) << problem << "\n" << r.err;
}

}  // namespace
}  // namespace taskhost
