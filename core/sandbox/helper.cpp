#include "sandbox/helper.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "sandbox/client.hpp"
#include "sandbox/walls.hpp"

// In a sanitizer build: AddressSanitizer's leak check stops the world with
// ptrace, which the sandbox forbids (the processes end with _exit anyway),
// and a plugin's crash must end its process by the signal, which is what
// the host reports, not by ASan's exit code.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_abort=0:handle_sigfpe=0:"
         "handle_sigill=0";
}
#endif

namespace taskhost::sandbox {
namespace {

[[noreturn]] void report_failure(const char* where, const std::exception& e) {
  try {
    if (dynamic_cast<const Unavailable*>(&e))
      write_all(report_fd, FrameWriter(Kind::unavailable).bytes(e.what()).finish());
    else
      write_all(
          report_fd,
          FrameWriter(Kind::setup_failed).bytes(std::string(where) + ": " + e.what()).finish());
  } catch (...) {
  }
  ::_exit(setup_failed_exit);
}

// Dies with its parent: nothing of an attempt outlives the process that
// started it.
void die_with_parent(pid_t expected_parent) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != expected_parent) ::_exit(1);
}

// Waits for child and ends this process the way it ended: its exit code,
// or 128 + the signal that killed it.
[[noreturn]] void follow(pid_t child) {
  int status = 0;
  while (::waitpid(child, &status, 0) < 0)
    if (errno != EINTR) ::_exit(1);
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

}  // namespace

int helper_main() {
  // Nothing inherited but the two descriptors the host passed.
  if (::syscall(SYS_close_range, report_fd + 1, ~0u, 0) < 0) ::_exit(1);
  die_with_parent(::getppid());
  // The host sends prepare once this process is in the attempt's cgroup:
  // nothing forks before it.
  Frame frame;
  Prepare prepare;
  try {
    if (!read_frame(broker_fd, frame)) ::_exit(0);  // the host changed its mind
    if (frame.kind != Kind::prepare) throw FrameError("the first frame is not prepare");
    prepare = parse_prepare(frame.body);
  } catch (const std::exception& e) {
    report_failure("sandbox protocol", e);
  }
  Steps steps(prepare.fail_at);
  try {
    enter_namespaces(steps);
  } catch (const std::exception& e) {
    report_failure("sandbox setup", e);
  }
  pid_t init = ::fork();
  if (init < 0) report_failure("sandbox setup", std::runtime_error(std::strerror(errno)));
  if (init > 0) {
    ::close(broker_fd);
    follow(init);
  }
  // pid 1 of the new namespace: builds the root, then starts the plugin's
  // process and reaps. The plugin is not pid 1, so its own signals
  // (abort) act as they do anywhere.
  die_with_parent(0);  // the helper is outside this pid namespace
  try {
    build_root(steps);
  } catch (const std::exception& e) {
    report_failure("sandbox setup", e);
  }
  pid_t plugin = ::fork();
  if (plugin < 0) report_failure("sandbox setup", std::runtime_error(std::strerror(errno)));
  if (plugin > 0) {
    ::close(broker_fd);
    follow(plugin);
  }
  die_with_parent(1);
  // Warm from here: everything above is done before an attempt needs it.
  try {
    plugin_process(steps, prepare);
  } catch (const std::exception& e) {
    report_failure("sandbox setup", e);
  }
}

}  // namespace taskhost::sandbox
