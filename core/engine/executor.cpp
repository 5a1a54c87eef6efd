#include "engine/executor.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <map>

#include "common/json_input.hpp"
#include "common/pattern.hpp"
#include "common/text.hpp"
#include "config/redactor.hpp"
#include "engine/run_log.hpp"
#include "plugin/host_api.hpp"
#include "services/database.hpp"
#include "services/http_service.hpp"
#include "services/object_storage.hpp"
#include "services/pgp_service.hpp"
#include "services/plugin_metrics.hpp"
#include "services/sftp_service.hpp"
#include "store/audit.hpp"
#include "store/metrics.hpp"

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

// Codes that say another attempt cannot help.
bool permanent(int rc) {
  return rc == TH_ERR_PERMANENT || rc == TH_ERR_INVALID || rc == TH_ERR_PERMISSION ||
         rc == TH_ERR_NOT_SUPPORTED;
}

// Caps on what a plugin hands the host, so that no run can make the store,
// the logs or every `runs list` / `runs show` slow for everyone.
constexpr size_t max_event_bytes = 64 * 1024;     // one event's payload
constexpr size_t max_event_name_bytes = 128;      // one event's name
constexpr size_t max_checkpoint_bytes = 1 << 20;  // the checkpoint
constexpr size_t max_output_bytes = 1 << 20;      // the output
constexpr size_t max_file_bytes = 64 << 20;       // one attached file
constexpr size_t max_message_bytes = 8 * 1024;    // an error or log message
constexpr size_t max_content_type_bytes = 255;

Json parse_json(std::string_view text, const char* what, size_t max_bytes) {
  if (text.size() > max_bytes)
    throw Error(ErrorKind::invalid, std::string(what) + " is " + std::to_string(text.size()) +
                                        " bytes, over the limit of " + std::to_string(max_bytes) +
                                        " bytes");
  return parse_json_input(text, what);
}

// The host side of one attempt: every plugin call lands here.
class RunHost : public HostServices {
 public:
  RunHost(pg::Pool& pool, const ClaimedRun& run, const InstalledSchema& schema,
          const HostConfig& config, const std::atomic<bool>& stop, const ProgressObserver& observer,
          const Redactor& redactor, RunLog& log)
      : pool_(pool),
        run_(run),
        schema_(schema),
        config_(config),
        stop_(stop),
        deadline_(Clock::now() + run.timeout),
        observer_(observer),
        redactor_(redactor),
        log_(log),
        short_id_(run.id.substr(0, 8)) {}

  void log(th_log_level level, std::string_view message) override {
    static constexpr spdlog::level::level_enum levels[] = {
        spdlog::level::debug, spdlog::level::info, spdlog::level::warn, spdlog::level::err};
    static constexpr const char* names[] = {"debug", "info", "warn", "error"};
    const bool known = level >= TH_LOG_DEBUG && level <= TH_LOG_ERROR;
    // Redacted before it is cut, so no cut can leave part of a secret.
    std::string text =
        storable(redactor_.redact(message.substr(0, 8 * max_message_bytes)), max_message_bytes);
    spdlog::log(known ? levels[level] : spdlog::level::info, "[{} {}] {}", run_.schema_name,
                short_id_, text);
    log_.add(known ? names[level] : "info", std::move(text));
  }

  void progress(uint64_t done, uint64_t total) override {
    // Stored at most every 250 ms (and always at completion): progress is a
    // hint, and a plugin may report it per item.
    auto now = Clock::now();
    if (done != total && now - last_progress_ < std::chrono::milliseconds(250)) {
      unstored_progress_ = {done, total};
      return;
    }
    last_progress_ = now;
    unstored_progress_.reset();
    write_held(false, [&](RunWriter& w) { w.progress(done, total); });
    if (observer_) observer_(done, total);
  }

  // Stores what is held back as the attempt ends: the last progress report
  // (the next attempt's rate starts from where this one really stopped), the
  // events and the metric samples.
  void flush() {
    write_held(true, [&](RunWriter& w) {
      if (unstored_progress_) w.progress(unstored_progress_->first, unstored_progress_->second);
    });
  }

  std::string checkpoint_get() override { return writer()->checkpoint().dump(); }

  void checkpoint_set(std::string_view json) override {
    const std::string checkpoint = parse_json(json, "checkpoint", max_checkpoint_bytes).dump();
    write_held(true, [&](RunWriter& w) { w.checkpoint(checkpoint); });
  }

  void emit(std::string_view event, std::string_view json) override {
    static const Pattern event_re("[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+");
    if (event.size() > max_event_name_bytes || !event_re.matches(event) ||
        event.rfind("run.", 0) == 0)
      throw Error(ErrorKind::invalid, "event name '" + printable(storable(event, 100)) +
                                          "' must look like item.failed, be at most " +
                                          std::to_string(max_event_name_bytes) +
                                          " bytes and not start with run.");
    events_.emplace_back(event, parse_json(json, "event payload", max_event_bytes).dump());
    held_bytes_ += event.size() + events_.back().second.size();
    if (held_bytes_ >= max_held_bytes || Clock::now() - last_write_ >= write_every)
      write_held(true);
  }

