#include "engine/submit.hpp"

#include <spdlog/spdlog.h>

#include "schema/params.hpp"

namespace taskhost {
namespace {

SubmitRequest request_for(const InstalledSchema& schema, const Json& params,
                          const std::string& actor,
                          const std::optional<std::string>& idempotency_key, bool dry_run) {
  std::vector<Diagnostic> errors;
  Json valid = validate_params(schema.schema, params, &errors);
  if (!errors.empty()) {
    std::vector<FieldErrors::Field> fields;
    for (const auto& e : errors) fields.push_back({e.field, e.message});
    throw FieldErrors(
        "invalid parameters for " + schema.schema.ref() + ":\n" + format_diagnostics(errors),
        std::move(fields));
  }
  SubmitRequest request;
  request.schema = &schema;
  request.params = std::move(valid);
  request.actor = actor;
  request.idempotency_key = idempotency_key;
  request.dry_run = dry_run;
  if (dry_run) request.reason = "submitted as a dry run";
  return request;
}

void log_submitted(const Submitted& s, const InstalledSchema& schema, const std::string& actor) {
  if (s.created)
    spdlog::info("run {} of {} {} by {}", s.run_id, schema.schema.ref(),
                 s.state == RunState::awaiting_approval ? "submitted for approval" : "queued",
                 actor);
  else
    spdlog::info("idempotency key matched run {} of {}", s.run_id, schema.schema.name);
}

}  // namespace

Submitted submit_run(pg::Connection& conn, const InstalledSchema& schema, const Json& params,
                     const std::string& actor, const std::optional<std::string>& idempotency_key,
                     bool dry_run) {
  auto s = enqueue(conn, request_for(schema, params, actor, idempotency_key, dry_run));
  log_submitted(s, schema, actor);
  return s;
}

InlineSubmitted submit_inline(pg::Connection& conn, const InstalledSchema& schema,
                              const Json& params, const std::string& actor,
                              const std::optional<std::string>& idempotency_key,
                              const std::string& owner, std::chrono::milliseconds lease,
                              bool dry_run) {
  auto request = request_for(schema, params, actor, idempotency_key, dry_run);
  pg::Transaction tx(conn);
  InlineSubmitted out{enqueue_in(tx, request), std::nullopt};
  if (out.submitted.created && out.submitted.state == RunState::queued) {
    auto claimed = claim(conn, owner, 1, lease, out.submitted.run_id);
    if (claimed.size() != 1)
      throw Error(ErrorKind::environment, "run " + out.submitted.run_id + " could not be claimed");
    out.claimed = std::move(claimed.front());
  }
  tx.commit();
  log_submitted(out.submitted, schema, actor);
  return out;
}

}  // namespace taskhost
