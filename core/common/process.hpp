#pragma once

#include <string>
#include <vector>

namespace taskhost {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (looked up in PATH) with argv, stdin from /dev/null, and waits.
// Throws Error(environment) when the program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv);

}  // namespace taskhost
