// Runs in the sandbox through the real queue and store: what ends a plugin
// process is recorded as the run's error, the retry policy applies, and
// the host goes on serving other runs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "engine/submit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

using test::install_fixture;

struct SandboxEngineTest : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();

  taskhost::Run run(const InstalledSchema& s, const Json& params, const HostConfig& config = {}) {
    return test::execute(db.conninfo(), submit_run(conn, s, params, "test").run_id,
                         test::fixture_dir, config);
  }
};

const std::string escape_params =
    "params: { mode: { type: string }, arg: { type: string, default: '' } }\n";

TEST_F(SandboxEngineTest, ACrashFailsTheAttemptAndTheRunFollowsItsRetryPolicy) {
  auto s = install_fixture(
      conn, "escape", "escape.so",
      escape_params + "retry: { max_attempts: 2, backoff: fixed, initial: 1h, max: 1h }\n");
  taskhost::Run r = run(s, {{"mode", "segv"}});
  EXPECT_EQ(r.state, RunState::queued) << "one attempt left";
  EXPECT_EQ(r.error_code, "retryable");
  EXPECT_EQ(r.error, "plugin process died: SIGSEGV");
  // The host goes on: a normal run succeeds.
  auto noop = install_fixture(conn, "noop", "noop.so");
  EXPECT_EQ(run(noop, Json::object()).state, RunState::succeeded);
}

TEST_F(SandboxEngineTest, ARefusedSyscallIsNamedAndNotRetried) {
  auto s =
      install_fixture(conn, "escape", "escape.so", escape_params + "retry: { max_attempts: 3 }\n");
  taskhost::Run r = run(s, {{"mode", "tcp"}, {"arg", "5432"}});
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error, "sandbox: syscall socket not allowed");
}

TEST_F(SandboxEngineTest, ThePlatformsDatabaseSocketIsOutOfReach) {
  // The embedded cluster's unix socket, which this host itself connects to.
  std::string socket;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(std::getenv("TASKHOST_TEST_HOME")) + "/run"))
    if (e.path().filename().string().starts_with(".s.PGSQL.") && e.path().extension() != ".lock")
      socket = e.path();
  ASSERT_FALSE(socket.empty());
  auto s = install_fixture(conn, "escape", "escape.so", escape_params);
  taskhost::Run r = run(s, {{"mode", "unix"}, {"arg", socket}});
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error, "sandbox: syscall socket not allowed");
}

TEST_F(SandboxEngineTest, TheSchemasLimitsOverTheHostsEndTheAttemptNamingTheLimit) {
  HostConfig host;
  host.sandbox_limits.cpu_time = 3600;
  host.sandbox_limits.tmp = 64ull << 20;
  auto s = install_fixture(conn, "escape", "escape.so",
                           escape_params + "limits: { cpu_time: 1s, tmp: 8MiB }\n");
  EXPECT_EQ(run(s, {{"mode", "busy"}}, host).error, "cpu_time limit 1s exceeded");
  EXPECT_EQ(run(s, {{"mode", "write_tmp"}, {"arg", std::to_string(32u << 20)}}, host).error,
            "tmp limit 8MiB exceeded");
  // Where the schema sets none, the host's.
  auto t = install_fixture(conn, "escape2", "escape.so", escape_params);
  EXPECT_EQ(run(t, {{"mode", "write_tmp"}, {"arg", std::to_string(128u << 20)}}, host).error,
            "tmp limit 64MiB exceeded");
}

TEST_F(SandboxEngineTest, IsolationNoneOnlyWhereTheHostConfigAllowsItAndAudited) {
  auto s = install_fixture(conn, "noop", "noop.so", "isolation: none\n");
  taskhost::Run r = run(s, Json::object());
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "plugin_refused");
  EXPECT_NE(r.error->find("isolation: none, which only a host whose config says sandbox: { "
                          "allow_in_process: true } accepts"),
            std::string::npos)
      << *r.error;

  HostConfig allow;
  allow.allow_in_process = true;
  r = run(s, Json::object(), allow);
  EXPECT_EQ(r.state, RunState::succeeded);
  AuditFilter f;
  f.run_id = r.id;
  f.action = "run.succeeded";
  auto entries = list_audit(conn, f);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].detail["reason"], "plugin returned; isolation: none");
}

}  // namespace
}  // namespace taskhost
