#include "config/host_config.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.hpp"
#include "schema/duration.hpp"

namespace taskhost {

namespace {

class Reader {
 public:
  explicit Reader(std::filesystem::path path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& field,
                         const std::string& message) const {
    auto m = at.Mark();
    throw Error(ErrorKind::invalid, path_.string() + ":" + std::to_string(m.line + 1) + ":" +
                                        std::to_string(m.column + 1) + ": " + field + ": " +
                                        message);
  }

  // Each key of a mapping must be one of `known`.
  void mapping(const YAML::Node& n, const std::string& field,
               const std::vector<std::string>& known) const {
    if (!n.IsMap()) fail(n, field, "expected a mapping");
    for (const auto& e : n) {
      const std::string k = e.first.Scalar();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        std::string list;
        for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
        fail(e.first, field.empty() ? k : field + "." + k, "unknown setting (known: " + list + ")");
      }
    }
  }

  std::string scalar(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(n, field, "expected a value");
    return n.Scalar();
  }

  SecretRef secret(const YAML::Node& n, const std::string& field) const {
    if (n.IsScalar())
      fail(n, field, "secret values are never written here: use { env: NAME } or { file: PATH }");
    mapping(n, field, {"env", "file"});
    SecretRef s;
    s.setting = field;
    if (n["env"]) s.env = scalar(n["env"], field + ".env");
    if (n["file"]) s.file = scalar(n["file"], field + ".file");
    if (s.env.has_value() == s.file.has_value()) fail(n, field, "give exactly one of env or file");
    return s;
  }

