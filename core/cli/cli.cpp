#include "cli/cli.hpp"
#include "cli/fixedwidth_cli.hpp"

#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "api/server.hpp"
#include "app/api_keys.hpp"
#include "app/app.hpp"
#include "app/views.hpp"
#include "common/error.hpp"
#include "common/json_input.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "config/host_config.hpp"
#include "engine/submit.hpp"
#include "engine/worker.hpp"
#include "plugin/loader.hpp"
#include "sandbox/process_runner.hpp"
#include "schema/duration.hpp"
#include "schema/params.hpp"
#include "services/database.hpp"
#include "store/audit.hpp"
#include "store/cluster.hpp"
#include "store/migrate.hpp"
#include "store/queue.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"
#include "webhooks/dispatcher.hpp"
#include "webhooks/outbox.hpp"
#include "webhooks/secrets.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace taskhost {
namespace {

// Exit codes, documented in README.md.
constexpr int exit_ok = 0;
constexpr int exit_run_failed = 1;
constexpr int exit_usage = 2;

int exit_code(ErrorKind k) {
  switch (k) {
    case ErrorKind::invalid:
      return 2;
    case ErrorKind::not_found:
      return 3;
    case ErrorKind::conflict:
      return 4;
    case ErrorKind::refused:
      return 5;
    case ErrorKind::environment:
      return 6;
  }
  return 6;
}

struct Globals {
  std::string database_url;
  std::string home;
  std::string plugin_dir;
  std::string config;
  bool dev = false;
  std::string log_format = "text";
  std::string log_level = "info";
};

po::options_description global_options(Globals& g) {
  po::options_description d("Global options");
  d.add_options()("help,h", "show help")("version", "print the version and exit")(
      "database-url", po::value(&g.database_url),
      "libpq connection string or URL of the platform database (env TASKHOST_DATABASE_URL); "
      "unset: the embedded PostgreSQL under --home")(
      "home", po::value(&g.home),
      "where the embedded database lives (env TASKHOST_HOME; default /var/lib/taskhost as root, "
      "else $XDG_DATA_HOME/taskhost)")(
      "plugin-dir", po::value(&g.plugin_dir),
      "directory of plugin .so files (env TASKHOST_PLUGIN_DIR; default "
      "<taskhost>/../lib/taskhost/plugins)")(
      "config", po::value(&g.config),
      "host configuration file, taskhost.yml (env TASKHOST_CONFIG; unset: no allowances)")(
      "dev", po::bool_switch(&g.dev), "development host: accept schemas that pin sha256: any")(
      "log-format", po::value(&g.log_format), "text (default) or json: JSON lines on stderr")(
      "log-level", po::value(&g.log_level), "trace, debug, info (default), warn, error, off");
  return d;
}

// What a command gets: the host (its parts made on first use) and the
// application layer as this OS user.
class Session {
 public:
  explicit Session(Globals g)
      : g_(std::move(g)),
        host_(app::HostOptions{g_.database_url, g_.home, g_.plugin_dir, g_.config, g_.dev}) {}

  app::Host& host() { return host_; }
  app::App& app() {
    if (!app_) app_.emplace(host_, host_.db(), app::cli_actor(host_.config()));
    return *app_;
  }
  const Globals& globals() const { return g_; }

 private:
  Globals g_;
  app::Host host_;
  std::optional<app::App> app_;
};

struct Command {
  std::string words;    // "schema install"
  std::string args;     // "FILE..." for usage
  std::string summary;  // one line
  std::function<void(po::options_description&)> options;
  std::vector<std::pair<std::string, int>> positional;  // name, max count (-1 = any)
  std::function<int(Session&, const po::variables_map&)> run;
};

void print_json(const Json& j) { std::cout << j.dump(2) << "\n"; }

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

// Columns as wide as their widest cell and two spaces apart, so that values
// never run together; every cell is printable() (values come from outside).
void print_table(const std::vector<std::string>& header,
                 std::vector<std::vector<std::string>> rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      row[i] = printable(row[i]);
      width[i] = std::max(width[i], row[i].size());
    }
  auto print = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i)
      line += i + 1 < cells.size() ? pad(cells[i], width[i] + 2) : cells[i];
    std::cout << line << "\n";
  };
  print(header);
  for (const auto& row : rows) print(row);
}

// ---- schema ----------------------------------------------------------------

int schema_install(Session& s, const po::variables_map& vm) {
  const bool json = vm.count("json") > 0;
  auto report =
      s.app().install(vm["files"].as<std::vector<std::string>>(), vm.count("dry-run") > 0);
  Json out = Json::array();
  for (const auto& i : report) {
    out.push_back({{"schema", i.schema}, {"outcome", i.outcome}, {"digest", i.digest}});
    if (!i.migrations.empty()) out.back()["migrations"] = i.migrations;
    if (json) continue;
    for (const auto& m : i.migrations)
      std::cout << i.schema << ": applied data migration " << m << "\n";
    std::cout << i.schema << ": " << i.outcome << "\n";
  }
  if (json) print_json(out);
  for (const auto& i : report)
    if (i.outcome == "conflict")
      throw Error(ErrorKind::conflict, i.schema + " is already installed from a different file");
  return exit_ok;
}

int schema_list(Session& s, const po::variables_map& vm) {
  auto all = s.app().schemas(vm.count("all") > 0);
  if (vm.count("json")) {
    Json out = Json::array();
    for (const auto& i : all) out.push_back(app::schema_json(i));
    print_json(out);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : all)
    rows.push_back({i.schema.name, i.schema.version.str(), i.schema.plugin_path,
                    i.installed_at + (i.removed_at ? "  (removed " + *i.removed_at + ")" : "")});
  print_table({"NAME", "VERSION", "PLUGIN", "INSTALLED"}, rows);
  return exit_ok;
}

int schema_show(Session& s, const po::variables_map& vm) {
  auto i = s.app().schema(vm["ref"].as<std::string>());
  if (vm.count("json")) {
    print_json(app::schema_json(i));
    return exit_ok;
  }
  std::cout << "# " << i.schema.ref() << "\n# schema file sha256:  " << i.schema.digest
            << "\n# plugin " << i.schema.plugin_path
            << " pinned to sha256: " << i.schema.plugin_sha256 << "\n# installed " << i.installed_at
            << " by " << i.installed_by << (i.removed_at ? "; removed " + *i.removed_at : "")
            << "\n"
            << i.schema.yaml;
  if (!i.schema.yaml.empty() && i.schema.yaml.back() != '\n') std::cout << "\n";
  return exit_ok;
}

int schema_rm(Session& s, const po::variables_map& vm) {
  const auto ref = vm["ref"].as<std::string>();
  int n = s.app().remove_schema(ref, vm.count("force") > 0);
  std::cout << "removed " << n << " version(s) of " << SchemaRef::parse(ref).name
            << "; run history is kept\n";
  return exit_ok;
}

// ---- runs ------------------------------------------------------------------

void print_run_summary(const Run& r) {
  std::cout << "run " << r.id << "\n"
            << "schema  " << r.schema_name << "@" << r.schema_version << "\n"
            << "state   " << to_string(r.state) << " (attempt " << r.attempt << ")"
            << (r.dry_run ? ", a dry run" : "") << "\n";
  if (r.approval)
    std::cout << "approval " << r.approval->decision << " by " << printable(r.approval->actor)
              << (r.approval->reason.empty() ? "" : ": " + printable(r.approval->reason)) << "\n";
  else if (r.state == RunState::awaiting_approval)
    std::cout << "approval awaited: another approver runs `taskhost runs approve " << r.id
              << "` (or `runs reject " << r.id << " --reason ...`)\n";
  if (!r.output.is_null()) std::cout << "output  " << printable(r.output.dump()) << "\n";
  if (r.error)
    std::cout << "error   " << printable(r.error_code.value_or("")) << ": " << printable(*r.error)
              << "\n";
}

