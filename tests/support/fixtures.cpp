#include "support/fixtures.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/sha256.hpp"
#include "engine/worker.hpp"

namespace taskhost::test {

HostKeys host_keys(const std::string& key, const std::vector<std::string>& previous) {
  auto file = [](const std::string& k) {
    auto path = std::filesystem::temp_directory_path() /
                ("taskhost-test-key-" + std::to_string(::getpid()) + "-" + k.substr(0, 1));
    std::ofstream(path) << k << "\n";
    return path;
  };
  HostConfig config;
  config.host_key = SecretRef{"host_key", std::nullopt, file(key)};
  for (size_t i = 0; i < previous.size(); ++i)
    config.previous_host_keys.push_back(SecretRef{"previous_host_keys[" + std::to_string(i) + "]",
                                                  std::nullopt, file(previous[i])});
  return HostKeys::load(config);
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::environment;
}

std::string digest_of(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  std::string d = sha256_hex_fd(fd);
  ::close(fd);
  return d;
}

InstalledSchema install_fixture(pg::Connection& conn, const std::string& name,
                                const std::string& so, const std::string& extra, std::string pin) {
  if (pin.empty()) pin = digest_of(fixture_dir + "/" + so);
  std::vector<Diagnostic> errors;
  auto s = parse_schema("name: " + name + "\nversion: 1.0.0\nplugin: { path: " + so +
                            ", sha256: " + pin + " }\n" + extra,
                        name, &errors);
  if (!s) throw Error(ErrorKind::invalid, format_diagnostics(errors));
  install_schema(conn, *s, "test");
  return find_schema(conn, {name, "1.0.0"});
}

namespace {
TaskSchema bundled(const std::string& file) {
  std::vector<Diagnostic> errors;
  auto s = load_schema_file(BUNDLED_SCHEMA_DIR "/" + file, &errors);
  if (!s) throw Error(ErrorKind::invalid, format_diagnostics(errors));
  return *s;
}
}  // namespace

InstalledSchema install_hello(pg::Connection& conn) {
  install_schema(conn, bundled("hello.yaml"), "test");
  return find_schema(conn, SchemaRef::parse("hello"));
}

std::string bundled_ref(const std::string& file) { return bundled(file).ref(); }

namespace {
std::filesystem::path test_home(const char* part) {
  return std::string(std::getenv("TASKHOST_TEST_HOME")) + part;
}
std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

S3BucketConfig s3rver_bucket(const std::string& bucket) {
  ::setenv("TEST_S3_KEY", "S3RVER", 1);
  ::setenv("TEST_S3_SECRET", "S3RVER", 1);
  S3BucketConfig b;
  b.endpoint = "http://127.0.0.1:" + trimmed(slurp(test_home("-s3rver") / "port"));
  b.path_style = true;
  b.access_key_id = {"s3." + bucket + ".access_key_id", "TEST_S3_KEY", std::nullopt};
  b.secret_access_key = {"s3." + bucket + ".secret_access_key", "TEST_S3_SECRET", std::nullopt};
  return b;
}

std::string s3rver_bucket_yaml(const std::string& bucket) {
  const S3BucketConfig b = s3rver_bucket(bucket);
  return "  " + bucket + ": { endpoint: '" + b.endpoint +
         "', path_style: true, access_key_id: { env: TEST_S3_KEY }, secret_access_key: { env: "
         "TEST_S3_SECRET } }\n";
}

SftpHostConfig sshd_host() {
  const auto sshd = test_home("-sshd");
  SftpHostConfig h;
  h.address = "127.0.0.1";
  h.port = std::stoi(slurp(sshd / "port"));
  h.user = trimmed(slurp(sshd / "user"));
  h.private_key = sshd / "id_ed25519";
  h.known_hosts = sshd / "known_hosts";
  return h;
}

std::string sshd_host_yaml(const std::string& name) {
  const SftpHostConfig h = sshd_host();
  return "  " + name + ": { address: " + h.address + ", port: " + std::to_string(h.port) +
         ", user: " + h.user + ", private_key: " + h.private_key.string() +
         ", known_hosts: " + h.known_hosts.string() + " }\n";
}

std::filesystem::path sshd_files() {
  return std::filesystem::canonical(test_home("-sshd") / "files");
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ServiceCalls service_calls(pg::Connection& conn, const std::string& run_id,
                           const std::string& service) {
  AuditFilter f;
  f.action = "service." + service + ".";
  f.run_id = run_id;
  ServiceCalls calls{list_audit(conn, f), {}};
  for (const auto& e : calls.entries) ++calls.outcomes[e.detail.value("outcome", "")];
  return calls;
}

std::string capture_logs(const std::function<void()>& f) {
  std::ostringstream logs;
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::debug);
  try {
    f();
  } catch (...) {
    sinks.pop_back();
    spdlog::set_level(level);
    throw;
  }
  sinks.pop_back();
  spdlog::set_level(level);
  return logs.str();
}

void expect_refused(const Json& refused, const std::string& name, int code,
                    const std::string& text) {
  SCOPED_TRACE(name);
  ASSERT_TRUE(refused.contains(name) && refused[name].is_object()) << refused.dump();
  EXPECT_EQ(refused[name]["code"], code);
  EXPECT_NE(refused[name]["message"].get<std::string>().find(text), std::string::npos)
      << refused[name]["message"];
}

Run execute(const std::string& conninfo, const std::string& run_id, const std::string& plugin_dir,
            const HostConfig& config) {
  WorkerOptions o;
  o.config = config;
  o.conninfo = conninfo;
  o.plugin_dir = plugin_dir;
  o.id = "test-worker";
  o.concurrency = 1;
  pg::Connection conn(conninfo);
  auto claimed = claim(conn, o.id, 1, o.lease, run_id);
  if (claimed.empty()) throw Error(ErrorKind::conflict, "run " + run_id + " is not queued");
  o.only_run = claimed.front();
  Worker(o).run();
  return get_run(conn, run_id);
}

}  // namespace taskhost::test
