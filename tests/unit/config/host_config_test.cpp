#include "config/host_config.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace taskhost {
namespace {

std::string problems(const std::string& yaml) {
  try {
    parse_host_config(yaml, "taskhost.yml");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid);
    return e.what();
  }
  return "accepted";
}

TEST(HostConfig, ReadsAValidConfig) {
  auto c = parse_host_config(R"(allow_destinations: [127.0.0.0/8]
webhooks: { default_url: 'http://127.0.0.1:18080/hook' }
s3:
  raw: { endpoint: 'http://127.0.0.1:4568', access_key_id: { env: A }, secret_access_key: { env: B } }
)",
                             "taskhost.yml");
  EXPECT_EQ(c.allow_destinations.size(), 1u);
  EXPECT_EQ(c.webhook_default_url, "http://127.0.0.1:18080/hook");
  EXPECT_EQ(c.s3.at("raw").endpoint, "http://127.0.0.1:4568");
}

TEST(HostConfig, SandboxLimitsAreTheHostsDefaults) {
  auto c =
      parse_host_config("sandbox: { limits: { memory: 512MiB, processes: 16 } }\n", "taskhost.yml");
  EXPECT_EQ(c.sandbox_limits.memory, 512ull << 20);
  EXPECT_EQ(c.sandbox_limits.processes, 16u);
  EXPECT_FALSE(c.sandbox_limits.cpu_time);
  EXPECT_EQ(problems("sandbox:\n  limits: { tmp: 1G }\n"),
            "taskhost.yml:2:18: sandbox.limits.tmp: expected a size of at least 1MiB like 512MiB "
            "or 2GiB, got '1G'");
}

TEST(HostConfig, CliRolesAndTheApi) {
  auto c = parse_host_config(
      "cli: { roles: { alice: [admin], '*': [viewer] } }\n"
      "api: { listen: '[::1]:9090', pepper: { file: /etc/taskhost/api.pepper } }\n",
      "taskhost.yml");
  ASSERT_TRUE(c.cli_roles);
  EXPECT_EQ(c.cli_roles->at("alice"), std::vector<std::string>{"admin"});
  EXPECT_EQ(c.cli_roles->at("*"), std::vector<std::string>{"viewer"});
  EXPECT_EQ(c.api_listen, "[::1]:9090");
  ASSERT_TRUE(c.api_pepper);
  EXPECT_EQ(c.api_pepper->setting, "api.pepper");
  EXPECT_EQ(parse_host_config("", "taskhost.yml").api_listen, "127.0.0.1:8080");
  EXPECT_EQ(problems("api: { pepper: s3cret }\n"),
            "taskhost.yml:1:16: api.pepper: secret values are never written here: use { env: NAME "
            "} or { file: PATH }");
  EXPECT_EQ(problems("cli: { roles: { bob: [Admin!] } }\n"),
            "taskhost.yml:1:23: cli.roles.bob: expected a role name like operator, got 'Admin!'");
}

TEST(HostConfig, DuplicateKeysAreRefused) {
  // yaml-cpp keeps the first: a second allow_destinations opened the SSRF guard silently.
  EXPECT_EQ(problems("allow_destinations: [127.0.0.0/8]\nallow_destinations: [0.0.0.0/0]\n"),
            "taskhost.yml:2:1: allow_destinations: duplicate key");
  EXPECT_EQ(problems("s3:\n  a: {}\n  a: {}\n"), "taskhost.yml:3:3: s3.a: duplicate key");
}

