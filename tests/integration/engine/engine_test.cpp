#include "engine/engine.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

const std::string fixtures = FIXTURE_PLUGIN_DIR;

std::string digest_of(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  std::string d = sha256_hex_fd(fd);
  ::close(fd);
  return d;
}

struct EngineTest : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  Engine fixture_engine{conn, {fixtures, false, "test"}};
  Engine bundled_engine{conn, {BUNDLED_PLUGIN_DIR, false, "test"}};

  // Installs a schema for a fixture plugin pinned to its real digest (or pin).
  InstalledSchema install(const std::string& name, const std::string& so,
                          const std::string& extra = "", std::string pin = "") {
    if (pin.empty()) pin = digest_of(fixtures + "/" + so);
    std::vector<Diagnostic> errors;
    auto s = parse_schema("name: " + name + "\nversion: 1.0.0\nplugin: { path: " + so +
                              ", sha256: " + pin + " }\n" + extra,
                          name, &errors);
    EXPECT_TRUE(s.has_value()) << format_diagnostics(errors);
    install_schema(conn, *s, "test");
    return find_schema(conn, {name, "1.0.0"});
  }

  InstalledSchema install_hello() {
    std::vector<Diagnostic> errors;
    auto s = load_schema_file(BUNDLED_SCHEMA_DIR "/hello.yaml", &errors);
    EXPECT_TRUE(s.has_value()) << format_diagnostics(errors);
    install_schema(conn, *s, "test");
    return find_schema(conn, SchemaRef::parse("hello"));
  }

  taskhost::Run run_fixture(const InstalledSchema& s, const Json& params = Json::object()) {
    return fixture_engine.execute(fixture_engine.submit(s, params));
  }
};

TEST_F(EngineTest, HelloRunsAndEverythingIsRecorded) {
  auto hello = install_hello();
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  std::string id = bundled_engine.submit(hello, {{"name", "ops"}, {"count", 5}});
  EXPECT_EQ(get_run(conn, id).state, RunState::queued);
  taskhost::Run r =
      bundled_engine.execute(id, [&](uint64_t d, uint64_t t) { seen.emplace_back(d, t); });

  EXPECT_EQ(r.state, RunState::succeeded);
  EXPECT_EQ(r.attempt, 1);
  EXPECT_EQ(r.output, (Json{{"greeting", "Hello, ops!"}, {"count", 5}, {"attempt", 1}}));
  EXPECT_EQ(r.params, (Json{{"name", "ops"}, {"count", 5}}));
  EXPECT_EQ(r.checkpoint, (Json{{"done", 5}}));
  EXPECT_EQ(r.progress_done, 5);
  EXPECT_EQ(r.progress_total, 5);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), std::make_pair(uint64_t{5}, uint64_t{5}));
  EXPECT_TRUE(r.finished_at.has_value());

  auto events = run_events(conn, id, 100);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[4].name, "item.done");
  EXPECT_EQ(events[4].payload, (Json{{"item", 5}, {"greeting", "Hello, ops!"}}));

  auto t = run_transitions(conn, id);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].to, "queued");
  EXPECT_EQ(t[1].to, "running");
  EXPECT_EQ(*t[2].from, "running");
  EXPECT_EQ(t[2].to, "succeeded");
  EXPECT_EQ(t[2].actor, "test");
}

TEST_F(EngineTest, ARetriedAttemptResumesFromTheCheckpoint) {
  auto hello = install_hello();
  std::string id = bundled_engine.submit(hello, {{"count", 5}});
  conn.exec("UPDATE taskhost.runs SET checkpoint = '{\"done\": 3}' WHERE id = $1", {id});
  taskhost::Run r = bundled_engine.execute(id);
  EXPECT_EQ(r.state, RunState::succeeded);
  auto events = run_events(conn, id, 100);
  ASSERT_EQ(events.size(), 2u);  // items 4 and 5 only
  EXPECT_EQ(events[0].payload["item"], 4);
}

