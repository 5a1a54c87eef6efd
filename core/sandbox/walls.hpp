#pragma once

// The walls around a plugin process, built by the taskhost-sandbox helper
// (never in the host: the host is multithreaded and these steps change the
// calling process). Every function throws std::runtime_error naming what
// failed; the helper reports it and the attempt fails closed.

#include <string>

#include "sandbox/frame.hpp"

namespace taskhost::sandbox {

// The descriptors the helper is started with.
inline constexpr int broker_fd = 3;  // socket to the host
inline constexpr int plugin_fd = 4;  // the plugin's verified bytes
inline constexpr int report_fd = 5;  // pipe: why the process could not go on

// The plugin's file inside the sandbox, copied from the descriptor the host
// hashed.
inline constexpr const char* plugin_path = "/plugin.so";

// Counts the setup steps and fails the one numbered fail_at (1-based; 0
// fails none), so tests can prove each step fails closed.
class Steps {
 public:
  explicit Steps(uint32_t fail_at) : fail_at_(fail_at) {}
  // Throws "injected failure" when this is the step to fail.
  void next(const char* name);

 private:
  uint32_t fail_at_;
  uint32_t count_ = 0;
};

// In the helper, before the fork that starts the new pid namespace: an
// unprivileged host gets a user namespace mapping its own uid and gid; then
// new mount, pid, network, ipc, uts and cgroup namespaces.
void enter_namespaces(Steps& steps);

// In the namespace's first process: a tmpfs root holding read-only binds of
// the library directories and ld.so.cache, /dev/{null,zero,urandom}, a
// size-limited /tmp, and the plugin's bytes copied from plugin_fd; then
// pivot_root into it and make it read-only.
void build_root(Steps& steps, const Go& go);

// In the plugin process: limits, then no capabilities, no new privileges,
// an unprivileged uid when the host is root.
void set_limits(Steps& steps, const Go& go);
void drop_privileges(Steps& steps, const Go& go);

// The seccomp allowlist, after the plugin is loaded and before it runs.
// A refused syscall raises SIGSYS, whose handler reports it on report_fd.
void install_seccomp(Steps& steps);

}  // namespace taskhost::sandbox