TEST(HostConfig, ReportsEveryProblem) {
  auto p = problems(R"(alow_destinations: [10.0.0.0/8]
webhooks: { default_url: 'http://[::1' }
sftp:
  esi: { address: 127.0.0.1, port: 99999 }
)");
  EXPECT_NE(p.find("taskhost.yml:1:1: alow_destinations: unknown setting; did you mean "
                   "'allow_destinations'?"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("taskhost.yml:2:26: webhooks.default_url: expected an http(s) URL"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("sftp.esi.user: required"), std::string::npos) << p;
  EXPECT_NE(p.find("sftp.esi.port: expected a port number"), std::string::npos) << p;
  EXPECT_GE(std::count(p.begin(), p.end(), '\n'), 5) << p;
}

TEST(HostConfig, HostileTextIsALocatedError) {
  EXPECT_EQ(problems("webhooks: { default_url: \"http://x/\xFF\" }\n"),
            "taskhost.yml:1:36: the text holds not valid UTF-8");
  EXPECT_EQ(problems("a: 1\n---\nb: 2\n"),
            "taskhost.yml:2:1: a second YAML document: the file must hold exactly one");
  EXPECT_NE(problems(std::string(1000, '[')).find("taskhost.yml:"), std::string::npos);
  EXPECT_NE(problems(std::string((1 << 20) + 1, ' ')).find("over the limit of 1048576 bytes"),
            std::string::npos);
}

TEST(HostConfig, ANonMappingIsAnError) {
  // Found by fuzz_host_config: reading on past the first error subscripted a
  // scalar, and yaml-cpp's BadSubscript ended the process.
  EXPECT_EQ(problems("allow_object_store_dd"), "taskhost.yml:1:1: expected a mapping");
  EXPECT_EQ(problems("[1, 2]"), "taskhost.yml:1:1: expected a mapping");
}

TEST(HostConfig, EmptyIsTheDefault) {
  EXPECT_TRUE(parse_host_config("", "taskhost.yml").s3.empty());
  EXPECT_TRUE(parse_host_config("# nothing\n", "taskhost.yml").s3.empty());
}

TEST(HostConfig, PgpKeysAreSecretReferences) {
  auto c = parse_host_config(R"(pgp:
  esi: { secret_key: { file: /run/esi.asc }, passphrase: { env: ESI_PASS } }
  esi-vendor: { public_key: { file: /etc/vendor.asc } }
)",
                             "taskhost.yml");
  EXPECT_EQ(c.pgp.at("esi").secret_key->file, "/run/esi.asc");
  EXPECT_EQ(c.pgp.at("esi").passphrase->env, "ESI_PASS");
  EXPECT_EQ(c.pgp.at("esi-vendor").public_key->file, "/etc/vendor.asc");
  const std::string p = problems(R"(pgp:
  a: { secret_key: "-----BEGIN PGP PRIVATE KEY BLOCK-----" }
  b: { secret_key: { env: A }, public_key: { env: B } }
  c: { public_key: { env: B }, passphrase: { env: C } }
)");
  EXPECT_NE(p.find("taskhost.yml:2:20: pgp.a.secret_key: secret values are never written here"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("pgp.b: give exactly one of secret_key (with its passphrase) or public_key"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("pgp.c: a passphrase belongs to a secret_key"), std::string::npos) << p;
}

TEST(HostConfig, PrivateKeyJwtCredentialsNameTheirKey) {
  auto c = parse_host_config(R"(http_credentials:
  lighthouse:
    type: private_key_jwt
    token_url: https://idp.example/oauth2/token
    client_id: { env: LH_CLIENT }
    private_key: { file: /run/secrets/lh.pem }
    scope: documents.read
)",
                             "taskhost.yml");
  const auto& lh = c.http_credentials.at("lighthouse");
  EXPECT_EQ(lh.kind, HttpCredentialConfig::Kind::private_key_jwt);
  EXPECT_TRUE(lh.fetches_tokens());
  EXPECT_EQ(lh.token_url, "https://idp.example/oauth2/token");
  EXPECT_EQ(lh.client_id.env, "LH_CLIENT");
  EXPECT_EQ(lh.private_key.file, "/run/secrets/lh.pem");
  EXPECT_EQ(lh.scope, "documents.read");
  const std::string p = problems(R"(http_credentials:
  a: { type: private_key_jwt, token_url: 'https://x/t', client_id: { env: C },
       private_key: "-----BEGIN PRIVATE KEY-----" }
  b: { type: private_key_jwt, token_url: 'https://x/t', client_secret: { env: S } }
  c: { type: private_key_jwt, token_url: 'ftp://x/t', client_id: { env: C },
       private_key: { env: K } }
  d: { type: jwt }
)");
  EXPECT_NE(p.find("taskhost.yml:3:21: http_credentials.a.private_key: secret values are never "
                   "written here"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("http_credentials.b.client_secret: unknown setting"), std::string::npos) << p;
  EXPECT_NE(p.find("http_credentials.b.private_key: required for type private_key_jwt"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("http_credentials.c.token_url: expected the token endpoint's http(s) URL"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("http_credentials.d.type: expected bearer, header, oauth2 or private_key_jwt, "
                   "got 'jwt'"),
            std::string::npos)
      << p;
}

}  // namespace
}  // namespace taskhost