// "12/40 (30%), 2.5/s, ETA 11s", the rate of the current attempt.
std::string progress_text(uint64_t done, uint64_t total, double rate, bool eta) {
  std::ostringstream out;
  out << done << "/" << total << " (" << (total ? 100 * std::min(done, total) / total : 0) << "%)";
  if (rate > 0) {
    out << ", " << std::fixed << std::setprecision(rate < 10 ? 1 : 0) << rate << "/s";
    if (eta && done < total) out << ", ETA " << static_cast<int64_t>((total - done) / rate) << "s";
  }
  return out.str();
}

void draw_progress(uint64_t done, uint64_t total, double rate) {
  if (!::isatty(STDERR_FILENO) || total == 0) return;
  constexpr uint64_t width = 30;
  uint64_t filled = width * std::min(done, total) / total;
  std::fprintf(stderr, "\r[%s%s] %-40s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(),
               progress_text(done, total, rate, true).c_str());
  if (done >= total) std::fprintf(stderr, "\n");
}

// The bar of a run this process executes, its rate measured from the first
// report it sees.
ProgressObserver progress_bar() {
  struct Start {
    std::chrono::steady_clock::time_point at;
    uint64_t done = 0;
  };
  return [start = std::optional<Start>()](uint64_t done, uint64_t total) mutable {
    auto now = std::chrono::steady_clock::now();
    if (!start) start = Start{now, done};
    double seconds = std::chrono::duration<double>(now - start->at).count();
    double items = done > start->done ? static_cast<double>(done - start->done) : 0;
    draw_progress(done, total, seconds > 0 ? items / seconds : 0);
  };
}

// The run's parameters: --params-file, then each -p over it, checked
// against the schema (every problem at once).
Json run_params(const TaskSchema& schema, const po::variables_map& vm) {
  Json params = Json::object();
  if (vm.count("params-file")) {
    const auto file = vm["params-file"].as<std::string>();
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(ErrorKind::invalid, "--params-file " + file + ": cannot read the file");
    constexpr size_t max_bytes = 1 << 20;
    std::string text(max_bytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes)
      throw Error(ErrorKind::invalid, "--params-file " + file + ": over the limit of " +
                                          std::to_string(max_bytes) + " bytes");
    params = parse_json_input(text, "--params-file " + file);
    if (!params.is_object())
      throw Error(ErrorKind::invalid, "--params-file " + file + ": expected a JSON object");
  }
  std::vector<Diagnostic> errors;
  auto assignments =
      vm.count("param") ? vm["param"].as<std::vector<std::string>>() : std::vector<std::string>{};
  Json assigned = params_from_assignments(schema, assignments, &errors);
  for (auto& [k, v] : assigned.items()) params[k] = v;  // -p overrides the file
  if (!errors.empty()) throw Error(ErrorKind::invalid, format_diagnostics(errors));
  return params;
}

// Executes a run this process claimed (submit_inline) until its attempt ends,
// then sends its webhook announcements.
void work_inline(Session& s, WorkerOptions o, const ClaimedRun& claimed, bool show_progress) {
  o.only_run = claimed;
  if (show_progress) o.observer = progress_bar();
  Worker(o).run();
  // Its announcements go out now, once each (no worker may be running);
  // what fails is retried by the workers on its schedule.
  if (o.webhooks) drain_webhooks(s.host().db(), *o.webhooks, std::chrono::seconds(30));
}

int run_task(Session& s, const po::variables_map& vm) {
  app::App& a = s.app();
  auto schema = a.runnable(vm["ref"].as<std::string>());
  Json params = run_params(schema.schema, vm);

  const bool wait = vm.count("wait") > 0, json = vm.count("json") > 0,
             inline_run = vm.count("inline") > 0, dry_run = vm.count("dry-run") > 0;
  std::optional<std::string> key;
  if (vm.count("idempotency-key")) key = vm["idempotency-key"].as<std::string>();
  WorkerOptions o;
  Submitted submitted;
  std::optional<ClaimedRun> claimed;
  if (inline_run) {
    // This process is the worker for this one run: it claims the run in the
    // submit's own transaction, so a running worker cannot take it first.
    o = s.host().worker_options();
    o.concurrency = 1;
    auto i = a.submit_inline(schema, params, key, o.id, o.lease, dry_run);
    submitted = i.submitted;
    claimed = i.claimed;
  } else {
    submitted = a.submit(schema, params, key, dry_run);
  }
  const std::string& id = submitted.run_id;
  const bool awaiting = submitted.state == RunState::awaiting_approval;
  if (!json)
    std::cout << (dry_run ? "dry run " : "run ") << id
              << (!submitted.created ? " exists (idempotency key)"
                  : awaiting         ? " awaits approval by another approver"
                  : inline_run       ? " running in this process"
                                     : " queued")
              << "\n"
              << std::flush;
  if (claimed) {
    work_inline(s, o, *claimed, !json);
  } else if (wait) {
    // Workers execute it; follow it until it ends (or pauses).
    for (;;) {
      Run r = a.run(id);
      if (r.progress_total && !json)
        draw_progress(*r.progress_done, *r.progress_total, app::attempt_rate(r));
      if (is_final(r.state) || r.state == RunState::paused) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  Run run = a.run(id);
  if (json)
    print_json(app::run_json(run));
  else if (inline_run || wait)
    print_run_summary(run);
  if (inline_run && run.state == RunState::queued)
    std::cerr << "taskhost: run " << id << " failed attempt " << run.attempt << " of "
              << run.max_attempts << " and is queued for a retry after " << run.run_after
              << ": a worker executes it (`taskhost worker`), or cancel it (`taskhost runs cancel "
              << id << "`)\n";
  return wait && run.state != RunState::succeeded ? exit_run_failed : exit_ok;
}

int worker_cmd(Session& s, const po::variables_map& vm) {
  WorkerOptions o = s.host().worker_options();
  o.concurrency = vm["concurrency"].as<int>();
  if (o.concurrency < 1 || o.concurrency > 1024)
    throw Error(ErrorKind::invalid, "--concurrency: expected 1 to 1024");
  auto duration = [&](const char* name) {
    auto d = parse_duration(vm[name].as<std::string>());
    if (!d || d->count() <= 0)
      throw Error(ErrorKind::invalid, std::string("--") + name + ": expected a duration like 30s");
    return *d;
  };
  o.lease = duration("lease");
  o.grace = duration("grace");
  o.rescue_every = std::min(o.rescue_every, o.lease / 2);
  o.scheduler = vm.count("no-scheduler") == 0;
  if (vm.count("no-webhooks")) o.webhooks.reset();
  if (vm.count("id")) o.id = vm["id"].as<std::string>();
  s.host().db();  // migrated (embedded) or checked before any worker thread starts

  // A plugin running in this process may call exit(). The worker must not
  // then end with status 0, as if asked to stop, or a supervisor would not
  // restart it; so exit() before the worker has returned ends it with 70
  // (EX_SOFTWARE). Process-wide by nature: exit handlers are.
  static std::atomic<bool> returned{false};
  std::atexit([] {
    if (returned) return;
    std::fputs(
        "taskhost worker: the process was ended by exit() while runs executed (a plugin?); "
        "exit status 70\n",
        stderr);
    std::_Exit(70);
  });
  struct Returned {
    ~Returned() { returned = true; }
  } on_return;

  // SIGINT/SIGTERM stop claiming; in-flight runs finish, then the worker exits.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  Worker worker(o);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("{}: signal {}, finishing in-flight runs", o.id, sig);
    worker.stop();
  });
  spdlog::info("{} started: concurrency {}, lease {}", o.id, o.concurrency,
               format_duration(o.lease));
  try {
    worker.run();
  } catch (...) {
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    throw;
  }
  waiter.join();
  spdlog::info("{} stopped", o.id);
  return exit_ok;
}

int runs_control(Session& s, const po::variables_map& vm, app::RunControl op) {
  const auto id = vm["id"].as<std::string>();
  RunState now = s.app().control(op, id, vm["reason"].as<std::string>());
  std::cout << "run " << s.app().run(id).id << " " << to_string(now) << "\n";
  return exit_ok;
}