  bool should_stop() override {
    if (stop_.load(std::memory_order_relaxed) || Clock::now() >= deadline_) return true;
    // The worker hears of stop requests by NOTIFY and heartbeat; this poll
    // (at most once a second) also covers a missed notification.
    auto now = Clock::now();
    if (now - last_state_check_ >= std::chrono::seconds(1)) {
      last_state_check_ = now;
      auto s = writer()->state();
      stop_requested_ = s != RunState::running;
    }
    return stop_requested_;
  }

  std::string params() override { return run_.params.dump(); }

  std::string run_info() override {
    return Json{{"run_id", run_.id},
                {"attempt", run_.attempt},
                {"schema", run_.schema_name},
                {"schema_version", schema_.schema.version.str()}}
        .dump();
  }

  void set_output(std::string_view json) override {
    Json j = parse_json(json, "output", max_output_bytes);
    if (!j.is_object()) throw Error(ErrorKind::invalid, "output must be a JSON object");
    write_held(false, [&](RunWriter& w) { w.output(j.dump()); });
  }

  void attach_file(std::string_view name, std::string_view content_type,
                   std::string content) override {
    if (content.size() > max_file_bytes)
      throw Error(ErrorKind::invalid, "file is " + std::to_string(content.size()) +
                                          " bytes, over the limit of " +
                                          std::to_string(max_file_bytes) + " bytes");
    write_held(false, [&](RunWriter& w) {
      w.attach_file(std::string(name), storable(content_type, max_content_type_bytes), content);
    });
  }

  ObjectStorageService& storage() {
    if (!storage_)
      storage_.emplace(
          schema_.schema.name, schema_.schema.capabilities.s3, config_,
          [this](const ServiceCall& c) { audit(c); }, run_.dry_run,
          schema_.schema.capabilities.sftp);
    write_held(false);
    return *storage_;
  }

  Json object_storage(const std::string& op, const Json& request, const ByteSource& in,
                      const ByteSink& out) override {
    return storage().call(op, request, in, out);
  }

  std::unique_ptr<ObjectFile> object_file(const Json& request) override {
    return storage().get_file(request);
  }

  Json http(const std::string& op, const Json& request, const ByteSource& in,
            const ByteSink& out) override {
    if (!http_)
      http_.emplace(
          schema_.schema.name, schema_.schema.capabilities.http, config_,
          [this](const ServiceCall& c) { audit(c); }, run_.dry_run);
    write_held(false);
    return http_->call(op, request, in, out);
  }

  Json sftp(const std::string& op, const Json& request, const ByteSource& in,
            const ByteSink& out) override {
    if (!sftp_)
      sftp_.emplace(
          schema_.schema.name, schema_.schema.capabilities.sftp, config_,
          [this](const ServiceCall& c) { audit(c); }, run_.dry_run, schema_.schema.capabilities.s3);
    write_held(false);
    return sftp_->call(op, request, in, out);
  }

  Json db(const std::string& op, const Json& request, const ByteSource& in,
          const ByteSink& out) override {
    if (!db_) {
      const DbGrant& grant = *schema_.schema.capabilities.db;
      db_.emplace(
          schema_.schema.name, db_roles(schema_.schema), grant,
          database_target(config_, pool_.conninfo(), grant.connection),
          [this](const ServiceCall& c) { audit(c); }, run_.dry_run);
    }
    write_held(false);
    return db_->call(op, request, in, out);
  }

  Json pgp(const std::string& op, const Json& request, const ByteSource& in,
           const ByteSink& out) override {
    if (!pgp_)
      pgp_.emplace(schema_.schema.name, schema_.schema.capabilities.pgp,
                   schema_.schema.capabilities.s3, config_,
                   [this](const ServiceCall& c) { audit(c); });
    write_held(false);
    return pgp_->call(op, request, in, out);
  }

  // Its services were made with it: each refuses its writes itself.
  bool dry_run() override { return run_.dry_run; }

  // Checked against the schema's declarations, then held: a counter's
  // samples summed, a gauge's last kept. A dry run's samples are checked but
  // not stored: they would count work that was not done.
  void metric(std::string_view name, std::string_view labels, double value) override {
    MetricSample s = check_metric_sample(schema_.schema, name, labels, value);
    if (run_.dry_run) return;
    auto [held, fresh] = metrics_.try_emplace(s.spec->name + s.labels.dump(), s);
    if (!fresh) held->second.value = s.spec->counter ? held->second.value + s.value : s.value;
    if (Clock::now() - last_write_ >= write_every) write_held(true);
  }

