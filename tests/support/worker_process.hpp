#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace taskhost::test {

// A `taskhost worker` child process (lease 2 s), stopped with SIGTERM when
// destroyed. It inherits this process's environment (TASKHOST_CONFIG ...).
class WorkerProcess {
 public:
  WorkerProcess(const std::string& conninfo, const std::string& id,
                std::vector<std::string> extra = {},
                const std::string& plugin_dir = FIXTURE_PLUGIN_DIR) {
    std::vector<std::string> args = {
        TASKHOST_BIN, "--database-url", conninfo, "--plugin-dir", plugin_dir, "--log-level", "warn",
        "worker",     "--id",           id,       "--lease",      "2s"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, TASKHOST_BIN, nullptr, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("cannot start a worker");
  }
  ~WorkerProcess() {
    if (pid_ > 0) stop();
  }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  void signal(int sig) { ::kill(pid_, sig); }
  // SIGTERM, then the exit status (0 = clean shutdown).
  int stop() {
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGTERM);
    return wait();
  }
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace taskhost::test