int runs_decide(Session& s, const po::variables_map& vm, bool approve) {
  const auto id = vm["id"].as<std::string>();
  const auto reason = vm.count("reason") ? vm["reason"].as<std::string>() : std::string();
  RunState now = approve ? s.app().approve(id, reason) : s.app().reject(id, reason);
  std::cout << "run " << s.app().run(id).id << " " << to_string(now) << "\n";
  return exit_ok;
}

int runs_output(Session& s, const po::variables_map& vm) {
  app::App& a = s.app();
  Run r = a.run(vm["id"].as<std::string>());
  if (vm.count("file")) {
    std::string content = a.file_content(r, vm["file"].as<std::string>());
    if (vm.count("out")) {
      std::ofstream out(vm["out"].as<std::string>(), std::ios::binary);
      out << content;
      if (!out) throw Error(ErrorKind::environment, "cannot write " + vm["out"].as<std::string>());
    } else {
      std::cout << content;
    }
    return exit_ok;
  }
  auto files = a.files(r);
  if (vm.count("json")) {
    Json j = {{"id", r.id},
              {"state", to_string(r.state)},
              {"output", r.output},
              {"files", Json::array()}};
    for (const auto& f : files) j["files"].push_back(app::run_file_json(f));
    print_json(j);
    return exit_ok;
  }
  std::cout << "output  " << r.output.dump() << "\n";
  if (files.empty()) {
    std::cout << "files: none\n";
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& f : files)
    rows.push_back({f.name, std::to_string(f.size) + " B", f.content_type, f.sha256});
  print_table({"FILE", "SIZE", "TYPE", "SHA-256"}, rows);
  return exit_ok;
}

int runs_list(Session& s, const po::variables_map& vm) {
  RunFilter f;
  if (vm.count("schema")) f.schema = vm["schema"].as<std::string>();
  if (vm.count("state")) f.state = run_state_from(vm["state"].as<std::string>());
  f.limit = vm["limit"].as<int>();
  auto runs = s.app().runs(f);
  if (vm.count("json")) {
    Json out = Json::array();
    for (const auto& r : runs) out.push_back(app::run_json(r, true));
    print_json(out);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs)
    rows.push_back({r.id, r.schema_name + "@" + r.schema_version,
                    std::string(to_string(r.state)) + (r.dry_run ? " (dry run)" : ""),
                    r.progress_total
                        ? std::to_string(*r.progress_done) + "/" + std::to_string(*r.progress_total)
                        : "-",
                    r.created_at});
  print_table({"ID", "SCHEMA", "STATE", "PROGRESS", "CREATED"}, rows);
  return exit_ok;
}

int runs_show(Session& s, const po::variables_map& vm) {
  app::App& a = s.app();
  Run r = a.run(vm["id"].as<std::string>());
  auto transitions = a.transitions(r);
  auto events = a.events(r, vm["events"].as<int>());
  if (vm.count("json")) {
    print_json(app::run_detail_json(r, transitions, events));
    return exit_ok;
  }
  print_run_summary(r);
  std::cout << "params  " << printable(r.params.dump()) << "\n"
            << "actor   " << printable(r.actor) << "\n"
            << "created " << r.created_at << "\n"
            << "attempts " << r.attempt << " of " << r.max_attempts << "\n";
  if (r.state == RunState::queued) std::cout << "runnable after " << r.run_after << "\n";
  if (r.lease_owner) std::cout << "held by " << printable(*r.lease_owner) << "\n";
  if (r.parent_run_id) std::cout << "chained from run " << *r.parent_run_id << "\n";
  if (r.progress_total && *r.progress_total > 0) {
    // A rate while an attempt runs, or of the attempt that finished it.
    const bool attempt_ran = r.state == RunState::running || r.state == RunState::pausing ||
                             r.state == RunState::cancelling || is_final(r.state);
    std::cout << "progress "
              << progress_text(*r.progress_done, *r.progress_total,
                               attempt_ran ? app::attempt_rate(r) : 0, r.state == RunState::running)
              << "\n";
  }
  if (!r.checkpoint.is_null()) std::cout << "checkpoint " << printable(r.checkpoint.dump()) << "\n";
  std::cout << "transitions:\n";
  for (const auto& t : transitions)
    std::cout << "  " << t.at << "  " << pad(t.from.value_or("-") + " -> " + t.to, 24)
              << " attempt " << t.attempt << "  " << printable(t.actor) << "  "
              << printable(t.reason) << "\n";
  if (events.empty())
    std::cout << "events: none\n";
  else
    std::cout << "events (first " << events.size() << "):\n";
  for (const auto& e : events)
    std::cout << "  " << e.at << "  " << printable(e.name) << "  " << printable(e.payload.dump())
              << "\n";
  return exit_ok;
}

std::string log_text(const LogLine& l) {
  return l.at + "  " + pad(l.level, 5) + "  #" + std::to_string(l.attempt) + " " +
         (l.source == "host" ? "host: " : "") + printable(l.message);
}

// Prints a run's log; with -f, follows it (woken by the database's NOTIFY on
// run_activity_channel, not by polling) until the run is finished.
int runs_logs(Session& s, const po::variables_map& vm) {
  app::App& a = s.app();
  Run r = a.run(vm["id"].as<std::string>());
  LogQuery q;
  if (vm.count("attempt")) {
    q.attempt = vm["attempt"].as<int>();
    if (*q.attempt < 1) throw Error(ErrorKind::invalid, "--attempt: expected a number from 1");
  }
  const bool json = vm.count("json") > 0, follow = vm.count("follow") > 0;
  pg::Connection& db = s.host().db();
  if (follow) db.exec(std::string("LISTEN ") + run_activity_channel);
  LogPage all;
  for (;;) {
    // The state before the lines: a run seen finished has all its lines in.
    const bool finished = is_final(a.run(r.id).state);
    for (;;) {
      LogPage page = a.logs(r, q);
      for (auto& l : page.lines) {
        q.after_seq = l.seq;
        if (!follow && json)
          all.lines.push_back(std::move(l));
        else
          std::cout << (json ? app::log_line_json(l).dump() : log_text(l)) << "\n";
      }
      all.last_seq = page.last_seq;
      all.dropped_lines = page.dropped_lines;
      all.dropped_bytes = page.dropped_bytes;
      if (page.lines.size() < static_cast<size_t>(q.limit)) break;
    }
    std::cout << std::flush;
    if (!follow || finished) break;
    // Until this run changes (or a second passes: a notification may be lost
    // with a reconnect, and a second is cheap).
    bool changed = false;
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
         !changed && std::chrono::steady_clock::now() < until;) {
      pollfd fd{PQsocket(db.raw()), POLLIN, 0};
      ::poll(&fd, 1, 1000);
      if (PQconsumeInput(db.raw()) == 0)
        throw Error(ErrorKind::environment, PQerrorMessage(db.raw()));
      while (PGnotify* n = PQnotifies(db.raw())) {
        changed = changed || r.id == n->extra;
        PQfreemem(n);
      }
    }
  }
  if (follow) db.exec(std::string("UNLISTEN ") + run_activity_channel);
  if (!follow && json) print_json(app::log_page_json(all, false));
  return exit_ok;
}

// ---- audit, webhooks, keys -------------------------------------------------

app::AuditQuery audit_query(const po::variables_map& vm) {
  app::AuditQuery q;
  q.spelled = "--";
  auto opt = [&](const char* name) {
    return vm.count(name) ? std::optional<std::string>(vm[name].as<std::string>()) : std::nullopt;
  };
  q.run = opt("run");
  q.actor = opt("actor");
  q.action = opt("action");
  q.since = opt("since");
  q.until = opt("until");
  if (vm.count("limit")) q.limit = vm["limit"].as<int>();
  return q;
}

