#include "config/host_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/curl.hpp"
#include "common/error.hpp"
#include "common/pattern.hpp"
#include "common/text.hpp"
#include "common/yaml_input.hpp"
#include "schema/duration.hpp"

namespace taskhost {

namespace {

// The largest host config accepted.
constexpr size_t max_config_bytes = 1 << 20;

// Reads the config, reporting every problem (as schema validation does)
// rather than stopping at the first; what is wrong reads as empty.
class Reader {
 public:
  Reader(std::string file, Diagnostics& errors) : file_(std::move(file)), errors_(errors) {}

  void error(const YAML::Node& at, const std::string& field, const std::string& message) const {
    auto m = at.Mark();
    errors_.add({file_, m.line + 1, m.column + 1, field, message});
  }

  // Whether n is a mapping; each of its keys must be one of `known`.
  bool mapping(const YAML::Node& n, const std::string& field,
               const std::vector<std::string>& known) const {
    if (!n.IsMap()) {
      error(n, field, "expected a mapping");
      return false;
    }
    for (const auto& e : n) {
      const std::string k = e.first.Scalar();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        std::string list;
        for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
        error(e.first, field.empty() ? printable(k) : field + "." + printable(k),
              "unknown setting" + did_you_mean(k, known) + " (known: " + list + ")");
      }
    }
    return true;
  }

  std::string scalar(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) {
      error(n, field, "expected a value");
      return "";
    }
    return n.Scalar();
  }

  // n[key], or an undefined node after an error naming it.
  YAML::Node required(const YAML::Node& n, const char* key, const std::string& field,
                      const std::string& message = "required") const {
    if (!n[key]) error(n, field + "." + key, message);
    return n[key];
  }

  SecretRef secret(const YAML::Node& n, const std::string& field) const {
    SecretRef s;
    s.setting = field;
    if (!n) return s;  // reported missing by the caller
    if (n.IsScalar()) {
      error(n, field, "secret values are never written here: use { env: NAME } or { file: PATH }");
      return s;
    }
    if (!mapping(n, field, {"env", "file"})) return s;
    if (n["env"]) s.env = scalar(n["env"], field + ".env");
    if (n["file"]) s.file = scalar(n["file"], field + ".file");
    if (s.env.has_value() == s.file.has_value()) error(n, field, "give exactly one of env or file");
    return s;
  }

  // An http(s) URL as the host's transfers parse it.
  std::string url(const YAML::Node& n, const std::string& field, const char* expected) const {
    std::string u = scalar(n, field);
    try {
      if (n.IsScalar()) parse_http_url(u);
    } catch (const Error& e) {
      error(n, field, std::string("expected ") + expected + " (" + e.what() + ")");
    }
    return u;
  }

 private:
  std::string file_;
  Diagnostics& errors_;
};

S3BucketConfig read_bucket(const Reader& r, const YAML::Node& n, const std::string& field) {
  S3BucketConfig b;
  if (!r.mapping(n, field,
                 {"endpoint", "region", "path_style", "access_key_id", "secret_access_key",
                  "session_token"}))
    return b;
  static const Pattern endpoint_re("https?://[A-Za-z0-9.:\\[\\]-]+/?");
  if (auto e = r.required(n, "endpoint", field)) {
    b.endpoint = r.url(e, field + ".endpoint", "http(s)://host[:port]");
    if (e.IsScalar() && !endpoint_re.matches(b.endpoint))
      r.error(e, field + ".endpoint", "expected http(s)://host[:port]");
  }
  if (n["region"]) b.region = r.scalar(n["region"], field + ".region");
  if (n["path_style"]) {
    std::string v = r.scalar(n["path_style"], field + ".path_style");
    if (v != "true" && v != "false")
      r.error(n["path_style"], field + ".path_style", "true or false");
    b.path_style = v == "true";
  }
  b.access_key_id = r.secret(r.required(n, "access_key_id", field), field + ".access_key_id");
  b.secret_access_key =
      r.secret(r.required(n, "secret_access_key", field), field + ".secret_access_key");
  if (n["session_token"]) b.session_token = r.secret(n["session_token"], field + ".session_token");
  return b;
}

