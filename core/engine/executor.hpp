#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "config/host_config.hpp"
#include "plugin/loader.hpp"
#include "plugin/runner.hpp"
#include "sandbox/process_runner.hpp"
#include "store/pg.hpp"
#include "store/queue.hpp"
#include "store/schemas.hpp"

namespace taskhost {

// Called as a run reports progress (at most a few times a second).
using ProgressObserver = std::function<void(uint64_t done, uint64_t total)>;

// Runs claimed attempts of plugins in this process. Thread-safe: executor
// threads share one Executor and one connection pool. Schemas are
// cached by id (a version never changes); plugins are cached by path and
// re-verified against the pinned digest whenever the file changes.
class Executor {
 public:
  // config names what the services may reach (and must outlive the executor).
  // A sandboxed plugin that ignores a stop request or its timeout is killed
  // after grace.
  Executor(std::filesystem::path plugin_dir, bool dev_mode, const HostConfig& config,
           std::chrono::milliseconds grace = std::chrono::seconds(30));

  // Executes one attempt. stop turns true when the worker learns of a
  // cancel/pause request or lost the lease; the plugin sees it through
  // should_stop(). A plugin failure is an outcome, not an exception.
  Completion execute(pg::Pool& pool, const ClaimedRun& run, const std::atomic<bool>& stop,
                     const ProgressObserver& observer = {});

  // The schema with this id, parsed once.
  std::shared_ptr<const InstalledSchema> schema(pg::Pool& pool, int64_t id);

 private:
  std::shared_ptr<const LoadedPlugin> plugin(const TaskSchema& schema);
  std::shared_ptr<const VerifiedPlugin> verified(const TaskSchema& schema);
  // How the schema's plugin runs: isolation none or process.
  std::unique_ptr<Runner> runner(const TaskSchema& schema);

  struct CachedPlugin {
    std::string pin;
    std::filesystem::file_time_type mtime;
    uintmax_t size = 0;
    std::shared_ptr<const LoadedPlugin> plugin;
  };

  std::filesystem::path plugin_dir_;
  bool dev_mode_;
  const HostConfig& config_;
  std::mutex mutex_;
  std::map<int64_t, std::shared_ptr<const InstalledSchema>> schemas_;
  std::map<std::string, CachedPlugin> plugins_;
  struct CachedFile {
    std::string pin;
    std::filesystem::file_time_type mtime;
    uintmax_t size = 0;
    std::shared_ptr<const VerifiedPlugin> plugin;
  };
  std::map<std::string, CachedFile> files_;
  sandbox::Sandbox sandbox_;
};

}  // namespace taskhost