int audit_list(Session& s, const po::variables_map& vm) {
  auto entries = s.app().audit(audit_query(vm));
  if (vm.count("json")) {
    Json out = Json::array();
    for (const auto& e : entries) out.push_back(audit_json(e));
    print_json(out);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : entries)
    rows.push_back({std::to_string(e.seq), e.at, e.actor, e.action,
                    e.run_id ? "run " + *e.run_id + (e.subject ? "  " + *e.subject : "")
                             : e.subject.value_or("")});
  print_table({"SEQ", "AT", "ACTOR", "ACTION", "SUBJECT"}, rows);
  return exit_ok;
}

int audit_export(Session& s, const po::variables_map& vm) {
  s.app().each_audit(audit_query(vm),
                     [](const AuditEntry& e) { std::cout << audit_json(e).dump() << "\n"; });
  return exit_ok;
}

int audit_verify(Session& s, const po::variables_map& vm) {
  if (vm.count("checkpoints") != vm.count("public-key"))
    throw Error(ErrorKind::invalid, "--checkpoints and --public-key go together");
  auto v = s.app().verify_audit();
  if (v.ok() && vm.count("checkpoints")) {
    auto c = s.app().verify_audit_checkpoints(vm["public-key"].as<std::string>(),
                                              vm["checkpoints"].as<std::string>());
    if (!c.ok())
      v = c;
    else
      std::cout << "signed checkpoints hold: " << c.entries << "\n";
  }
  if (v.ok()) {
    std::cout << "audit log intact: " << v.entries << " entries\n";
    return exit_ok;
  }
  std::cout << "audit log broken at entry " << *v.broken_seq << ": " << v.why << "\n";
  return exit_run_failed;
}

int audit_checkpoint(Session& s, const po::variables_map& vm) {
  const auto key = vm["key"].as<std::string>();
  int64_t seq = s.app().write_audit_checkpoint(key, vm["out"].as<std::string>());
  std::cout << "checkpoint at entry " << seq << " signed with " << key << "\n";
  return exit_ok;
}

int webhook_key(Session& s, const po::variables_map& vm) {
  const auto schema = vm["schema"].as<std::string>();
  const bool rotate = vm.count("rotate") > 0;
  // stdout carries the secret and nothing else, for a pipe into a vault.
  std::cout << s.app().create_webhook_secret(schema, rotate) << "\n";
  spdlog::info("{} webhook secret for {}{}; it is not shown again", rotate ? "rotated" : "created",
               schema, rotate ? " (the previous one signs too for 24h)" : "");
  return exit_ok;
}

int keys_rotate_host_key(Session& s, const po::variables_map&) {
  auto rotated = s.app().rotate_host_key();
  std::cout << "re-sealed " << rotated.resealed << " stored secret(s) with host key "
            << rotated.key_id << "\n";
  return exit_ok;
}

int webhooks_list(Session& s, const po::variables_map& vm) {
  DeliveryFilter f;
  f.dead_only = vm.count("failed") > 0;
  if (vm.count("run")) f.run_id = vm["run"].as<std::string>();
  f.limit = vm["limit"].as<int>();
  auto list = s.app().deliveries(f);
  if (vm.count("json")) {
    Json out = Json::array();
    for (const auto& d : list) out.push_back(app::delivery_json(d));
    print_json(out);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : list)
    rows.push_back({std::to_string(d.id), d.state, std::to_string(d.attempts), d.event, d.run_id,
                    d.url + (d.last_error ? "  " + *d.last_error : "")});
  print_table({"ID", "STATE", "TRIES", "EVENT", "RUN", "URL / LAST ERROR"}, rows);
  return exit_ok;
}

int serve_cmd(Session& s, const po::variables_map& vm) {
  app::Host& host = s.host();
  api::ServeOptions o;
  o.listen = vm.count("listen") ? vm["listen"].as<std::string>() : host.config().api_listen;
  if (vm.count("unix-socket")) o.unix_socket = vm["unix-socket"].as<std::string>();
  o.portal_dir = vm.count("portal-dir") ? fs::path(vm["portal-dir"].as<std::string>())
                                        : host.share_dir() / "portal";
  o.threads = vm["threads"].as<int>();
  if (o.threads < 1 || o.threads > 256)
    throw Error(ErrorKind::invalid, "--threads: expected 1 to 256");
  auto beat = parse_duration(vm["heartbeat"].as<std::string>());
  if (!beat || *beat < std::chrono::milliseconds(100))
    throw Error(ErrorKind::invalid, "--heartbeat: expected a duration of at least 100ms, like 15s");
  o.heartbeat = *beat;
  host.db();  // migrated (embedded) or checked, before any request
  host.api_pepper();
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  api::Server server(host, o);
  const std::string where = server.bind();
  std::cout << "taskhost serve: listening on " << where << std::endl;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("serve: signal {}, stopping", sig);
    server.stop();
  });
  server.run();
  waiter.join();
  return exit_ok;
}

int api_key_create(Session& s, const po::variables_map& vm) {
  std::optional<std::chrono::seconds> expires;
  if (vm.count("expires-in")) {
    auto d = parse_duration(vm["expires-in"].as<std::string>());
    if (!d || *d < std::chrono::minutes(1))
      throw Error(ErrorKind::invalid, "--expires-in: expected a duration like 90d, at least 1m");
    expires = std::chrono::duration_cast<std::chrono::seconds>(*d);
  }
  auto made = app::create_api_key(s.host().db(), s.host().api_pepper(), s.app().actor(),
                                  vm["actor"].as<std::string>(),
                                  vm["role"].as<std::vector<std::string>>(), expires);
  // stdout carries the key and nothing else, for a pipe into a vault.
  std::cout << made.token << "\n";
  spdlog::info("API key {} for api:{} made; it is not shown again", made.key.id, made.key.actor);
  return exit_ok;
}

int api_key_list(Session& s, const po::variables_map& vm) {
  auto keys = app::list_api_keys(s.host().db(), s.app().actor());
  if (vm.count("json")) {
    Json out = Json::array();
    for (const auto& k : keys) out.push_back(app::api_key_json(k));
    print_json(out);
    return exit_ok;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : keys) {
    std::string roles;
    for (const auto& r : k.roles) roles += (roles.empty() ? "" : ",") + r;
    rows.push_back({k.id, "api:" + k.actor, roles, k.created_at,
                    k.revoked_at   ? "revoked " + *k.revoked_at
                    : k.expires_at ? "expires " + *k.expires_at
                                   : "live",
                    k.last_used_at.value_or("-")});
  }
  print_table({"ID", "ACTOR", "ROLES", "CREATED", "STATE", "LAST USED"}, rows);
  return exit_ok;
}

int api_key_revoke(Session& s, const po::variables_map& vm) {
  app::revoke_api_key(s.host().db(), s.app().actor(), vm["id"].as<std::string>());
  std::cout << "API key " << vm["id"].as<std::string>() << " revoked\n";
  return exit_ok;
}

int webhooks_redeliver(Session& s, const po::variables_map& vm) {
  const auto& text = vm["id"].as<std::string>();
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 18)
    throw Error(ErrorKind::invalid, "delivery id: expected a number, got '" + text + "'");
  const int64_t id = std::stoll(text);
  s.app().redeliver(id);
  std::cout << "delivery " << id << " is due now\n";
  return exit_ok;
}

