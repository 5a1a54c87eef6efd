#include "engine/submit.hpp"

#include <spdlog/spdlog.h>

#include "schema/params.hpp"

namespace taskhost {

Submitted submit_run(pg::Connection& conn, const InstalledSchema& schema, const Json& params,
                     const std::string& actor, const std::optional<std::string>& idempotency_key) {
  std::vector<Diagnostic> errors;
  Json valid = validate_params(schema.schema, params, &errors);
  if (!errors.empty())
    throw Error(ErrorKind::invalid, "invalid parameters for " + schema.schema.ref() + ":\n" +
                                        format_diagnostics(errors));
  SubmitRequest request;
  request.schema = &schema;
  request.params = std::move(valid);
  request.actor = actor;
  request.idempotency_key = idempotency_key;
  auto s = enqueue(conn, request);
  if (s.created)
    spdlog::info("run {} of {} queued by {}", s.run_id, schema.schema.ref(), actor);
  else
    spdlog::info("idempotency key matched run {} of {}", s.run_id, schema.schema.name);
  return s;
}

}  // namespace taskhost
