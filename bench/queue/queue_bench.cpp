// taskhost's side of bench/queue: enqueue rate (single and batched submits),
// drain rate with 1, 2 and 4 worker processes, idle enqueue->start latency.
// Usage: queue_bench CONNINFO [N]   (CONNINFO names a database it may wipe)
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/sha256.hpp"
#include "engine/submit.hpp"
#include "store/migrate.hpp"

extern char** environ;

using namespace taskhost;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The workers' host config: it lets a schema say `isolation: none`, so the
// queue's own speed is measured apart from the sandbox's (the last figures).
const std::string host_config = [] {
  const std::string path = "/tmp/taskhost-queue-bench.yml";
  std::ofstream(path) << "sandbox: { allow_in_process: true }\n";
  return path;
}();

pid_t start_worker(const std::string& conninfo, int i, int concurrency,
                   const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {TASKHOST_BIN,
                                   "--config",
                                   host_config,
                                   "--database-url",
                                   conninfo,
                                   "--plugin-dir",
                                   BENCH_PLUGIN_DIR,
                                   "--log-level",
                                   "warn",
                                   "worker",
                                   "--no-scheduler",
                                   "--concurrency",
                                   std::to_string(concurrency),
                                   "--id",
                                   "bench-" + std::to_string(i)};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, TASKHOST_BIN, nullptr, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot start a worker");
  return pid;
}

void stop_workers(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) ::kill(p, SIGTERM);
  for (pid_t p : pids) ::waitpid(p, nullptr, 0);
}

void reset(pg::Connection& conn) {
  conn.exec(
      "TRUNCATE taskhost.runs, taskhost.run_transitions, taskhost.run_events, "
      "taskhost.run_files, taskhost.schedule_ticks, taskhost.webhook_deliveries, "
      "taskhost.webhook_streams CASCADE");  // and what later migrations hang on runs
}

void enqueue_batched(pg::Connection& conn, const InstalledSchema& s, int n) {
  std::vector<SubmitRequest> batch;
  for (int i = 0; i < n; ++i) {
    SubmitRequest q;
    q.schema = &s;
    q.params = Json::object();
    q.actor = "bench";
    batch.push_back(std::move(q));
    if (batch.size() == 1000 || i == n - 1) {
      enqueue(conn, batch);
      batch.clear();
    }
  }
}