int plugin_inspect(Session&, const po::variables_map& vm) {
  const std::string file = vm["file"].as<std::string>();
  const bool load = vm.count("load") > 0;
  const VerifiedPlugin v = verify_plugin(file, nullptr, false);
  const PluginInfo& i = v.info;
  Json j = {
      {"path", i.path}, {"sha256", i.sha256}, {"machine", i.elf.machine}, {"needed", i.elf.needed}};
  sandbox::Descriptor d;
  if (load) {
    // Its code runs in a sandbox of its own, never in this process.
    sandbox::Sandbox sandbox({.helper = sandbox::default_helper(), .warm = false});
    d = sandbox.inspect(v.image, i.path);
    j["name"] = d.name;
    j["version"] = d.version;
    j["description"] = d.description;
    j["abi"] = std::to_string(d.abi_major) + "." + std::to_string(d.abi_minor);
  }
  if (vm.count("json")) {
    print_json(j);
    return exit_ok;
  }
  std::string needed;
  for (const auto& n : i.elf.needed) needed += (needed.empty() ? "" : ", ") + n;
  std::cout << "sha256       " << i.sha256 << "\n"
            << "machine      " << i.elf.machine << "\n"
            << "needs        " << needed << "\n";
  if (load)
    std::cout << "name         " << d.name << "\n"
              << "version      " << d.version << "\n"
              << "description  " << d.description << "\n"
              << "abi          " << j["abi"].get<std::string>() << "\n";
  else
    std::cout << "(name, version and ABI are in the plugin's code: --load reads them)\n";
  return exit_ok;
}

// ---- the plugin author's kit ------------------------------------------------

// `plugin new NAME`: the scaffold (share/taskhost/scaffold) copied, with
// @NAME@ and TaskhostScaffold (its C++ type: NAME in CamelCase) replaced in
// file names and contents.
int plugin_new(Session& s, const po::variables_map& vm) {
  const std::string name = vm["name"].as<std::string>();
  auto letter = [](char c) { return c >= 'a' && c <= 'z'; };
  bool valid = !name.empty() && name.size() <= 50 && letter(name.front()) && name.back() != '-' &&
               name.find("--") == std::string::npos;
  for (char c : name) valid = valid && (letter(c) || (c >= '0' && c <= '9') || c == '-');
  if (!valid)
    throw Error(ErrorKind::invalid,
                "plugin new: '" + printable(name) +
                    "' is not a plugin name: lower-case letters and digits in words joined by "
                    "'-', starting with a letter, at most 50 characters (e.g. claim-report)");
  std::string type;
  for (size_t i = 0; i < name.size(); ++i)
    if (name[i] != '-')
      type += (i == 0 || name[i - 1] == '-') && letter(name[i])
                  ? static_cast<char>(name[i] - 'a' + 'A')
                  : name[i];
  const fs::path dir = vm.count("dir") ? fs::path(vm["dir"].as<std::string>()) : fs::path(name);
  const fs::path scaffold = s.host().share_dir() / "scaffold";
  if (!fs::is_directory(scaffold))
    throw Error(ErrorKind::environment,
                "plugin new: the scaffold is not installed (no " + scaffold.string() + ")");
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    throw Error(ErrorKind::conflict, "plugin new: " + dir.string() + " exists and is not empty");
  fs::create_directories(dir);
  auto fill = [&](std::string text) {
    for (const auto& [from, to] :
         {std::pair<std::string, std::string>{"@NAME@", name}, {"TaskhostScaffold", type}})
      for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size())
        text.replace(at, from.size(), to);
    return text;
  };
  std::vector<std::string> made;
  for (const auto& f : fs::directory_iterator(scaffold)) {
    const fs::path to = dir / fill(f.path().filename().string());
    std::ifstream in(f.path(), std::ios::binary);
    std::ofstream out(to, std::ios::binary);
    out << fill(std::string(std::istreambuf_iterator<char>(in), {}));
    if (!in || !out) throw Error(ErrorKind::environment, "plugin new: cannot write " + to.string());
    out.close();
    fs::permissions(to, fs::status(f.path()).permissions());
    made.push_back(to.filename().string());
  }
  std::sort(made.begin(), made.end());
  std::cout << "made " << dir.string() << "/:";
  for (const auto& m : made) std::cout << " " << m;
  std::cout << "\nnext: cmake -S " << dir.string() << " -B " << (dir / "build").string()
            << " -DCMAKE_PREFIX_PATH=" << s.host().share_dir().parent_path().parent_path().string()
            << " && cmake --build " << (dir / "build").string() << " && ctest --test-dir "
            << (dir / "build").string() << " --output-on-failure\n";
  return exit_ok;
}

// What a reviewer should ask about: calls the sandbox kills a plugin for
// making, found among the functions it imports.
const std::map<std::string, std::string>& flagged_imports() {
  static const std::map<std::string, std::string> flagged = [] {
    std::map<std::string, std::string> m;
    for (const char* f :
         {"system", "popen", "execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle",
          "fexecve", "posix_spawn", "posix_spawnp", "fork", "vfork", "clone", "daemon"})
      m[f] = "starts a program or process";
    for (const char* f : {"socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
                          "getaddrinfo", "gethostbyname", "sendto", "recvfrom"})
      m[f] = "network: services are the host's";
    for (const char* f : {"ptrace", "prctl", "syscall", "setuid", "setgid", "seteuid", "chroot",
                          "mount", "unshare", "setns", "dlopen", "dlmopen", "kill"})
      m[f] = "reaches past the plugin contract";
    return m;
  }();
  return flagged;
}

// `plugin review FILE.so [SCHEMA.yaml...]`: what a reviewer approves.
int plugin_review(Session&, const po::variables_map& vm) {
  const std::string file = vm["file"].as<std::string>();
  const VerifiedPlugin v = verify_plugin(file, nullptr, false);
  const PluginInfo& i = v.info;
  sandbox::Sandbox sandbox({.helper = sandbox::default_helper(), .warm = false});
  const sandbox::Descriptor d = sandbox.inspect(v.image, i.path);
  Json flagged = Json::array();
  for (const auto& name : i.elf.imports)
    if (auto f = flagged_imports().find(name); f != flagged_imports().end())
      flagged.push_back({{"symbol", name}, {"why", f->second}});
  // The lines of the given schema files that pin exactly this build.
  Json pins = Json::array(), unpinned = Json::array();
  for (const auto& schema : vm.count("schemas") ? vm["schemas"].as<std::vector<std::string>>()
                                                : std::vector<std::string>{}) {
    std::ifstream in(schema);
    if (!in) throw Error(ErrorKind::environment, "plugin review: cannot read " + schema);
    bool pinned = false;
    int n = 0;
    for (std::string line; std::getline(in, line);)
      if (++n, line.find(i.sha256) != std::string::npos) {
        pins.push_back({{"file", schema}, {"line", n}, {"text", line}});
        pinned = true;
      }
    if (!pinned) unpinned.push_back(schema);
  }
  const std::string abi = std::to_string(d.abi_major) + "." + std::to_string(d.abi_minor);
  if (vm.count("json")) {
    print_json({{"path", i.path},
                {"sha256", i.sha256},
                {"name", d.name},
                {"version", d.version},
                {"description", d.description},
                {"abi", abi},
                {"needed", i.elf.needed},
                {"imports", i.elf.imports},
                {"flagged", flagged},
                {"pinned_by", pins},
                {"not_pinned_by", unpinned}});
    return unpinned.empty() ? exit_ok : exit_run_failed;
  }
  std::string needed;
  for (const auto& n : i.elf.needed) needed += (needed.empty() ? "" : ", ") + n;
  std::cout << "name         " << printable(d.name) << "\n"
            << "version      " << printable(d.version) << "\n"
            << "description  " << printable(d.description) << "\n"
            << "abi          " << abi << " (this host: " << TH_ABI_MAJOR << "." << TH_ABI_MINOR
            << ")\n"
            << "sha256       " << i.sha256 << "\n"
            << "needs        " << needed << "\n"
            << "imports      " << i.elf.imports.size() << " symbols ("
            << (flagged.empty() ? "none flagged" : std::to_string(flagged.size()) + " flagged")
            << "; --json lists them)\n";
  for (const auto& f : flagged)
    std::cout << "  flagged    " << f["symbol"].get<std::string>() << ": "
              << f["why"].get<std::string>() << " (the sandbox kills the plugin if it is called)\n";
  for (const auto& p : pins)
    std::cout << "pinned by    " << p["file"].get<std::string>() << ":" << p["line"].get<int>()
              << ": " << printable(p["text"].get<std::string>()) << "\n";
  for (const auto& u : unpinned)
    std::cout << "NOT pinned   " << u.get<std::string>() << " pins another build\n";
  return unpinned.empty() ? exit_ok : exit_run_failed;
}

