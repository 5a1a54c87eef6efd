// Executing runs in-process through the real loader, queue and store.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/error.hpp"
#include "engine/submit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

using test::install_fixture;

struct EngineTest : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();

  std::string submit(const InstalledSchema& s, const Json& params = Json::object()) {
    return submit_run(conn, s, params, "test").run_id;
  }
  taskhost::Run run_fixture(const InstalledSchema& s, const Json& params = Json::object()) {
    return test::execute(db.conninfo(), submit(s, params));
  }
  taskhost::Run run_hello(const std::string& id) {
    return test::execute(db.conninfo(), id, BUNDLED_PLUGIN_DIR);
  }
};

const std::string probe_params =
    "params: { mode: { type: string }, items: { type: integer, default: 3 }, "
    "delay_ms: { type: integer, default: 0 } }\n";

TEST_F(EngineTest, HelloRunsAndEverythingIsRecorded) {
  auto hello = test::install_hello(conn);
  std::string id = submit(hello, {{"name", "ops"}, {"count", 5}});
  EXPECT_EQ(get_run(conn, id).state, RunState::queued);
  taskhost::Run r = run_hello(id);

  EXPECT_EQ(r.state, RunState::succeeded);
  EXPECT_EQ(r.attempt, 1);
  EXPECT_EQ(r.output, (Json{{"greeting", "Hello, ops!"}, {"count", 5}, {"attempt", 1}}));
  EXPECT_EQ(r.params, (Json{{"name", "ops"}, {"count", 5}}));
  EXPECT_EQ(r.checkpoint, (Json{{"done", 5}}));
  EXPECT_EQ(r.progress_done, 5);
  EXPECT_EQ(r.progress_total, 5);
  EXPECT_TRUE(r.finished_at.has_value());
  EXPECT_FALSE(r.lease_owner.has_value());

  auto events = run_events(conn, id, 100);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[4].name, "item.done");
  EXPECT_EQ(events[4].payload, (Json{{"item", 5}, {"greeting", "Hello, ops!"}}));

  auto t = run_transitions(conn, id);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].to, "queued");
  EXPECT_EQ(t[1].to, "running");
  EXPECT_EQ(t[1].actor, "test-worker");
  EXPECT_EQ(*t[2].from, "running");
  EXPECT_EQ(t[2].to, "succeeded");
  EXPECT_EQ(t[2].reason, "plugin returned");
}

TEST_F(EngineTest, ARetriedAttemptResumesFromTheCheckpoint) {
  auto hello = test::install_hello(conn);
  std::string id = submit(hello, {{"count", 5}});
  conn.exec("UPDATE taskhost.runs SET checkpoint = '{\"done\": 3}' WHERE id = $1", {id});
  taskhost::Run r = run_hello(id);
  EXPECT_EQ(r.state, RunState::succeeded);
  auto events = run_events(conn, id, 100);
  ASSERT_EQ(events.size(), 2u);  // items 4 and 5 only
  EXPECT_EQ(events[0].payload["item"], 4);
}

TEST_F(EngineTest, SubmitValidatesParamsAndRecordsNothingOnError) {
  auto hello = test::install_hello(conn);
  try {
    submit(hello, {{"count", 0}, {"nme", "x"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    const std::string ref = hello.schema.ref();
    EXPECT_EQ(std::string(e.what()),
              "invalid parameters for " + ref + ":\nparams.nme: unknown parameter for " + ref +
                  "; did you mean 'name'? (declared: name, count)\n"
                  "params.count: expected an integer from 1 to 10000, got 0");
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.runs").integer(0, 0), 0);
}

TEST_F(EngineTest, ThePluginSeesTheHostApi) {
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params);
  taskhost::Run r = run_fixture(probe, {{"mode", "all"}});
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_TRUE(r.output["checkpoint_before"].is_null());
  EXPECT_EQ(r.output["checkpoint_after"], (Json{{"step", 1}}));
  EXPECT_EQ(
      r.output["run"],
      (Json{{"run_id", r.id}, {"attempt", 1}, {"schema", "probe"}, {"schema_version", "1.0.0"}}));
  EXPECT_EQ(r.output["params"], (Json{{"mode", "all"}, {"items", 3}, {"delay_ms", 0}}));
  EXPECT_EQ(r.output["stop"], false);
  // Deny by default: nothing granted, nothing present.
  EXPECT_EQ(r.output["granted"],
            (Json{{"object_storage", false}, {"sftp", false}, {"db", false}, {"http", false}}));
  auto events = run_events(conn, r.id, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].name, "item.failed");
  EXPECT_EQ(events[1].payload["error"], "no such claim");
}

TEST_F(EngineTest, OutputFilesAreAttachedToTheRun) {
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params);
  taskhost::Run r = run_fixture(probe, {{"mode", "slow"}, {"items", 2}});
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  auto files = run_files(conn, r.id);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].name, "result.csv");
  EXPECT_EQ(files[0].content_type, "text/csv");
  EXPECT_EQ(run_file_content(conn, r.id, "result.csv"), "item,status\n1,ok\n2,ok\n");
  EXPECT_THROW(run_file_content(conn, r.id, "nope.csv"), Error);
}

