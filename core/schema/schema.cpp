#include "schema/schema.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/curl.hpp"
#include "common/error.hpp"
#include "common/pattern.hpp"
#include "common/sha256.hpp"
#include "common/text.hpp"
#include "common/yaml_input.hpp"
#include "schema/duration.hpp"
#include "schema/params.hpp"

namespace taskhost {
namespace {

const Pattern name_re("[a-z][a-z0-9-]{0,62}");
const Pattern param_name_re("[a-z_][a-z0-9_]{0,62}");
const Pattern role_re("[a-z_][a-z0-9_]{0,62}");
const Pattern sha256_re("[0-9a-f]{64}");
const Pattern plugin_event_re("[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+");
// Methods a schema may declare safe for dry runs (GET and HEAD always are).
const Pattern safe_method_re("POST|PUT|DELETE|PATCH|OPTIONS");
const Pattern timezone_re("[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*");

const std::set<std::string> run_events = {
    "run.queued",   "run.started",           "run.progress",
    "run.paused",   "run.resumed",           "run.succeeded",
    "run.failed",   "run.cancelled",         "run.approved",
    "run.rejected", "run.awaiting_approval",
};

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::string child(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// A value as an error message shows it: escaped, and cut when long.
std::string quote(const std::string& s) { return "'" + printable(storable(s, 100)) + "'"; }

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return quote(n.Scalar());
    default:
      return "an undefined value";
  }
}

// Walks a YAML document, collecting every problem with its location.
class Reader {
 public:
  Reader(std::string file, Diagnostics& errors) : file_(std::move(file)), errors_(errors) {}

  void error(const YAML::Node& at, const std::string& field, const std::string& message) {
    YAML::Mark m = at.Mark();
    errors_.add({file_, m.line + 1, m.column + 1, field, message});
  }

  // Checks n is a mapping with only allowed keys (load_yaml_input refused
  // keys given twice). Unknown keys are errors so that a typo never passes
  // silently.
  bool mapping(const YAML::Node& n, const std::string& field,
               const std::vector<std::string>& allowed) {
    if (!n.IsMap()) {
      error(n, field, "expected a mapping, got " + describe(n));
      return false;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (allowed.empty() || std::find(allowed.begin(), allowed.end(), key) != allowed.end())
        continue;
      error(
          it->first, child(field, printable(key)),
          "unknown key" + did_you_mean(key, allowed) + " (expected one of: " + join(allowed) + ")");
    }
    return true;
  }

  // The value of key in map, or an undefined node (after an error if required).
  YAML::Node get(const YAML::Node& map, const std::string& key, const std::string& field,
                 bool required) {
    YAML::Node n = map[key];
    if (!n.IsDefined() && required) error(map, child(field, key), "is required");
    return n;
  }