  bool timed_out() const { return Clock::now() >= deadline_; }

 private:
  // A writer on a pooled connection, for one call: a plugin holds no
  // connection between its calls.
  struct PooledWriter {
    pg::Pool::Lease conn;
    RunWriter writer;
    RunWriter* operator->() { return &writer; }
  };
  PooledWriter writer() {
    auto conn = pool_.acquire();
    RunWriter w(*conn, run_.id, run_.attempt);
    return {std::move(conn), w};
  }

  // Events and metric samples wait here and are written in one statement or
  // transaction for many (a plugin may emit and count per item): the events
  // before the plugin's next call that reaches outside (a service, progress,
  // its checkpoint, output or a file), so nothing it does after an event is on
  // record before it; both every write_every while it keeps calling, and as
  // the attempt ends. A worker that dies loses only held events emitted
  // after the last checkpoint, which the rescued attempt emits again.
  static constexpr auto write_every = std::chrono::milliseconds(250);
  static constexpr size_t max_held_bytes = 4 << 20;
  // Writes the held events (and with metrics_too the held samples), then
  // `then`, a write that must not be on record before them, in one
  // transaction: a checkpoint and the counts of the work it covers are
  // stored together or not at all.
  void write_held(bool metrics_too, const std::function<void(RunWriter&)>& then = nullptr) {
    const bool metrics = metrics_too && !metrics_.empty();
    if (metrics_too) last_write_ = Clock::now();
    if (events_.empty() && !metrics && !then) return;
    auto conn = pool_.acquire();
    RunWriter w(*conn, run_.id, run_.attempt);
    if (events_.empty() && !metrics) {
      if (then) then(w);  // nothing held: one statement, no transaction
      return;
    }
    pg::Transaction tx(*conn);
    w.emit(events_);
    if (metrics)
      for (const auto& [key, s] : metrics_)
        record_plugin_metric(*conn, schema_.schema.name, s.spec->name, s.spec->counter,
                             s.spec->help, s.labels, s.value);
    if (then) then(w);
    tx.commit();
    events_.clear();
    held_bytes_ = 0;
    if (metrics) metrics_.clear();
  }

  // Every service call, allowed or not, on the record with the run.
  void audit(const ServiceCall& c) {
    append_audit(*pool_.acquire(), "plugin:" + schema_.schema.ref(),
                 "service." + c.service + "." + c.operation, run_.id, c.resource,
                 c.sha256.empty()
                     ? Json{{"bytes", c.bytes}, {"outcome", c.outcome}}
                     : Json{{"bytes", c.bytes}, {"outcome", c.outcome}, {"sha256", c.sha256}});
  }

  pg::Pool& pool_;
  const ClaimedRun& run_;
  const InstalledSchema& schema_;
  const HostConfig& config_;
  std::optional<ObjectStorageService> storage_;
  std::optional<HttpService> http_;
  std::optional<SftpService> sftp_;
  std::optional<DatabaseService> db_;
  std::optional<PgpService> pgp_;
  const std::atomic<bool>& stop_;
  Clock::time_point deadline_;
  const ProgressObserver& observer_;
  const Redactor& redactor_;
  RunLog& log_;
  std::string short_id_;
  Clock::time_point last_progress_{};
  std::optional<std::pair<uint64_t, uint64_t>> unstored_progress_;
  Clock::time_point last_state_check_ = Clock::now();
  bool stop_requested_ = false;
  std::vector<std::pair<std::string, std::string>> events_;
  size_t held_bytes_ = 0;
  std::map<std::string, MetricSample> metrics_;  // by name and labels
  Clock::time_point last_write_ = Clock::now();
};

}  // namespace

Executor::Executor(std::filesystem::path plugin_dir, bool dev_mode, const HostConfig& config,
                   std::chrono::milliseconds grace)
    : plugin_dir_(std::move(plugin_dir)),
      dev_mode_(dev_mode),
      config_(config),
      sandbox_({.helper = sandbox::default_helper(), .grace = grace}) {}

std::shared_ptr<const InstalledSchema> Executor::schema(pg::Pool& pool, int64_t id) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = schemas_.find(id); it != schemas_.end()) return it->second;
  }
  auto s = std::make_shared<const InstalledSchema>(schema_by_id(*pool.acquire(), id));
  std::lock_guard lock(mutex_);
  return schemas_.emplace(id, s).first->second;
}

