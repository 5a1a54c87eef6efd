// A run's log as the store keeps it: the plugin's lines shipped by the
// worker (bounded, redacted, fenced) and the host's line for each transition.
#include <gtest/gtest.h>

#include <cstdlib>

#include "engine/submit.hpp"
#include "store/queue.hpp"
#include "store/run_logs.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

const std::string chatty_params =
    "params: { mode: { type: string }, items: { type: integer, default: 3 }, "
    "delay_ms: { type: integer, default: 0 }, say: { type: string } }\n";

LogQuery query(int64_t after_seq, int limit, std::optional<int> attempt = std::nullopt) {
  LogQuery q;
  q.after_seq = after_seq;
  q.limit = limit;
  q.attempt = attempt;
  return q;
}

struct RunLogsTest : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
  InstalledSchema probe = test::install_fixture(conn, "probe", "probe.so",
                                                chatty_params +
                                                    "retry: { max_attempts: 2, backoff: fixed, "
                                                    "initial: 1s }\n");

  taskhost::Run execute(const Json& params, const HostConfig& config = {}) {
    auto id = submit_run(conn, probe, params, "test").run_id;
    return test::execute(db.conninfo(), id, test::fixture_dir, config);
  }
  std::vector<LogLine> lines(const std::string& id) {
    return read_run_logs(conn, id, query(0, 10000)).lines;
  }
  static std::vector<std::string> messages(const std::vector<LogLine>& lines,
                                           const std::string& source) {
    std::vector<std::string> out;
    for (const auto& l : lines)
      if (l.source == source) out.push_back(l.message);
    return out;
  }
};

TEST_F(RunLogsTest, PluginLinesAndTheHostsLinesInOneNumberedLog) {
  taskhost::Run r = execute({{"mode", "chatty"}, {"items", 3}});
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  auto all = lines(r.id);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].seq, static_cast<int64_t>(i + 1));
  EXPECT_EQ(messages(all, "plugin"),
            (std::vector<std::string>{"line 1 of 3", "line 2 of 3", "line 3 of 3"}));
  for (const auto& l : all) {
    if (l.source == "plugin") {
      EXPECT_EQ(l.level, "info");
    }
  }
  auto host = messages(all, "host");
  ASSERT_EQ(host.size(), 3u);
  EXPECT_EQ(host[0], "queued by test: submitted");
  EXPECT_NE(host[1].find("queued -> running by test-worker"), std::string::npos) << host[1];
  EXPECT_NE(host[2].find("running -> succeeded by test-worker: plugin returned"), std::string::npos)
      << host[2];
  // Host lines frame the plugin's: started before, succeeded after.
  EXPECT_EQ(all[1].source, "host");
  EXPECT_EQ(all.back().source, "host");
  // Paging by seq, and by attempt.
  auto page = read_run_logs(conn, r.id, query(2, 2));
  ASSERT_EQ(page.lines.size(), 2u);
  EXPECT_EQ(page.lines[0].seq, 3);
  EXPECT_EQ(page.last_seq, static_cast<int64_t>(all.size()));
  EXPECT_TRUE(read_run_logs(conn, r.id, query(0, 1000, 2)).lines.empty());
}

TEST_F(RunLogsTest, ADeadAttemptSaysWhyAndTheRetryIsOnRecord) {
  taskhost::Run r = execute({{"mode", "crash"}});
  ASSERT_EQ(r.state, RunState::queued) << "one attempt of two failed";
  auto all = lines(r.id);
  EXPECT_EQ(messages(all, "plugin"), (std::vector<std::string>{"about to crash"}))
      << "its last line is in, though the plugin died";
  const auto events = run_events(conn, r.id, 10);
  ASSERT_EQ(events.size(), 1u) << "the event it emitted last is in too (the host held it)";
  EXPECT_EQ(events[0].payload["error"], "about to crash");
  const LogLine& last = all.back();
  EXPECT_EQ(last.source, "host");
  EXPECT_EQ(last.level, "warn");
  EXPECT_NE(last.message.find("running -> queued"), std::string::npos) << last.message;
  EXPECT_NE(last.message.find("SIGSEGV"), std::string::npos) << last.message;
  EXPECT_NE(last.message.find("next attempt at"), std::string::npos) << last.message;
}

TEST_F(RunLogsTest, BoundedPerRunWithOneNoteOfWhatWasDropped) {
  HostConfig config;
  config.run_logs.max_lines = 10;
  taskhost::Run r = execute({{"mode", "chatty"}, {"items", 50}}, config);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  auto page = read_run_logs(conn, r.id, query(0, 10000));
  auto plugin = messages(page.lines, "plugin");
  ASSERT_EQ(plugin.size(), 10u);
  EXPECT_EQ(plugin.back(), "line 10 of 50");
  EXPECT_EQ(page.dropped_lines, 40);
  EXPECT_EQ(page.dropped_bytes, 40 * 13) << "\"line 11 of 50\" is 13 bytes";
  int notes = 0;
  for (const auto& l : page.lines) {
    if (l.message.find("log is full") == std::string::npos) continue;
    ++notes;
    EXPECT_NE(l.message.find("40 later line(s)"), std::string::npos) << l.message;
  }
  EXPECT_EQ(notes, 1);
  EXPECT_NE(page.lines.back().message.find("succeeded"), std::string::npos)
      << "the host's lines are kept past the bound";

  config.run_logs.max_lines = 1000;
  config.run_logs.max_bytes = 40;
  r = execute({{"mode", "chatty"}, {"items", 5}}, config);
  page = read_run_logs(conn, r.id, query(0, 10000));
  EXPECT_EQ(messages(page.lines, "plugin").size(), 3u) << "3 lines of 11 bytes fit in 40";
  EXPECT_EQ(page.dropped_lines, 2);
}

TEST_F(RunLogsTest, ConfiguredSecretsAreStoredRedacted) {
  const std::string canary = "canary-log-secret-3f9a1c";
  ::setenv("TEST_RUN_LOG_SECRET", canary.c_str(), 1);
  HostConfig config;
  config.s3["vault"].secret_access_key = {"s3.vault.secret_access_key", "TEST_RUN_LOG_SECRET", {}};
  taskhost::Run r;
  const std::string logged = test::capture_logs([&] {
    r = execute({{"mode", "chatty"}, {"items", 1}, {"say", "the key is " + canary + "!"}}, config);
  });
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  auto plugin = messages(lines(r.id), "plugin");
  ASSERT_FALSE(plugin.empty());
  EXPECT_EQ(plugin[0], "say: the key is [redacted]!");
  EXPECT_EQ(logged.find(canary), std::string::npos) << "nor in the worker's own log";
  EXPECT_NE(logged.find("[redacted]"), std::string::npos) << logged;
  ::unsetenv("TEST_RUN_LOG_SECRET");
}

TEST_F(RunLogsTest, AnAttemptThatLostTheRunAddsNothing) {
  taskhost::Run r = execute({{"mode", "chatty"}, {"items", 1}});
  ASSERT_EQ(r.state, RunState::succeeded);
  const auto before = lines(r.id).size();
  auto stored = append_run_logs(conn, r.id, 1, {{std::chrono::system_clock::now(), "info", "late"}},
                                100, 1 << 20, 0, 0);
  EXPECT_FALSE(stored.has_value());
  EXPECT_EQ(lines(r.id).size(), before);
}

}  // namespace
}  // namespace taskhost
