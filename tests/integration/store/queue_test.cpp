// The queue's rules, one statement at a time, against a real PostgreSQL.
#include "store/queue.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "engine/scheduler.hpp"
#include "engine/submit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

using namespace std::chrono_literals;

struct Queue : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  InstalledSchema noop = test::install_fixture(
      conn, "noop", "noop.so", "retry: { max_attempts: 2, backoff: fixed, initial: 1s }\n");

  std::string submit(const InstalledSchema& s = {}) {
    return submit_run(conn, s.id ? s : noop, Json::object(), "test").run_id;
  }
  ClaimedRun claim_one(const std::string& owner, std::chrono::milliseconds lease = 60s) {
    auto c = claim(conn, owner, 1, lease);
    EXPECT_EQ(c.size(), 1u);
    return c.empty() ? ClaimedRun{} : c.front();
  }
  // A run of schema s (one with a chain) that succeeded with output: its id.
  std::string succeed_with_output(const InstalledSchema& s, const std::string& output) {
    std::string id = submit(s);
    auto c = claim_one("w");
    RunWriter(conn, id, c.attempt).output(output);
    Completion ok;
    ok.run_id = id;
    ok.attempt = c.attempt;
    ok.succeeded = true;
    ok.has_chain = true;
    complete(conn, "w", {ok});
    return id;
  }
  Completion failure(const ClaimedRun& c, bool retryable) {
    Completion f;
    f.run_id = c.id;
    f.attempt = c.attempt;
    f.retryable = retryable;
    f.error_code = "io";
    f.error = "network down";
    f.reason = "plugin failed";
    return f;
  }
  void expire(const std::string& id) {
    conn.exec(
        "UPDATE taskhost.runs SET lease_expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        {id});
  }
  // As if the stop request of run id had been ignored past a 30 s grace.
  void ignore_stop(const std::string& id) {
    conn.exec(
        "UPDATE taskhost.runs SET stop_requested_at = now() - interval '31 seconds' "
        "WHERE id = $1",
        {id});
  }
  void make_runnable(const std::string& id) {
    conn.exec("UPDATE taskhost.runs SET run_after = now() WHERE id = $1", {id});
  }
  std::string state(const std::string& id) { return to_string(get_run(conn, id).state); }
};

TEST_F(Queue, ClaimTakesEachRunOnceAndRecordsTheAttempt) {
  std::string a = submit(), b = submit();
  auto first = claim(conn, "w1", 10, 60s);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].attempt, 1);
  EXPECT_TRUE(claim(conn, "w2", 10, 60s).empty());
  taskhost::Run r = get_run(conn, a);
  EXPECT_EQ(r.state, RunState::running);
  EXPECT_EQ(r.lease_owner, "w1");
  EXPECT_EQ(run_transitions(conn, b).back().actor, "w1");
}

TEST_F(Queue, AFailureRetriesAfterBackoffUntilAttemptsRunOut) {
  std::string id = submit();
  auto c = claim_one("w1");
  EXPECT_TRUE(complete(conn, "w1", {failure(c, true)}).empty());
  taskhost::Run r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::queued);
  double wait = std::stod(
      conn.exec("SELECT extract(epoch FROM run_after - now()) FROM taskhost.runs WHERE id = $1",
                {id})
          .text(0, 0));
  EXPECT_GT(wait, 0.3);  // 1 s with 50-100% jitter
  EXPECT_LE(wait, 1.0);
  EXPECT_TRUE(claim(conn, "w1", 1, 60s).empty()) << "not before its backoff";
  make_runnable(id);
  c = claim_one("w1");
  EXPECT_EQ(c.attempt, 2);
  complete(conn, "w1", {failure(c, true)});
  r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::failed) << "2 of 2 attempts used";
  EXPECT_EQ(r.error, "network down");
}

TEST_F(Queue, APermanentFailureIsNotRetried) {
  std::string id = submit();
  complete(conn, "w1", {failure(claim_one("w1"), false)});
  EXPECT_EQ(state(id), "failed");
}

