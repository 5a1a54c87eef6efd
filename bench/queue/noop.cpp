// The benchmark's task: nothing, so the figures are the queue's own cost.
#include <taskhost/sdk.hpp>

struct Noop {
  static constexpr const char* name = "noop";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description = "does nothing";
  void run(taskhost::Context&) {}
};
TASKHOST_PLUGIN(Noop)