// `--object BUCKET/KEY=FILE`: FILE into the local object store (the
// embedded default keeps each bucket as a folder), for a test's input.
void put_local_object(const HostConfig& config, const std::string& spec) {
  const auto eq = spec.find('='), slash = spec.find('/');
  if (eq == std::string::npos || slash == std::string::npos || slash == 0 || slash + 1 >= eq)
    throw Error(ErrorKind::invalid, "--object " + spec + ": expected BUCKET/KEY=FILE");
  const std::string bucket = spec.substr(0, slash), key = spec.substr(slash + 1, eq - slash - 1);
  if (config.s3.count(bucket))
    throw Error(ErrorKind::invalid, "--object " + spec + ": bucket " + bucket +
                                        " is an S3 bucket in the host config, not a local one");
  for (const auto& part : fs::path(key))
    if (part == ".." || part == "." || key.front() == '/')
      throw Error(ErrorKind::invalid, "--object " + spec + ": the key must stay in its bucket");
  const fs::path to = config.object_store_dir / bucket / key;
  fs::create_directories(to.parent_path());
  fs::copy_file(spec.substr(eq + 1), to, fs::copy_options::overwrite_existing);
}

// `plugin test SCHEMA.yaml`: installs that schema (a version of its own for
// each build, see taskhost_plugin_schema) on this host, runs it once in this
// process with the sandbox, and prints what a reviewer will see of it.
int plugin_test(Session& outer, const po::variables_map& vm) {
  const fs::path file = vm["schema"].as<std::string>();
  Globals g = outer.globals();
  if (g.plugin_dir.empty()) g.plugin_dir = fs::absolute(file).parent_path().string();
  Session s(g);
  app::App& a = s.app();
  for (const auto& spec : vm.count("object") ? vm["object"].as<std::vector<std::string>>()
                                             : std::vector<std::string>{})
    put_local_object(s.host().config(), spec);
  const auto installed = a.install(std::vector<std::string>{file.string()}, false);
  std::cout << "schema  " << installed.at(0).schema << " (" << installed.at(0).outcome << ")\n";
  auto schema = a.runnable(installed.at(0).schema);
  const Json params = run_params(schema.schema, vm);
  WorkerOptions o = s.host().worker_options();
  o.concurrency = 1;
  o.webhooks.reset();  // a test tells no one
  auto submitted = a.submit_inline(schema, params, std::nullopt, o.id, o.lease);
  if (!submitted.claimed)
    throw Error(ErrorKind::conflict, "plugin test: run " + submitted.submitted.run_id +
                                         " awaits approval; test a schema without approval");
  work_inline(s, o, *submitted.claimed, false);
  const Run r = a.run(submitted.submitted.run_id);

  std::cout << "\n== log\n";
  LogQuery q;
  for (;;) {
    auto page = a.logs(r, q);
    for (const auto& l : page.lines) std::cout << log_text(l) << "\n";
    if (page.lines.empty()) break;
    q.after_seq = page.lines.back().seq;
  }
  std::cout << "\n== events\n";
  const auto events = a.events(r, 1000);
  if (events.empty()) std::cout << "none\n";
  for (const auto& e : events)
    std::cout << e.at << "  " << printable(e.name) << "  " << printable(e.payload.dump()) << "\n";
  std::cout << "\n== service calls (audited; a reviewer reads these)\n";
  std::vector<std::vector<std::string>> calls;
  for (const auto& e : a.run_audit(r, 1000))
    if (e.action.rfind("service.", 0) == 0)
      calls.push_back({e.action, e.detail.value("outcome", ""), e.subject.value_or("")});
  if (calls.empty())
    std::cout << "none\n";
  else
    print_table({"CALL", "OUTCOME", "RESOURCE"}, calls);
  std::cout << "\n== files\n";
  const auto files = a.files(r);
  if (files.empty()) std::cout << "none\n";
  for (const auto& f : files) {
    std::cout << f.name << "  " << f.size << " B  " << f.content_type << "\n";
    if (!vm.count("result-dir")) continue;
    const fs::path dir = vm["result-dir"].as<std::string>();
    fs::create_directories(dir);
    std::ofstream out(dir / fs::path(f.name).filename(), std::ios::binary);
    out << a.file_content(r, f.name);
    if (!out) throw Error(ErrorKind::environment, "cannot write into " + dir.string());
  }
  std::cout << "\n";
  print_run_summary(r);
  return r.state == RunState::succeeded ? exit_ok : exit_run_failed;
}

std::string version_text() {
  return std::string("taskhost ") + TASKHOST_VERSION + " (plugin ABI " +
         std::to_string(TH_ABI_MAJOR) + "." + std::to_string(TH_ABI_MINOR) + ")";
}

int version_cmd(Session&, const po::variables_map&) {
  std::cout << version_text() << "\n";
  return exit_ok;
}

int migrate_cmd(Session& s, const po::variables_map&) {
  int n = s.host().migrate_and_seal();
  std::cout << "database is at migration " << bundled_migrations().back().version << " (applied "
            << n << " now)\n";
  return exit_ok;
}

void require_embedded(const Session& s) {
  if (!s.globals().database_url.empty())
    throw Error(ErrorKind::invalid,
                "db commands manage the embedded database; unset --database-url");
}

int db_start(Session& s, const po::variables_map&) {
  require_embedded(s);
  s.host().db();  // starts, bootstraps and migrates
  std::cout << "embedded PostgreSQL running in " << s.host().cluster().home().string() << "\n";
  return exit_ok;
}

int db_stop(Session& s, const po::variables_map&) {
  require_embedded(s);
  s.host().cluster().stop();
  std::cout << "embedded PostgreSQL stopped\n";
  return exit_ok;
}

int db_status(Session& s, const po::variables_map&) {
  require_embedded(s);
  auto c = s.host().cluster();
  bool up = c.running();
  std::cout << "embedded PostgreSQL in " << c.home().string() << ": "
            << (up ? "running" : "stopped") << "\n";
  return up ? exit_ok : exit_run_failed;
}

int db_url(Session& s, const po::variables_map&) {
  require_embedded(s);
  std::cout << s.host().cluster().conninfo() << "\n";
  return exit_ok;
}

// ---- command table ---------------------------------------------------------

void json_flag(po::options_description& d) { d.add_options()("json", "machine-readable output"); }
void audit_filters(po::options_description& d) {
  d.add_options()("run", po::value<std::string>(), "only entries about this run")(
      "actor", po::value<std::string>(), "only entries by this actor")(
      "action", po::value<std::string>(),
      "only this action and those under it (service.http: service.http.get, ...)")(
      "since", po::value<std::string>(), "only entries at or after this time")(
      "until", po::value<std::string>(), "only entries before this time");
}