std::shared_ptr<const LoadedPlugin> Executor::plugin(const TaskSchema& schema) {
  const auto path = plugin_dir_ / schema.plugin_path;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(path, ec);
  auto size = std::filesystem::file_size(path, ec);
  std::lock_guard lock(mutex_);
  auto it = plugins_.find(path.string());
  if (!ec && it != plugins_.end() && it->second.pin == schema.plugin_sha256 &&
      it->second.mtime == mtime && it->second.size == size)
    return it->second.plugin;
  // First use, another pin, or the file changed: verify and load afresh.
  auto loaded =
      std::make_shared<const LoadedPlugin>(load_plugin(path, schema.plugin_sha256, dev_mode_));
  if (!ec) plugins_[path.string()] = {schema.plugin_sha256, mtime, size, loaded};
  return loaded;
}

std::shared_ptr<const VerifiedPlugin> Executor::verified(const TaskSchema& schema) {
  const auto path = plugin_dir_ / schema.plugin_path;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(path, ec);
  auto size = std::filesystem::file_size(path, ec);
  std::lock_guard lock(mutex_);
  auto it = files_.find(path.string());
  if (!ec && it != files_.end() && it->second.pin == schema.plugin_sha256 &&
      it->second.mtime == mtime && it->second.size == size)
    return it->second.plugin;
  auto plugin =
      std::make_shared<const VerifiedPlugin>(verify_plugin(path, &schema.plugin_sha256, dev_mode_));
  if (!ec) files_[path.string()] = {schema.plugin_sha256, mtime, size, plugin};
  return plugin;
}

std::unique_ptr<Runner> Executor::runner(const TaskSchema& schema) {
  if (!schema.in_process) {
    // The schema's limits, the host's where it sets none, the defaults last.
    const auto limits =
        sandbox::limits_of(schema.limits.over(config_.sandbox_limits).over(default_limits));
    return std::make_unique<sandbox::ProcessRunner>(sandbox_, limits, verified(schema));
  }
  if (!config_.allow_in_process)
    throw Error(ErrorKind::refused,
                "plugin " + schema.plugin_path +
                    " refused: the schema says isolation: none, which only a host whose config "
                    "says sandbox: { allow_in_process: true } accepts");
  return std::make_unique<InProcessRunner>(plugin(schema));
}

Completion Executor::execute(pg::Pool& pool, const ClaimedRun& run, const std::atomic<bool>& stop,
                             const ProgressObserver& observer) {
  Completion c;
  c.run_id = run.id;
  c.attempt = run.attempt;
  std::shared_ptr<const InstalledSchema> schema;
  std::unique_ptr<Runner> runner;
  auto refused = [&](const Error& e) {
    // A refused plugin stays refused; anything else (database) may pass.
    c.retryable = e.kind() != ErrorKind::refused;
    c.error_code = e.kind() == ErrorKind::refused ? "plugin_refused" : "host";
    c.error = (schema ? schema->schema.ref() + ": " : std::string()) + e.what();
    c.reason = e.kind() == ErrorKind::refused ? "plugin refused" : "host error";
    return c;
  };
  try {
    schema = this->schema(pool, run.schema_id);
    c.has_chain = !schema->schema.on_success.empty() || !schema->schema.on_failure.empty();
    runner = this->runner(schema->schema);
    c.in_process = schema->schema.in_process;
  } catch (const Error& e) {
    return refused(e);
  }

  // The config's secrets as they are now (a rotated file counts from here).
  const Redactor redactor(config_);
  RunLog log(pool, run.id, run.attempt, config_.run_logs);
  RunHost host(pool, run, *schema, config_, stop, observer, redactor, log);
  GrantedServices granted;
  granted.object_storage = !schema->schema.capabilities.s3.empty();
  granted.http = !schema->schema.capabilities.http.empty();
  granted.sftp = !schema->schema.capabilities.sftp.empty();
  granted.db = schema->schema.capabilities.db.has_value();
  granted.pgp = !schema->schema.capabilities.pgp.empty();
  std::string message;
  int rc;
  try {
    rc = runner->run(host, granted, &message);
  } catch (const Error& e) {
    log.close();
    return refused(e);
  }
  // Its lines are in before its outcome is recorded (fenced on this attempt).
  log.close();
  try {
    host.flush();
  } catch (const std::exception& e) {
    spdlog::warn("run {}: its last progress, events or metrics were not stored: {}", run.id,
                 e.what());
  }
  if (rc == TH_OK) {
    c.succeeded = true;
    c.reason = "plugin returned";
  } else if (host.timed_out()) {
    c.retryable = true;
    c.error_code = "timeout";
    c.error = "stopped after the schema's timeout of " +
              std::to_string(run.timeout.count() / 1000) +
              "s: " + storable(redactor.redact(message), max_message_bytes);
    c.reason = "timeout";
  } else {
    c.retryable = !permanent(rc);
    c.error_code = code_name(rc);
    c.error = storable(redactor.redact(message), max_message_bytes);
    c.reason = rc == TH_ERR_CANCELLED ? "plugin stopped" : "plugin failed";
  }
  return c;
}

}  // namespace taskhost
