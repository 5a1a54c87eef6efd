#include "engine/engine.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <regex>

#include "plugin/host_api.hpp"
#include "plugin/loader.hpp"
#include "schema/params.hpp"

namespace taskhost {
namespace {

using Clock = std::chrono::steady_clock;

const char* code_name(int rc) {
  switch (rc) {
    case TH_ERR_INVALID:
      return "invalid";
    case TH_ERR_NOT_SUPPORTED:
      return "not_supported";
    case TH_ERR_PERMISSION:
      return "permission_denied";
    case TH_ERR_NOT_FOUND:
      return "not_found";
    case TH_ERR_IO:
      return "io";
    case TH_ERR_RETRYABLE:
      return "retryable";
    case TH_ERR_PERMANENT:
      return "permanent";
    case TH_ERR_CANCELLED:
      return "cancelled";
    default:
      return "internal";
  }
}

Json parse_json(std::string_view text, const char* what) {
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) throw Error(ErrorKind::invalid, std::string(what) + " is not valid JSON");
  return j;
}

// The host side of one attempt: every plugin call lands here.
class RunHost : public HostServices {
 public:
  RunHost(RunWriter& writer, const Run& run, std::chrono::milliseconds timeout,
          const ProgressObserver& observer)
      : writer_(writer),
        run_(run),
        deadline_(Clock::now() + timeout),
        observer_(observer),
        short_id_(run.id.substr(0, 8)) {}

  void log(th_log_level level, std::string_view message) override {
    static constexpr spdlog::level::level_enum levels[] = {
        spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err};
    auto lvl = level >= TH_LOG_DEBUG && level <= TH_LOG_ERROR ? levels[level] : spdlog::level::info;
    spdlog::log(lvl, "[{} {}] {}", run_.schema_name, short_id_, message);
  }

  void progress(uint64_t done, uint64_t total) override {
    // Stored at most every 250 ms (and always at completion): progress is a
    // hint, and a plugin may report it per item.
    auto now = Clock::now();
    if (done != total && now - last_progress_ < std::chrono::milliseconds(250)) return;
    last_progress_ = now;
    writer_.progress(done, total);
    if (observer_) observer_(done, total);
  }

  std::string checkpoint_get() override { return writer_.checkpoint().dump(); }

  void checkpoint_set(std::string_view json) override {
    writer_.checkpoint(parse_json(json, "checkpoint").dump());
  }

  void emit(std::string_view event, std::string_view json) override {
    static const std::regex event_re("^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$");
    std::string name(event);
    if (!std::regex_match(name, event_re) || name.rfind("run.", 0) == 0)
      throw Error(ErrorKind::invalid,
                  "event name '" + name + "' must look like item.failed and not start with run.");
    writer_.emit(name, parse_json(json, "event payload").dump());
  }

  bool should_stop() override {
    if (Clock::now() >= deadline_) return true;
    auto now = Clock::now();
    if (now - last_state_check_ >= std::chrono::seconds(1)) {
      last_state_check_ = now;
      auto s = writer_.state();
      stop_requested_ = s == RunState::pausing || s == RunState::cancelling;
    }
    return stop_requested_;
  }

  std::string params() override { return run_.params.dump(); }

  std::string run_info() override {
    return Json{{"run_id", run_.id},
                {"attempt", writer_.attempt()},
                {"schema", run_.schema_name},
                {"schema_version", run_.schema_version}}
        .dump();
  }

  void set_output(std::string_view json) override {
    Json j = parse_json(json, "output");
    if (!j.is_object()) throw Error(ErrorKind::invalid, "output must be a JSON object");
    writer_.output(j.dump());
  }

  bool timed_out() const { return Clock::now() >= deadline_; }

 private:
  RunWriter& writer_;
  const Run& run_;
  Clock::time_point deadline_;
  const ProgressObserver& observer_;
  std::string short_id_;
  Clock::time_point last_progress_{};
  Clock::time_point last_state_check_{};
  bool stop_requested_ = false;
};

}  // namespace

std::string Engine::submit(const InstalledSchema& schema, const Json& params) {
  std::vector<Diagnostic> errors;
  Json valid = validate_params(schema.schema, params, &errors);
  if (!errors.empty())
    throw Error(ErrorKind::invalid, "invalid parameters for " + schema.schema.ref() + ":\n" +
                                        format_diagnostics(errors));
  pg::Transaction tx(conn_);
  std::string id = insert_run(tx, schema.id, valid, options_.actor);
  tx.commit();
  spdlog::info("run {} of {} queued by {}", id, schema.schema.ref(), options_.actor);
  return id;
}

Run Engine::execute(const std::string& run_id, const ProgressObserver& observer) {
  RunWriter writer(conn_, run_id, options_.actor);
  writer.start();
  Run run = get_run(conn_, run_id);
  const InstalledSchema schema = schema_by_id(conn_, run.schema_id);
  spdlog::info("run {} of {} started (attempt {})", run.id, schema.schema.ref(), writer.attempt());

  auto finish = [&](RunState to, std::optional<std::string> code, std::optional<std::string> error,
                    const std::string& reason) {
    try {
      writer.finish(to, code, error, reason);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::conflict) throw;
      spdlog::warn("{}", e.what());  // another actor owns the run now
    }
    Run done = get_run(conn_, run_id);
    spdlog::info("run {} {}{}", done.id, to_string(done.state),
                 done.error ? ": " + *done.error : std::string());
    return done;
  };

  std::optional<LoadedPlugin> plugin;
  try {
    plugin = load_plugin(options_.plugin_dir / schema.schema.plugin_path,
                         schema.schema.plugin_sha256, options_.dev_mode);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::refused) throw;
    return finish(RunState::failed, "plugin_refused", schema.schema.ref() + ": " + e.what(),
                  "plugin refused");
  }

  RunHost host(writer, run, schema.schema.timeout, observer);
  th_host_api api = make_host_api();
  std::string message;
  int rc = plugin->run(&api, as_host(host), &message);

  RunState stored = writer.state();
  if (rc == TH_OK)
    return finish(RunState::succeeded, std::nullopt, std::nullopt, "plugin returned");
  if (stored == RunState::cancelling)
    return finish(RunState::cancelled, code_name(rc), message, "cancel requested");
  if (stored == RunState::pausing)
    return finish(RunState::paused, code_name(rc), message, "pause requested");
  if (host.timed_out())
    return finish(RunState::failed, "timeout",
                  "stopped after the schema's timeout of " +
                      std::to_string(schema.schema.timeout.count() / 1000) + "s: " + message,
                  "timeout");
  return finish(RunState::failed, code_name(rc), message, "plugin failed");
}

}  // namespace taskhost
