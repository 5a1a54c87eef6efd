#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/diagnostic.hpp"
#include "schema/cron.hpp"
#include "schema/limits.hpp"
#include "schema/semver.hpp"

namespace taskhost {

using Json = nlohmann::json;

enum class ParamType { string, integer, number, boolean, enumeration, list };
enum class Access { read, write, readwrite };

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  ParamType items = ParamType::string;  // element type of a list
  bool required = false;
  std::optional<Json> default_value;
  std::string description;
  std::vector<std::string> values;                 // enum
  std::optional<double> min, max;                  // integer, number
  std::optional<uint64_t> min_length, max_length;  // string, list
  std::string pattern;                             // string, RE2 regex (common/pattern.hpp)
  // string: a bucket the schema grants, where the portal stores a file the
  // operator uploads for this parameter; the value is then the object's key.
  std::string upload;
};

struct S3Grant {
  std::string bucket, prefix;
  Access access = Access::read;
};
struct SftpGrant {
  std::string host, path;
  Access access = Access::read;
};
// A SQL file shipped beside the plugin that makes tables it is granted,
// applied once, in order, at `schema install` (services/database.hpp).
struct DataMigration {
  std::string path;    // relative to the plugin directory
  std::string sha256;  // of the reviewed file
};
// Tables of one database connection; the host runs the plugin's statements
// as a role made for this schema version with exactly these privileges.
struct DbGrant {
  std::string connection;
  std::map<std::string, Access> tables;
  std::vector<DataMigration> migrations;
};
struct HttpGrant {
  std::string base_url, credential;
  // Methods besides GET and HEAD that change nothing under base_url (RFC
  // 9110 "safe", e.g. a status query sent as POST): a dry run may send them.
  std::vector<std::string> safe_methods;
};
// Decryption with the host config's secret key `key`; with `verify`, only
// files signed by that public key open.
struct PgpGrant {
  std::string key, verify;
};

// What a plugin may touch. Empty means nothing: deny by default.
struct Capabilities {
  std::vector<S3Grant> s3;
  std::vector<SftpGrant> sftp;
  std::optional<DbGrant> db;
  std::vector<HttpGrant> http;
  std::vector<PgpGrant> pgp;
};

// A metric the plugin may record (th_host_api.metric), exposed on
// `/metrics` as taskhost_plugin_NAME with the schema's name as a label.
// Each label takes only its declared values, so the series stay few.
struct MetricSpec {
  std::string name;     // a counter's ends in _total, a gauge's does not
  bool counter = true;  // counter: a sample adds to it; gauge: a sample sets it
  std::string help;
  std::map<std::string, std::vector<std::string>> labels;
};

struct RetryPolicy {
  uint32_t max_attempts = 1;  // no retry unless the schema asks for it
  bool exponential = true;
  std::chrono::milliseconds initial{std::chrono::seconds(30)};
  std::chrono::milliseconds max{std::chrono::hours(1)};
};

// A follow-up run; param values may use {{ output.KEY }} templates. With
// for_each (an output path such as "output.files" naming an array), one
// follow-up per element, in order, whose params may also use {{ item }},
// {{ item.KEY }} and {{ index }}; an empty array starts none.
struct ChainStep {
  std::string run;  // NAME or NAME@VERSION
  std::map<std::string, std::string> params;
  std::optional<std::string> for_each;
};

struct Hooks {
  std::string url;
  std::vector<std::string> events;
};

// Roles that may view runs, start them, and control them (cancel, pause,
// resume, retry); control defaults to the run list.
struct Permissions {
  std::vector<std::string> run{"admin"};
  std::vector<std::string> view{"admin"};
  std::vector<std::string> control{"admin"};
};

// Four eyes: a run (other than a dry run) waits in awaiting_approval until
// an actor holding one of the approvers' roles, other than its submitter,
// approves or rejects it.
struct ApprovalPolicy {
  bool required = false;
  std::vector<std::string> approvers{"admin"};
};

// One version of a task, as parsed and validated from its YAML file.
struct TaskSchema {
  std::string name;
  SemVer version;
  std::string description;
  std::string plugin_path;    // relative to the plugin directory
  std::string plugin_sha256;  // 64 lower-case hex digits, or "any"
  std::vector<ParamSpec> params;
  Capabilities capabilities;
  RetryPolicy retry;
  std::chrono::milliseconds timeout{std::chrono::hours(1)};
  // isolation: process (the default: a sandboxed child per attempt) or none
  // (inside the host, only where the host config allows it).
  bool in_process = false;
  // Per attempt; what is not set here comes from the host config.
  ResourceLimits limits;
  std::optional<uint32_t> concurrency;  // unlimited when absent
  std::optional<std::string> schedule;  // validated cron text
  std::string timezone = "UTC";
  std::vector<ChainStep> on_success, on_failure;
  std::optional<Hooks> hooks;
  Permissions permissions;
  ApprovalPolicy approval;
  std::vector<MetricSpec> metrics;

  std::string yaml;    // the exact text installed
  std::string digest;  // SHA-256 of yaml

  std::string ref() const { return name + "@" + version.str(); }
  const ParamSpec* param(const std::string& name) const;
  // A normalised JSON form, for `schema show --json` and the store.
  Json to_json() const;
};

// The largest schema file accepted: schemas are read whole on every listing.
constexpr size_t max_schema_bytes = 1 << 20;

// Parses and validates one schema. file names the source in diagnostics.
// Returns the schema, or std::nullopt with every problem found in *errors.
std::optional<TaskSchema> parse_schema(const std::string& yaml, const std::string& file,
                                       std::vector<Diagnostic>* errors);

// Reads and parses a schema file; a file that cannot be read is a diagnostic.
std::optional<TaskSchema> load_schema_file(const std::string& path,
                                           std::vector<Diagnostic>* errors);

}  // namespace taskhost