TEST_F(Queue, IdempotencyKeyUnderFiftyConcurrentSubmits) {
  std::vector<std::string> ids(50);
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i)
    threads.emplace_back([&, i] {
      pg::Connection c = db.connect();
      ids[i] = submit_run(c, noop, Json::object(), "t" + std::to_string(i), "claim-526-42").run_id;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.runs").integer(0, 0), 1);
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.run_transitions").integer(0, 0), 1);
  // Another schema may use the same key.
  auto other = test::install_fixture(conn, "other", "noop.so");
  EXPECT_NE(submit_run(conn, other, Json::object(), "t", "claim-526-42").run_id, ids[0]);
}

// A key names one request: the same parameters get the earlier run back,
// other parameters are a conflict naming the key (as Stripe's keys are).
TEST_F(Queue, AnIdempotencyKeyWithOtherParametersIsAConflict) {
  auto probe =
      test::install_fixture(conn, "probe", "probe.so", "params: { mode: { type: string } }\n");
  std::string first = submit_run(conn, probe, {{"mode", "a"}}, "t", "k-1").run_id;
  EXPECT_EQ(submit_run(conn, probe, {{"mode", "a"}}, "t", "k-1").run_id, first);
  try {
    submit_run(conn, probe, {{"mode", "b"}}, "t", "k-1");
    ADD_FAILURE() << "other parameters under the same key were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_EQ(std::string(e.what()), "idempotency key 'k-1' was used for run " + first +
                                         " of probe with different parameters; use a new key");
  }
  EXPECT_EQ(conn.exec("SELECT count(*) FROM taskhost.runs").integer(0, 0), 1);
}

// A pause stops an attempt as asked: it is not a failure, costs no retry and
// leaves no error behind.
TEST_F(Queue, APausedAttemptCostsNoRetry) {
  std::string id = submit();  // max_attempts: 2
  auto c = claim_one("w");
  pause_run(conn, id, "op", "lunch");
  Completion stopped = failure(c, true);
  stopped.error_code = "cancelled";
  stopped.error = "stopped as asked";
  complete(conn, "w", {stopped});
  auto r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::paused);
  EXPECT_FALSE(r.error.has_value()) << *r.error;
  EXPECT_FALSE(r.error_code.has_value());
  EXPECT_EQ(r.max_attempts - r.attempt, 2) << "the whole budget is left";
  resume_run(conn, id, "op", "back");
  // The same when the plugin ignored the pause and rescue ended the attempt.
  claim_one("w");
  pause_run(conn, id, "op", "again");
  ignore_stop(id);
  rescue(conn, "sweeper", 30s);
  r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::paused);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_EQ(r.max_attempts - r.attempt, 2);
  resume_run(conn, id, "op", "back");
  // Two failures are still allowed: the first is retried, the second is final.
  complete(conn, "w", {failure(claim_one("w"), true)});
  EXPECT_EQ(state(id), "queued");
  make_runnable(id);
  complete(conn, "w", {failure(claim_one("w"), true)});
  EXPECT_EQ(state(id), "failed");
}

// A cancel the plugin ignored past the grace period says so, with a code.
TEST_F(Queue, AnIgnoredCancelLeavesACodedError) {
  std::string id = submit();
  claim_one("w");
  cancel_run(conn, id, "op", "stop");
  ignore_stop(id);
  rescue(conn, "sweeper", 30s);
  auto r = get_run(conn, id);
  EXPECT_EQ(r.state, RunState::cancelled);
  EXPECT_EQ(r.error_code, "stop_ignored");
  EXPECT_EQ(r.error, "ignored the stop request for longer than the grace period");
}

TEST_F(Queue, ConcurrencyLimitHoldsAcrossWorkers) {
  auto one = test::install_fixture(conn, "one-at-a-time", "noop.so", "concurrency: 1\n");
  for (int i = 0; i < 3; ++i) submit(one);
  EXPECT_EQ(claim(conn, "w1", 10, 60s).size(), 1u);
  EXPECT_EQ(claim(conn, "w2", 10, 60s).size(), 0u);
}

