#pragma once

namespace taskhost {

// `taskhost fixedwidth gen|check ...` (argv from "fixedwidth" on): needs no
// database or host config. Returns the exit code: 0 clean, 1 the file has
// problems, 2 usage or an invalid layout, 6 a file that cannot be read.
int run_fixedwidth_cli(int argc, char** argv);

}  // namespace taskhost
