#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "plugin/host_api.hpp"
#include "plugin/loader.hpp"
#include "plugin/runner.hpp"
#include "schema/limits.hpp"

namespace taskhost::sandbox {

// Per attempt, resolved (schema over host config over the defaults); 0
// leaves a limit unset.
struct Limits {
  uint64_t memory = 0;      // bytes: memory cgroup, RLIMIT_AS as the floor
  uint64_t cpu_time = 0;    // seconds: RLIMIT_CPU
  uint64_t open_files = 0;  // RLIMIT_NOFILE
  uint64_t tmp = 0;         // bytes of the attempt's /tmp (and RLIMIT_FSIZE)
  uint64_t processes = 0;   // pids cgroup; threads count
};

// Unset fields are unlimited.
Limits limits_of(const ResourceLimits& limits);

struct SandboxOptions {
  std::filesystem::path helper;  // the taskhost-sandbox executable
  // How long a plugin asked to stop may take before it is killed.
  std::chrono::milliseconds grace{30'000};
  // The uid and gid a root host runs plugins as.
  uint32_t drop_uid = 65534;
  // Tests: the setup step to fail (1-based), to prove each fails closed.
  uint32_t fail_at = 0;
  // Keep sandboxes ready (started, walls up, waiting for a plugin): each
  // attempt takes one and another is started in its place. Off, each
  // attempt starts its own.
  bool warm = true;
};

// What the plugin process said about itself in its handshake.
struct Descriptor {
  std::string name, version, description;
  uint32_t abi_major = 0, abi_minor = 0;
};

struct Helper;

// Runs attempts of plugins in fresh sandboxed processes, one per attempt.
// Thread-safe. Starting a sandbox (exec of the helper, namespaces, the
// root's mounts, two forks) costs far more than an attempt of a small
// plugin, so with options.warm a few are kept ready: a ready sandbox has
// never seen a plugin, holds nothing of the host's, and is used once.
class Sandbox {
 public:
  explicit Sandbox(SandboxOptions options);
  ~Sandbox();  // ends the ready sandboxes
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // One attempt: hands a sandbox the plugin's image (the sealed bytes the
  // host verified) and limits, checks the plugin's handshake, then serves
  // each of its host calls with the in-process table over host (so grant
  // checks, audit and fencing are the same as in-process).
  // host.should_stop() is polled a few times a second; once it is true the
  // process is told, and killed after grace.
  //
  // Returns the plugin's th_code with *message on failure. A process that
  // dies, is killed by a limit or by the seccomp filter, or breaks the
  // protocol fails with TH_ERR_RETRYABLE (TH_ERR_CANCELLED when killed
  // after a stop request) and a message saying which. Throws
  // Error(refused) when the handshake refuses the plugin (file names it in
  // the message) or the kernel cannot give the sandbox (the message names
  // the missing feature), and Error(environment) when the process cannot
  // be started.
  int run(const Limits& limits, const PluginImage& image, const std::string& file,
          HostServices& host, const GrantedServices& granted, std::string* message);

  // The plugin's handshake only, for `plugin inspect --load`: loads it in a
  // sandbox (its static initialisers run there) and never calls run.
  // Throws Error(refused) when it cannot be loaded or its descriptor is
  // refused, with the words run would use.
  Descriptor inspect(const PluginImage& image, const std::string& file);

  const SandboxOptions& options() const { return options_; }

 private:
  int attempt(const Limits& limits, const PluginImage& image, const std::string& file,
              HostServices* host, const GrantedServices& granted, std::string* message,
              Descriptor* descriptor);
  std::unique_ptr<Helper> take();
  void keep_warm();

  const SandboxOptions options_;
  std::mutex mutex_;
  std::condition_variable wanted_;
  std::deque<std::unique_ptr<Helper>> ready_;
  size_t wanted_count_ = 0;  // sandboxes to start in place of those taken
  bool ending_ = false;
  std::thread starter_;
};

// $TASKHOST_SANDBOX_HELPER, else the helper installed beside the running
// executable.
std::filesystem::path default_helper();

// isolation: process, the default.
class ProcessRunner : public Runner {
 public:
  ProcessRunner(Sandbox& sandbox, const Limits& limits,
                std::shared_ptr<const VerifiedPlugin> plugin)
      : sandbox_(sandbox), limits_(limits), plugin_(std::move(plugin)) {}
  int run(HostServices& host, const GrantedServices& granted, std::string* message) override {
    return sandbox_.run(limits_, plugin_->image, plugin_->info.path, host, granted, message);
  }

 private:
  Sandbox& sandbox_;
  Limits limits_;
  std::shared_ptr<const VerifiedPlugin> plugin_;
};

}  // namespace taskhost::sandbox
