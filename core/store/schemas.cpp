#include "store/schemas.hpp"

#include <algorithm>

#include "store/audit.hpp"

namespace taskhost {
namespace {

const char* select_columns =
    "SELECT id, yaml, name || '@' || version, installed_at::text, installed_by, removed_at::text "
    "FROM taskhost.task_schemas ";

// A reference's version ($2) matches itself exactly and, when it has no
// build metadata, every build of that version.
const char* version_matches =
    "(version = $2 OR (strpos($2, '+') = 0 AND split_part(version, '+', 1) = $2))";

std::vector<InstalledSchema> read(const pg::Result& r) {
  std::vector<InstalledSchema> out;
  for (int i = 0; i < r.rows(); ++i) {
    std::vector<Diagnostic> errors;
    auto s = parse_schema(r.text(i, 1), r.text(i, 2), &errors);
    if (!s)
      throw Error(ErrorKind::environment, "stored schema " + r.text(i, 2) + " no longer parses:\n" +
                                              format_diagnostics(errors));
    out.push_back({r.integer(i, 0), std::move(*s), r.text(i, 3), r.text(i, 4), r.optional(i, 5)});
  }
  return out;
}

}  // namespace

const InstalledSchema& latest(const std::vector<InstalledSchema>& schemas) {
  return *std::max_element(schemas.begin(), schemas.end(), [](const auto& a, const auto& b) {
    if (auto c = a.schema.version <=> b.schema.version; c != 0) return c < 0;
    return a.id < b.id;  // builds of one version: the newest install
  });
}

SchemaRef SchemaRef::parse(const std::string& text) {
  auto at = text.find('@');
  if (at == std::string::npos) return {text, std::nullopt};
  return {text.substr(0, at), text.substr(at + 1)};
}

InstallOutcome install_schema(pg::Connection& conn, const TaskSchema& s, const std::string& actor) {
  pg::Transaction tx(conn);
  // Serialise installs of one name so two installers cannot race past the
  // digest comparison below.
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.schema:' || $1))", {s.name});
  auto existing = tx.exec(
      "SELECT digest, removed_at IS NOT NULL FROM taskhost.task_schemas "
      "WHERE name = $1 AND version = $2",
      {s.name, s.version.str()});
  if (existing.rows() > 0) {
    if (existing.text(0, 0) != s.digest)
      throw Error(ErrorKind::conflict, s.ref() +
                                           " is already installed from a different file (sha256 " +
                                           existing.text(0, 0) + ", this file " + s.digest +
                                           "); a version names one file forever: bump the version");
    if (!existing.boolean(0, 1)) return InstallOutcome::unchanged;
    tx.exec(
        "UPDATE taskhost.task_schemas SET removed_at = NULL, removed_by = NULL "
        "WHERE name = $1 AND version = $2",
        {s.name, s.version.str()});
    append_audit(tx.connection(), actor, "schema.restored", std::nullopt, s.ref());
    tx.commit();
    return InstallOutcome::restored;
  }
  tx.exec(
      "INSERT INTO taskhost.task_schemas (name, version, description, yaml, digest, plugin_path, "
      "plugin_sha256, spec, installed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      {s.name, s.version.str(), s.description, s.yaml, s.digest, s.plugin_path, s.plugin_sha256,
       s.to_json().dump(), actor});
  tx.commit();
  return InstallOutcome::installed;
}

InstalledSchema find_schema(pg::Connection& conn, const SchemaRef& ref, bool include_removed) {
  const std::string removed_filter = include_removed ? "" : " AND removed_at IS NULL";
  if (ref.version) {
    auto found = read(conn.exec(select_columns + std::string("WHERE name = $1 AND ") +
                                    version_matches + removed_filter + " ORDER BY id DESC LIMIT 1",
                                {ref.name, *ref.version}));
    if (found.empty())
      throw Error(ErrorKind::not_found, "no schema " + ref.name + "@" + *ref.version +
                                            " is installed (see `taskhost schema list`)");
    return found.front();
  }
  auto found =
      read(conn.exec(select_columns + std::string("WHERE name = $1") + removed_filter, {ref.name}));
  if (found.empty())
    throw Error(ErrorKind::not_found,
                "no schema named " + ref.name + " is installed (see `taskhost schema list`)");
  return latest(found);
}

InstalledSchema schema_by_id(pg::Connection& conn, int64_t id) {
  auto found = read(conn.exec(select_columns + std::string("WHERE id = $1"), {id}));
  if (found.empty()) throw Error(ErrorKind::not_found, "no schema with id " + std::to_string(id));
  return found.front();
}

std::vector<InstalledSchema> list_schemas(pg::Connection& conn, bool include_removed) {
  return read(conn.exec(select_columns +
                        std::string(include_removed ? "" : "WHERE removed_at IS NULL ") +
                        "ORDER BY name, installed_at DESC"));
}

int remove_schema(pg::Connection& conn, const SchemaRef& ref, bool force,
                  const std::string& actor) {
  pg::Transaction tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('taskhost.schema:' || $1))", {ref.name});
  auto targets = tx.exec(
      std::string(
          "SELECT id FROM taskhost.task_schemas WHERE name = $1 AND ($2::text IS NULL OR ") +
          version_matches + ") AND removed_at IS NULL",
      {ref.name, ref.version});
  if (targets.rows() == 0)
    throw Error(ErrorKind::not_found, "no installed schema matches " + ref.name +
                                          (ref.version ? "@" + *ref.version : std::string()));
  auto active =
      tx.exec(std::string("SELECT count(*) FROM taskhost.runs r JOIN taskhost.task_schemas s "
                          "ON s.id = r.schema_id WHERE s.name = $1 AND ($2::text IS NULL OR ") +
                  version_matches + ") AND r.state NOT IN ('succeeded', 'failed', 'cancelled')",
              {ref.name, ref.version});
  if (active.integer(0, 0) > 0 && !force)
    throw Error(
        ErrorKind::conflict,
        active.text(0, 0) + " unfinished run(s) use " + ref.name +
            (ref.version ? "@" + *ref.version : std::string()) +
            "; wait for them, or pass --force (they finish on the version they started with)");
  auto r =
      tx.exec(std::string("UPDATE taskhost.task_schemas SET removed_at = now(), removed_by = $3 "
                          "WHERE name = $1 AND ($2::text IS NULL OR ") +
                  version_matches + ") AND removed_at IS NULL",
              {ref.name, ref.version, actor});
  tx.commit();
  return static_cast<int>(r.affected());
}

}  // namespace taskhost
