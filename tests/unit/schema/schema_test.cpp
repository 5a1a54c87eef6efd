#include "schema/schema.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace taskhost {
namespace {

const std::string digest(64, 'a');

// The example from the foundation issue, complete.
const std::string full = R"(name: esi-parser            # [a-z0-9-]+
version: 1.2.0
description: Parse an ESI accumulator file and load it
plugin: { path: esi_parser.so, sha256: )" +
                         digest + R"( }
params:
  file:  { type: string, required: true, description: object key of the raw file }
  mode:  { type: enum, values: [incremental, fixup], default: incremental }
  limit: { type: integer, min: 1, default: 100 }
capabilities:
  s3:   [ { bucket: raw, prefix: esi/, access: read } ]
  sftp: [ { host: esi, path: /From_ESI, access: read } ]
  db:   { connection: main, tables: { esi_accumulators: write } }
  http: [ { base_url: https://api.example/, credential: lighthouse } ]
  pgp:  [ { key: esi, verify: esi-vendor } ]
retry:   { max_attempts: 5, backoff: exponential, initial: 30s, max: 1h }
timeout: 30m
concurrency: 1
schedule: "15 * * * *"
on_success: [ { run: other-task, params: { file: "{{ output.key }}" } } ]
hooks: { url: https://app.example/hook, events: [run.succeeded, run.failed] }
permissions: { run: [operator, admin], view: [viewer, operator, admin] }
)";

std::vector<Diagnostic> errors_of(const std::string& yaml) {
  std::vector<Diagnostic> errors;
  EXPECT_FALSE(parse_schema(yaml, "bad.yaml", &errors).has_value());
  EXPECT_FALSE(errors.empty());
  return errors;
}

std::string first_error(const std::string& yaml) {
  auto errors = errors_of(yaml);
  return errors.empty() ? "" : errors.front().str();
}

std::string minimal(const std::string& extra) {
  return "name: t\nversion: 1.0.0\nplugin: { path: t.so, sha256: any }\n" + extra;
}

TEST(Schema, ParsesEveryField) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(full, "esi.yaml", &errors);
  ASSERT_TRUE(s.has_value()) << format_diagnostics(errors);
  EXPECT_EQ(s->ref(), "esi-parser@1.2.0");
  EXPECT_EQ(s->plugin_path, "esi_parser.so");
  EXPECT_EQ(s->plugin_sha256, digest);
  ASSERT_EQ(s->params.size(), 3u);
  EXPECT_TRUE(s->param("file")->required);
  EXPECT_EQ(s->param("mode")->values, (std::vector<std::string>{"incremental", "fixup"}));
  EXPECT_EQ(*s->param("mode")->default_value, "incremental");
  EXPECT_EQ(*s->param("limit")->default_value, 100);
  EXPECT_EQ(*s->param("limit")->min, 1);
  ASSERT_EQ(s->capabilities.s3.size(), 1u);
  EXPECT_EQ(s->capabilities.s3[0].prefix, "esi/");
  EXPECT_EQ(s->capabilities.sftp[0].path, "/From_ESI");
  EXPECT_EQ(s->capabilities.db->tables.at("esi_accumulators"), Access::write);
  EXPECT_EQ(s->capabilities.http[0].credential, "lighthouse");
  ASSERT_EQ(s->capabilities.pgp.size(), 1u);
  EXPECT_EQ(s->capabilities.pgp[0].key, "esi");
  EXPECT_EQ(s->capabilities.pgp[0].verify, "esi-vendor");
  EXPECT_EQ(s->retry.max_attempts, 5u);
  EXPECT_EQ(s->retry.initial, std::chrono::seconds(30));
  EXPECT_EQ(s->timeout, std::chrono::minutes(30));
  EXPECT_EQ(s->concurrency, 1u);
  EXPECT_EQ(s->schedule, "15 * * * *");
  EXPECT_EQ(s->on_success[0].params.at("file"), "{{ output.key }}");
  EXPECT_EQ(s->hooks->events, (std::vector<std::string>{"run.succeeded", "run.failed"}));
  EXPECT_EQ(s->permissions.view.size(), 3u);
  EXPECT_EQ(s->digest.size(), 64u);
  EXPECT_EQ(s->to_json()["retry"]["max"], "1h");
}

TEST(Schema, DefaultsDenyAndBound) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal(""), "t.yaml", &errors);
  ASSERT_TRUE(s.has_value()) << format_diagnostics(errors);
  EXPECT_TRUE(s->capabilities.s3.empty() && !s->capabilities.db && s->capabilities.http.empty());
  EXPECT_EQ(s->retry.max_attempts, 1u);
  EXPECT_EQ(s->timeout, std::chrono::hours(1));
  EXPECT_EQ(s->permissions.run, std::vector<std::string>{"admin"});
}

