#pragma once

namespace taskhost {

// The `taskhost` command line: parses argv, runs one command, returns the
// process exit code (documented in README.md). Never throws.
int run_cli(int argc, char** argv);

}  // namespace taskhost
