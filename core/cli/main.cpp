#include "cli/cli.hpp"

int main(int argc, char** argv) { return taskhost::run_cli(argc, argv); }