// River-style rescue matrix: what a sweep does to runs in each situation.
TEST_F(Queue, RescueMatrix) {
  auto capped = test::install_fixture(conn, "capped", "noop.so", "timeout: 1s\n");
  // Lease still valid: untouched.
  std::string fresh = submit();
  claim_one("w1");
  EXPECT_EQ(rescue(conn, "sweeper", 30s), 0);
  EXPECT_EQ(state(fresh), "running");
  // Just expired, attempts left: back to queued, attempt kept until claimed.
  expire(fresh);
  EXPECT_EQ(rescue(conn, "sweeper", 30s), 1);
  taskhost::Run r = get_run(conn, fresh);
  EXPECT_EQ(r.state, RunState::queued);
  EXPECT_EQ(r.error_code, "lease_expired");
  EXPECT_EQ(r.error, "the worker w1 stopped renewing its lease (crashed, stopped or cut off)");
  EXPECT_EQ(run_transitions(conn, fresh).back().reason, "rescued: lease_expired");
  // The old owner is fenced out: its heartbeat and completion change nothing.
  EXPECT_EQ(heartbeat(conn, "w1", {fresh}, 60s).lost, std::vector<std::string>{fresh});
  Completion late;
  late.run_id = fresh;
  late.attempt = 1;
  late.succeeded = true;
  EXPECT_EQ(complete(conn, "w1", {late}), std::vector<std::string>{fresh});
  EXPECT_EQ(state(fresh), "queued");
  // Expired at max attempts: failed.
  make_runnable(fresh);
  claim_one("w2");
  expire(fresh);
  rescue(conn, "sweeper", 30s);
  EXPECT_EQ(state(fresh), "failed");
  // Expired with a pending cancel: cancelled; with a pending pause: paused.
  std::string c = submit(), p = submit();
  claim(conn, "w3", 2, 60s);
  cancel_run(conn, c, "op", "stop");
  pause_run(conn, p, "op", "hold");
  EXPECT_EQ(heartbeat(conn, "w3", {c, p}, 60s).stop_requested.size(), 2u);
  expire(c);
  expire(p);
  rescue(conn, "sweeper", 30s);
  EXPECT_EQ(state(c), "cancelled");
  EXPECT_EQ(state(p), "paused");
  // A stop request ignored past the grace period ends the attempt anyway.
  std::string stubborn = submit();
  claim_one("w4");
  cancel_run(conn, stubborn, "op", "stop");
  EXPECT_EQ(rescue(conn, "sweeper", 30s), 0);
  ignore_stop(stubborn);
  rescue(conn, "sweeper", 30s);
  EXPECT_EQ(state(stubborn), "cancelled");
  // A run past timeout + grace is stopped and counted as a failed attempt.
  std::string slow = submit(capped);
  claim_one("w5");
  conn.exec("UPDATE taskhost.runs SET started_at = now() - interval '40 seconds' WHERE id = $1",
            {slow});
  rescue(conn, "sweeper", 30s);
  r = get_run(conn, slow);
  EXPECT_EQ(r.state, RunState::failed);
  EXPECT_EQ(r.error_code, "timeout");
}

TEST_F(Queue, OperatorRequestsFollowTheStateMachine) {
  std::string id = submit();
  EXPECT_EQ(pause_run(conn, id, "op", "r"), RunState::paused);
  EXPECT_TRUE(claim(conn, "w", 1, 60s).empty()) << "paused runs are not claimed";
  EXPECT_EQ(resume_run(conn, id, "op", "r"), RunState::queued);
  EXPECT_EQ(cancel_run(conn, id, "op", "r"), RunState::cancelled);
  EXPECT_EQ(retry_run(conn, id, "op", "r"), RunState::queued);
  EXPECT_EQ(get_run(conn, id).max_attempts, 2);
  complete(conn, "w", {failure(claim_one("w"), false)});
  EXPECT_EQ(state(id), "failed");
  EXPECT_EQ(retry_run(conn, id, "op", "again"), RunState::queued);
  EXPECT_EQ(get_run(conn, id).max_attempts, 3) << "1 used + a fresh budget of 2";
  try {
    resume_run(conn, id, "op", "r");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_STREQ(e.what(), ("cannot resume run " + id + ": it is queued").c_str());
  }
  auto t = run_transitions(conn, id);
  EXPECT_EQ(t.back().reason, "again");
  EXPECT_EQ(t.back().actor, "op");
}

