#include "engine/worker.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "engine/scheduler.hpp"
#include "store/audit.hpp"

namespace taskhost {
namespace {

using Clock = std::chrono::steady_clock;

struct Job {
  ClaimedRun run;
  std::shared_ptr<std::atomic<bool>> stop;
};

}  // namespace

struct Worker::State {
  explicit State(WorkerOptions o)
      : options(std::move(o)),
        executor(options.plugin_dir, options.dev_mode, options.config),
        // Plugins hold a connection only for the length of one host call.
        pool(options.conninfo, std::min(options.concurrency, 8)),
        wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (wake_fd < 0) throw Error(ErrorKind::environment, "eventfd failed");
  }
  ~State() { ::close(wake_fd); }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }

  // Executor threads: take a job, run it, hand back the completion and wake
  // the main loop.
  void executor_thread() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex);
        jobs_ready.wait(lock, [&] { return threads_exit || !jobs.empty(); });
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      Completion c;
      c.run_id = job.run.id;
      c.attempt = job.run.attempt;
      try {
        c = executor.execute(pool, job.run, *job.stop,
                             options.only_run ? options.observer : ProgressObserver());
      } catch (const std::exception& e) {
        c.retryable = true;
        c.error_code = "host";
        c.error = e.what();
        c.reason = "host error";
      }
      {
        std::lock_guard lock(mutex);
        done.push_back(std::move(c));
      }
      wake();
    }
  }

  WorkerOptions options;
  Executor executor;
  pg::Pool pool;
  int wake_fd;
  std::atomic<bool> stopping{false};

  std::mutex mutex;  // guards jobs, done, threads_exit
  std::condition_variable jobs_ready;
  std::deque<Job> jobs;
  std::vector<Completion> done;
  bool threads_exit = false;

  // Main-loop state.
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> inflight;
  std::vector<Completion> unrecorded;  // completions the database has not taken yet
  bool only_run_claimed = false;
};

Worker::Worker(WorkerOptions options) : state_(std::make_unique<State>(std::move(options))) {}
Worker::~Worker() = default;

void Worker::stop() {
  state_->stopping.store(true);
  state_->wake();
}