int64_t succeeded(pg::Connection& conn) {
  return conn.exec("SELECT count(*) FROM taskhost.runs WHERE state = 'succeeded'").integer(0, 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: queue_bench CONNINFO [N]\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const std::string conninfo = argv[1];
  const int n = argc > 2 ? std::stoi(argv[2]) : 20000;
  pg::Connection conn(conninfo);
  // Migrations and clean-ups as the owner role; the rest as the runtime.
  pg::Connection owner(conninfo + " user=taskhost_owner");
  migrate(owner, bundled_migrations());
  std::vector<Diagnostic> errors;
  const std::string digest = sha256_hex_fd(::open(BENCH_PLUGIN_DIR "/noop.so", O_RDONLY));
  // noop runs in the worker (the queue's own speed, as graphile-worker's
  // jobs do); sandboxed is the same plugin in a sandbox per attempt.
  auto noop_schema = [&](const std::string& name, const std::string& isolation) {
    auto schema = parse_schema("name: " + name +
                                   "\nversion: 1.0.0\nplugin: { path: noop.so, sha256: " + digest +
                                   " }\nretry: { max_attempts: 3 }\nisolation: " + isolation + "\n",
                               name + ".yaml", &errors);
    install_schema(conn, *schema, "bench");
    return find_schema(conn, SchemaRef::parse(name + "@1.0.0"));
  };
  auto noop = noop_schema("noop", "none");
  auto sandboxed = noop_schema("sandboxed", "process");
  reset(owner);

  auto t = Clock::now();
  for (int i = 0; i < n; ++i) submit_run(conn, noop, Json::object(), "bench");
  std::printf("taskhost  enqueue, single submits              %8.0f runs/s\n",
              n / seconds_since(t));
  reset(owner);
  t = Clock::now();
  enqueue_batched(conn, noop, n);
  std::printf("taskhost  enqueue, batches of 1000             %8.0f runs/s\n",
              n / seconds_since(t));

  // --concurrency: runs in flight per worker process, and so its batch size.
  for (int concurrency : {16, 64}) {
    for (int workers : {1, 2, 4}) {
      reset(owner);
      enqueue_batched(conn, noop, n);
      std::vector<pid_t> pids;
      for (int i = 0; i < workers; ++i) pids.push_back(start_worker(conninfo, i, concurrency));
      while (succeeded(conn) < n) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      stop_workers(pids);
      // From the first claim to the last completion, as the database saw them.
      double span = std::stod(
          conn.exec(
                  "SELECT extract(epoch FROM max(updated_at) - min(started_at)) FROM taskhost.runs")
              .text(0, 0));
      std::printf("taskhost  drain, %d worker%s x concurrency %-3d %8.0f runs/s\n", workers,
                  workers == 1 ? " " : "s", concurrency, n / span);
    }
  }

  // The same drain when every run is announced: three webhook outbox rows
  // per run (queued, started, succeeded), written by the transition
  // triggers; delivery off (--no-webhooks), so this is the transactional cost.
  auto hooked_schema =
      parse_schema("name: hooked\nversion: 1.0.0\nplugin: { path: noop.so, sha256: " + digest +
                       " }\nisolation: none\nhooks: { url: 'https://hooks.example/in', "
                       "events: [run.queued, run.started, run.succeeded] }\n",
                   "hooked.yaml", &errors);
  install_schema(conn, *hooked_schema, "bench");
  auto hooked = find_schema(conn, SchemaRef::parse("hooked@1.0.0"));
  for (int workers : {1, 2}) {
    reset(owner);
    enqueue_batched(conn, hooked, n);
    std::vector<pid_t> pids;
    for (int i = 0; i < workers; ++i)
      pids.push_back(start_worker(conninfo, i, 64, {"--no-webhooks"}));
    while (succeeded(conn) < n) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop_workers(pids);
    double span = std::stod(
        conn.exec("SELECT extract(epoch FROM max(updated_at) - min(started_at)) FROM taskhost.runs")
            .text(0, 0));
    std::printf("taskhost  drain, %d worker%s x concurrency 64, hooked %8.0f runs/s\n", workers,
                workers == 1 ? " " : "s", n / span);
  }

  reset(owner);
  std::vector<pid_t> idle = {start_worker(conninfo, 0, 16)};
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int samples = 300;
  for (int i = 0; i < samples; ++i) {
    submit_run(conn, noop, Json::object(), "bench");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  while (succeeded(conn) < samples) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop_workers(idle);
  auto lat = conn.exec(
      "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
      "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM (SELECT extract(epoch FROM "
      "started_at - created_at) * 1000 AS ms FROM taskhost.runs) l");
  std::printf("taskhost  idle enqueue->start latency      median %.2f ms, p99 %.2f ms\n",
              std::stod(lat.text(0, 0)), std::stod(lat.text(0, 1)));

  // The sandbox's price: the same no-op runs, one worker, each attempt in a
  // sandboxed child (isolation: process, the default) or in the worker.
  // Fewer runs: a child per attempt is far slower than a function call.
  const int m = std::min(n, 2000);
  double rate[2] = {0, 0};
  for (int in_worker : {0, 1}) {
    reset(owner);
    enqueue_batched(conn, in_worker ? noop : sandboxed, m);
    std::vector<pid_t> pids = {start_worker(conninfo, 0, 16)};
    while (succeeded(conn) < m) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop_workers(pids);
    rate[in_worker] =
        m / std::stod(conn.exec("SELECT extract(epoch FROM max(updated_at) - min(started_at)) "
                                "FROM taskhost.runs")
                          .text(0, 0));
  }
  std::printf(
      "taskhost  drain, 1 worker x concurrency 16, isolation process %6.0f runs/s, "
      "none %6.0f runs/s: ratio %.3f\n",
      rate[0], rate[1], rate[0] / rate[1]);
  return 0;
}