TEST_F(Queue, EventsAfterTheLastCheckpointOfADeadAttemptAreSuperseded) {
  std::string id = submit();
  auto c = claim_one("w1");
  RunWriter w(conn, id, c.attempt);
  w.emit({{"item.done", R"({"item": 1})"}});
  w.checkpoint(R"({"done": 1})");
  w.emit({{"item.done", R"({"item": 2})"}});  // the attempt dies before checkpointing it
  expire(id);
  rescue(conn, "sweeper", 30s);
  make_runnable(id);
  auto again = claim_one("w2");
  EXPECT_EQ(again.attempt, 2);
  RunWriter w2(conn, id, again.attempt);
  EXPECT_EQ(w2.checkpoint(), (Json{{"done", 1}}));
  w2.emit({{"item.done", R"({"item": 2})"}});
  auto events = run_events(conn, id, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].payload["item"], 1);
  EXPECT_EQ(events[1].payload["item"], 2);
  EXPECT_EQ(events[1].attempt, 2);
  EXPECT_THROW(w.emit({{"item.done", R"({"item": 3})"}}), Error) << "the dead attempt is fenced";
}

TEST_F(Queue, AttachedFilesKeepEveryByte) {
  std::string id = submit();
  auto c = claim_one("w1");
  std::string bytes;
  for (int b = 0; b < 256; ++b) bytes += static_cast<char>(b);
  RunWriter(conn, id, c.attempt).attach_file("all-bytes.bin", "application/octet-stream", bytes);
  EXPECT_EQ(run_file_content(conn, id, "all-bytes.bin"), bytes);
  EXPECT_EQ(run_files(conn, id).at(0).sha256, sha256_hex(bytes));
}

struct Cron : Queue {
  InstalledSchema every_minute = schedule("ticker", "* * * * *");
  InstalledSchema schedule(const std::string& name, const std::string& cron) {
    auto s = test::install_fixture(conn, name, "noop.so", "schedule: '" + cron + "'\n");
    conn.exec(
        "UPDATE taskhost.task_schemas SET installed_at = now() - interval '3 hours' "
        "WHERE id = $1",
        {s.id});
    return s;
  }
  int64_t runs(const std::string& name) {
    return conn.exec("SELECT count(*) FROM taskhost.runs WHERE schema_name = $1", {name})
        .integer(0, 0);
  }
};

TEST_F(Cron, TwoSchedulersFireEachTickOnce) {
  std::atomic<int> fired{0};
  std::vector<std::thread> schedulers;
  for (int i = 0; i < 2; ++i)
    schedulers.emplace_back([&, i] {
      pg::Connection c = db.connect();
      for (int k = 0; k < 5; ++k) fired += fire_schedules(c, "scheduler-" + std::to_string(i));
    });
  for (auto& t : schedulers) t.join();
  // Both raced over the same minute (two if the minute turned meanwhile).
  EXPECT_GE(fired.load(), 1);
  EXPECT_LE(fired.load(), 2);
  EXPECT_EQ(runs("ticker"), fired.load());
  EXPECT_EQ(
      conn.exec("SELECT count(*) FROM taskhost.schedule_ticks WHERE run_id IS NULL").integer(0, 0),
      0);
}

TEST_F(Cron, MissedTicksFireOnceNotOncePerTick) {
  schedule("hourly", "0 * * * *");  // installed three hours ago, never fired
  fire_schedules(conn, "s");
  EXPECT_EQ(runs("hourly"), 1);
  auto tick = conn.exec(
      "SELECT scheduled_for = date_trunc('hour', now()) FROM "
      "taskhost.schedule_ticks WHERE schema_name = 'hourly'");
  EXPECT_TRUE(tick.boolean(0, 0)) << "the latest missed tick, not an older one";
  fire_schedules(conn, "s");
  EXPECT_EQ(runs("hourly"), 1);
}