void Worker::run() {
  State& s = *state_;
  const WorkerOptions& o = s.options;
  std::vector<std::thread> threads;
  for (int i = 0; i < o.concurrency; ++i) threads.emplace_back([&s] { s.executor_thread(); });
  std::atomic<bool> dispatcher_exit = false;
  std::thread dispatcher;
  if (o.webhooks && !o.only_run)
    dispatcher = std::thread([&] { run_dispatcher(o.conninfo, *o.webhooks, dispatcher_exit); });
  auto join = [&] {
    {
      std::lock_guard lock(s.mutex);
      s.threads_exit = true;
    }
    s.jobs_ready.notify_all();
    for (auto& t : threads) t.join();
    dispatcher_exit = true;
    if (dispatcher.joinable()) dispatcher.join();
  };

  std::optional<pg::Connection> conn;
  auto backoff = std::chrono::milliseconds(100);
  auto now = Clock::now();
  auto next_claim = now, next_heartbeat = now + o.lease / 3, next_rescue = now, next_chains = now,
       next_schedules = now, next_checkpoint = now;
  bool notified = true, claim_was_full = false;
  // Coalescing: a round trip per run would cap throughput, so completions
  // and claims wait up to o.coalesce to gather a batch of this size.
  const int batch = std::max(1, o.concurrency / 2);
  auto first_unrecorded = now, last_claim = now - o.coalesce;

  try {
    for (;;) {
      if (!conn) {
        try {
          conn.emplace(o.conninfo);
          conn->exec(std::string("LISTEN ") + runs_channel);
          conn->exec(std::string("LISTEN ") + control_channel);
          if (backoff > std::chrono::milliseconds(100)) spdlog::info("{}: reconnected", o.id);
          backoff = std::chrono::milliseconds(100);
          notified = true;
        } catch (const std::exception& e) {
          conn.reset();
          spdlog::warn("{}: database unavailable, retrying in {} ms: {}", o.id, backoff.count(),
                       e.what());
          std::this_thread::sleep_for(backoff);
          backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
          if (s.stopping && s.inflight.empty()) break;
          continue;
        }
      }
      try {
        // 1. Record what finished, in one batch.
        now = Clock::now();
        if (s.unrecorded.empty()) first_unrecorded = now;
        {
          std::lock_guard lock(s.mutex);
          for (auto& c : s.done) s.unrecorded.push_back(std::move(c));
          s.done.clear();
        }
        // A batch is recorded when it is big enough, when nothing else is
        // running, or when its oldest completion has waited `coalesce`.
        if (!s.unrecorded.empty() && (static_cast<int>(s.unrecorded.size()) >= batch ||
                                      s.unrecorded.size() == s.inflight.size() || s.stopping ||
                                      now >= first_unrecorded + o.coalesce)) {
          auto fenced = complete(*conn, o.id, s.unrecorded);
          for (const auto& id : fenced)
            spdlog::warn("{}: run {} was no longer ours; its outcome was discarded", o.id, id);
          for (const auto& c : s.unrecorded)
            if (std::find(fenced.begin(), fenced.end(), c.run_id) == fenced.end())
              spdlog::log(c.succeeded ? spdlog::level::info : spdlog::level::warn,
                          "run {} attempt {}: {}{}", c.run_id, c.attempt, c.reason,
                          c.error ? ": " + *c.error : std::string());
          for (const auto& c : s.unrecorded) {
            s.inflight.erase(c.run_id);
            if (c.has_chain) next_chains = now;  // fire its chain without waiting
          }
          s.unrecorded.clear();
        }
        if (o.only_run && s.only_run_claimed && s.inflight.empty()) break;
        if (s.stopping && s.inflight.empty()) break;

        // 2. Claim while there is room.
        now = Clock::now();
        int room = o.concurrency - static_cast<int>(s.inflight.size());
        bool want = (notified || claim_was_full || now >= next_claim) &&
                    !(o.only_run && s.only_run_claimed) && !s.stopping && room > 0;
        bool ready = room >= batch || s.inflight.empty() || now >= last_claim + o.coalesce;
        if (want && ready) {
          notified = want = false;
          last_claim = now;
          auto claimed = claim(*conn, o.id, room, o.lease, o.only_run);
          if (o.only_run) {
            if (claimed.empty())
              throw Error(ErrorKind::conflict, "run " + *o.only_run + " is not queued");
            s.only_run_claimed = true;
          }
          claim_was_full = static_cast<int>(claimed.size()) == room;
          next_claim = now + o.poll;
          if (!claimed.empty()) {
            std::lock_guard lock(s.mutex);
            for (auto& r : claimed) {
              spdlog::debug("run {} of {} claimed (attempt {})", r.id, r.schema_name, r.attempt);
              auto stop = std::make_shared<std::atomic<bool>>(false);
              s.inflight[r.id] = stop;
              s.jobs.push_back({std::move(r), stop});
            }
          }
          s.jobs_ready.notify_all();
        }

        // 3. Keep our leases; learn of stop requests and lost runs.
        now = Clock::now();
        if (now >= next_heartbeat) {
          next_heartbeat = now + o.lease / 3;
          std::vector<std::string> ids;
          for (const auto& [id, _] : s.inflight) ids.push_back(id);
          auto hb = heartbeat(*conn, o.id, ids, o.lease);
          for (const auto& id : hb.stop_requested) s.inflight[id]->store(true);
          for (const auto& id : hb.lost) {
            spdlog::warn("{}: lost the lease of run {}; asking it to stop", o.id, id);
            s.inflight[id]->store(true);
          }
        }

        // 4. Housekeeping shared by all workers.
        if (!o.only_run) {
          if (now >= next_rescue) {
            next_rescue = now + o.rescue_every;
            if (int n = rescue(*conn, o.id, o.grace))
              spdlog::info("{}: rescued {} run(s)", o.id, n);
          }
          if (o.scheduler && now >= next_schedules) {
            next_schedules = now + std::chrono::seconds(5);
            fire_schedules(*conn, "scheduler");
          }
          if (o.scheduler && now >= next_chains) {
            next_chains = now + o.poll;
            fire_chains(*conn, o.id);
          }
          if (o.config.audit_checkpoints && now >= next_checkpoint) {
            const auto& c = *o.config.audit_checkpoints;
            next_checkpoint = now + std::min<Clock::duration>(c.every, std::chrono::minutes(1));
            try {
              if (write_audit_checkpoint_if_due(*conn, c, o.id))
                spdlog::info("{}: signed an audit checkpoint into {}", o.id, c.file.string());
            } catch (const Error& e) {
              if (dynamic_cast<const pg::DbError*>(&e)) throw;
              spdlog::error("{}: audit checkpoint not written: {}", o.id, e.what());
            }
          }
        }

        // 5. Sleep until a notification, a completion or the next deadline.
        // (A completion that arrived since step 1 has left wake_fd readable.)
        {
          auto next =
              std::min({next_heartbeat, next_claim, next_rescue, next_schedules, next_chains});
          if (o.only_run) next = std::min(next_heartbeat, Clock::now() + o.poll);
          if (!s.unrecorded.empty()) next = std::min(next, first_unrecorded + o.coalesce);
          if (want) next = std::min(next, last_claim + o.coalesce);
          auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
          pollfd fds[2] = {{PQsocket(conn->raw()), POLLIN, 0}, {s.wake_fd, POLLIN, 0}};
          ::poll(fds, 2, static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 1000)));
          uint64_t drained;
          while (::read(s.wake_fd, &drained, sizeof drained) > 0) {
          }
        }
        if (PQconsumeInput(conn->raw()) == 0)
          throw Error(ErrorKind::environment, PQerrorMessage(conn->raw()));
        while (PGnotify* n = PQnotifies(conn->raw())) {
          if (std::string(n->relname) == runs_channel) {
            notified = true;
          } else if (auto it = s.inflight.find(n->extra); it != s.inflight.end()) {
            it->second->store(true);  // a cancel or pause request for one of ours
          }
          PQfreemem(n);
        }
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::conflict && o.only_run && !s.only_run_claimed) throw;
        if (conn && conn->ok()) {
          spdlog::error("{}: {}", o.id, e.what());
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        } else {
          spdlog::warn("{}: lost the database connection: {}", o.id, e.what());
          conn.reset();
        }
      }
    }
  } catch (...) {
    join();
    throw;
  }
  join();
}

std::string default_worker_id() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return "worker:" + std::string(host) + ":" + std::to_string(::getpid());
}

}  // namespace taskhost
