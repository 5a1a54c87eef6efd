#include "app/app.hpp"

#include <map>

#include <openssl/rand.h>

#include <algorithm>
#include <ctime>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"
#include "plugin/loader.hpp"
#include "services/database.hpp"
#include "services/object_storage.hpp"
#include "store/queue.hpp"
#include "webhooks/secrets.hpp"

namespace taskhost::app {

RunControl run_control_from(const std::string& name) {
  if (name == "cancel") return RunControl::cancel;
  if (name == "pause") return RunControl::pause;
  if (name == "resume") return RunControl::resume;
  if (name == "retry") return RunControl::retry;
  throw Error(ErrorKind::invalid,
              "'" + name + "' is not an action on a run (cancel, pause, resume, retry)");
}

// ---- schemas ---------------------------------------------------------------

std::vector<Installed> App::install(const std::vector<std::string>& files, bool dry_run) {
  require_admin(actor_, "installing schemas");
  std::vector<Diagnostic> errors;
  std::vector<TaskSchema> parsed;
  for (const auto& file : files)
    if (auto schema = load_schema_file(file, &errors)) parsed.push_back(std::move(*schema));
  if (!errors.empty()) throw Error(ErrorKind::invalid, format_diagnostics(errors));
  std::vector<Installed> report;
  for (const auto& schema : parsed) report.push_back(install(schema, dry_run));
  return report;
}

Installed App::install_text(const std::string& file, const std::string& yaml, bool dry_run) {
  require_admin(actor_, "installing schemas");
  std::vector<Diagnostic> errors;
  auto schema = parse_schema(yaml, file, &errors);
  if (!schema) throw Error(ErrorKind::invalid, format_diagnostics(errors));
  return install(*schema, dry_run);
}

Installed App::install(const TaskSchema& schema, bool dry_run) {
  // Present and the pinned build, without running any of its code (its ABI
  // is checked when a run loads it).
  check_plugin_file(host_.plugin_dir() / schema.plugin_path, &schema.plugin_sha256,
                    host_.options().dev);
  auto planned = [&]() -> std::string {
    try {
      auto existing = find_schema(db_, {schema.name, schema.version.str()}, true);
      return existing.schema.digest != schema.digest ? "conflict"
             : existing.removed_at                   ? "would restore"
                                                     : "unchanged";
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::not_found) throw;
      return "would install";
    }
  };
  Installed i{schema.ref(), planned(), schema.digest, {}};
  if (dry_run || i.outcome == "conflict") return i;
  // Its tables, then its roles, so a schema naming a missing table is not
  // recorded; never for a conflicting file, whose grant is not the installed
  // version's.
  if (schema.capabilities.db) {
    const auto target =
        database_target(host_.config(), host_.conninfo(), schema.capabilities.db->connection);
    i.migrations = apply_data_migrations(schema, target, host_.plugin_dir());
    provision_db_roles(schema, target);
  }
  switch (install_schema(db_, schema, actor_.name)) {
    case InstallOutcome::installed:
      i.outcome = "installed";
      break;
    case InstallOutcome::unchanged:
      i.outcome = "unchanged";
      break;
    case InstallOutcome::restored:
      i.outcome = "restored";
      break;
  }
  return i;
}

std::vector<InstalledSchema> App::schemas(bool include_removed) {
  auto all = list_schemas(db_, include_removed);
  std::erase_if(all, [&](const auto& s) { return !allowed(actor_, SchemaAction::view, s.schema); });
  return all;
}

InstalledSchema App::schema(const std::string& ref) {
  auto s = find_schema(db_, SchemaRef::parse(ref), true);
  authorize(actor_, SchemaAction::view, s.schema);
  return s;
}

int App::remove_schema(const std::string& ref, bool force) {
  require_admin(actor_, "removing schemas");
  return taskhost::remove_schema(db_, SchemaRef::parse(ref), force, actor_.name);
}

// ---- runs ------------------------------------------------------------------

InstalledSchema App::runnable(const std::string& ref) {
  auto s = find_schema(db_, SchemaRef::parse(ref));
  authorize(actor_, SchemaAction::run, s.schema);
  return s;
}

Submitted App::submit(const InstalledSchema& schema, const Json& params,
                      const std::optional<std::string>& idempotency_key, bool dry_run) {
  authorize(actor_, SchemaAction::run, schema.schema);
  return submit_run(db_, schema, params, actor_.name, idempotency_key, dry_run);
}

InlineSubmitted App::submit_inline(const InstalledSchema& schema, const Json& params,
                                   const std::optional<std::string>& idempotency_key,
                                   const std::string& owner, std::chrono::milliseconds lease,
                                   bool dry_run) {
  authorize(actor_, SchemaAction::run, schema.schema);
  return taskhost::submit_inline(db_, schema, params, actor_.name, idempotency_key, owner, lease,
                                 dry_run);
}

InstalledSchema App::schema_of(const Run& run) { return schema_by_id(db_, run.schema_id); }

