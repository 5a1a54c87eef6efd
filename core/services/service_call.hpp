#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/error.hpp"
#include "schema/schema.hpp"

namespace taskhost {

// What the scoped services (object storage, SFTP, HTTP) share.

// One service call as the audit log records it.
struct ServiceCall {
  std::string service, operation, resource;
  uint64_t bytes = 0;
  std::string outcome;      // "ok" / "HTTP 200", "denied", or the error
  std::string sha256 = {};  // of the bytes, when the service hashed them (transfers)
};
using ServiceAudit = std::function<void(const ServiceCall&)>;

// Whether a grant of `granted` allows `need`.
inline bool allows(Access granted, Access need) {
  return granted == Access::readwrite || granted == need;
}
inline const char* access_name(Access a) {
  return a == Access::read ? "read" : a == Access::write ? "write" : "readwrite";
}

// The refusal of a call outside the schema's grants: "permission denied:
// schema S has no WHAT grant for RESOURCE (granted: GRANTED)", or with
// (NONE) when nothing is granted there.
inline Error not_granted(const std::string& schema, const std::string& what,
                         const std::string& resource, const std::string& granted,
                         const char* none) {
  return Error(ErrorKind::refused, "permission denied: schema " + schema + " has no " + what +
                                       " grant for " + resource + " (" +
                                       (granted.empty() ? none : "granted: " + granted) + ")");
}

// The refusal of a write during a dry run (README "Dry runs"): "dry run:
// WHAT refused: ...". A refusal, so audited as denied.
inline Error dry_run_refusal(const std::string& what) {
  return Error(ErrorKind::refused, "dry run: " + what +
                                       " refused: this run is a dry run, in which services may "
                                       "read but never write");
}

// request[field] as a string. Throws Error(invalid) naming the service.
inline const std::string& string_field(const Json& request, const std::string& service,
                                       const char* field) {
  auto it = request.find(field);
  if (it == request.end() || !it->is_string())
    throw Error(ErrorKind::invalid, service + ": '" + field + "' must be a string");
  return it->get_ref<const std::string&>();
}

// Runs a call and audits it whatever happens: its outcome stays as the call
// set it on success, "denied" for a refusal, the error's text otherwise.
template <typename F>
Json audited(const ServiceAudit& audit, ServiceCall& record, F&& call) {
  try {
    Json reply = call();
    audit(record);
    return reply;
  } catch (const Error& e) {
    record.outcome = e.kind() == ErrorKind::refused ? "denied" : e.what();
    audit(record);
    throw;
  }
}

}  // namespace taskhost
