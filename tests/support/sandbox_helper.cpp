// Plugins run in the sandbox by default, started through the helper beside
// the running executable; a test binary is not beside it, so it names the
// helper this build made (before any test starts an executor).
#include <cstdlib>

namespace {
const bool helper_named = ::setenv("TASKHOST_SANDBOX_HELPER", SANDBOX_HELPER, 1) == 0;
}  // namespace