TEST_F(Cron, ALeaderThatDiesMidTickLeavesTheTickToAnother) {
  {
    pg::Connection leader = db.connect();
    const std::string pid = leader.exec("SELECT pg_backend_pid()").text(0, 0);
    pg::Transaction tx(leader);
    tx.exec(
        "INSERT INTO taskhost.schedule_ticks (schema_name, scheduled_for, fired_by) "
        "VALUES ('ticker', date_trunc('minute', now()), 'leader')");
    std::thread follower([&] {
      pg::Connection c = db.connect();
      fire_schedules(c, "follower");  // waits on the leader's uncommitted tick
    });
    std::this_thread::sleep_for(300ms);
    // The leader's connection drops before it commits: its tick rolls back.
    conn.exec("SELECT pg_terminate_backend($1::int)", {pid});
    follower.join();
  }
  auto t = conn.exec("SELECT fired_by, run_id IS NOT NULL FROM taskhost.schedule_ticks");
  ASSERT_EQ(t.rows(), 1);
  EXPECT_EQ(t.text(0, 0), "follower");
  EXPECT_TRUE(t.boolean(0, 1));
  EXPECT_EQ(runs("ticker"), 1);
}

TEST_F(Queue, ChainsFireOnceWithTemplatedParams) {
  auto child = test::install_fixture(
      conn, "child", "noop.so",
      "params: { greeting: { type: string }, n: { type: integer }, note: { type: string } }\n");
  auto parent = test::install_fixture(
      conn, "parent", "noop.so",
      "on_success: [ { run: child, params: { greeting: '{{ output.greeting }}', n: "
      "'{{ output.count }}', note: 'from {{ run.id }}' } } ]\n");
  const std::string id = succeed_with_output(parent, R"({"greeting": "hi", "count": 3})");
  EXPECT_EQ(fire_chains(conn, "w"), 1);
  EXPECT_EQ(fire_chains(conn, "w"), 0) << "a chain fires once";
  auto r = conn.exec(
      "SELECT params, parent_run_id::text FROM taskhost.runs "
      "WHERE schema_name = 'child'");
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(Json::parse(r.text(0, 0)),
            (Json{{"greeting", "hi"}, {"n", 3}, {"note", "from " + id}}));
  EXPECT_EQ(r.text(0, 1), id);
}

TEST_F(Queue, ForEachChainsOneChildPerElementOnceAndInOrder) {
  auto child = test::install_fixture(conn, "child", "noop.so",
                                     "params: { key: { type: string }, n: { type: integer } }\n");
  auto parent = test::install_fixture(
      conn, "parent", "noop.so",
      "on_success: [ { run: child, for_each: output.files, params: { key: '{{ item.key }}', n: "
      "'{{ index }}' } } ]\n");
  std::vector<std::string> keys;
  Json files = Json::array();
  for (int i = 0; i < 12; ++i) {
    keys.push_back("in/f" + std::to_string(11 - i));  // not in key order: element order counts
    files.push_back({{"key", keys.back()}});
  }
  const std::string id = succeed_with_output(parent, Json{{"files", files}}.dump());
  EXPECT_EQ(fire_chains(conn, "w"), 12);
  EXPECT_EQ(fire_chains(conn, "w"), 0) << "a chain fires once";
  auto r = conn.exec(
      "SELECT idempotency_key, parent_run_id::text FROM taskhost.runs WHERE schema_name = 'child' "
      "ORDER BY queued_seq");
  ASSERT_EQ(r.rows(), 12);
  EXPECT_EQ(r.text(3, 0), "chain:" + id + ":0:3");
  EXPECT_EQ(r.text(3, 1), id);
  // Claimed one by one, in element order although queued in one instant.
  for (int i = 0; i < 12; ++i) {
    auto c = claim_one("w");
    EXPECT_EQ(c.params["key"], keys[static_cast<size_t>(i)]);
    EXPECT_EQ(c.params["n"], i);
  }

  // Nothing in the array: no child. Not an array: none, and the parent says why.
  const std::string none = succeed_with_output(parent, R"({"files": []})");
  const std::string wrong = succeed_with_output(parent, R"({"files": "in/x"})");
  EXPECT_EQ(fire_chains(conn, "w"), 0);
  EXPECT_EQ(
      conn.exec("SELECT count(*) FROM taskhost.runs WHERE parent_run_id IN ($1, $2)", {none, wrong})
          .integer(0, 0),
      0);
  auto failed = conn.exec(
      "SELECT payload->>'error' FROM taskhost.run_events WHERE run_id = $1 AND name = "
      "'chain.failed'",
      {wrong});
  ASSERT_EQ(failed.rows(), 1);
  EXPECT_EQ(failed.text(0, 0), "output.files is not an array in the run's output");
}

}  // namespace
}  // namespace taskhost
