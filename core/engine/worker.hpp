#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "engine/executor.hpp"
#include "webhooks/dispatcher.hpp"

namespace taskhost {

struct WorkerOptions {
  std::string conninfo;
  std::filesystem::path plugin_dir;
  bool dev_mode = false;
  HostConfig config;                        // what services may reach
  std::string id;                           // lease owner and actor: worker:<host>:<pid>
  int concurrency = 4;                      // runs executing at once
  std::chrono::milliseconds lease{30'000};  // renewed every third of it
  std::chrono::milliseconds grace{30'000};  // for ignored stop requests and timeouts
  std::chrono::milliseconds poll{1'000};    // claim without a NOTIFY this often
  std::chrono::milliseconds rescue_every{5'000};
  std::chrono::milliseconds coalesce{2};  // longest wait to gather a batch
  bool scheduler = true;                  // fire cron schedules and chains
  std::optional<DispatcherOptions> webhooks = DispatcherOptions();  // deliver webhooks
  std::optional<ClaimedRun> only_run;  // execute this run claimed by id, then return
  ProgressObserver observer;           // progress of only_run
};

// A worker process's engine: claims runs from the queue in batches, runs them
// on `concurrency` executor threads, records completions in batches, renews
// leases, rescues runs of dead workers, fires cron ticks and chains, and
// delivers webhooks (on a thread of its own). Survives
// the database going away: it reconnects with backoff, and anything it could
// not record is rescued after its lease and runs again from its checkpoint.
class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs until stop() is called (and in-flight runs have ended), or, with
  // only_run, until that run's attempt has ended.
  void run();

  // Asks run() to stop claiming and return once in-flight runs end. Safe to
  // call from a signal handler.
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A worker id unique to this process: worker:<hostname>:<pid>.
std::string default_worker_id();

}  // namespace taskhost