Run App::run(const std::string& id_or_prefix) {
  Run r = get_run(db_, id_or_prefix);
  // Not found rather than refused: whether a run exists is itself a view.
  if (!allowed(actor_, SchemaAction::view, schema_of(r).schema))
    throw Error(ErrorKind::not_found, "no run " + id_or_prefix);
  return r;
}

std::vector<Run> App::runs(RunFilter filter) {
  std::vector<int64_t> visible;
  bool all = true;
  for (const auto& s : list_schemas(db_, true)) {
    if (allowed(actor_, SchemaAction::view, s.schema))
      visible.push_back(s.id);
    else
      all = false;
  }
  if (!all) filter.schema_ids = visible;
  return list_runs(db_, filter);
}

std::vector<Transition> App::transitions(const Run& run) { return run_transitions(db_, run.id); }
std::vector<RunEvent> App::events(const Run& run, int limit) {
  return run_events(db_, run.id, limit);
}
std::vector<RunFile> App::files(const Run& run) { return run_files(db_, run.id); }
std::string App::file_content(const Run& run, const std::string& name) {
  return run_file_content(db_, run.id, name);
}

RunState App::control(RunControl op, const std::string& id_or_prefix, const std::string& reason) {
  Run r = run(id_or_prefix);
  authorize(actor_, SchemaAction::control, schema_of(r).schema);
  switch (op) {
    case RunControl::cancel:
      return cancel_run(db_, r.id, actor_.name, reason);
    case RunControl::pause:
      return pause_run(db_, r.id, actor_.name, reason);
    case RunControl::resume:
      return resume_run(db_, r.id, actor_.name, reason);
    case RunControl::retry:
      return retry_run(db_, r.id, actor_.name, reason);
  }
  return r.state;
}

RunState App::decide(const std::string& id_or_prefix, const std::string& reason, bool approve) {
  Run r = run(id_or_prefix);
  authorize_decision(actor_, schema_of(r).schema, r.id, r.actor);
  if (!approve && reason.empty())
    throw Error(ErrorKind::invalid, "a rejection needs a reason, for the submitter and the record");
  return approve ? approve_run(db_, r.id, actor_.name, reason)
                 : reject_run(db_, r.id, actor_.name, reason);
}

RunState App::approve(const std::string& id_or_prefix, const std::string& reason) {
  return decide(id_or_prefix, reason, true);
}

RunState App::reject(const std::string& id_or_prefix, const std::string& reason) {
  return decide(id_or_prefix, reason, false);
}

// ---- audit -----------------------------------------------------------------

