#include "app/actor.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.hpp"

namespace taskhost::app {
namespace {

const char* action_name(SchemaAction a) {
  switch (a) {
    case SchemaAction::view:
      return "view";
    case SchemaAction::run:
      return "run";
    case SchemaAction::control:
      return "control";
  }
  return "?";
}

const std::vector<std::string>& roles_for(SchemaAction a, const Permissions& p) {
  switch (a) {
    case SchemaAction::view:
      return p.view;
    case SchemaAction::run:
      return p.run;
    case SchemaAction::control:
      return p.control;
  }
  return p.view;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out.empty() ? "none" : out;
}

}  // namespace

bool allowed(const Actor& actor, SchemaAction action, const TaskSchema& schema) {
  const auto& roles = roles_for(action, schema.permissions);
  return std::any_of(roles.begin(), roles.end(), [&](const auto& r) { return actor.has(r); });
}

void authorize(const Actor& actor, SchemaAction action, const TaskSchema& schema) {
  if (allowed(actor, action, schema)) return;
  throw Error(ErrorKind::refused,
              "permission denied: " + actor.name +
                  " (roles: " + joined({actor.roles.begin(), actor.roles.end()}) + ") may not " +
                  action_name(action) + " runs of " + schema.ref() + " (permissions." +
                  action_name(action) + ": " + joined(roles_for(action, schema.permissions)) + ")");
}

bool same_person(const std::string& a, const std::string& b) {
  auto person = [](const std::string& actor) {
    for (const char* door : {"cli:", "api:"})
      if (actor.rfind(door, 0) == 0) return actor.substr(4);
    return actor;
  };
  return person(a) == person(b);
}

void authorize_decision(const Actor& actor, const TaskSchema& schema, const std::string& run_id,
                        const std::string& submitter) {
  // Before the roles: no role, admin included, lets a submitter decide.
  if (same_person(actor.name, submitter))
    throw Error(ErrorKind::refused, "permission denied: " + actor.name + " submitted run " +
                                        run_id +
                                        " and may not approve or reject it; another approver "
                                        "must (" +
                                        schema.ref() + " requires four eyes)");
  const auto& roles = schema.approval.approvers;
  if (std::any_of(roles.begin(), roles.end(), [&](const auto& r) { return actor.has(r); })) return;
  throw Error(ErrorKind::refused, "permission denied: " + actor.name + " (roles: " +
                                      joined({actor.roles.begin(), actor.roles.end()}) +
                                      ") may not approve or reject runs of " + schema.ref() +
                                      " (approval.approvers: " + joined(roles) + ")");
}

void require_admin(const Actor& actor, const std::string& what) {
  if (actor.has("admin")) return;
  throw Error(ErrorKind::refused,
              "permission denied: " + what + " is for the admin role, and " + actor.name +
                  " has roles: " + joined({actor.roles.begin(), actor.roles.end()}));
}

Actor cli_actor(const HostConfig& config) {
  struct passwd* pw = ::getpwuid(::geteuid());
  const std::string user = pw ? pw->pw_name : std::to_string(::geteuid());
  Actor a{"cli:" + user, {}};
  if (!config.cli_roles) {
    a.roles = {"admin"};
    return a;
  }
  auto it = config.cli_roles->find(user);
  if (it == config.cli_roles->end()) it = config.cli_roles->find("*");
  if (it != config.cli_roles->end()) a.roles = {it->second.begin(), it->second.end()};
  return a;
}

}  // namespace taskhost::app