TEST(Schema, UnknownKeyNamesFileLineColumnAndSuggests) {
  EXPECT_EQ(
      first_error(minimal("timout: 5m\n")),
      "bad.yaml:4:1: timout: unknown key; did you mean 'timeout'? (expected one of: name, "
      "version, description, plugin, params, capabilities, retry, timeout, isolation, limits, "
      "concurrency, "
      "schedule, timezone, on_success, on_failure, hooks, permissions, approval, metrics)");
  EXPECT_EQ(first_error(minimal("retry: { max_attempt: 3 }\n")).substr(0, 60),
            "bad.yaml:4:10: retry.max_attempt: unknown key; did you mean ");
}

TEST(Schema, ForEachNamesAnOutputArrayAndItemsOnlyThere) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal("on_success:\n"
                                "  - run: esi-parser\n"
                                "    for_each: output.files\n"
                                "    params: { key: '{{ item.key }}', n: '{{ index }}' }\n"),
                        "t.yaml", &errors);
  ASSERT_TRUE(s) << format_diagnostics(errors);
  EXPECT_EQ(s->on_success[0].for_each, "output.files");
  EXPECT_EQ(s->to_json()["on_success"][0]["for_each"], "output.files");
  EXPECT_EQ(first_error(minimal("on_success: [ { run: p, for_each: files } ]\n")),
            "bad.yaml:4:35: on_success[0].for_each: expected an output path naming an array, like "
            "output.files, got 'files'");
  EXPECT_EQ(
      first_error(minimal("on_failure:\n  - run: p\n    params: { key: '{{ item.key }}' }\n")),
      "bad.yaml:6:20: on_failure[0].params.key: uses {{ item }} or {{ index }}, which only a "
      "step with for_each has");
}

TEST(Schema, ApprovalNamesItsRolesAndIsCheckedWhereWritten) {
  std::vector<Diagnostic> errors;
  auto s =
      parse_schema(minimal("approval: { required: true, approvers: [admin, release_manager] }\n"),
                   "t.yaml", &errors);
  ASSERT_TRUE(s) << format_diagnostics(errors);
  EXPECT_TRUE(s->approval.required);
  EXPECT_EQ(s->approval.approvers, (std::vector<std::string>{"admin", "release_manager"}));
  EXPECT_EQ(s->to_json()["approval"],
            (Json{{"required", true}, {"approvers", {"admin", "release_manager"}}}));
  s = parse_schema(minimal("approval: { required: true }\n"), "t.yaml", &errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->approval.approvers, std::vector<std::string>{"admin"}) << "admin by default";
  EXPECT_FALSE(parse_schema(minimal(""), "t.yaml", &errors)->approval.required);

  EXPECT_EQ(first_error(minimal("approval: { required: yes }\n")),
            "bad.yaml:4:23: approval.required: expected true or false, got 'yes'");
  EXPECT_EQ(first_error(minimal("approval: { approvers: [admin] }\n")),
            "bad.yaml:4:11: approval.required: is required");
  EXPECT_EQ(first_error(minimal("approval: { required: true, approvers: [Admin] }\n")),
            "bad.yaml:4:41: approval.approvers[0]: expected a role name, got 'Admin'");
  EXPECT_EQ(first_error(minimal("approval: { required: true, approvers: [] }\n")),
            "bad.yaml:4:40: approval.approvers: lists no role: name at least one role that may "
            "approve");
  EXPECT_EQ(first_error(minimal("approval: { required: true, approver: [admin] }\n")).substr(0, 60),
            "bad.yaml:4:29: approval.approver: unknown key; did you mean ");
}

