#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address_policy.hpp"
#include "schema/limits.hpp"

namespace taskhost {

// A secret the config names but never holds: an environment variable or a
// file. Its value is read when a service needs it.
struct SecretRef {
  std::string setting;  // where the config names it, for errors ("s3.b.secret_access_key")
  std::optional<std::string> env;
  std::optional<std::filesystem::path> file;
  // The value. Throws Error(environment) naming the setting and the variable
  // or file, never the value.
  std::string resolve() const;
};

// One bucket a schema can be granted.
struct S3BucketConfig {
  std::string endpoint;  // scheme://host[:port]
  std::string region = "us-east-1";
  bool path_style = false;
  SecretRef access_key_id, secret_access_key;
  std::optional<SecretRef> session_token;
};

// An SFTP server schemas can be granted, by name.
struct SftpHostConfig {
  std::string address;
  int port = 22;
  std::string user;
  std::filesystem::path private_key;  // the key file (OpenSSH format)
  std::filesystem::path known_hosts;  // must hold the server's host key
};

// An OpenPGP key schemas may be granted, by name: a secret key (with its
// passphrase) to decrypt with, or a public key to verify signatures with.
struct PgpKeyConfig {
  std::optional<SecretRef> secret_key, passphrase;  // armored or binary
  std::optional<SecretRef> public_key;
};

// A credential outbound HTTP injects for a plugin, by name.
struct HttpCredentialConfig {
  enum class Kind { bearer, header, oauth2, private_key_jwt };
  Kind kind = Kind::bearer;
  SecretRef secret;         // bearer: the token; header: the value
  std::string header_name;  // header: e.g. X-Api-Key
  // oauth2 and private_key_jwt (client credentials): tokens fetched from
  // token_url and cached until shortly before they expire. oauth2 sends
  // client_secret; private_key_jwt (RFC 7523) sends instead a client
  // assertion signed with private_key (RS256, aud = token_url, a unique jti,
  // valid for a few minutes).
  std::string token_url, scope;
  SecretRef client_id, client_secret, private_key;
  // Whether tokens are fetched from token_url (and renewed after a 401).
  bool fetches_tokens() const { return kind == Kind::oauth2 || kind == Kind::private_key_jwt; }
};

// A PostgreSQL database schemas can be granted (capabilities.db.connection),
// by name. url logs in as a role with CREATEROLE that may grant on the
// granted tables: `schema install` creates each schema's roles with it. Runs
// log in as the schema's own login role, with a password derived from
// role_secret when it is set (for servers that ask for one).
struct DatabaseConfig {
  SecretRef url;
  std::optional<SecretRef> role_secret;
  std::chrono::milliseconds statement_timeout{std::chrono::minutes(5)};
};

// Signed checkpoints of the audit chain head, written by the workers of a
// host whose config asks for them (one worker at a time across all hosts).
struct AuditCheckpointConfig {
  std::chrono::milliseconds every{std::chrono::minutes(10)};
  std::filesystem::path key;   // Ed25519 private key (PEM); made with key.pub if missing
  std::filesystem::path file;  // JSON lines, appended
};

// What this host may reach, from taskhost.yml (README "Host configuration").
// Secret values are never written in it: it names the environment variables
// or files that hold them.
struct HostConfig {
  // Non-public address ranges that webhook deliveries (and outbound HTTP) may
  // connect to; everything non-public outside them is refused.
  std::vector<AddressRange> allow_destinations;
  // Buckets by the name schemas grant. Without any, buckets are directories
  // under object_store_dir (the embedded default).
  std::map<std::string, S3BucketConfig> s3;
  std::filesystem::path object_store_dir;
  std::map<std::string, HttpCredentialConfig> http_credentials;
  std::map<std::string, SftpHostConfig> sftp;
  std::map<std::string, PgpKeyConfig> pgp;
  // Databases by the name schemas grant. Without any, the connection named
  // "default" is the platform's own database (the embedded default).
  std::map<std::string, DatabaseConfig> databases;
  // Where schemas without hooks of their own announce run state changes.
  std::string webhook_default_url;
  // sandbox.allow_in_process: whether a schema may say `isolation: none`
  // (its plugin then runs inside the host; every such run is audited).
  bool allow_in_process = false;
  // sandbox.limits: each attempt's limits where its schema sets none (and
  // default_limits where this sets none either).
  ResourceLimits sandbox_limits;
  // The keys that seal stored secrets (config/host_keys.hpp): host_key seals,
  // previous_host_keys only open, during a rotation. Without host_key,
  // host_key_file: the embedded default's HOME/host.key.
  std::optional<SecretRef> host_key;
  std::vector<SecretRef> previous_host_keys;
  std::filesystem::path host_key_file;
  std::optional<AuditCheckpointConfig> audit_checkpoints;
  // cli.roles: the CLI's roles by OS user name ("*": anyone else). Without
  // it, every local user who can reach the database is admin.
  std::optional<std::map<std::string, std::vector<std::string>>> cli_roles;
  // `taskhost serve`: where it listens (host:port) unless told, and the
  // pepper API keys are stored under (HMAC); without one, HOME/api.pepper.
  std::string api_listen = "127.0.0.1:8080";
  std::optional<SecretRef> api_pepper;
  // run_logs: how much of its plugin's log one run keeps (over all its
  // attempts); later lines are counted, not stored.
  struct RunLogLimits {
    int64_t max_lines = 10'000;
    uint64_t max_bytes = 8u << 20;
  } run_logs;
};

// Reads a config file. Throws Error(invalid) listing every problem, each at
// file:line:column with its field, or Error(environment) when the file
// cannot be read.
HostConfig load_host_config(const std::filesystem::path& path);
// The same for config text; file names it in the diagnostics.
HostConfig parse_host_config(std::string_view text, const std::string& file);

}  // namespace taskhost
