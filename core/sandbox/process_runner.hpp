#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "plugin/host_api.hpp"
#include "plugin/runner.hpp"

namespace taskhost::sandbox {

// Per attempt; 0 leaves a limit unset.
struct Limits {
  uint64_t memory = 0;      // bytes: memory cgroup, RLIMIT_AS as the floor
  uint64_t cpu_time = 0;    // seconds: RLIMIT_CPU
  uint64_t open_files = 0;  // RLIMIT_NOFILE
  uint64_t tmp = 0;         // bytes of the attempt's /tmp (and RLIMIT_FSIZE)
  uint64_t processes = 0;   // pids cgroup; threads count
};

struct SandboxOptions {
  std::filesystem::path helper;  // the taskhost-sandbox executable
  Limits limits;
  // How long a plugin asked to stop may take before it is killed.
  std::chrono::milliseconds grace{30'000};
  // The uid and gid a root host runs plugins as.
  uint32_t drop_uid = 65534;
  // Tests: the setup step to fail (1-based), to prove each fails closed.
  uint32_t fail_at = 0;
};

// What the plugin process said about itself in its handshake.
struct Descriptor {
  std::string name, version, description;
  uint32_t abi_major = 0, abi_minor = 0;
};

// Runs one attempt of a plugin in a fresh sandboxed process: starts the
// helper with the broker socket and plugin_fd (the bytes the host verified),
// checks the plugin's handshake, then serves each of its host calls with
// the in-process table over host (so grant checks, audit and fencing are
// the same as in-process). host.should_stop() is polled a few times a
// second; once it is true the process is told, and killed after grace.
//
// Returns the plugin's th_code with *message on failure. A process that
// dies, is killed by a limit or by the seccomp filter, or breaks the
// protocol fails with TH_ERR_RETRYABLE (TH_ERR_CANCELLED when killed after
// a stop request) and a message saying which. Throws Error(refused) when the
// handshake refuses the plugin (file names it in the message), and
// Error(environment) when the process cannot be started.
int run_in_process(const SandboxOptions& options, int plugin_fd, const std::string& file,
                   HostServices& host, const GrantedServices& granted, std::string* message,
                   Descriptor* descriptor = nullptr);

// $TASKHOST_SANDBOX_HELPER, else the helper installed beside the running
// executable.
std::filesystem::path default_helper();

// A plugin file whose SHA-256 matched its pin, kept open: the descriptor that
// was hashed is the one each attempt's process loads from. Throws
// Error(refused) with the loader's words.
class PluginFile {
 public:
  PluginFile(const std::filesystem::path& file, const std::string& pinned, bool allow_any);
  ~PluginFile();
  PluginFile(const PluginFile&) = delete;
  PluginFile& operator=(const PluginFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// isolation: process, the default.
class ProcessRunner : public Runner {
 public:
  ProcessRunner(const SandboxOptions& options, std::shared_ptr<const PluginFile> file)
      : options_(options), file_(std::move(file)) {}
  int run(HostServices& host, const GrantedServices& granted, std::string* message) override {
    return run_in_process(options_, file_->fd(), file_->path(), host, granted, message);
  }

 private:
  const SandboxOptions& options_;
  std::shared_ptr<const PluginFile> file_;
};

}  // namespace taskhost::sandbox