TEST(Schema, MetricsAreShownAsDeclared) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal("metrics:\n  items_total: { type: counter, help: Items done, "
                                "labels: { kind: [a, b] } }\n  queue_depth: { type: gauge, help: "
                                "Waiting }\n"),
                        "t.yaml", &errors);
  ASSERT_TRUE(s) << format_diagnostics(errors);
  EXPECT_EQ(
      s->to_json()["metrics"],
      (Json{
          {"items_total",
           {{"type", "counter"}, {"help", "Items done"}, {"labels", {{"kind", {"a", "b"}}}}}},
          {"queue_depth", {{"type", "gauge"}, {"help", "Waiting"}, {"labels", Json::object()}}}}));
  EXPECT_EQ(parse_schema(minimal(""), "t.yaml", &errors)->to_json()["metrics"], Json::object());
}

TEST(Schema, HttpGrantsMayDeclareSafeMethodsForDryRuns) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal("capabilities:\n  http:\n    - { base_url: 'https://api.example/"
                                "status/', safe_methods: [POST] }\n"),
                        "t.yaml", &errors);
  ASSERT_TRUE(s) << format_diagnostics(errors);
  EXPECT_EQ(s->capabilities.http.at(0).safe_methods, std::vector<std::string>{"POST"});
  EXPECT_EQ(s->to_json()["capabilities"]["http"][0]["safe_methods"], Json{"POST"});
  EXPECT_EQ(
      first_error(minimal("capabilities:\n  http:\n    - { base_url: 'https://api.example/', "
                          "safe_methods: [post] }\n")),
      "bad.yaml:6:58: capabilities.http[0].safe_methods[0]: expected POST, PUT, DELETE, PATCH or "
      "OPTIONS (GET and HEAD are always allowed in a dry run), got 'post'");
}

TEST(Schema, LimitsTakeSizesDurationsAndCounts) {
  std::vector<Diagnostic> errors;
  auto s =
      parse_schema(minimal("limits: { memory: 2GiB, cpu_time: 1h, open_files: 256, tmp: 512MiB, "
                           "processes: 64 }\n"),
                   "t.yaml", &errors);
  ASSERT_TRUE(s) << (errors.empty() ? "" : errors.front().str());
  EXPECT_EQ(s->limits.memory, 2ull << 30);
  EXPECT_EQ(s->limits.cpu_time, 3600u);
  EXPECT_EQ(s->limits.open_files, 256u);
  EXPECT_EQ(s->limits.tmp, 512ull << 20);
  EXPECT_EQ(s->limits.processes, 64u);
  EXPECT_EQ(s->to_json()["limits"], (Json{{"memory", "2GiB"},
                                          {"cpu_time", "1h"},
                                          {"open_files", 256},
                                          {"tmp", "512MiB"},
                                          {"processes", 64}}));
  // What the schema leaves out comes from the host, then the defaults.
  ResourceLimits host;
  host.memory = 1ull << 30;
  host.processes = 8;
  ResourceLimits only_memory;
  only_memory.memory = 4ull << 30;
  const ResourceLimits l = only_memory.over(host).over(default_limits);
  EXPECT_EQ(l.memory, 4ull << 30);
  EXPECT_EQ(l.processes, 8u);
  EXPECT_EQ(l.cpu_time, 3600u);
}

TEST(Schema, BadLimitsAreLocated) {
  auto errors = errors_of(
      minimal("limits:\n  memory: 2GB\n  cpu_time: 1500ms\n  open_files: 3\n  processes: x\n  "
              "swap: 1GiB\n"));
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_EQ(errors[0].str(),
            "bad.yaml:5:11: limits.memory: expected a size of at least 64MiB like 512MiB or 2GiB, "
            "got '2GB'");
  EXPECT_EQ(errors[1].str(),
            "bad.yaml:6:13: limits.cpu_time: expected a duration in whole seconds like 30s, 10m, "
            "1h, got '1500ms'");
  EXPECT_EQ(errors[2].str(),
            "bad.yaml:7:15: limits.open_files: expected an integer from 16 to 1048576, got '3'");
  EXPECT_EQ(errors[3].field, "limits.processes");
  EXPECT_EQ(errors[4].str(),
            "bad.yaml:9:3: limits.swap: unknown key (expected one of: memory, cpu_time, "
            "open_files, tmp, processes)");
}