HttpCredentialConfig read_credential(const Reader& r, const YAML::Node& n,
                                     const std::string& field) {
  HttpCredentialConfig c;
  if (!n.IsMap() || !n["type"]) {
    r.error(n, field + ".type", "required: bearer, header, oauth2 or private_key_jwt");
    return c;
  }
  const std::string type = r.scalar(n["type"], field + ".type");
  auto required = [&](const char* key) {
    return r.required(n, key, field, "required for type " + type);
  };
  if (type == "bearer") {
    r.mapping(n, field, {"type", "token"});
    c.secret = r.secret(required("token"), field + ".token");
  } else if (type == "header") {
    r.mapping(n, field, {"type", "name", "value"});
    c.kind = HttpCredentialConfig::Kind::header;
    if (auto v = required("name")) c.header_name = r.scalar(v, field + ".name");
    c.secret = r.secret(required("value"), field + ".value");
  } else if (type == "oauth2") {
    r.mapping(n, field, {"type", "token_url", "client_id", "client_secret", "scope"});
    c.kind = HttpCredentialConfig::Kind::oauth2;
    if (auto v = required("token_url")) c.token_url = r.scalar(v, field + ".token_url");
    c.client_id = r.secret(required("client_id"), field + ".client_id");
    c.client_secret = r.secret(required("client_secret"), field + ".client_secret");
    if (n["scope"]) c.scope = r.scalar(n["scope"], field + ".scope");
  } else if (type == "private_key_jwt") {
    r.mapping(n, field, {"type", "token_url", "client_id", "private_key", "scope"});
    c.kind = HttpCredentialConfig::Kind::private_key_jwt;
    if (auto v = required("token_url"))
      c.token_url = r.url(v, field + ".token_url", "the token endpoint's http(s) URL");
    c.client_id = r.secret(required("client_id"), field + ".client_id");
    c.private_key = r.secret(required("private_key"), field + ".private_key");
    if (n["scope"]) c.scope = r.scalar(n["scope"], field + ".scope");
  } else if (n["type"].IsScalar()) {
    r.error(n["type"], field + ".type",
            "expected bearer, header, oauth2 or private_key_jwt, got '" +
                printable(storable(type, 100)) + "'");
  }
  return c;
}

PgpKeyConfig read_pgp(const Reader& r, const YAML::Node& n, const std::string& field) {
  PgpKeyConfig k;
  if (!r.mapping(n, field, {"secret_key", "passphrase", "public_key"})) return k;
  if (n["secret_key"]) k.secret_key = r.secret(n["secret_key"], field + ".secret_key");
  if (n["passphrase"]) k.passphrase = r.secret(n["passphrase"], field + ".passphrase");
  if (n["public_key"]) k.public_key = r.secret(n["public_key"], field + ".public_key");
  if (k.secret_key.has_value() == k.public_key.has_value())
    r.error(n, field, "give exactly one of secret_key (with its passphrase) or public_key");
  if (k.passphrase && !k.secret_key) r.error(n, field, "a passphrase belongs to a secret_key");
  return k;
}

SftpHostConfig read_sftp(const Reader& r, const YAML::Node& n, const std::string& field) {
  SftpHostConfig h;
  if (!r.mapping(n, field, {"address", "port", "user", "private_key", "known_hosts"})) return h;
  if (auto v = r.required(n, "address", field)) h.address = r.scalar(v, field + ".address");
  if (auto v = r.required(n, "user", field)) h.user = r.scalar(v, field + ".user");
  if (auto v = r.required(n, "private_key", field))
    h.private_key = r.scalar(v, field + ".private_key");
  if (auto v = r.required(n, "known_hosts", field))
    h.known_hosts = r.scalar(v, field + ".known_hosts");
  if (n["port"]) {
    const std::string port = r.scalar(n["port"], field + ".port");
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
        std::stoi(port) > 65535)
      r.error(n["port"], field + ".port", "expected a port number");
    else
      h.port = std::stoi(port);
  }
  return h;
}

