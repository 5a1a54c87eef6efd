// hello: the smallest useful task. Greets `name` `count` times, one item at a
// time, checkpointing after each so a retried attempt resumes where it stopped.
#include <taskhost/sdk.hpp>

#include <string>

namespace {

struct Hello {
  static constexpr const char* name = "hello";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description = "Greets someone, one item at a time";

  void run(taskhost::Context& ctx) {
    const auto who = ctx.param<std::string>("name");
    const auto count = ctx.param<int64_t>("count");
    const auto info = ctx.run_info();

    const taskhost::Json saved = ctx.checkpoint();
    int64_t done = saved.is_object() ? saved.value("done", int64_t{0}) : 0;
    if (done > 0) ctx.info("resuming after item " + std::to_string(done));

    for (; done < count; ++done) {
      if (ctx.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stop requested");
      ctx.emit("item.done", {{"item", done + 1}, {"greeting", "Hello, " + who + "!"}});
      ctx.checkpoint({{"done", done + 1}});
      ctx.progress(done + 1, count);
    }
    ctx.info("greeted " + who + " " + std::to_string(count) + " times");
    ctx.set_output(
        {{"greeting", "Hello, " + who + "!"}, {"count", count}, {"attempt", info.at("attempt")}});
  }
};

}  // namespace

TASKHOST_PLUGIN(Hello)