  std::optional<std::string> str(const YAML::Node& n, const std::string& field) {
    if (!n.IsScalar()) {
      error(n, field, "expected a string, got " + describe(n));
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<std::string> matching(const YAML::Node& n, const std::string& field,
                                      const Pattern& re, const std::string& expected) {
    auto s = str(n, field);
    if (s && !re.matches(*s)) {
      error(n, field, "expected " + expected + ", got " + quote(*s));
      return std::nullopt;
    }
    return s;
  }

  // An http(s) URL as webhook deliveries and outbound HTTP parse it.
  std::optional<std::string> url(const YAML::Node& n, const std::string& field) {
    auto s = str(n, field);
    if (!s) return std::nullopt;
    try {
      parse_http_url(*s);
      return s;
    } catch (const Error& e) {
      error(n, field, "expected an http(s) URL, got " + quote(*s) + " (" + e.what() + ")");
      return std::nullopt;
    }
  }

  std::optional<int64_t> integer(const YAML::Node& n, const std::string& field, int64_t min,
                                 int64_t max) {
    auto s = str(n, field);
    if (!s) return std::nullopt;
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc() || ptr != s->data() + s->size() || v < min || v > max) {
      error(n, field,
            "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                ", got " + quote(*s));
      return std::nullopt;
    }
    return v;
  }

  std::optional<double> number(const YAML::Node& n, const std::string& field) {
    auto s = str(n, field);
    if (!s) return std::nullopt;
    bool out_of_range = false;
    if (auto v = parse_number(*s, &out_of_range)) return v;
    error(n, field,
          out_of_range ? quote(*s) + " is out of range" : "expected a number, got " + quote(*s));
    return std::nullopt;
  }

  // YAML 1.2 booleans only: "yes"/"no"/"on" are too easy to misread.
  std::optional<bool> boolean(const YAML::Node& n, const std::string& field) {
    auto s = str(n, field);
    if (s == "true") return true;
    if (s == "false") return false;
    if (s) error(n, field, "expected true or false, got " + quote(*s));
    return std::nullopt;
  }

  std::optional<std::chrono::milliseconds> duration(const YAML::Node& n, const std::string& field) {
    auto s = str(n, field);
    if (!s) return std::nullopt;
    auto d = parse_duration(*s);
    if (!d || d->count() <= 0) {
      error(n, field, "expected a positive duration like 30s, 5m, 1h30m, got " + quote(*s));
      return std::nullopt;
    }
    return d;
  }

  std::optional<Access> access(const YAML::Node& n, const std::string& field, bool allow_rw) {
    auto s = str(n, field);
    if (s == "read") return Access::read;
    if (s == "write") return Access::write;
    if (s == "readwrite" && allow_rw) return Access::readwrite;
    if (s)
      error(n, field,
            std::string("expected ") + (allow_rw ? "read, write or readwrite" : "read or write") +
                ", got " + quote(*s));
    return std::nullopt;
  }

  std::vector<std::string> strings(const YAML::Node& n, const std::string& field, const Pattern& re,
                                   const std::string& expected) {
    std::vector<std::string> out;
    if (!n.IsSequence()) {
      error(n, field, "expected a list, got " + describe(n));
      return out;
    }
    for (size_t i = 0; i < n.size(); ++i)
      if (auto s = matching(n[i], field + "[" + std::to_string(i) + "]", re, expected))
        out.push_back(*s);
    return out;
  }

  // Calls each(item, field) for every element of a list.
  template <typename F>
  void each(const YAML::Node& n, const std::string& field, F&& f) {
    if (!n.IsSequence()) {
      error(n, field, "expected a list, got " + describe(n));
      return;
    }
    for (size_t i = 0; i < n.size(); ++i) f(n[i], field + "[" + std::to_string(i) + "]");
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
  Diagnostics& errors_;
};

const char* type_name(ParamType t) {
  switch (t) {
    case ParamType::string:
      return "string";
    case ParamType::integer:
      return "integer";
    case ParamType::number:
      return "number";
    case ParamType::boolean:
      return "boolean";
    case ParamType::enumeration:
      return "enum";
    case ParamType::list:
      return "list";
  }
  return "?";
}

std::optional<ParamType> parse_type(const std::string& s) {
  for (auto t : {ParamType::string, ParamType::integer, ParamType::number, ParamType::boolean,
                 ParamType::enumeration, ParamType::list})
    if (s == type_name(t)) return t;
  return std::nullopt;
}

// A YAML scalar or list as the JSON value of a parameter of spec's type.
std::optional<Json> yaml_value(Reader& r, const YAML::Node& n, const std::string& field,
                               ParamType type, ParamType items) {
  switch (type) {
    case ParamType::string:
    case ParamType::enumeration:
      if (auto s = r.str(n, field)) return Json(*s);
      return std::nullopt;
    case ParamType::integer:
      if (auto v = r.integer(n, field, INT64_MIN, INT64_MAX)) return Json(*v);
      return std::nullopt;
    case ParamType::number:
      if (auto v = r.number(n, field)) return Json(*v);
      return std::nullopt;
    case ParamType::boolean:
      if (auto v = r.boolean(n, field)) return Json(*v);
      return std::nullopt;
    case ParamType::list: {
      Json out = Json::array();
      bool ok = n.IsSequence();
      r.each(n, field, [&](const YAML::Node& item, const std::string& f) {
        auto v = yaml_value(r, item, f, items, ParamType::string);
        ok = ok && v.has_value();
        if (v) out.push_back(*v);
      });
      if (ok) return out;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

void read_param(Reader& r, const std::string& name, const YAML::Node& n, const std::string& field,
                TaskSchema& schema) {
  static const std::vector<std::string> keys = {"type",       "required", "default", "description",
                                                "values",     "min",      "max",     "min_length",
                                                "max_length", "pattern",  "items",   "upload"};
  if (!r.mapping(n, field, keys)) return;
  ParamSpec p;
  p.name = name;
  auto type_node = r.get(n, "type", field, true);
  if (!type_node.IsDefined()) return;
  auto type_text = r.str(type_node, child(field, "type"));
  if (!type_text) return;
  auto type = parse_type(*type_text);
  if (!type) {
    r.error(type_node, child(field, "type"),
            "expected string, integer, number, boolean, enum or list, got " + quote(*type_text));
    return;
  }
  p.type = *type;

  // Each constraint applies to some types only; elsewhere it is a mistake.
  auto allowed_for = [&](const char* key, std::initializer_list<ParamType> types) {
    auto v = n[key];
    if (!v.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    if (std::find(types.begin(), types.end(), p.type) == types.end()) {
      r.error(v, child(field, key),
              std::string("does not apply to a parameter of type ") + type_name(p.type));
      return YAML::Node(YAML::NodeType::Undefined);
    }
    return v;
  };
  using enum ParamType;
  if (auto v = allowed_for("items", {list}); v.IsDefined()) {
    auto t = r.str(v, child(field, "items"));
    auto it = t ? parse_type(*t) : std::nullopt;
    if (it && (*it == string || *it == integer || *it == number || *it == boolean))
      p.items = *it;
    else if (t)
      r.error(v, child(field, "items"),
              "expected string, integer, number or boolean, got " + quote(*t));
  }
  if (auto v = allowed_for("values", {enumeration}); v.IsDefined()) {
    static const Pattern any(".+");
    p.values = r.strings(v, child(field, "values"), any, "a non-empty string");
    std::set<std::string> unique(p.values.begin(), p.values.end());
    if (unique.size() != p.values.size()) r.error(v, child(field, "values"), "has duplicates");
  }
  if (p.type == enumeration && p.values.empty())
    r.error(n, child(field, "values"), "an enum needs a non-empty list of values");
  for (const char* key : {"min", "max"}) {
    auto v = allowed_for(key, {integer, number});
    if (!v.IsDefined()) continue;
    std::optional<double> parsed;
    if (p.type == number)
      parsed = r.number(v, child(field, key));
    else if (auto i = r.integer(v, child(field, key), INT64_MIN, INT64_MAX))
      parsed = static_cast<double>(*i);
    (std::string_view(key) == "min" ? p.min : p.max) = parsed;
  }
  if (p.min && p.max && *p.min > *p.max) r.error(n, child(field, "min"), "is greater than max");
  for (const char* key : {"min_length", "max_length"}) {
    auto v = allowed_for(key, {string, list});
    if (!v.IsDefined()) continue;
    if (auto len = r.integer(v, child(field, key), 0, INT32_MAX))
      (std::string_view(key) == "min_length" ? p.min_length : p.max_length) =
          static_cast<uint64_t>(*len);
  }
  if (auto v = allowed_for("pattern", {string}); v.IsDefined()) {
    if (auto s = r.str(v, child(field, "pattern"))) {
      try {
        Pattern check(*s);
        p.pattern = *s;
      } catch (const Error& e) {
        r.error(v, child(field, "pattern"), e.what());
      }
    }
  }
  if (auto v = allowed_for("upload", {string}); v.IsDefined())
    p.upload = r.str(v, child(field, "upload")).value_or("");
  if (auto v = n["description"]; v.IsDefined())
    p.description = r.str(v, child(field, "description")).value_or("");
  if (auto v = n["required"]; v.IsDefined())
    p.required = r.boolean(v, child(field, "required")).value_or(false);
  if (auto v = n["default"]; v.IsDefined()) {
    if (p.required)
      r.error(v, child(field, "default"), "a required parameter cannot have a default");
    if (auto d = yaml_value(r, v, child(field, "default"), p.type, p.items)) {
      if (auto problem = check_param_value(p, *d))
        r.error(v, child(field, "default"), *problem);
      else
        p.default_value = std::move(*d);
    }
  }
  schema.params.push_back(std::move(p));
}

void read_capabilities(Reader& r, const YAML::Node& n, Capabilities& caps) {
  const std::string field = "capabilities";
  if (!r.mapping(n, field, {"s3", "sftp", "db", "http", "pgp"})) return;
  if (auto pgp = n["pgp"]; pgp.IsDefined())
    r.each(pgp, "capabilities.pgp", [&](const YAML::Node& g, const std::string& f) {
      if (!r.mapping(g, f, {"key", "verify"})) return;
      static const Pattern key_re("[a-z0-9][a-z0-9_-]*");
      PgpGrant grant;
      if (auto k = r.get(g, "key", f, true); k.IsDefined())
        grant.key =
            r.matching(k, child(f, "key"), key_re, "a key name from the host config").value_or("");
      if (auto v = g["verify"]; v.IsDefined())
        grant.verify = r.matching(v, child(f, "verify"), key_re, "a key name from the host config")
                           .value_or("");
      caps.pgp.push_back(grant);
    });
  if (auto s3 = n["s3"]; s3.IsDefined())
    r.each(s3, "capabilities.s3", [&](const YAML::Node& g, const std::string& f) {
      if (!r.mapping(g, f, {"bucket", "prefix", "access"})) return;
      static const Pattern bucket_re("[a-z0-9][a-z0-9.-]{1,62}");
      static const Pattern prefix_re("([^/\\x00-\\x1f][^\\x00-\\x1f]*)?");
      S3Grant grant;
      if (auto b = r.get(g, "bucket", f, true); b.IsDefined())
        grant.bucket = r.matching(b, child(f, "bucket"), bucket_re, "a bucket name").value_or("");
      if (auto p = g["prefix"]; p.IsDefined())
        grant.prefix =
            r.matching(p, child(f, "prefix"), prefix_re, "a key prefix not starting with /")
                .value_or("");
      if (auto a = r.get(g, "access", f, true); a.IsDefined())
        grant.access = r.access(a, child(f, "access"), true).value_or(Access::read);
      caps.s3.push_back(grant);
    });
  if (auto sftp = n["sftp"]; sftp.IsDefined())
    r.each(sftp, "capabilities.sftp", [&](const YAML::Node& g, const std::string& f) {
      if (!r.mapping(g, f, {"host", "path", "access"})) return;
      static const Pattern host_re("[a-z0-9][a-z0-9_-]*");
      static const Pattern path_re("/[^\\x00-\\x1f]*");
      SftpGrant grant;
      if (auto h = r.get(g, "host", f, true); h.IsDefined())
        grant.host = r.matching(h, child(f, "host"), host_re, "a host name from the host config")
                         .value_or("");
      if (auto p = r.get(g, "path", f, true); p.IsDefined())
        grant.path = r.matching(p, child(f, "path"), path_re, "an absolute path").value_or("");
      if (auto a = r.get(g, "access", f, true); a.IsDefined())
        grant.access = r.access(a, child(f, "access"), true).value_or(Access::read);
      caps.sftp.push_back(grant);
    });
  if (auto db = n["db"];
      db.IsDefined() && r.mapping(db, "capabilities.db", {"connection", "tables", "migrations"})) {
    const std::string f = "capabilities.db";
    DbGrant grant;
    if (auto c = r.get(db, "connection", f, true); c.IsDefined())
      grant.connection =
          r.matching(c, child(f, "connection"), role_re, "a connection name").value_or("");
    if (auto t = r.get(db, "tables", f, true);
        t.IsDefined() && r.mapping(t, child(f, "tables"), {})) {
      static const Pattern table_re("([a-z_][a-z0-9_]*\\.)?[a-z_][a-z0-9_]*");
      for (auto it = t.begin(); it != t.end(); ++it) {
        const std::string tf = child(f, "tables." + it->first.Scalar());
        auto name = r.matching(it->first, tf, table_re, "a table name (schema.table or table)");
        // Never the platform's own tables (webhook secrets, run states) nor
        // a system catalog; the provisioning function refuses them again.
        if (name && (name->rfind("taskhost.", 0) == 0 || name->rfind("pg_", 0) == 0 ||
                     name->rfind("information_schema.", 0) == 0)) {
          r.error(it->first, tf,
                  name->rfind("taskhost.", 0) == 0
                      ? "the platform's own tables (taskhost.*) are never granted to a schema"
                      : "system catalogs (pg_*, information_schema.*) are never granted to a "
                        "schema");
          name.reset();
        }
        auto access = r.access(it->second, tf, false);
        if (name && access) grant.tables[*name] = *access;
      }
    }
    if (auto m = db["migrations"]; m.IsDefined())
      r.each(m, child(f, "migrations"), [&](const YAML::Node& g, const std::string& mf) {
        if (!r.mapping(g, mf, {"path", "sha256"})) return;
        static const Pattern sql_re("[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*\\.sql");
        DataMigration migration;
        if (auto v = r.get(g, "path", mf, true); v.IsDefined()) {
          migration.path = r.matching(v, child(mf, "path"), sql_re,
                                      "a relative path to a .sql file inside the plugin directory")
                               .value_or("");
          if (migration.path.find("..") != std::string::npos)
            r.error(v, child(mf, "path"), "must not contain '..'");
        }
        if (auto v = r.get(g, "sha256", mf, true); v.IsDefined())
          migration.sha256 =
              r.matching(v, child(mf, "sha256"), sha256_re,
                         "the 64 lower-case hex digits of the reviewed file's SHA-256")
                  .value_or("");
        grant.migrations.push_back(migration);
      });
    caps.db = grant;
  }
  if (auto http = n["http"]; http.IsDefined())
    r.each(http, "capabilities.http", [&](const YAML::Node& g, const std::string& f) {
      if (!r.mapping(g, f, {"base_url", "credential", "safe_methods"})) return;
      HttpGrant grant;
      if (auto u = r.get(g, "base_url", f, true); u.IsDefined())
        grant.base_url = r.url(u, child(f, "base_url")).value_or("");
      if (auto c = g["credential"]; c.IsDefined())
        grant.credential =
            r.matching(c, child(f, "credential"), role_re, "a credential name").value_or("");
      // GET and HEAD are always safe; these are the others a dry run may send.
      if (auto m = g["safe_methods"]; m.IsDefined())
        grant.safe_methods = r.strings(m, child(f, "safe_methods"), safe_method_re,
                                       "POST, PUT, DELETE, PATCH or OPTIONS (GET and HEAD are "
                                       "always allowed in a dry run)");
      caps.http.push_back(grant);
    });
}

// metrics: {NAME: {type: counter|gauge, help, labels: {LABEL: [values]}}}
void read_metrics(Reader& r, const YAML::Node& n, std::vector<MetricSpec>& metrics) {
  if (!r.mapping(n, "metrics", {})) return;
  static const Pattern metric_re("[a-z][a-z0-9_]{0,62}");
  static const Pattern label_re("[a-z][a-z0-9_]{0,62}");
  static const Pattern value_re("[A-Za-z0-9_.:-]{1,64}");
  constexpr size_t max_metrics = 32, max_labels = 4, max_values = 64;
  if (n.size() > max_metrics)
    r.error(n, "metrics", "at most " + std::to_string(max_metrics) + " metrics per schema");
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string f = "metrics." + printable(it->first.Scalar());
    MetricSpec m;
    m.name = r.matching(it->first, f, metric_re,
                        "a metric name: lower-case letters, digits and '_', starting with a letter")
                 .value_or("");
    const YAML::Node spec = it->second;  // a copy: the iterator's pair is a temporary
    if (!r.mapping(spec, f, {"type", "help", "labels"})) continue;
    if (auto t = r.get(spec, "type", f, true); t.IsDefined()) {
      auto type = r.str(t, child(f, "type"));
      if (type && *type != "counter" && *type != "gauge")
        r.error(t, child(f, "type"), "expected counter or gauge, got " + quote(*type));
      m.counter = type.value_or("counter") == "counter";
      const bool total = m.name.size() > 6 && m.name.ends_with("_total");
      if (type && !m.name.empty() && m.counter != total)
        r.error(it->first, f,
                m.counter ? "a counter's name ends in _total (Prometheus' convention)"
                          : "only a counter's name ends in _total");
    }
    if (auto h = r.get(spec, "help", f, true); h.IsDefined())
      m.help = r.str(h, child(f, "help")).value_or("");
    if (auto l = spec["labels"]; l.IsDefined() && r.mapping(l, child(f, "labels"), {})) {
      if (l.size() > max_labels)
        r.error(l, child(f, "labels"), "at most " + std::to_string(max_labels) + " labels");
      for (auto li = l.begin(); li != l.end(); ++li) {
        const std::string lf = child(f, "labels." + printable(li->first.Scalar()));
        auto label = r.matching(li->first, lf, label_re, "a label name");
        if (label && *label == "schema") r.error(li->first, lf, "the host sets the label schema");
        if (!li->second.IsSequence() || li->second.size() == 0 || li->second.size() > max_values) {
          r.error(li->second, lf,
                  "expected the label's values, a list of 1 to " + std::to_string(max_values) +
                      " (a label's values are declared: no unbounded series)");
          continue;
        }
        auto values = r.strings(li->second, lf, value_re, "a label value (letters, digits, _.:-)");
        if (label) m.labels[*label] = values;
      }
    }
    metrics.push_back(std::move(m));
  }
}

void read_retry(Reader& r, const YAML::Node& n, RetryPolicy& retry) {
  if (!r.mapping(n, "retry", {"max_attempts", "backoff", "initial", "max"})) return;
  if (auto v = n["max_attempts"]; v.IsDefined())
    retry.max_attempts =
        static_cast<uint32_t>(r.integer(v, "retry.max_attempts", 1, 100).value_or(1));
  if (auto v = n["backoff"]; v.IsDefined()) {
    auto s = r.str(v, "retry.backoff");
    if (s == "fixed")
      retry.exponential = false;
    else if (s && s != "exponential")
      r.error(v, "retry.backoff", "expected exponential or fixed, got " + quote(*s));
  }
  if (auto v = n["initial"]; v.IsDefined())
    retry.initial = r.duration(v, "retry.initial").value_or(retry.initial);
  if (auto v = n["max"]; v.IsDefined()) retry.max = r.duration(v, "retry.max").value_or(retry.max);
  if (retry.initial > retry.max) r.error(n, "retry.initial", "is longer than retry.max");
}

void read_chain(Reader& r, const YAML::Node& n, const std::string& field,
                std::vector<ChainStep>& steps) {
  static const Pattern ref_re("[a-z][a-z0-9-]{0,62}(@[0-9A-Za-z.+-]+)?");
  static const Pattern output_path_re("output(\\.[A-Za-z0-9_-]+)+");
  static const Pattern per_item_re(".*\\{\\{\\s*(item|index)\\b.*");
  r.each(n, field, [&](const YAML::Node& s, const std::string& f) {
    if (!r.mapping(s, f, {"run", "params", "for_each"})) return;
    ChainStep step;
    if (auto v = r.get(s, "run", f, true); v.IsDefined())
      step.run = r.matching(v, child(f, "run"), ref_re, "NAME or NAME@VERSION").value_or("");
    if (auto v = s["for_each"]; v.IsDefined())
      step.for_each = r.matching(v, child(f, "for_each"), output_path_re,
                                 "an output path naming an array, like output.files");
    if (auto p = s["params"]; p.IsDefined() && r.mapping(p, child(f, "params"), {}))
      for (auto it = p.begin(); it != p.end(); ++it) {
        const std::string name = child(f, "params." + it->first.Scalar());
        if (auto v = r.str(it->second, name)) {
          if (!s["for_each"].IsDefined() && per_item_re.matches(*v))
            r.error(it->second, name,
                    "uses {{ item }} or {{ index }}, which only a step with "
                    "for_each has");
          step.params[it->first.Scalar()] = *v;
        }
      }
    steps.push_back(step);
  });
}

void read_hooks(Reader& r, const YAML::Node& n, std::optional<Hooks>& hooks) {
  if (!r.mapping(n, "hooks", {"url", "events"})) return;
  Hooks h;
  if (auto v = r.get(n, "url", "hooks", true); v.IsDefined())
    h.url = r.url(v, "hooks.url").value_or("");
  if (auto v = r.get(n, "events", "hooks", true); v.IsDefined())
    r.each(v, "hooks.events", [&](const YAML::Node& e, const std::string& f) {
      auto s = r.str(e, f);
      if (!s) return;
      bool known = run_events.count(*s) > 0;
      bool plugin = s->rfind("run.", 0) != 0 && plugin_event_re.matches(*s);
      if (known || plugin)
        h.events.push_back(*s);
      else
        r.error(e, f,
                "expected a run event (" + join({run_events.begin(), run_events.end()}) +
                    ") or a plugin event like item.failed, got " + quote(*s));
    });
  hooks = h;
}

}  // namespace

const ParamSpec* TaskSchema::param(const std::string& n) const {
  for (const auto& p : params)
    if (p.name == n) return &p;
  return nullptr;
}

std::optional<TaskSchema> parse_schema(const std::string& yaml, const std::string& file,
                                       std::vector<Diagnostic>* errors) {
  Diagnostics collected(errors);
  auto loaded = load_yaml_input(yaml, file, max_schema_bytes, collected);
  if (!loaded) return std::nullopt;
  const YAML::Node& root = *loaded;
  Reader r(file, collected);
  static const std::vector<std::string> top = {
      "name",         "version",     "description", "plugin",     "params",
      "capabilities", "retry",       "timeout",     "isolation",  "limits",
      "concurrency",  "schedule",    "timezone",    "on_success", "on_failure",
      "hooks",        "permissions", "approval",    "metrics"};
  if (!r.mapping(root, "", top)) return std::nullopt;

  TaskSchema s;
  s.yaml = yaml;
  s.digest = sha256_hex(yaml);
  if (auto v = r.get(root, "name", "", true); v.IsDefined())
    s.name = r.matching(v, "name", name_re,
                        "lower-case letters, digits and '-', starting with a letter, at most 63")
                 .value_or("");
  if (auto v = r.get(root, "version", "", true); v.IsDefined()) {
    if (auto text = r.str(v, "version")) {
      if (auto ver = SemVer::parse(*text))
        s.version = *ver;
      else
        r.error(v, "version",
                "expected a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], got " +
                    quote(*text));
    }
  }
  if (auto v = root["description"]; v.IsDefined())
    s.description = r.str(v, "description").value_or("");
  if (auto p = r.get(root, "plugin", "", true);
      p.IsDefined() && r.mapping(p, "plugin", {"path", "sha256"})) {
    static const Pattern path_re("[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*\\.so");
    if (auto v = r.get(p, "path", "plugin", true); v.IsDefined()) {
      s.plugin_path = r.matching(v, "plugin.path", path_re,
                                 "a relative path to a .so inside the plugin directory")
                          .value_or("");
      if (s.plugin_path.find("..") != std::string::npos)
        r.error(v, "plugin.path", "must not contain '..'");
    }
    if (auto v = r.get(p, "sha256", "plugin", true); v.IsDefined()) {
      auto d = r.str(v, "plugin.sha256");
      if (d && (*d == "any" || sha256_re.matches(*d)))
        s.plugin_sha256 = *d;
      else if (d)
        r.error(v, "plugin.sha256",
                "expected the 64 lower-case hex digits of the reviewed build's SHA-256 (or 'any' "
                "for development hosts), got " +
                    quote(*d));
    }
  }
  if (auto params = root["params"]; params.IsDefined() && r.mapping(params, "params", {})) {
    for (auto it = params.begin(); it != params.end(); ++it) {
      const std::string name = it->first.Scalar();
      if (!param_name_re.matches(name))
        r.error(it->first, "params." + printable(name),
                "parameter names are lower-case letters, digits and '_'");
      read_param(r, name, it->second, "params." + name, s);
    }
  }
  if (auto v = root["capabilities"]; v.IsDefined()) read_capabilities(r, v, s.capabilities);
  for (const auto& p : s.params) {
    if (p.upload.empty()) continue;
    const bool granted = std::any_of(s.capabilities.s3.begin(), s.capabilities.s3.end(),
                                     [&](const S3Grant& g) { return g.bucket == p.upload; });
    if (!granted)
      r.error(root["params"][p.name]["upload"], "params." + p.name + ".upload",
              "bucket " + quote(p.upload) + " is not one the schema grants (capabilities.s3)");
  }
  if (auto v = root["retry"]; v.IsDefined()) read_retry(r, v, s.retry);
  if (auto v = root["metrics"]; v.IsDefined()) read_metrics(r, v, s.metrics);
  if (auto v = root["timeout"]; v.IsDefined())
    s.timeout = r.duration(v, "timeout").value_or(s.timeout);
  if (auto v = root["isolation"]; v.IsDefined()) {
    if (auto text = r.str(v, "isolation")) {
      if (*text == "none" || *text == "process")
        s.in_process = *text == "none";
      else
        r.error(v, "isolation",
                "expected process (a sandboxed child process, the default) or none (inside the "
                "host), got '" +
                    *text + "'");
    }
  }
  if (auto v = root["limits"]; v.IsDefined())
    s.limits = read_limits(v, "limits",
                           [&](const YAML::Node& at, const std::string& f, const std::string& m) {
                             r.error(at, f, m);
                           });
  if (auto v = root["concurrency"]; v.IsDefined())
    if (auto c = r.integer(v, "concurrency", 1, 10000)) s.concurrency = static_cast<uint32_t>(*c);
  if (auto v = root["schedule"]; v.IsDefined()) {
    if (auto text = r.str(v, "schedule")) {
      std::string why;
      if (CronSpec::parse(*text, &why))
        s.schedule = *text;
      else
        r.error(v, "schedule", "expected a 5-field cron expression: " + why);
    }
  }
  if (auto v = root["timezone"]; v.IsDefined()) {
    if (auto tz = r.matching(v, "timezone", timezone_re, "an IANA time zone like Europe/Berlin")) {
      if (*tz != "UTC" && !std::filesystem::exists("/usr/share/zoneinfo/" + *tz))
        r.error(v, "timezone", "unknown time zone '" + *tz + "'");
      else
        s.timezone = *tz;
    }
  }
  if (auto v = root["on_success"]; v.IsDefined()) read_chain(r, v, "on_success", s.on_success);
  if (auto v = root["on_failure"]; v.IsDefined()) read_chain(r, v, "on_failure", s.on_failure);
  if (auto v = root["hooks"]; v.IsDefined()) read_hooks(r, v, s.hooks);
  if (auto v = root["permissions"];
      v.IsDefined() && r.mapping(v, "permissions", {"run", "view", "control"})) {
    if (auto run = v["run"]; run.IsDefined())
      s.permissions.run = r.strings(run, "permissions.run", role_re, "a role name");
    if (auto view = v["view"]; view.IsDefined())
      s.permissions.view = r.strings(view, "permissions.view", role_re, "a role name");
    s.permissions.control = s.permissions.run;
    if (auto control = v["control"]; control.IsDefined())
      s.permissions.control = r.strings(control, "permissions.control", role_re, "a role name");
  }
  if (auto v = root["approval"];
      v.IsDefined() && r.mapping(v, "approval", {"required", "approvers"})) {
    if (auto req = r.get(v, "required", "approval", true); req.IsDefined())
      s.approval.required = r.boolean(req, "approval.required").value_or(false);
    if (auto a = v["approvers"]; a.IsDefined()) {
      s.approval.approvers = r.strings(a, "approval.approvers", role_re, "a role name");
      if (a.IsSequence() && a.size() == 0)
        r.error(a, "approval.approvers", "lists no role: name at least one role that may approve");
    }
  }
  if (collected.count() > 0) return std::nullopt;
  return s;
}

std::optional<TaskSchema> load_schema_file(const std::string& path,
                                           std::vector<Diagnostic>* errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors->push_back({path, 0, 0, "", "cannot read the file"});
    return std::nullopt;
  }
  // One byte more than the limit is enough for parse_schema to refuse it.
  std::string text(max_schema_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return parse_schema(text, path, errors);
}

Json TaskSchema::to_json() const {
  auto access_name = [](Access a) {
    return a == Access::read ? "read" : a == Access::write ? "write" : "readwrite";
  };
  Json params_json = Json::object();
  for (const auto& p : params) {
    Json j = {{"type", type_name(p.type)}, {"required", p.required}};
    if (p.type == ParamType::list) j["items"] = type_name(p.items);
    if (p.default_value) j["default"] = *p.default_value;
    if (!p.description.empty()) j["description"] = p.description;
    if (!p.values.empty()) j["values"] = p.values;
    if (p.min) j["min"] = *p.min;
    if (p.max) j["max"] = *p.max;
    if (p.min_length) j["min_length"] = *p.min_length;
    if (p.max_length) j["max_length"] = *p.max_length;
    if (!p.pattern.empty()) j["pattern"] = p.pattern;
    if (!p.upload.empty()) j["upload"] = p.upload;
    params_json[p.name] = j;
  }
  Json caps = Json::object();
  for (const auto& g : capabilities.s3)
    caps["s3"].push_back(
        {{"bucket", g.bucket}, {"prefix", g.prefix}, {"access", access_name(g.access)}});
  for (const auto& g : capabilities.sftp)
    caps["sftp"].push_back({{"host", g.host}, {"path", g.path}, {"access", access_name(g.access)}});
  if (capabilities.db) {
    Json tables = Json::object();
    for (const auto& [t, a] : capabilities.db->tables) tables[t] = access_name(a);
    caps["db"] = {{"connection", capabilities.db->connection}, {"tables", tables}};
    for (const auto& m : capabilities.db->migrations)
      caps["db"]["migrations"].push_back({{"path", m.path}, {"sha256", m.sha256}});
  }
  for (const auto& g : capabilities.http)
    caps["http"].push_back(
        {{"base_url", g.base_url}, {"credential", g.credential}, {"safe_methods", g.safe_methods}});
  for (const auto& g : capabilities.pgp)
    caps["pgp"].push_back({{"key", g.key}, {"verify", g.verify}});
  auto chain = [](const std::vector<ChainStep>& steps) {
    Json out = Json::array();
    for (const auto& s : steps) {
      out.push_back({{"run", s.run}, {"params", s.params}});
      if (s.for_each) out.back()["for_each"] = *s.for_each;
    }
    return out;
  };
  Json metrics_json = Json::object();
  for (const auto& m : metrics)
    metrics_json[m.name] = {
        {"type", m.counter ? "counter" : "gauge"}, {"help", m.help}, {"labels", m.labels}};
  Json j = {
      {"name", name},
      {"version", version.str()},
      {"description", description},
      {"plugin", {{"path", plugin_path}, {"sha256", plugin_sha256}}},
      {"params", params_json},
      {"capabilities", caps},
      {"retry",
       {{"max_attempts", retry.max_attempts},
        {"backoff", retry.exponential ? "exponential" : "fixed"},
        {"initial", format_duration(retry.initial)},
        {"max", format_duration(retry.max)}}},
      {"timeout", format_duration(timeout)},
      {"isolation", in_process ? "none" : "process"},
      {"limits", limits.to_json()},
      {"concurrency", concurrency ? Json(*concurrency) : Json()},
      {"schedule", schedule ? Json(*schedule) : Json()},
      {"timezone", timezone},
      {"on_success", chain(on_success)},
      {"on_failure", chain(on_failure)},
      {"hooks", hooks ? Json{{"url", hooks->url}, {"events", hooks->events}} : Json()},
      {"permissions",
       {{"run", permissions.run}, {"view", permissions.view}, {"control", permissions.control}}},
      {"approval", {{"required", approval.required}, {"approvers", approval.approvers}}},
      {"metrics", metrics_json},
      {"digest", digest},
  };
  return j;
}

}  // namespace taskhost