// root[section], a mapping of names to entries, each read by
// read(r, entry, "section.name") into out[name].
template <typename T, typename Read>
void read_named(const Reader& r, const YAML::Node& root, const std::string& section,
                const char* names, Read read, std::map<std::string, T>& out) {
  const YAML::Node v = root[section];
  if (!v) return;
  if (!v.IsMap()) {
    r.error(v, section, std::string("expected a mapping of ") + names);
    return;
  }
  for (const auto& e : v)
    out[e.first.Scalar()] = read(r, e.second, section + "." + printable(e.first.Scalar()));
}

std::vector<std::string> read_roles(const Reader& r, const YAML::Node& n,
                                    const std::string& field) {
  std::vector<std::string> roles;
  if (!n.IsSequence()) {
    r.error(n, "cli." + field, "expected a list of roles, like [operator]");
    return roles;
  }
  for (const auto& item : n) {
    const std::string role = r.scalar(item, "cli." + field);
    if (!role.empty() &&
        role.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos)
      roles.push_back(role);
    else if (item.IsScalar())
      r.error(item, "cli." + field,
              "expected a role name like operator, got '" + printable(role) + "'");
  }
  return roles;
}

DatabaseConfig read_database(const Reader& r, const YAML::Node& n, const std::string& field) {
  DatabaseConfig d;
  if (!r.mapping(n, field, {"url", "role_secret", "statement_timeout"})) return d;
  d.url = r.secret(r.required(n, "url", field), field + ".url");
  if (n["role_secret"]) d.role_secret = r.secret(n["role_secret"], field + ".role_secret");
  if (auto t = n["statement_timeout"]) {
    auto parsed = parse_duration(r.scalar(t, field + ".statement_timeout"));
    if (!parsed || parsed->count() <= 0)
      r.error(t, field + ".statement_timeout", "expected a duration such as 30s or 5m");
    else
      d.statement_timeout = *parsed;
  }
  return d;
}

// host_key, previous_host_keys and audit (checkpoints).
void read_keys_and_audit(const Reader& r, const YAML::Node& root, HostConfig& config) {
  if (auto k = root["host_key"]) config.host_key = r.secret(k, "host_key");
  if (auto v = root["previous_host_keys"]) {
    if (!v.IsSequence()) {
      r.error(v, "previous_host_keys", "expected a list of { env } / { file }");
    } else {
      for (size_t i = 0; i < v.size(); ++i)
        config.previous_host_keys.push_back(
            r.secret(v[i], "previous_host_keys[" + std::to_string(i) + "]"));
      if (!config.host_key && !config.previous_host_keys.empty())
        r.error(v, "previous_host_keys", "needs host_key, the key that replaces them");
    }
  }
  if (auto a = root["audit"];
      a && r.mapping(a, "audit", {"checkpoint_every", "checkpoint_key", "checkpoint_file"})) {
    AuditCheckpointConfig c;
    bool complete = true;
    for (const char* required : {"checkpoint_key", "checkpoint_file"})
      if (!a[required]) {
        r.error(a, std::string("audit.") + required, "required");
        complete = false;
      }
    if (!complete) return;
    c.key = r.scalar(a["checkpoint_key"], "audit.checkpoint_key");
    c.file = r.scalar(a["checkpoint_file"], "audit.checkpoint_file");
    if (auto e = a["checkpoint_every"]) {
      auto every = parse_duration(r.scalar(e, "audit.checkpoint_every"));
      if (!every || *every < std::chrono::minutes(1))
        r.error(e, "audit.checkpoint_every", "expected a duration of at least 1m, such as 10m");
      else
        c.every = *every;
    }
    config.audit_checkpoints = c;
  }
}