TEST(Schema, SizesReadBackAsWritten) {
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1536MiB"), 1536ull << 20);
  EXPECT_EQ(parse_size("100B"), 100u);
  EXPECT_FALSE(parse_size("2G"));
  EXPECT_FALSE(parse_size("GiB"));
  EXPECT_FALSE(parse_size("-1GiB"));
  EXPECT_FALSE(parse_size("99999999999TiB"));
  EXPECT_EQ(format_size(2ull << 30), "2GiB");
  EXPECT_EQ(format_size(1536ull << 20), "1536MiB");
  EXPECT_EQ(format_size(1000), "1000B");
}

TEST(Schema, MissingRequiredFields) {
  auto errors = errors_of("description: nothing else\n");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].field, "name");
  EXPECT_EQ(errors[0].message, "is required");
  EXPECT_EQ(errors[1].field, "version");
  EXPECT_EQ(errors[2].field, "plugin");
}

TEST(Schema, ReportsEveryProblemAtOnce) {
  auto errors = errors_of(
      "name: Bad_Name\nversion: 1.0\nplugin: { path: ../x.so, sha256: abc }\ntimeout: soon\n");
  ASSERT_EQ(errors.size(), 5u) << format_diagnostics(errors);
  EXPECT_EQ(errors[0].str(),
            "bad.yaml:1:7: name: expected lower-case letters, digits and '-', starting with a "
            "letter, at most 63, got 'Bad_Name'");
  EXPECT_EQ(errors[1].str(),
            "bad.yaml:2:10: version: expected a semantic version "
            "MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], got '1.0'");
  EXPECT_EQ(errors[2].str(), "bad.yaml:3:17: plugin.path: must not contain '..'");
  EXPECT_EQ(errors[3].field, "plugin.sha256");
  EXPECT_NE(errors[3].message.find("64 lower-case hex digits"), std::string::npos);
  EXPECT_EQ(errors[4].str(),
            "bad.yaml:4:10: timeout: expected a positive duration like 30s, 5m, 1h30m, got 'soon'");
}

TEST(Schema, ParamErrors) {
  EXPECT_EQ(first_error(minimal("params:\n  n: { type: int }\n")),
            "bad.yaml:5:14: params.n.type: expected string, integer, number, boolean, enum or "
            "list, got 'int'");
  EXPECT_EQ(first_error(minimal("params:\n  n: { type: integer, min: 1, default: 0 }\n")),
            "bad.yaml:5:40: params.n.default: expected an integer of at least 1, got 0");
  EXPECT_EQ(first_error(minimal("params:\n  n: { type: string, min: 1 }\n")),
            "bad.yaml:5:27: params.n.min: does not apply to a parameter of type string");
  EXPECT_EQ(first_error(minimal("params:\n  m: { type: enum }\n")),
            "bad.yaml:5:6: params.m.values: an enum needs a non-empty list of values");
  EXPECT_EQ(first_error(minimal("params:\n  n: { type: integer, required: true, default: 3 }\n")),
            "bad.yaml:5:48: params.n.default: a required parameter cannot have a default");
  EXPECT_EQ(first_error(minimal("params:\n  b: { type: boolean, default: yes }\n")),
            "bad.yaml:5:32: params.b.default: expected true or false, got 'yes'");
  EXPECT_EQ(first_error(minimal("params:\n  s: { type: string, pattern: '[' }\n")).substr(0, 57),
            "bad.yaml:5:31: params.s.pattern: is not a valid pattern: ");
  EXPECT_EQ(first_error(minimal("params:\n  Bad: { type: string }\n")),
            "bad.yaml:5:3: params.Bad: parameter names are lower-case letters, digits and '_'");
}

TEST(Schema, AnUploadParameterNamesAGrantedBucket) {
  std::vector<Diagnostic> errors;
  auto s = parse_schema(minimal("params:\n  input: { type: string, upload: inbox }\n"
                                "capabilities: { s3: [ { bucket: inbox, access: read } ] }\n"),
                        "t.yaml", &errors);
  ASSERT_TRUE(s.has_value()) << format_diagnostics(errors);
  EXPECT_EQ(s->params[0].upload, "inbox");
  EXPECT_EQ(s->to_json()["params"]["input"]["upload"], "inbox");
  EXPECT_EQ(first_error(minimal("params:\n  input: { type: string, upload: inbox }\n")),
            "bad.yaml:5:34: params.input.upload: bucket 'inbox' is not one the schema grants "
            "(capabilities.s3)");
  EXPECT_EQ(first_error(minimal("params:\n  n: { type: integer, upload: inbox }\n")),
            "bad.yaml:5:31: params.n.upload: does not apply to a parameter of type integer");
}

