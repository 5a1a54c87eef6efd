#pragma once

#include <set>
#include <string>

#include "config/host_config.hpp"
#include "schema/schema.hpp"

namespace taskhost::app {

// Who asks: the CLI's OS user ("cli:alice") or an API key's actor
// ("api:deploy-bot"), with the roles the host config or the key gives.
// Roles: viewer, operator, admin; a schema's permissions name which of them
// may view, run and control (cancel, pause, resume, retry) its runs.
struct Actor {
  std::string name;
  std::set<std::string> roles;
  bool has(const std::string& role) const { return roles.count(role) > 0; }
};

enum class SchemaAction { view, run, control };

// Throws Error(refused) unless the actor holds a role the schema's
// permissions list for the action, naming actor, action, schema and roles.
void authorize(const Actor& actor, SchemaAction action, const TaskSchema& schema);
bool allowed(const Actor& actor, SchemaAction action, const TaskSchema& schema);
// Four eyes: throws Error(refused) unless the actor holds one of the
// schema's approval.approvers roles and is not the run's submitter, whatever
// its roles (admin included). The person behind "cli:alice" and "api:alice"
// is the same: alice.
void authorize_decision(const Actor& actor, const TaskSchema& schema, const std::string& run_id,
                        const std::string& submitter);
bool same_person(const std::string& actor_a, const std::string& actor_b);

// Platform operations (installing schemas, the audit log, webhooks, keys)
// are the admin role's. Throws Error(refused) naming what was asked.
void require_admin(const Actor& actor, const std::string& what);

// The CLI's actor: the OS user, with roles from the host config's
// `cli.roles` (by user name, or "*"); without that section, admin, as a
// local user who can reach the database could do anything anyway.
Actor cli_actor(const HostConfig& config);

}  // namespace taskhost::app