AuditFilter App::audit_filter(const AuditQuery& q) {
  require_admin(actor_, "the audit log");
  AuditFilter f;
  if (q.run) f.run_id = get_run(db_, *q.run).id;
  f.actor = q.actor;
  f.action = q.action;
  if (f.action &&
      (f.action->empty() || f.action->front() == '.' ||
       f.action->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.") != std::string::npos))
    throw Error(ErrorKind::invalid, q.spelled + "action: '" + *f.action +
                                        "' is not an action like run.failed or a group of "
                                        "them like service.http");
  f.since = q.since;
  f.until = q.until;
  for (const auto& [name, t] : {std::pair{"since", f.since}, std::pair{"until", f.until}}) {
    if (!t) continue;
    try {
      db_.exec("SELECT $1::timestamptz", {*t});  // PostgreSQL's reading of times
    } catch (const pg::DbError&) {
      throw Error(ErrorKind::invalid,
                  q.spelled + name + ": '" + *t + "' is not a time like 2026-11-22 14:00Z");
    }
  }
  f.limit = q.limit;
  f.after_seq = q.after_seq;
  return f;
}

std::vector<AuditEntry> App::audit(const AuditQuery& q) { return list_audit(db_, audit_filter(q)); }

void App::each_audit(const AuditQuery& q, const std::function<void(const AuditEntry&)>& each) {
  taskhost::each_audit(db_, audit_filter(q), each);
}

AuditVerdict App::verify_audit() {
  require_admin(actor_, "verifying the audit log");
  auto v = taskhost::verify_audit(db_);
  if (!v.ok()) return v;
  auto sealed = verify_audit_sealers(db_, host_.host_keys());
  return sealed.ok() ? v : sealed;
}

AuditVerdict App::verify_audit_checkpoints(const std::string& public_key,
                                           const std::string& checkpoints) {
  require_admin(actor_, "verifying the audit log");
  return taskhost::verify_audit_checkpoints(db_, public_key, checkpoints);
}

int64_t App::write_audit_checkpoint(const std::string& key, const std::string& out) {
  require_admin(actor_, "audit checkpoints");
  return taskhost::write_audit_checkpoint(db_, key, out);
}

// ---- webhooks and keys -----------------------------------------------------

std::vector<Delivery> App::deliveries(DeliveryFilter filter) {
  require_admin(actor_, "webhook deliveries");
  if (filter.run_id) filter.run_id = get_run(db_, *filter.run_id).id;
  return list_deliveries(db_, filter);
}

void App::redeliver(int64_t delivery_id) {
  require_admin(actor_, "redelivering webhooks");
  taskhost::redeliver(db_, delivery_id, actor_.name);
}

std::string App::create_webhook_secret(const std::string& schema, bool rotate) {
  require_admin(actor_, "webhook secrets");
  return taskhost::create_webhook_secret(db_, host_.host_keys(), schema, actor_.name, rotate);
}

App::Rotated App::rotate_host_key() {
  require_admin(actor_, "rotating the host key");
  HostKeys keys = HostKeys::for_rotation(host_.config());
  Rotated r{reseal_webhook_secrets(db_, keys, actor_.name), keys.current_id()};
  sign_audit_sealers(db_, keys);
  HostKeys::finish_rotation(host_.config());
  return r;
}

// ---- run logs --------------------------------------------------------------

LogPage App::logs(const Run& run, const LogQuery& q) {
  if (q.limit < 1 || q.limit > 10000)
    throw Error(ErrorKind::invalid, "limit: expected a number from 1 to 10000");
  return read_run_logs(db_, run.id, q);
}

// ---- what the portal shows -----------------------------------------------

namespace {

// An uploaded file's name as a key segment: letters, digits, '.', '-' and
// '_' only (others become '_'), at most 100 characters, never starting
// with '.'.
std::string key_segment(const std::string& name) {
  std::string out;
  for (char c : name.substr(0, 100))
    out +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
  if (out.empty() || out.front() == '.') out = "upload" + out;
  return out;
}

}  // namespace

std::vector<std::string> App::schema_actions(const InstalledSchema& schema) {
  if (schema.removed_at || !allowed(actor_, SchemaAction::run, schema.schema)) return {};
  return {"run"};
}

std::vector<std::string> App::run_actions(const Run& run) {
  const InstalledSchema installed = schema_of(run);
  const TaskSchema& schema = installed.schema;
  std::vector<std::string> out;
  if (run.state == RunState::awaiting_approval) {
    try {
      authorize_decision(actor_, schema, run.id, run.actor);
      out = {"approve", "reject"};
    } catch (const Error&) {
      // The submitter, or no approver role: nothing to decide here.
    }
  }
  if (!allowed(actor_, SchemaAction::control, schema)) return out;
  for (auto [op, name] : {std::pair{RunControl::cancel, "cancel"},
                          {RunControl::pause, "pause"},
                          {RunControl::resume, "resume"},
                          {RunControl::retry, "retry"}})
    // A run cancelled before anyone approved it is not retried (retry_run).
    if (control_applies(op, run.state) &&
        !(op == RunControl::retry && run.approval_required && !run.approval))
      out.push_back(name);
  return out;
}

std::vector<std::string> App::platform_actions() {
  if (!actor_.has("admin")) return {};
  return {"install", "audit", "webhooks", "api_keys"};
}

std::vector<AuditEntry> App::run_audit(const Run& run, int limit) {
  AuditFilter f;
  f.run_id = run.id;
  f.limit = limit;
  return list_audit(db_, f);
}

App::Uploaded App::upload(const std::string& schema_ref, const std::string& param,
                          const std::string& file_name, const std::string& content) {
  InstalledSchema s = runnable(schema_ref);
  auto spec = std::find_if(s.schema.params.begin(), s.schema.params.end(),
                           [&](const ParamSpec& p) { return p.name == param; });
  if (spec == s.schema.params.end())
    throw Error(ErrorKind::not_found,
                s.schema.ref() + " has no parameter " + printable(storable(param, 70)));
  if (spec->upload.empty())
    throw Error(ErrorKind::invalid, "params." + param + " of " + s.schema.ref() +
                                        " takes no upload (its schema declares no upload bucket)");
  if (content.empty()) throw Error(ErrorKind::invalid, "the uploaded file is empty");
  if (content.find('\0') != std::string::npos)
    throw Error(ErrorKind::invalid, "the uploaded file is not a text file (it holds a NUL byte)");
  const auto grant = std::find_if(s.schema.capabilities.s3.begin(), s.schema.capabilities.s3.end(),
                                  [&](const S3Grant& g) { return g.bucket == spec->upload; });
  // A fresh random folder per upload: two operators' files of the same name
  // never overwrite each other, and no key can be guessed from another.
  unsigned char random[8];
  if (RAND_bytes(random, sizeof random) != 1)
    throw Error(ErrorKind::environment, "no random bytes for an upload's key");
  char day[16];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
  Uploaded u{spec->upload,
             grant->prefix + "uploads/" + day + "/" +
                 hex_lower(std::string(reinterpret_cast<char*>(random), sizeof random)) + "/" +
                 key_segment(file_name),
             sha256_hex(content), static_cast<int64_t>(content.size())};
  check_object_key(u.key);
  size_t at = 0;
  open_bucket(host_.config(), u.bucket)
      ->put(
          u.key,
          [&](char* buf, size_t cap) {
            const size_t n = std::min(cap, content.size() - at);
            std::copy_n(content.data() + at, n, buf);
            at += n;
            return n;
          },
          "text/csv");
  append_audit(
      db_, actor_.name, "upload.stored", std::nullopt, "s3:" + u.bucket + "/" + u.key,
      Json{{"schema", s.schema.ref()}, {"param", param}, {"size", u.size}, {"sha256", u.sha256}});
  return u;
}

}  // namespace taskhost::app