TEST_F(EngineTest, RefusedPluginsFailTheRunAndTheHostKeepsWorking) {
  struct Case {
    std::string so, pin, message;
  };
  const std::vector<Case> cases = {
      {"abi_major.so", "", "was built for plugin ABI 2.0 but this host speaks ABI 1.3"},
      {"abi_minor.so", "", "needs plugin ABI 1.4 but this host provides ABI 1.3"},
      {"no_entry.so", "", "does not export taskhost_plugin_descriptor()"},
      {"bad_magic.so", "", "descriptor magic is 0xdeadbeef"},
      {"probe.so", std::string(64, 'f'),
       "its SHA-256 is " + test::digest_of(test::fixture_dir + "/probe.so") +
           " but the schema pins " + std::string(64, 'f')},
      {"probe.so", "any", "pins sha256: any, which only a host started with --dev accepts"},
  };
  int i = 0;
  for (const auto& c : cases) {
    auto s = install_fixture(conn, "bad-" + std::to_string(i++), c.so,
                             "retry: { max_attempts: 3 }\n", c.pin);
    taskhost::Run r = run_fixture(s);
    EXPECT_EQ(r.state, RunState::failed) << c.so << " is not retried";
    EXPECT_EQ(r.error_code, "plugin_refused");
    EXPECT_NE(r.error->find(c.message), std::string::npos) << *r.error;
    EXPECT_EQ(r.error->rfind(s.schema.ref() + ": plugin ", 0), 0u) << *r.error;
  }
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params);
  EXPECT_EQ(run_fixture(probe, {{"mode", "all"}}).state, RunState::succeeded);
}

TEST_F(EngineTest, AThrowingPluginFailsRetryably) {
  auto s = install_fixture(conn, "throws", "throws.so",
                           "retry: { max_attempts: 2, backoff: fixed, initial: 1h, max: 1h }\n");
  taskhost::Run r = run_fixture(s);
  EXPECT_EQ(r.state, RunState::queued) << "one attempt left";
  EXPECT_EQ(r.error_code, "retryable");
  EXPECT_EQ(r.error, "boom: the disk is on fire");
  EXPECT_EQ(run_transitions(conn, r.id).back().reason, "plugin failed; retry scheduled");
  // Not runnable before its backoff (30 to 60 minutes) has passed.
  auto wait = conn.exec(
      "SELECT extract(epoch FROM run_after - now()) FROM taskhost.runs "
      "WHERE id = $1",
      {r.id});
  double seconds = std::stod(wait.text(0, 0));
  EXPECT_GT(seconds, 1700);
  EXPECT_LT(seconds, 3601);
}

TEST_F(EngineTest, AnErrorCodeFromTheCAbiIsPermanent) {
  auto s =
      install_fixture(conn, "returns-error", "returns_error.so", "retry: { max_attempts: 5 }\n");
  taskhost::Run r = run_fixture(s);
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.attempt, 1);
  EXPECT_EQ(r.error_code, "permanent");
  EXPECT_EQ(r.error, "input file is malformed at line 7");
}

TEST_F(EngineTest, ReservedEventNamesAreRefused) {
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params);
  taskhost::Run r = run_fixture(probe, {{"mode", "bad_event"}});
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "invalid");
  EXPECT_EQ(r.error,
            "event name 'run.succeeded' must look like item.failed, be at most 128 bytes and not "
            "start with run.");
  EXPECT_TRUE(run_events(conn, r.id, 10).empty());
}

TEST_F(EngineTest, TheTimeoutStopsACooperativePlugin) {
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params + "timeout: 1s\n");
  auto start = std::chrono::steady_clock::now();
  taskhost::Run r = run_fixture(probe, {{"mode", "wait_stop"}});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "timeout");
  EXPECT_EQ(r.error, "stopped after the schema's timeout of 1s: stopped as asked");
}

TEST_F(EngineTest, CancelAndPauseStopARunAtItsNextSafePoint) {
  auto probe = install_fixture(conn, "probe", "probe.so", probe_params);
  for (auto op : {cancel_run, pause_run}) {
    std::string id = submit(probe, {{"mode", "slow"}, {"items", 400}, {"delay_ms", 10}});
    const int budget = get_run(conn, id).max_attempts;
    std::thread operator_thread([&] {
      pg::Connection other = db.connect();
      // Once it is running and has checkpointed a few items.
      for (int i = 0; i < 1000; ++i) {
        auto r = get_run(other, id);
        if (r.state == RunState::running && r.checkpoint.is_object() &&
            r.checkpoint.value("done", 0) >= 3)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      op(other, id, "tester", "test");
    });
    taskhost::Run r = test::execute(db.conninfo(), id);
    operator_thread.join();
    auto t = run_transitions(conn, id);
    if (op == cancel_run) {
      EXPECT_EQ(r.state, RunState::cancelled);
      EXPECT_EQ(t[2].to, "cancelling");
    } else {
      EXPECT_EQ(r.state, RunState::paused);
      EXPECT_EQ(t[2].to, "pausing");
      EXPECT_FALSE(r.error.has_value()) << "a pause is not an error: " << *r.error;
      EXPECT_EQ(r.max_attempts - r.attempt, budget) << "a pause is not a failed attempt";
      // Resume continues from the checkpoint.
      int done = r.checkpoint["done"];
      EXPECT_GT(done, 0);
      EXPECT_LT(done, 400);
      resume_run(conn, id, "tester", "go on");
      conn.exec("UPDATE taskhost.runs SET params = params || '{\"delay_ms\": 0}' WHERE id = $1",
                {id});
      r = test::execute(db.conninfo(), id);
      EXPECT_EQ(r.state, RunState::succeeded);
      EXPECT_EQ(r.attempt, 2);
      EXPECT_EQ(run_events(conn, id, 1000).size(), 400u) << "each item exactly once";
      EXPECT_EQ(r.attempt_progress, 400 - done) << "the rate counts this attempt's items only";
    }
    EXPECT_EQ(t[2].actor, "tester");
  }
}

}  // namespace
}  // namespace taskhost