void read_config(const Reader& r, const YAML::Node& root, HostConfig& config) {
  if (!r.mapping(root, "",
                 {"allow_destinations", "s3", "object_store_dir", "http_credentials", "sftp",
                  "databases", "webhooks", "sandbox", "host_key", "previous_host_keys", "audit",
                  "cli", "api", "pgp", "run_logs"}))
    return;
  if (auto v = root["run_logs"]; v && r.mapping(v, "run_logs", {"max_lines", "max_bytes"})) {
    if (auto l = v["max_lines"]) {
      const std::string text = r.scalar(l, "run_logs.max_lines");
      if (text.empty() || text.size() > 9 ||
          text.find_first_not_of("0123456789") != std::string::npos)
        r.error(l, "run_logs.max_lines", "expected a number of lines, such as 10000");
      else
        config.run_logs.max_lines = std::stoll(text);
    }
    if (auto b = v["max_bytes"]) {
      auto size = parse_size(r.scalar(b, "run_logs.max_bytes"));
      if (!size)
        r.error(b, "run_logs.max_bytes", "expected a size such as 8MiB");
      else
        config.run_logs.max_bytes = *size;
    }
  }
  if (auto v = root["api"]; v && r.mapping(v, "api", {"listen", "pepper"})) {
    if (auto l = v["listen"]) config.api_listen = r.scalar(l, "api.listen");
    if (auto p = v["pepper"]) config.api_pepper = r.secret(p, "api.pepper");
  }
  if (auto v = root["cli"]; v && r.mapping(v, "cli", {"roles"}) && v["roles"]) {
    config.cli_roles.emplace();
    read_named(r, v, "roles", "user names (or *) to lists of roles", read_roles, *config.cli_roles);
  }
  read_keys_and_audit(r, root, config);
  read_named(r, root, "sftp", "host names", read_sftp, config.sftp);
  read_named(r, root, "pgp", "key names", read_pgp, config.pgp);
  read_named(r, root, "databases", "connection names", read_database, config.databases);
  if (auto v = root["webhooks"]; v && r.mapping(v, "webhooks", {"default_url"}))
    if (auto u = v["default_url"])
      config.webhook_default_url = r.url(u, "webhooks.default_url", "an http(s) URL");
  if (auto v = root["sandbox"]; v && r.mapping(v, "sandbox", {"allow_in_process", "limits"})) {
    if (auto a = v["allow_in_process"]) {
      const std::string text = r.scalar(a, "sandbox.allow_in_process");
      if (text != "true" && text != "false")
        r.error(a, "sandbox.allow_in_process", "expected true or false");
      config.allow_in_process = text == "true";
    }
    if (auto l = v["limits"])
      config.sandbox_limits = read_limits(l, "sandbox.limits",
                                          [&](const YAML::Node& at, const std::string& f,
                                              const std::string& m) { r.error(at, f, m); });
  }
  if (auto v = root["allow_destinations"]) {
    if (!v.IsSequence()) {
      r.error(v, "allow_destinations", "expected a list of CIDR ranges");
    } else {
      size_t i = 0;
      for (const auto& item : v) {
        std::string field = "allow_destinations[" + std::to_string(i++) + "]";
        std::string cidr = r.scalar(item, field);
        if (!item.IsScalar()) continue;
        try {
          config.allow_destinations.push_back(AddressRange::parse(cidr));
        } catch (const Error& e) {
          r.error(item, field, e.what());
        }
      }
    }
  }
  read_named(r, root, "s3", "bucket names", read_bucket, config.s3);
  read_named(r, root, "http_credentials", "credential names", read_credential,
             config.http_credentials);
  if (auto v = root["object_store_dir"]) config.object_store_dir = r.scalar(v, "object_store_dir");
}

}  // namespace

std::string SecretRef::resolve() const {
  if (env) {
    const char* v = std::getenv(env->c_str());
    if (!v || !*v)
      throw Error(ErrorKind::environment,
                  setting + ": environment variable " + *env + " is not set");
    return v;
  }
  std::ifstream in(*file);
  if (!in) throw Error(ErrorKind::environment, setting + ": cannot read " + file->string());
  std::stringstream s;
  s << in.rdbuf();
  std::string v = s.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

HostConfig load_host_config(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::environment, "cannot read host config " + path.string());
  // One byte over the limit is enough for parse_host_config to refuse it.
  std::string text(max_config_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return parse_host_config(text, path.string());
}

HostConfig parse_host_config(std::string_view text, const std::string& file) {
  std::vector<Diagnostic> list;
  Diagnostics errors(&list);
  HostConfig config;
  auto root = load_yaml_input(text, file, max_config_bytes, errors);
  if (root && !root->IsNull()) read_config(Reader(file, errors), *root, config);
  if (errors.count() > 0) throw Error(ErrorKind::invalid, format_diagnostics(list));
  return config;
}

}  // namespace taskhost
