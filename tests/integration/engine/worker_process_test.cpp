// Workers as separate processes, killed, stopped and cut off from their
// database the way a production day does it.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "engine/submit.hpp"
#include "store/cluster.hpp"
#include "store/migrate.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"
#include "support/worker_process.hpp"

namespace taskhost {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using test::WorkerProcess;

template <typename F>
bool eventually(F&& condition, std::chrono::seconds limit) {
  for (auto end = Clock::now() + limit; Clock::now() < end;) {
    if (condition()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

const std::string slow_schema =
    "params: { mode: { type: string, default: slow }, items: { type: integer }, "
    "delay_ms: { type: integer } }\n"
    "retry: { max_attempts: 3, backoff: fixed, initial: 1s }\n";

struct Workers : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  // Workers given these arguments may run schemas with isolation: none,
  // for tests of the in-process runner and of the queue itself.
  const std::string in_process_config = [] {
    auto path = std::filesystem::temp_directory_path() /
                ("taskhost-in-process-" + std::to_string(::getpid()) + ".yml");
    std::ofstream(path) << "sandbox: { allow_in_process: true }\n";
    return path.string();
  }();
  std::vector<std::string> in_process(std::vector<std::string> args = {}) const {
    args.insert(args.begin(), {"--config", in_process_config});
    return args;
  }

  // Asserts that each item of a run is recorded exactly once.
  void expect_items_once(const std::string& id, int items) {
    auto events = run_events(conn, id, 10 * items);
    std::multiset<int> seen;
    for (const auto& e : events) seen.insert(e.payload["item"].get<int>());
    EXPECT_EQ(events.size(), static_cast<size_t>(items));
    for (int i = 1; i <= items; ++i) EXPECT_EQ(seen.count(i), 1u) << "item " << i;
  }
  bool progressed(const std::string& id, int64_t done) {
    return get_run(conn, id).progress_done.value_or(0) >= done;
  }
};

// One worker executes many plugins in turn, each run with its own plugin's
// code, and a new reviewed build written over a plugin file is what runs next.
TEST_F(Workers, EveryRunExecutesItsOwnPluginsCode) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("taskhost-plugins-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* so : {"noop.so", "probe.so"})
    fs::copy_file(test::fixture_dir + "/" + so, dir / so, fs::copy_options::overwrite_existing);
  fs::copy_file(test::fixture_dir + "/noop.so", dir / "swap.so",
                fs::copy_options::overwrite_existing);
  auto install = [&](const std::string& name, const std::string& version, const std::string& so,
                     const std::string& extra = "") {
    std::vector<Diagnostic> errors;
    auto s = parse_schema("name: " + name + "\nversion: " + version + "\nplugin: { path: " + so +
                              ", sha256: " + test::digest_of((dir / so).string()) +
                              " }\nisolation: none\n" + extra,
                          name, &errors);
    EXPECT_TRUE(s) << format_diagnostics(errors);
    install_schema(conn, *s, "test");
    return find_schema(conn, {name, version});
  };
  const std::string probe_params =
      "params: { mode: { type: string }, items: { type: integer }, delay_ms: { type: integer } "
      "}\n";
  auto noop = install("noop", "1.0.0", "noop.so");
  auto probe = install("probe", "1.0.0", "probe.so", probe_params);
  auto swap_old = install("swap", "1.0.0", "swap.so");
  const Json slow = {{"mode", "slow"}, {"items", 1}, {"delay_ms", 0}};

  WorkerProcess worker(db.conninfo(), "w-plugins", in_process({"--concurrency", "1"}),
                       dir.string());
  auto finished = [&](const std::string& id) {
    EXPECT_TRUE(eventually([&] { return is_final(get_run(conn, id).state); }, 30s)) << id;
    return get_run(conn, id);
  };
  for (int i = 0; i < 10; ++i) {
    auto a = finished(submit_run(conn, noop, Json::object(), "t").run_id);
    EXPECT_EQ(a.state, RunState::succeeded) << a.error.value_or("");
    EXPECT_TRUE(a.output.is_null()) << a.output;
    auto b = finished(submit_run(conn, probe, slow, "t").run_id);
    EXPECT_EQ(b.state, RunState::succeeded) << b.error.value_or("");
    EXPECT_EQ(b.output, (Json{{"items", 1}, {"attempt", 1}}));
  }
  EXPECT_EQ(finished(submit_run(conn, swap_old, Json::object(), "t").run_id).state,
            RunState::succeeded);

  {  // The new build goes over the old file, as `cp` does (same inode).
    std::ifstream in(dir / "probe.so", std::ios::binary);
    std::ofstream out(dir / "swap.so", std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  auto swap_new = install("swap", "2.0.0", "swap.so", probe_params);
  auto renewed = finished(submit_run(conn, swap_new, slow, "t").run_id);
  EXPECT_EQ(renewed.state, RunState::succeeded) << renewed.error.value_or("");
  EXPECT_EQ(renewed.output, (Json{{"items", 1}, {"attempt", 1}}));
  auto stale = finished(submit_run(conn, swap_old, Json::object(), "t").run_id);
  EXPECT_EQ(stale.state, RunState::failed);
  EXPECT_EQ(stale.error_code, "plugin_refused");
  fs::remove_all(dir);
}

// In-process: these are the worker's own defences, for when no sandbox
// stands between it and the plugin.
const std::string misbehave_schema =
    "params: { mode: { type: string }, items: { type: integer, default: 1 }, "
    "delay_ms: { type: integer, default: 0 } }\nisolation: none\n";

// A plugin error the database cannot store (invalid UTF-8) once made every
// completion batch fail forever: the worker stopped serving anyone.
TEST_F(Workers, AnUnstorableOutcomeDoesNotStopTheWorker) {
  auto probe = test::install_fixture(conn, "probe", "probe.so", misbehave_schema);
  WorkerProcess worker(db.conninfo(), "w-utf8", in_process({"--concurrency", "2"}));
  std::string bad = submit_run(conn, probe, {{"mode", "bad_utf8"}}, "t").run_id;
  std::string good = submit_run(conn, probe, {{"mode", "slow"}, {"items", 2}}, "t").run_id;
  ASSERT_TRUE(eventually([&] { return is_final(get_run(conn, bad).state); }, 30s));
  ASSERT_TRUE(eventually([&] { return is_final(get_run(conn, good).state); }, 30s));
  EXPECT_EQ(get_run(conn, bad).state, RunState::failed);
  EXPECT_EQ(get_run(conn, good).state, RunState::succeeded);
  std::string after = submit_run(conn, probe, {{"mode", "slow"}, {"items", 1}}, "t").run_id;
  EXPECT_TRUE(eventually([&] { return get_run(conn, after).state == RunState::succeeded; }, 30s));
  EXPECT_EQ(worker.stop(), 0);
}

// A run whose plugin ignores its timeout is rescued and claimed again by the
// same worker while the old attempt still holds a thread: the worker must
// count that thread as busy, not claim a run it has no free slot for.
TEST_F(Workers, AWorkerClaimsOnlyWhatAFreeSlotWillExecute) {
  auto stubborn = test::install_fixture(
      conn, "stubborn", "probe.so",
      misbehave_schema + "timeout: 1s\nretry: { max_attempts: 2, backoff: fixed, initial: 1s }\n");
  auto probe = test::install_fixture(conn, "probe", "probe.so", misbehave_schema);
  WorkerProcess worker(db.conninfo(), "w-slots",
                       in_process({"--concurrency", "2", "--grace", "1s"}));
  std::string r =
      submit_run(conn, stubborn, {{"mode", "ignore_stop"}, {"delay_ms", 12000}}, "t").run_id;
  // Attempt 1 overruns timeout + grace, is rescued and claimed again here.
  ASSERT_TRUE(eventually(
      [&] {
        auto run = get_run(conn, r);
        return run.attempt == 2 && run.state == RunState::running;
      },
      30s));
  // Both threads are busy: a new run must wait queued, not be held unexecuted.
  std::string innocent = submit_run(conn, probe, {{"mode", "slow"}, {"items", 1}}, "t").run_id;
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(get_run(conn, innocent).state, RunState::queued);
  EXPECT_TRUE(
      eventually([&] { return get_run(conn, innocent).state == RunState::succeeded; }, 60s));
  EXPECT_EQ(worker.stop(), 0);
}

// exit() from a plugin is not a clean shutdown: a supervisor must restart
// the worker, so its status is not 0.
TEST_F(Workers, APluginCallingExitEndsTheWorkerWithAFailure) {
  auto probe = test::install_fixture(conn, "probe", "probe.so", misbehave_schema);
  WorkerProcess worker(db.conninfo(), "w-exit", in_process());
  submit_run(conn, probe, {{"mode", "exit"}}, "t");
  EXPECT_EQ(worker.wait(), 70);
}

// A plugin closing the worker's descriptors once wedged it in a loop of
// "Bad file descriptor": it now stops with an error status.
TEST_F(Workers, ClosedDescriptorsStopTheWorkerWithAnError) {
  auto probe = test::install_fixture(conn, "probe", "probe.so", misbehave_schema);
  WorkerProcess worker(db.conninfo(), "w-fds", in_process());
  submit_run(conn, probe, {{"mode", "close_fds"}}, "t");
  int status = worker.wait();
  EXPECT_NE(status, 0);
  EXPECT_LT(status, 128) << "an exit with an error, not a crash";
}

TEST_F(Workers, AKilledWorkersRunIsRescuedAndResumesFromItsCheckpoint) {
  auto slow = test::install_fixture(conn, "slow", "probe.so", slow_schema);
  std::string id = submit_run(conn, slow, {{"items", 60}, {"delay_ms", 40}}, "t").run_id;
  WorkerProcess a(db.conninfo(), "worker-a");
  ASSERT_TRUE(eventually([&] { return progressed(id, 10); }, 60s));
  a.signal(SIGKILL);
  EXPECT_EQ(a.wait(), 128 + SIGKILL);
  int64_t done_when_killed = get_run(conn, id).progress_done.value_or(0);

  WorkerProcess b(db.conninfo(), "worker-b");
  ASSERT_TRUE(eventually([&] { return is_final(get_run(conn, id).state); }, 90s));
  taskhost::Run r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.attempt, 2);
  EXPECT_EQ(r.output["attempt"], 2);
  expect_items_once(id, 60);
  auto t = run_transitions(conn, id);
  std::vector<std::string> path;
  for (const auto& x : t) path.push_back(x.to + "/" + x.actor);
  EXPECT_EQ(path, (std::vector<std::string>{"queued/t", "running/worker-a", "queued/worker-b",
                                            "running/worker-b", "succeeded/worker-b"}));
  EXPECT_EQ(t[2].reason, "rescued: lease_expired");
  // The second attempt started after the checkpoint, not from scratch.
  auto first_of_b = conn.exec(
      "SELECT min((payload->>'item')::int) FROM taskhost.run_events WHERE run_id = $1 AND "
      "attempt = 2 AND NOT superseded",
      {id});
  EXPECT_GE(first_of_b.integer(0, 0), done_when_killed);
  EXPECT_EQ(b.stop(), 0);
}

TEST_F(Workers, AStoppedWorkersLateWritesChangeNothing) {
  auto slow = test::install_fixture(conn, "slow", "probe.so", slow_schema);
  std::string id = submit_run(conn, slow, {{"items", 40}, {"delay_ms", 40}}, "t").run_id;
  WorkerProcess a(db.conninfo(), "worker-a");
  ASSERT_TRUE(eventually([&] { return progressed(id, 5); }, 60s));
  a.signal(SIGSTOP);
  WorkerProcess b(db.conninfo(), "worker-b");
  ASSERT_TRUE(eventually([&] { return get_run(conn, id).state == RunState::succeeded; }, 90s));
  a.signal(SIGCONT);  // wakes up believing it still owns attempt 1
  std::this_thread::sleep_for(3s);
  taskhost::Run r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::succeeded);
  EXPECT_EQ(r.attempt, 2);
  EXPECT_EQ(r.checkpoint, (Json{{"done", 40}}));
  expect_items_once(id, 40);
  EXPECT_EQ(run_transitions(conn, id).back().actor, "worker-b");
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

TEST_F(Workers, FourWorkersCompleteTenThousandRunsExactlyOnce) {
  // The queue's guarantee, not the sandbox's: in-process, so that 10,000
  // attempts take seconds, not a sandbox spawn each.
  auto noop = test::install_fixture(conn, "noop", "noop.so", "isolation: none\n");
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<SubmitRequest> reqs(1000);
    for (auto& q : reqs) {
      q.schema = &noop;
      q.params = Json::object();
      q.actor = "t";
    }
    enqueue(conn, reqs);
  }
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 4; ++i)
    workers.push_back(std::make_unique<WorkerProcess>(db.conninfo(), "w" + std::to_string(i),
                                                      in_process({"--concurrency", "8"})));
  auto succeeded = [&] {
    return conn.exec("SELECT count(*) FROM taskhost.runs WHERE state = 'succeeded'").integer(0, 0);
  };
  ASSERT_TRUE(eventually([&] { return succeeded() == 10000; }, 240s)) << succeeded();
  for (auto& w : workers) EXPECT_EQ(w->stop(), 0);
  auto check = conn.exec(
      "SELECT count(*) FILTER (WHERE attempt <> 1), "
      "  (SELECT count(*) FROM taskhost.run_transitions WHERE to_state = 'running'), "
      "  (SELECT count(DISTINCT (run_id, attempt)) FROM taskhost.run_transitions "
      "   WHERE to_state = 'running'), "
      "  (SELECT count(DISTINCT actor) FROM taskhost.run_transitions WHERE to_state = 'running') "
      "FROM taskhost.runs");
  EXPECT_EQ(check.integer(0, 0), 0) << "every run completed on its first attempt";
  EXPECT_EQ(check.integer(0, 1), 10000) << "claimed exactly once each";
  EXPECT_EQ(check.integer(0, 2), 10000);
  EXPECT_GE(check.integer(0, 3), 2) << "the work was shared";
}

TEST(WorkersAndPostgres, WorkersSurviveAPostgresRestart) {
  // A cluster of its own: the shared test cluster must not restart under
  // other tests.
  auto home =
      std::filesystem::temp_directory_path() / ("taskhost-restart-" + std::to_string(::getpid()));
  EmbeddedCluster cluster(home);
  std::string conninfo = cluster.ensure_running();
  {
    pg::Connection owner(cluster.owner_conninfo());
    migrate(owner, bundled_migrations());
    pg::Connection conn(conninfo);
    auto slow = test::install_fixture(conn, "slow", "probe.so",
                                      "params: { mode: { type: string, default: slow }, items: "
                                      "{ type: integer }, delay_ms: { type: integer } }\n"
                                      "retry: { max_attempts: 10, backoff: fixed, initial: 1s }\n");
    for (int i = 0; i < 100; ++i) submit_run(conn, slow, {{"items", 3}, {"delay_ms", 30}}, "t");
  }
  {
    WorkerProcess a(conninfo, "a"), b(conninfo, "b");
    // Stopped once both work, not after a fixed pause: a worker that has
    // not connected yet when the server goes away exits (a start-up error),
    // which is not what this test is about.
    {
      pg::Connection conn(conninfo);
      ASSERT_TRUE(eventually(
          [&] {
            return conn.exec(
                           "SELECT count(DISTINCT actor) FROM taskhost.run_transitions "
                           "WHERE to_state = 'running'")
                       .integer(0, 0) == 2;
          },
          60s));
    }
    cluster.stop();
    std::this_thread::sleep_for(1s);
    cluster.ensure_running();
    pg::Connection conn(conninfo);
    auto unfinished = [&] {
      return conn
          .exec("SELECT count(*) FROM taskhost.runs WHERE state NOT IN ('succeeded', 'failed')")
          .integer(0, 0);
    };
    EXPECT_TRUE(eventually([&] { return unfinished() == 0; }, 180s)) << unfinished();
    EXPECT_EQ(
        conn.exec("SELECT count(*) FROM taskhost.runs WHERE state = 'succeeded'").integer(0, 0),
        100);
    EXPECT_EQ(a.stop(), 0);
    EXPECT_EQ(b.stop(), 0);
  }
  cluster.stop();
  std::filesystem::remove_all(home);
}

}  // namespace
}  // namespace taskhost