TEST_F(EngineTest, SubmitValidatesParamsAndRecordsNothingOnError) {
  auto hello = install_hello();
  try {
    bundled_engine.submit(hello, {{"count", 0}, {"nme", "x"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    EXPECT_STREQ(e.what(),
                 "invalid parameters for hello@1.0.0:\n"
                 "params.nme: unknown parameter for hello@1.0.0 (declared: name, count)\n"
                 "params.count: expected an integer from 1 to 10000, got 0");
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.runs").integer(0, 0), 0);
}

TEST_F(EngineTest, ThePluginSeesTheHostApi) {
  auto probe = install("probe", "probe.so", "params: { mode: { type: string } }\n");
  taskhost::Run r = run_fixture(probe, {{"mode", "all"}});
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_TRUE(r.output["checkpoint_before"].is_null());
  EXPECT_EQ(r.output["checkpoint_after"], (Json{{"step", 1}}));
  EXPECT_EQ(
      r.output["run"],
      (Json{{"run_id", r.id}, {"attempt", 1}, {"schema", "probe"}, {"schema_version", "1.0.0"}}));
  EXPECT_EQ(r.output["params"], (Json{{"mode", "all"}}));
  EXPECT_EQ(r.output["stop"], false);
  // Deny by default: nothing granted, nothing present.
  EXPECT_EQ(r.output["granted"],
            (Json{{"object_storage", false}, {"sftp", false}, {"sql", false}, {"http", false}}));
  auto events = run_events(conn, r.id, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].name, "item.failed");
  EXPECT_EQ(events[1].payload["error"], "no such claim");
}

TEST_F(EngineTest, RefusedPluginsFailTheRunAndTheHostKeepsWorking) {
  struct Case {
    std::string so, pin, message;
  };
  const std::vector<Case> cases = {
      {"abi_major.so", "", "was built for plugin ABI 2.0 but this host speaks ABI 1.0"},
      {"abi_minor.so", "", "needs plugin ABI 1.1 but this host provides ABI 1.0"},
      {"no_entry.so", "", "does not export taskhost_plugin_descriptor()"},
      {"bad_magic.so", "", "descriptor magic is 0xdeadbeef"},
      {"probe.so", std::string(64, 'f'),
       "its SHA-256 is " + digest_of(fixtures + "/probe.so") + " but the schema pins " +
           std::string(64, 'f')},
      {"probe.so", "any", "pins sha256: any, which only a host started with --dev accepts"},
  };
  int i = 0;
  for (const auto& c : cases) {
    auto s = install("bad-" + std::to_string(i++), c.so, "", c.pin);
    taskhost::Run r = run_fixture(s);
    EXPECT_EQ(r.state, RunState::failed) << c.so;
    EXPECT_EQ(r.error_code, "plugin_refused");
    EXPECT_NE(r.error->find(c.message), std::string::npos) << *r.error;
    EXPECT_EQ(r.error->rfind(s.schema.ref() + ": plugin ", 0), 0u) << *r.error;
  }
  auto probe = install("probe", "probe.so", "params: { mode: { type: string } }\n");
  EXPECT_EQ(run_fixture(probe, {{"mode", "all"}}).state, RunState::succeeded);
}

TEST_F(EngineTest, AThrowingPluginFailsRetryably) {
  taskhost::Run r = run_fixture(install("throws", "throws.so"));
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "retryable");
  EXPECT_EQ(r.error, "boom: the disk is on fire");
}

TEST_F(EngineTest, AnErrorCodeFromTheCAbiIsRecorded) {
  taskhost::Run r = run_fixture(install("returns-error", "returns_error.so"));
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "permanent");
  EXPECT_EQ(r.error, "input file is malformed at line 7");
  EXPECT_EQ(run_transitions(conn, r.id).back().reason, "plugin failed");
}

TEST_F(EngineTest, ReservedEventNamesAreRefused) {
  auto probe = install("probe", "probe.so", "params: { mode: { type: string } }\n");
  taskhost::Run r = run_fixture(probe, {{"mode", "bad_event"}});
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "invalid");
  EXPECT_EQ(r.error,
            "event name 'run.succeeded' must look like item.failed and not start with run.");
  EXPECT_TRUE(run_events(conn, r.id, 10).empty());
}

TEST_F(EngineTest, TheTimeoutStopsACooperativePlugin) {
  auto probe = install("probe", "probe.so", "params: { mode: { type: string } }\ntimeout: 1s\n");
  auto start = std::chrono::steady_clock::now();
  taskhost::Run r = run_fixture(probe, {{"mode", "wait_stop"}});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "timeout");
  EXPECT_EQ(r.error, "stopped after the schema's timeout of 1s: stopped as asked");
}

TEST_F(EngineTest, ACancelRequestStopsTheRunAtItsNextSafePoint) {
  auto probe = install("probe", "probe.so", "params: { mode: { type: string } }\n");
  std::string id = fixture_engine.submit(probe, {{"mode", "wait_stop"}});
  // Stands in for `runs cancel` (engine issue): another session asks to stop.
  std::thread canceller([&] {
    pg::Connection other = db.connect();
    for (int i = 0; i < 200; ++i) {
      auto r = other.exec(
          "UPDATE taskhost.runs SET state = 'cancelling' WHERE id = $1 AND state = 'running'",
          {id});
      if (r.affected() == 1) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  });
  taskhost::Run r = fixture_engine.execute(id);
  canceller.join();
  EXPECT_EQ(r.state, RunState::cancelled);
  EXPECT_EQ(run_transitions(conn, id).back().from, "cancelling");
}

TEST_F(EngineTest, WritesOfAnAttemptThatLostTheRunAreDiscarded) {
  auto hello = install_hello();
  std::string id = bundled_engine.submit(hello, Json::object());
  RunWriter current(conn, id, "worker-a");
  EXPECT_EQ(current.start(), 1);
  RunWriter stale(conn, id, "worker-b");  // never started: attempt 0
  try {
    stale.checkpoint("{\"x\": 1}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
  }
  EXPECT_THROW(stale.emit("item.done", "{}"), Error);
  EXPECT_THROW(stale.finish(RunState::succeeded, std::nullopt, std::nullopt, "x"), Error);
  EXPECT_THROW(RunWriter(conn, id, "c").start(), Error);  // not queued any more
  current.finish(RunState::succeeded, std::nullopt, std::nullopt, "done");
  EXPECT_THROW(current.checkpoint("{}"), Error);  // finished runs are closed
  taskhost::Run r = get_run(conn, id);
  EXPECT_TRUE(r.checkpoint.is_null());
  EXPECT_TRUE(run_events(conn, id, 10).empty());
  EXPECT_EQ(r.state, RunState::succeeded);
}

}  // namespace
}  // namespace taskhost