 private:
  std::filesystem::path path_;
};

S3BucketConfig read_bucket(const Reader& r, const YAML::Node& n, const std::string& field) {
  r.mapping(
      n, field,
      {"endpoint", "region", "path_style", "access_key_id", "secret_access_key", "session_token"});
  static const std::regex endpoint_re("^https?://[A-Za-z0-9.:\\[\\]-]+/?$");
  S3BucketConfig b;
  for (const char* required : {"endpoint", "access_key_id", "secret_access_key"})
    if (!n[required]) r.fail(n, field + "." + required, "required");
  b.endpoint = r.scalar(n["endpoint"], field + ".endpoint");
  if (!std::regex_match(b.endpoint, endpoint_re))
    r.fail(n["endpoint"], field + ".endpoint", "expected http(s)://host[:port]");
  if (n["region"]) b.region = r.scalar(n["region"], field + ".region");
  if (n["path_style"]) {
    std::string v = r.scalar(n["path_style"], field + ".path_style");
    if (v != "true" && v != "false")
      r.fail(n["path_style"], field + ".path_style", "true or false");
    b.path_style = v == "true";
  }
  b.access_key_id = r.secret(n["access_key_id"], field + ".access_key_id");
  b.secret_access_key = r.secret(n["secret_access_key"], field + ".secret_access_key");
  if (n["session_token"]) b.session_token = r.secret(n["session_token"], field + ".session_token");
  return b;
}

HttpCredentialConfig read_credential(const Reader& r, const YAML::Node& n,
                                     const std::string& field) {
  if (!n.IsMap() || !n["type"]) r.fail(n, field + ".type", "required: bearer, header or oauth2");
  const std::string type = r.scalar(n["type"], field + ".type");
  HttpCredentialConfig c;
  auto required = [&](const char* key) {
    if (!n[key]) r.fail(n, field + "." + key, "required for type " + type);
    return n[key];
  };
  if (type == "bearer") {
    r.mapping(n, field, {"type", "token"});
    c.secret = r.secret(required("token"), field + ".token");
  } else if (type == "header") {
    r.mapping(n, field, {"type", "name", "value"});
    c.kind = HttpCredentialConfig::Kind::header;
    c.header_name = r.scalar(required("name"), field + ".name");
    c.secret = r.secret(required("value"), field + ".value");
  } else if (type == "oauth2") {
    r.mapping(n, field, {"type", "token_url", "client_id", "client_secret", "scope"});
    c.kind = HttpCredentialConfig::Kind::oauth2;
    c.token_url = r.scalar(required("token_url"), field + ".token_url");
    c.client_id = r.secret(required("client_id"), field + ".client_id");
    c.client_secret = r.secret(required("client_secret"), field + ".client_secret");
    if (n["scope"]) c.scope = r.scalar(n["scope"], field + ".scope");
  } else {
    r.fail(n["type"], field + ".type", "expected bearer, header or oauth2, got '" + type + "'");
  }
  return c;
}

SftpHostConfig read_sftp(const Reader& r, const YAML::Node& n, const std::string& field) {
  r.mapping(n, field, {"address", "port", "user", "private_key", "known_hosts"});
  SftpHostConfig h;
  for (const char* required : {"address", "user", "private_key", "known_hosts"})
    if (!n[required]) r.fail(n, field + "." + required, "required");
  h.address = r.scalar(n["address"], field + ".address");
  h.user = r.scalar(n["user"], field + ".user");
  h.private_key = r.scalar(n["private_key"], field + ".private_key");
  h.known_hosts = r.scalar(n["known_hosts"], field + ".known_hosts");
  if (n["port"]) {
    const std::string port = r.scalar(n["port"], field + ".port");
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
        std::stoi(port) > 65535)
      r.fail(n["port"], field + ".port", "expected a port number");
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
  if (!v.IsMap()) r.fail(v, section, std::string("expected a mapping of ") + names);
  for (const auto& e : v)
    out[e.first.Scalar()] = read(r, e.second, section + "." + e.first.Scalar());
}

DatabaseConfig read_database(const Reader& r, const YAML::Node& n, const std::string& field) {
  r.mapping(n, field, {"url", "role_secret", "statement_timeout"});
  if (!n["url"]) r.fail(n, field + ".url", "required");
  DatabaseConfig d;
  d.url = r.secret(n["url"], field + ".url");
  if (n["role_secret"]) d.role_secret = r.secret(n["role_secret"], field + ".role_secret");
  if (auto t = n["statement_timeout"]) {
    auto parsed = parse_duration(r.scalar(t, field + ".statement_timeout"));
    if (!parsed || parsed->count() <= 0)
      r.fail(t, field + ".statement_timeout", "expected a duration such as 30s or 5m");
    d.statement_timeout = *parsed;
  }
  return d;
}

// host_key, previous_host_keys and audit (checkpoints).
void read_keys_and_audit(const Reader& r, const YAML::Node& root, HostConfig& config) {
  if (auto k = root["host_key"]) config.host_key = r.secret(k, "host_key");
  if (auto v = root["previous_host_keys"]) {
    if (!v.IsSequence()) r.fail(v, "previous_host_keys", "expected a list of { env } / { file }");
    for (size_t i = 0; i < v.size(); ++i)
      config.previous_host_keys.push_back(
          r.secret(v[i], "previous_host_keys[" + std::to_string(i) + "]"));
    if (!config.host_key && !config.previous_host_keys.empty())
      r.fail(v, "previous_host_keys", "needs host_key, the key that replaces them");
  }
  if (auto a = root["audit"]) {
    r.mapping(a, "audit", {"checkpoint_every", "checkpoint_key", "checkpoint_file"});
    AuditCheckpointConfig c;
    for (const char* required : {"checkpoint_key", "checkpoint_file"})
      if (!a[required]) r.fail(a, std::string("audit.") + required, "required");
    c.key = r.scalar(a["checkpoint_key"], "audit.checkpoint_key");
    c.file = r.scalar(a["checkpoint_file"], "audit.checkpoint_file");
    if (auto e = a["checkpoint_every"]) {
      auto every = parse_duration(r.scalar(e, "audit.checkpoint_every"));
      if (!every || *every < std::chrono::minutes(1))
        r.fail(e, "audit.checkpoint_every", "expected a duration of at least 1m, such as 10m");
      c.every = *every;
    }
    config.audit_checkpoints = c;
  }
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
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::environment, "cannot read host config " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    throw Error(ErrorKind::invalid, path.string() + ":" + std::to_string(e.mark.line + 1) + ":" +
                                        std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  HostConfig config;
  if (root.IsNull()) return config;
  Reader r(path);
  r.mapping(root, "",
            {"allow_destinations", "s3", "object_store_dir", "http_credentials", "sftp",
             "databases", "webhooks", "host_key", "previous_host_keys", "audit"});
  read_keys_and_audit(r, root, config);
  read_named(r, root, "sftp", "host names", read_sftp, config.sftp);
  read_named(r, root, "databases", "connection names", read_database, config.databases);
  if (auto v = root["webhooks"]) {
    r.mapping(v, "webhooks", {"default_url"});
    if (auto u = v["default_url"]) {
      static const std::regex url_re("^https?://[^\\s]+$");
      config.webhook_default_url = r.scalar(u, "webhooks.default_url");
      if (!std::regex_match(config.webhook_default_url, url_re))
        r.fail(u, "webhooks.default_url", "expected an http(s) URL");
    }
  }
  if (auto v = root["allow_destinations"]) {
    if (!v.IsSequence()) r.fail(v, "allow_destinations", "expected a list of CIDR ranges");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string field = "allow_destinations[" + std::to_string(i) + "]";
      try {
        config.allow_destinations.push_back(AddressRange::parse(r.scalar(v[i], field)));
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::invalid || std::string(e.what()).find(path.string()) == 0) throw;
        r.fail(v[i], field, e.what());
      }
    }
  }
  read_named(r, root, "s3", "bucket names", read_bucket, config.s3);
  read_named(r, root, "http_credentials", "credential names", read_credential,
             config.http_credentials);
  if (auto v = root["object_store_dir"]) config.object_store_dir = r.scalar(v, "object_store_dir");
  return config;
}

}  // namespace taskhost
