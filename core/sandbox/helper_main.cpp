#include "sandbox/helper.hpp"

int main() { return taskhost::sandbox::helper_main(); }