TEST(Schema, CapabilityAndScheduleErrors) {
  EXPECT_EQ(first_error(minimal("capabilities: { s3: [ { bucket: raw, access: all } ] }\n")),
            "bad.yaml:4:46: capabilities.s3[0].access: expected read, write or readwrite, got "
            "'all'");
  EXPECT_EQ(first_error(minimal("capabilities: { sftp: [ { host: esi, access: read } ] }\n")),
            "bad.yaml:4:25: capabilities.sftp[0].path: is required");
  EXPECT_EQ(first_error(minimal("capabilities:\n  db: { connection: main, tables: { t: "
                                "readwrite } }\n")),
            "bad.yaml:5:40: capabilities.db.tables.t: expected read or write, got 'readwrite'");
  EXPECT_EQ(first_error(minimal("schedule: '61 * * * *'\n")),
            "bad.yaml:4:11: schedule: expected a 5-field cron expression: minute field: '61' is "
            "not a value or range within 0-59");
  EXPECT_EQ(first_error(minimal("hooks: { url: 'ftp://x', events: [run.done] }\n")).substr(0, 55),
            "bad.yaml:4:15: hooks.url: expected an http(s) URL, got ");
  auto errors = errors_of(minimal("hooks: { url: 'https://x/', events: [run.done] }\n"));
  EXPECT_EQ(errors[0].field, "hooks.events[0]");
  EXPECT_EQ(first_error(minimal("timezone: Mars/Olympus\n")),
            "bad.yaml:4:11: timezone: unknown time zone 'Mars/Olympus'");
}

TEST(Schema, DuplicateKeysAreErrors) {
  auto errors = errors_of(minimal("timeout: 5m\ntimeout: 6m\n"));
  EXPECT_EQ(errors[0].str(), "bad.yaml:5:1: timeout: duplicate key");
}

TEST(Schema, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(first_error("name: t\nversion: [1.0.0\n").substr(0, 27), "bad.yaml:3:1: invalid YAML:");
  EXPECT_EQ(first_error("- a list\n- not a map\n"), "bad.yaml:1:1: expected a mapping, got a list");
}

TEST(Schema, UnreadableFileIsADiagnostic) {
  std::vector<Diagnostic> errors;
  EXPECT_FALSE(load_schema_file("/nonexistent/x.yaml", &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].str(), "/nonexistent/x.yaml: cannot read the file");
}

TEST(Schema, BundledSchemasParse) {
  std::vector<Diagnostic> errors;
  auto s = load_schema_file(BUNDLED_SCHEMA_DIR "/hello.yaml", &errors);
  ASSERT_TRUE(s.has_value()) << format_diagnostics(errors);
  EXPECT_EQ(s->name, "hello");
  EXPECT_EQ(s->plugin_sha256.size(), 64u);
}

}  // namespace
}  // namespace taskhost

// The platform's own tables and the system catalogs are never a grant
// (issue 12: a schema granting taskhost.* read webhook secrets).
namespace taskhost {
namespace {

TEST(Schema, DbGrantsRefuseThePlatformsTablesAndCatalogs) {
  EXPECT_EQ(first_error(minimal("capabilities:\n  db: { connection: default, tables: "
                                "{ taskhost.webhook_secrets: read } }\n")),
            "bad.yaml:5:40: capabilities.db.tables.taskhost.webhook_secrets: the platform's own "
            "tables (taskhost.*) are never granted to a schema");
  for (const char* table : {"pg_catalog.pg_authid", "pg_authid", "information_schema.tables"})
    EXPECT_NE(first_error(minimal(std::string("capabilities:\n  db: { connection: default, "
                                              "tables: { ") +
                                  table + ": write } }\n"))
                  .find("system catalogs (pg_*, information_schema.*) are never granted"),
              std::string::npos)
        << table;
}

}  // namespace
}  // namespace taskhost
