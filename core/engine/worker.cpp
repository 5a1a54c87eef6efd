#include "engine/worker.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
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

// The attempt of a run this worker executes now, and its stop flag.
struct Attempt {
  int number = 0;
  std::shared_ptr<std::atomic<bool>> stop;
};

// A value the database cannot store (SQLSTATE classes 22 and 54); anything
// else (a lost connection, a deadlock) passes and is retried whole.
bool unstorable(const pg::DbError& e) {
  return e.sqlstate().rfind("22", 0) == 0 || e.sqlstate().rfind("54", 0) == 0;
}

// Records a batch of completions. A row the database refuses (a value it
// cannot store) must not hold the others back forever: the batch is then
// recorded one by one, and a completion refused on its own is recorded as a
// failure saying so, so that its run ends and its thread's slot is free.

std::vector<std::string> record(pg::Connection& conn, const std::string& owner,
                                const std::vector<Completion>& batch) {
  try {
    return complete(conn, owner, batch);
  } catch (const pg::DbError& e) {
    if (!unstorable(e)) throw;
    spdlog::error("{}: recording {} outcome(s) failed, recording them one by one: {}", owner,
                  batch.size(), e.what());
  }
  std::vector<std::string> fenced;
  for (const auto& c : batch) {
    std::vector<std::string> f;
    try {
      f = complete(conn, owner, {c});
    } catch (const pg::DbError& e) {
      if (!unstorable(e)) throw;
      Completion refused;
      refused.run_id = c.run_id;
      refused.attempt = c.attempt;
      refused.has_chain = c.has_chain;
      refused.error_code = "host";
      refused.error = "the host could not record this attempt's outcome: " + std::string(e.what());
      refused.reason = "outcome not recordable";
      spdlog::error("{}: run {}: {}", owner, c.run_id, *refused.error);
      f = complete(conn, owner, {refused});
    }
    fenced.insert(fenced.end(), f.begin(), f.end());
  }
  return fenced;
}

}  // namespace

struct Worker::State {
  explicit State(WorkerOptions o)
      : options(std::move(o)),
        executor(options.plugin_dir, options.dev_mode, options.config, options.grace),
        // Plugins hold a connection only for the length of one host call.
        pool(options.conninfo, std::min(options.concurrency, 8)),
        wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (wake_fd < 0) throw Error(ErrorKind::environment, "eventfd failed");
    struct stat st {};
    ::fstat(wake_fd, &st);
    wake_id = {st.st_dev, st.st_ino};
  }

  // Whether wake_fd is still the eventfd made for it. A plugin in this
  // process can close the worker's descriptors, and their numbers then go to
  // whatever opens next (a database socket): carrying on would read and
  // write the wrong files, so the worker stops with an error instead.
  void check_descriptors() const {
    struct stat st {};
    if (::fstat(wake_fd, &st) != 0 || std::pair{st.st_dev, st.st_ino} != wake_id)
      throw std::runtime_error(
          "the worker's own file descriptors were closed or replaced (by a plugin running "
          "in-process?); stopping so that a supervisor restarts a clean worker");
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
  std::pair<dev_t, ino_t> wake_id;
  std::atomic<bool> stopping{false};

  std::mutex mutex;  // guards jobs, done, threads_exit
  std::condition_variable jobs_ready;
  std::deque<Job> jobs;
  std::vector<Completion> done;
  bool threads_exit = false;

  // Main-loop state. busy counts jobs handed to executor threads and not yet
  // finished: it can exceed inflight's size while an attempt that lost its
  // run (it ignored a stop) still holds a thread and the run's next attempt
  // runs here too, so free slots are concurrency - busy.
  std::map<std::string, Attempt> inflight;  // by run id: its current attempt
  int busy = 0;
  std::vector<Completion> unrecorded;  // completions the database has not taken yet
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
  if (o.only_run) {
    spdlog::debug("run {} of {} claimed (attempt {})", o.only_run->id, o.only_run->schema_name,
                  o.only_run->attempt);
    auto stop = std::make_shared<std::atomic<bool>>(false);
    s.inflight[o.only_run->id] = {o.only_run->attempt, stop};
    s.busy = 1;
    {
      std::lock_guard lock(s.mutex);
      s.jobs.push_back({*o.only_run, stop});
    }
    s.jobs_ready.notify_all();
  }
  // Coalescing: a round trip per run would cap throughput, so completions
  // and claims wait up to o.coalesce to gather a batch of this size.
  const int batch = std::max(1, o.concurrency / 2);
  auto first_unrecorded = now, last_claim = now - o.coalesce;

  try {
    for (;;) {
      s.check_descriptors();
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
          if (s.stopping && s.busy == 0) break;
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
                                      static_cast<int>(s.unrecorded.size()) == s.busy ||
                                      s.stopping || now >= first_unrecorded + o.coalesce)) {
          auto fenced = record(*conn, o.id, s.unrecorded);
          for (const auto& id : fenced)
            spdlog::warn("{}: run {} was no longer ours; its outcome was discarded", o.id, id);
          for (const auto& c : s.unrecorded)
            if (std::find(fenced.begin(), fenced.end(), c.run_id) == fenced.end())
              spdlog::log(c.succeeded ? spdlog::level::info : spdlog::level::warn,
                          "run {} attempt {}: {}{}", c.run_id, c.attempt, c.reason,
                          c.error ? ": " + *c.error : std::string());
          for (const auto& c : s.unrecorded) {
            --s.busy;
            if (auto it = s.inflight.find(c.run_id);
                it != s.inflight.end() && it->second.number == c.attempt)
              s.inflight.erase(it);
            if (c.has_chain) next_chains = now;  // fire its chain without waiting
          }
          s.unrecorded.clear();
        }
        if ((o.only_run || s.stopping) && s.busy == 0) break;

        // 2. Claim while there is room.
        now = Clock::now();
        int room = o.concurrency - s.busy;
        bool want = (notified || claim_was_full || now >= next_claim) && !o.only_run &&
                    !s.stopping && room > 0;
        bool ready = room >= batch || s.busy == 0 || now >= last_claim + o.coalesce;
        if (want && ready) {
          notified = want = false;
          last_claim = now;
          auto claimed = claim(*conn, o.id, room, o.lease);
          claim_was_full = static_cast<int>(claimed.size()) == room;
          next_claim = now + o.poll;
          if (!claimed.empty()) {
            std::lock_guard lock(s.mutex);
            for (auto& r : claimed) {
              spdlog::debug("run {} of {} claimed (attempt {})", r.id, r.schema_name, r.attempt);
              auto stop = std::make_shared<std::atomic<bool>>(false);
              // An earlier attempt of the same run still executing here lost
              // the run: it keeps its thread until it returns.
              if (auto it = s.inflight.find(r.id); it != s.inflight.end())
                it->second.stop->store(true);
              s.inflight[r.id] = {r.attempt, stop};
              ++s.busy;
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
          for (const auto& id : hb.stop_requested) s.inflight[id].stop->store(true);
          for (const auto& id : hb.lost) {
            spdlog::warn("{}: lost the lease of run {}; asking it to stop", o.id, id);
            s.inflight[id].stop->store(true);
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
            it->second.stop->store(true);  // a cancel or pause request for one of ours
          }
          PQfreemem(n);
        }
      } catch (const Error& e) {
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
