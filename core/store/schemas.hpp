#pragma once

#include <optional>
#include <string>
#include <vector>

#include "schema/schema.hpp"
#include "store/pg.hpp"

namespace taskhost {

struct InstalledSchema {
  int64_t id = 0;
  TaskSchema schema;
  std::string installed_at, installed_by;
  std::optional<std::string> removed_at;
};

enum class InstallOutcome { installed, unchanged, restored };

// "NAME" or "NAME@VERSION".
struct SchemaRef {
  std::string name;
  std::optional<std::string> version;
  static SchemaRef parse(const std::string& text);
};

// Records a schema version. The same file again is a no-op (unchanged); a
// removed version installed again from the same file is restored. Throws
// Error(conflict) when (name, version) already names a different file.
InstallOutcome install_schema(pg::Connection& conn, const TaskSchema& schema,
                              const std::string& actor);

// NAME resolves to the highest semver among versions not removed; NAME@V to
// exactly that version, or, when V has no build metadata, to the newest
// installed build of it (removed ones only when include_removed).
// Throws Error(not_found).
InstalledSchema find_schema(pg::Connection& conn, const SchemaRef& ref,
                            bool include_removed = false);
InstalledSchema schema_by_id(pg::Connection& conn, int64_t id);
// The one NAME resolves to among `schemas` (not empty, one name).
const InstalledSchema& latest(const std::vector<InstalledSchema>& schemas);

// Every version, newest install first; removed ones only when asked.
std::vector<InstalledSchema> list_schemas(pg::Connection& conn, bool include_removed);

// Hides NAME (all versions) or NAME@V (every build of V) from new runs; run history stays.
// Refuses with Error(conflict) while unfinished runs use it, unless force.
// Returns how many versions it removed.
int remove_schema(pg::Connection& conn, const SchemaRef& ref, bool force, const std::string& actor);

}  // namespace taskhost
