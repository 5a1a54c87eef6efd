#pragma once

// The walls around a plugin process, built by the taskhost-sandbox helper
// (never in the host: the host is multithreaded and these steps change the
// calling process). Every function throws std::runtime_error naming what
// failed; the helper reports it and the attempt fails closed.

#include <linux/filter.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "sandbox/frame.hpp"

namespace taskhost::sandbox {

// The descriptors the helper is started with.
inline constexpr int broker_fd = 3;  // socket to the host
inline constexpr int report_fd = 4;  // pipe: why the process could not go on

// The plugin's file inside the sandbox, copied from the sealed image of the
// bytes the host verified (sent with go).
inline constexpr const char* plugin_path = "/plugin.so";

// The kernel lacks a feature the sandbox needs: the message names it and
// how to enable it. Reported apart from other setup failures, because the
// host then refuses plugins instead of retrying them.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

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

// In the namespace's first process, before any attempt is known: a tmpfs
// root holding read-only binds of the library directories and ld.so.cache,
// /dev/{null,zero,urandom}; pivot_root into it.
void build_root(Steps& steps);

// In the plugin process, once go came with the plugin's image: the
// size-limited /tmp, the plugin's bytes copied from image, and the root
// made read-only.
void finish_root(Steps& steps, const Go& go, int image);

// In the plugin process: limits, then no capabilities, no new privileges,
// and uid/gid drop_uid when the host is root.
void set_limits(Steps& steps, const Go& go);
void drop_privileges(Steps& steps, uint32_t drop_uid);

// The seccomp allowlist as BPF, compiled by the plugin process while it
// waits for an attempt (so an attempt does not pay for it), and installed
// after the plugin is loaded and before it runs. A refused syscall raises
// SIGSYS, whose handler reports it on report_fd.
class SeccompFilter {
 public:
  static SeccompFilter compile();
  // One prctl: needs no_new_privs (drop_privileges sets it).
  void install(Steps& steps) const;

 private:
  std::vector<sock_filter> program_;
};

}  // namespace taskhost::sandbox
