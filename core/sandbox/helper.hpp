#pragma once

namespace taskhost::sandbox {

// The taskhost-sandbox helper: started by the host with the broker socket,
// the plugin's descriptor and the report pipe as fds 3, 4 and 5, it waits
// for go, builds the sandbox and runs the plugin in it. Its exit code is the
// plugin process's (128 + a signal that killed it).
int helper_main();

}  // namespace taskhost::sandbox
