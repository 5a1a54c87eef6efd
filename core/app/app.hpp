#pragma once

// The application layer: every operation an operator can ask for, with its
// authorization, for the CLI and the HTTP API alike. They parse, call this
// and format; nothing here prints.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/actor.hpp"
#include "app/host.hpp"
#include "engine/submit.hpp"
#include "store/audit.hpp"
#include "store/queue.hpp"
#include "store/run_logs.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"
#include "webhooks/outbox.hpp"

namespace taskhost::app {

using taskhost::RunControl;
RunControl run_control_from(const std::string& name);  // throws Error(invalid)

struct Installed {
  std::string schema, outcome, digest;  // outcome: installed, unchanged, restored, would ...
  std::vector<std::string> migrations;  // data migrations applied now
};

// Audit filters as an operator writes them; validated into an AuditFilter.
struct AuditQuery {
  std::optional<std::string> run, actor, action, since, until;
  std::optional<int> limit;
  int64_t after_seq = 0;
  std::string spelled = "";  // before a filter's name in messages: "--" for the CLI
};

// One actor's session with the platform over one connection. Cheap: the
// API makes one per request.
class App {
 public:
  App(Host& host, pg::Connection& db, Actor actor)
      : host_(host), db_(db), actor_(std::move(actor)) {}
  const Actor& actor() const { return actor_; }

  // -- schemas
  // Checks each file (plugin pinned and present, data migrations reviewed)
  // and records it: its tables, then its roles, then the schema. A version
  // installed from another file is reported "conflict" and, after the rest,
  // throws Error(conflict). dry_run records nothing.
  std::vector<Installed> install(const std::vector<std::string>& files, bool dry_run);
  // The same for one schema's text (the API); file names it in diagnostics.
  // A conflict is reported, not thrown.
  Installed install_text(const std::string& file, const std::string& yaml, bool dry_run);
  std::vector<InstalledSchema> schemas(bool include_removed);  // those it may view
  InstalledSchema schema(const std::string& ref);
  int remove_schema(const std::string& ref, bool force);

  // -- runs
  // The schema a run would be bound to, if the actor may run it.
  InstalledSchema runnable(const std::string& ref);
  // dry_run: the run's services refuse every write; it needs no approval.
  Submitted submit(const InstalledSchema& schema, const Json& params,
                   const std::optional<std::string>& idempotency_key, bool dry_run = false);
  InlineSubmitted submit_inline(const InstalledSchema& schema, const Json& params,
                                const std::optional<std::string>& idempotency_key,
                                const std::string& owner, std::chrono::milliseconds lease,
                                bool dry_run = false);
  Run run(const std::string& id_or_prefix);  // if it may view it
  std::vector<Run> runs(RunFilter filter);   // of the schemas it may view
  std::vector<Transition> transitions(const Run& run);
  std::vector<RunEvent> events(const Run& run, int limit);
  std::vector<RunFile> files(const Run& run);
  std::string file_content(const Run& run, const std::string& name);
  RunState control(RunControl op, const std::string& id_or_prefix, const std::string& reason);
  // Four eyes: a run awaiting approval goes to queued (approve) or rejected
  // (reject, which needs a reason), decided by an actor holding one of the
  // schema's approval.approvers roles who did not submit it (see
  // authorize_decision). Error(refused) otherwise, Error(conflict) for a run
  // not awaiting approval.
  RunState approve(const std::string& id_or_prefix, const std::string& reason);
  RunState reject(const std::string& id_or_prefix, const std::string& reason);

  // -- audit (admin)
  AuditFilter audit_filter(const AuditQuery& q);
  std::vector<AuditEntry> audit(const AuditQuery& q);
  void each_audit(const AuditQuery& q, const std::function<void(const AuditEntry&)>& each);
  AuditVerdict verify_audit();
  AuditVerdict verify_audit_checkpoints(const std::string& public_key,
                                        const std::string& checkpoints);
  int64_t write_audit_checkpoint(const std::string& key, const std::string& out);

  // -- webhooks and keys (admin)
  std::vector<Delivery> deliveries(DeliveryFilter filter);
  void redeliver(int64_t delivery_id);
  std::string create_webhook_secret(const std::string& schema, bool rotate);
  struct Rotated {
    int resealed = 0;
    std::string key_id;  // the host key that seals them now
  };
  Rotated rotate_host_key();

  // -- run logs: a run's log lines, for whoever may view the run (run()
  // checked that). Paged by seq; live followers wait on run_activity_channel.
  LogPage logs(const Run& run, const LogQuery& q);

  // -- what the portal shows
  // What this actor may do now: on a schema ("run"), on a run ("cancel",
  // "pause", "resume", "retry": its roles and the run's state; "approve",
  // "reject": an approver who did not submit it), on the
  // platform ("install", "audit", "webhooks", "api_keys": the admin role's).
  std::vector<std::string> schema_actions(const InstalledSchema& schema);
  std::vector<std::string> run_actions(const Run& run);
  std::vector<std::string> platform_actions();
  // A run's audit trail, for whoever may view the run.
  std::vector<AuditEntry> run_audit(const Run& run, int limit);
  // An operator's file for a parameter declared `upload: BUCKET`: stored in
  // that bucket under <grant prefix>uploads/<date>/<random>/<file name>, for
  // an actor who may run the schema; audited as upload.stored. The content
  // must be a non-empty text file (no NUL byte).
  struct Uploaded {
    std::string bucket, key, sha256;
    int64_t size = 0;
  };
  Uploaded upload(const std::string& schema_ref, const std::string& param,
                  const std::string& file_name, const std::string& content);

 private:
  InstalledSchema schema_of(const Run& run);
  RunState decide(const std::string& id_or_prefix, const std::string& reason, bool approve);
  Installed install(const TaskSchema& schema, bool dry_run);

  Host& host_;
  pg::Connection& db_;
  Actor actor_;
};

}  // namespace taskhost::app