void reason_option(po::options_description& d) {
  d.add_options()("reason", po::value<std::string>()->default_value("operator request"),
                  "why, for the run's record");
}

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"version", "", "print taskhost's version and plugin ABI", {}, {}, version_cmd},
      {"migrate", "", "apply pending database migrations", {}, {}, migrate_cmd},
      {"db start", "", "start (creating if needed) the embedded PostgreSQL", {}, {}, db_start},
      {"db stop", "", "stop the embedded PostgreSQL", {}, {}, db_stop},
      {"db status",
       "",
       "say whether the embedded PostgreSQL runs (exit 1 if not)",
       {},
       {},
       db_status},
      {"db url", "", "print the embedded database's connection string", {}, {}, db_url},
      {"schema install",
       "FILE...",
       "validate and install task schema files",
       [](po::options_description& d) {
         d.add_options()("dry-run", "validate and report, change nothing");
         json_flag(d);
       },
       {{"files", -1}},
       schema_install},
      {"schema list",
       "",
       "list installed schema versions",
       [](po::options_description& d) {
         d.add_options()("all", "include removed versions");
         json_flag(d);
       },
       {},
       schema_list},
      {"schema show",
       "NAME[@VERSION]",
       "show an installed schema (latest version by default)",
       json_flag,
       {{"ref", 1}},
       schema_show},
      {"schema rm",
       "NAME[@VERSION]",
       "remove a schema (all versions by default) from use",
       [](po::options_description& d) {
         d.add_options()("force", "remove even while unfinished runs use it");
       },
       {{"ref", 1}},
       schema_rm},
      {"run",
       "NAME[@VERSION]",
       "submit a run of a task (workers execute it)",
       [](po::options_description& d) {
         d.add_options()("param,p", po::value<std::vector<std::string>>()->composing(),
                         "parameter key=value (repeatable)")(
             "params-file", po::value<std::string>(), "JSON object of parameters")(
             "idempotency-key", po::value<std::string>(),
             "a second submit with this key returns the first run")(
             "inline", "execute the run in this process instead of waiting for a worker")(
             "dry-run",
             "every write its services would make is refused; reads work (needs no approval)")(
             "wait", "follow the run with a progress bar; exit 1 unless it succeeds");
         json_flag(d);
       },
       {{"ref", 1}},
       run_task},
      {"worker",
       "",
       "execute queued runs until SIGINT/SIGTERM",
       [](po::options_description& d) {
         d.add_options()("concurrency", po::value<int>()->default_value(4), "runs at once")(
             "lease", po::value<std::string>()->default_value("30s"),
             "how long a claimed run stays ours without a heartbeat")(
             "grace", po::value<std::string>()->default_value("30s"),
             "how long a run may ignore a stop request or overrun its timeout")(
             "no-scheduler", "do not fire cron schedules or chains")(
             "no-webhooks", "do not deliver webhooks")("id", po::value<std::string>(),
                                                       "worker id (default worker:HOST:PID)");
       },
       {},
       worker_cmd},
      {"serve",
       "",
       "serve the HTTP API until SIGINT/SIGTERM",
       [](po::options_description& d) {
         d.add_options()("listen", po::value<std::string>(),
                         "host:port (default: the host config's api.listen, 127.0.0.1:8080)")(
             "unix-socket", po::value<std::string>(), "listen on this socket file instead")(
             "threads", po::value<int>()->default_value(4),
             "request handlers, each with a database connection")(
             "heartbeat", po::value<std::string>()->default_value("15s"),
             "a comment line on idle live streams this often, for proxies")(
             "portal-dir", po::value<std::string>(),
             "the portal's files (default: share/taskhost/portal beside bin/)");
       },
       {},
       serve_cmd},
      {"api-key create",
       "",
       "make an API key and print it (once)",
       [](po::options_description& d) {
         d.add_options()("actor", po::value<std::string>()->required(),
                         "who the key stands for (recorded as api:ACTOR)")(
             "role", po::value<std::vector<std::string>>()->required(),
             "viewer, operator or admin (repeatable)")("expires-in", po::value<std::string>(),
                                                       "e.g. 90d (default: never)");
       },
       {},
       api_key_create},
      {"api-key list", "", "list API keys (never their secrets)", json_flag, {}, api_key_list},
      {"api-key revoke", "KEY_ID", "revoke an API key", {}, {{"id", 1}}, api_key_revoke},
      {"runs cancel",
       "RUN_ID",
       "cancel a run (a running one stops at its next safe point)",
       reason_option,
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) {
         return runs_control(s, vm, app::RunControl::cancel);
       }},
      {"runs pause",
       "RUN_ID",
       "pause a run; it keeps its checkpoint",
       reason_option,
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) {
         return runs_control(s, vm, app::RunControl::pause);
       }},
      {"runs resume",
       "RUN_ID",
       "resume a paused run from its checkpoint",
       reason_option,
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) {
         return runs_control(s, vm, app::RunControl::resume);
       }},
      {"runs retry",
       "RUN_ID",
       "re-queue a failed or cancelled run from its last checkpoint",
       reason_option,
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) {
         return runs_control(s, vm, app::RunControl::retry);
       }},
      {"runs approve",
       "RUN_ID",
       "approve a run awaiting approval (not your own): it is queued",
       [](po::options_description& d) {
         d.add_options()("reason", po::value<std::string>(), "why (recorded)");
       },
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) { return runs_decide(s, vm, true); }},
      {"runs reject",
       "RUN_ID",
       "reject a run awaiting approval (not your own): it ends rejected",
       [](po::options_description& d) {
         d.add_options()("reason", po::value<std::string>()->required(), "why (recorded)");
       },
       {{"id", 1}},
       [](Session& s, const po::variables_map& vm) { return runs_decide(s, vm, false); }},
      {"runs output",
       "RUN_ID",
       "print a run's output and files, or one file's content",
       [](po::options_description& d) {
         d.add_options()("file", po::value<std::string>(), "print this file's content")(
             "out,o", po::value<std::string>(), "write the file here instead of stdout");
         json_flag(d);
       },
       {{"id", 1}},
       runs_output},
      {"runs list",
       "",
       "list runs, newest first",
       [](po::options_description& d) {
         d.add_options()("schema", po::value<std::string>(), "only runs of this schema name")(
             "state", po::value<std::string>(), "only runs in this state")(
             "limit", po::value<int>()->default_value(50), "at most this many");
         json_flag(d);
       },
       {},
       runs_list},
      {"runs show",
       "RUN_ID",
       "show one run: state, progress, output, transitions, events",
       [](po::options_description& d) {
         d.add_options()("events", po::value<int>()->default_value(20),
                         "show at most this many events");
         json_flag(d);
       },
       {{"id", 1}},
       runs_show},
      {"runs logs",
       "RUN_ID",
       "print a run's log: its plugin's lines and the host's (started, retried, killed)",
       [](po::options_description& d) {
         d.add_options()("attempt", po::value<int>(), "only this attempt's lines")(
             "follow,f", "keep printing new lines until the run is finished");
         json_flag(d);
       },
       {{"id", 1}},
       runs_logs},
      {"audit list",
       "",
       "list audit log entries, oldest first",
       [](po::options_description& d) {
         audit_filters(d);
         d.add_options()("limit", po::value<int>()->default_value(100), "at most this many");
         json_flag(d);
       },
       {},
       audit_list},
      {"audit export",
       "",
       "print audit log entries as JSON lines, oldest first",
       audit_filters,
       {},
       audit_export},
      {"audit verify",
       "",
       "check the audit log's hash chain; exit 1 naming the first broken entry",
       [](po::options_description& d) {
         d.add_options()("checkpoints", po::value<std::string>(),
                         "also check these signed checkpoints (from audit checkpoint)")(
             "public-key", po::value<std::string>(), "the checkpoints' public key (KEY.pub)");
       },
       {},
       audit_verify},
      {"audit checkpoint",
       "",
       "append a signed (seq, hash) of the chain head to a file outside the database",
       [](po::options_description& d) {
         d.add_options()("key", po::value<std::string>()->required(),
                         "Ed25519 private key (PEM); created with KEY.pub if missing")(
             "out", po::value<std::string>()->required(), "the checkpoint file (JSON lines)");
       },
       {},
       audit_checkpoint},
      {"keys rotate-host-key",
       "",
       "re-seal stored secrets with the current host key (the embedded default: a new one)",
       {},
       {},
       keys_rotate_host_key},
      {"webhook-key",
       "SCHEMA",
       "create (or --rotate) a schema's webhook signing secret and print it once",
       [](po::options_description& d) {
         d.add_options()("rotate", "replace the secret; the old one signs too for 24 hours");
       },
       {{"schema", 1}},
       webhook_key},
      {"webhooks list",
       "",
       "webhook deliveries, newest first",
       [](po::options_description& d) {
         d.add_options()("failed", "only dead letters (attempts exhausted, or endpoint gone)")(
             "run", po::value<std::string>(), "only deliveries about this run")(
             "limit", po::value<int>()->default_value(100), "at most this many");
         json_flag(d);
       },
       {},
       webhooks_list},
      {"webhooks redeliver",
       "DELIVERY_ID",
       "send a delivery now (same webhook-id), dead or waiting out its backoff; re-enables an "
       "endpoint that answered 410",
       nullptr,
       {{"id", 1}},
       webhooks_redeliver},
      {"plugin inspect",
       "FILE.so",
       "check a plugin file and print its SHA-256 and the libraries it needs, without running "
       "it",
       [](po::options_description& d) {
         d.add_options()("load",
                         "also load it to print its name, version and ABI: its code (its "
                         "static initialisers) runs in the plugin sandbox, as at run time");
         json_flag(d);
       },
       {{"file", 1}},
       plugin_inspect},
      {"plugin new",
       "NAME",
       "make a plugin project: a worked example, its schema, a README and a test, built out of "
       "tree against the SDK",
       [](po::options_description& d) {
         d.add_options()("dir", po::value<std::string>(), "where (default: ./NAME)");
       },
       {{"name", 1}},
       plugin_new},
      {"plugin test",
       "SCHEMA.yaml",
       "install that schema here and run its plugin once in the sandbox, printing its log, "
       "events, service calls (refused ones too), files and output; exit 1 if it failed",
       [](po::options_description& d) {
         d.add_options()("param,p", po::value<std::vector<std::string>>()->composing(),
                         "parameter key=value (repeatable)")(
             "params-file", po::value<std::string>(), "JSON object of parameters")(
             "object", po::value<std::vector<std::string>>()->composing(),
             "BUCKET/KEY=FILE: put FILE into the local object store first (repeatable)")(
             "result-dir", po::value<std::string>(), "save the run's files into this folder");
       },
       {{"schema", 1}},
       plugin_test},
      {"plugin review",
       "FILE.so [SCHEMA.yaml...]",
       "what a reviewer approves: name, version, ABI and SHA-256 (loaded in the sandbox), "
       "imports the sandbox forbids, and the lines of each schema that pin this build (exit 1 "
       "if one does not)",
       json_flag,
       {{"file", 1}, {"schemas", -1}},
       plugin_review},
  };
  return table;
}

void print_usage(const po::options_description& globals) {
  std::cout << "taskhost: reviewed, audited, resumable tasks\n\n"
               "usage: taskhost [global options] COMMAND [options]\n\ncommands:\n";
  for (const auto& c : commands())
    std::cout << "  " << pad(c.words + (c.args.empty() ? "" : " " + c.args), 32) << c.summary
              << "\n";
  std::cout << "\n"
            << globals << "\n`taskhost COMMAND --help` shows a command's options.\n"
            << "exit codes: 0 ok, 1 run failed, 2 usage or validation error, 3 not found, "
               "4 conflict, 5 plugin refused, 6 environment (database, files)\n";
}

// The command named by the leading words of args (longest match).
const Command* find_command(const std::vector<std::string>& words) {
  const Command* best = nullptr;
  for (const auto& c : commands()) {
    std::istringstream in(c.words);
    size_t i = 0;
    bool match = true;
    for (std::string w; in >> w; ++i) match = match && i < words.size() && words[i] == w;
    if (match && (!best || c.words.size() > best->words.size())) best = &c;
  }
  return best;
}

void apply_environment(Globals& g) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  if (g.database_url.empty()) g.database_url = env("TASKHOST_DATABASE_URL");
  if (g.home.empty()) g.home = env("TASKHOST_HOME");
  if (g.plugin_dir.empty()) g.plugin_dir = env("TASKHOST_PLUGIN_DIR");
  if (g.config.empty()) g.config = env("TASKHOST_CONFIG");
}

}  // namespace

int run_cli(int argc, char** argv) {
  // The fixed-width toolkit needs no database or host config.
  if (argc >= 2 && std::string_view(argv[1]) == "fixedwidth")
    return run_fixedwidth_cli(argc - 1, argv + 1);
  Globals g;
  try {
    // Pass 1: the global options and the command words.
    po::options_description globals = global_options(g);
    po::options_description first;
    first.add(globals).add_options()("words", po::value<std::vector<std::string>>());
    po::positional_options_description all_words;
    all_words.add("words", -1);
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv)
                  .options(first)
                  .positional(all_words)
                  .allow_unregistered()
                  .run(),
              vm);
    auto words =
        vm.count("words") ? vm["words"].as<std::vector<std::string>>() : std::vector<std::string>{};
    const Command* cmd = find_command(words);
    if (!cmd) {
      if (vm.count("version")) {
        std::cout << version_text() << "\n";
        return exit_ok;
      }
      if (words.empty()) {
        print_usage(globals);
        return vm.count("help") ? exit_ok : exit_usage;
      }
      // A group's name alone (`taskhost runs`) lists the group.
      std::vector<const Command*> group;
      for (const auto& c : commands())
        if (c.words.rfind(words.front() + " ", 0) == 0) group.push_back(&c);
      if (group.empty()) {
        std::cerr << "taskhost: unknown command '" << words.front() << "'\n";
        print_usage(globals);
        return exit_usage;
      }
      const bool asked = words.size() == 1 && vm.count("help");
      if (!asked)
        std::cerr << "taskhost " << words.front() << ": "
                  << (words.size() == 1 ? "which one?" : "unknown subcommand '" + words[1] + "'")
                  << "\n";
      std::cout << "usage: taskhost " << words.front() << " SUBCOMMAND [options]\n\n";
      for (const auto* c : group)
        std::cout << "  " << pad(c->words + (c->args.empty() ? "" : " " + c->args), 32)
                  << c->summary << "\n";
      return asked ? exit_ok : exit_usage;
    }

    // Pass 2: the command's own options and positional arguments.
    Globals g2;
    po::options_description own("Options of `taskhost " + cmd->words + "`");
    if (cmd->options) cmd->options(own);
    po::options_description hidden;
    size_t nwords = std::count(cmd->words.begin(), cmd->words.end(), ' ') + 1;
    hidden.add_options()("command-word", po::value<std::vector<std::string>>());
    po::positional_options_description pos;
    pos.add("command-word", static_cast<int>(nwords));
    for (const auto& [name, max] : cmd->positional) {
      if (max == 1)
        hidden.add_options()(name.c_str(), po::value<std::string>()->required());
      else
        hidden.add_options()(name.c_str(), po::value<std::vector<std::string>>()->required());
      pos.add(name.c_str(), max);
    }
    po::options_description second;
    second.add(global_options(g2)).add(own).add(hidden);
    po::variables_map cvm;
    po::store(po::command_line_parser(argc, argv).options(second).positional(pos).run(), cvm);
    if (cvm.count("help")) {
      std::cout << "usage: taskhost " << cmd->words << (cmd->args.empty() ? "" : " " + cmd->args)
                << " [options]\n"
                << cmd->summary << "\n\n"
                << own << "\n"
                << global_options(g2);
      return exit_ok;
    }
    try {
      po::notify(cvm);
    } catch (const po::required_option& e) {
      for (const auto& [name, max] : cmd->positional)
        if (e.get_option_name() == "--" + name)
          throw Error(ErrorKind::invalid, cmd->words + ": missing " + cmd->args +
                                              " (see taskhost " + cmd->words + " --help)");
      throw;
    }
    apply_environment(g2);
    if (g2.log_format != "text" && g2.log_format != "json")
      throw Error(ErrorKind::invalid,
                  "--log-format: expected text or json, got '" + g2.log_format + "'");
    setup_logging(g2.log_format == "json" ? LogFormat::json : LogFormat::text, g2.log_level);
    Session session(g2);
    return cmd->run(session, cvm);
  } catch (const po::error& e) {
    std::cerr << "taskhost: " << e.what() << " (see taskhost --help)\n";
    return exit_usage;
  } catch (const Error& e) {
    std::cerr << "taskhost: " << e.what() << "\n";
    return exit_code(e.kind());
  } catch (const std::exception& e) {
    std::cerr << "taskhost: unexpected error: " << e.what() << "\n";
    return 7;
  }
}

}  // namespace taskhost
