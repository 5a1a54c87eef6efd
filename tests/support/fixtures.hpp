#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "common/error.hpp"
#include "config/host_config.hpp"
#include "config/host_keys.hpp"
#include "store/audit.hpp"
#include "store/pg.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"

namespace taskhost::test {

inline const std::string fixture_dir = FIXTURE_PLUGIN_DIR;

// The kind of Error that f throws; a test failure if it throws none.
ErrorKind kind_of(const std::function<void()>& f);

// Checks what a probe plugin recorded for a call it expected to be refused
// (tests/fixtures/plugins/refusal.hpp): the ABI code and a part of the message.
void expect_refused(const Json& refused, const std::string& name, int code,
                    const std::string& text);

// A run's audit entries for one service ("db", "sftp" ...) in order, and
// how many had each outcome ("denied", "HTTP 200" ...).
struct ServiceCalls {
  std::vector<AuditEntry> entries;
  std::map<std::string, int> outcomes;
};
ServiceCalls service_calls(pg::Connection& conn, const std::string& run_id,
                           const std::string& service);

// Everything logged (at debug level and up) while f runs: for canary checks.
std::string capture_logs(const std::function<void()>& f);

// Host keys as a host config names them: host_key (base64 of 32 bytes) and
// previous_host_keys, each in a file of its own under the temp directory.
inline const std::string host_key_a = std::string(42, 'A') + "E=";
inline const std::string host_key_b = std::string(42, 'B') + "E=";
HostKeys host_keys(const std::string& key = host_key_a,
                   const std::vector<std::string>& previous = {});

// A whole file, as bytes.
std::string slurp(const std::filesystem::path& path);

// SHA-256 of a file.
std::string digest_of(const std::string& path);

// A bucket of the run's s3rver (tests/support/s3rver_fixture.sh makes
// taskhost-test and esi-raw) as a host config names it; its credentials are
// read from TEST_S3_KEY and TEST_S3_SECRET, which this sets.
S3BucketConfig s3rver_bucket(const std::string& bucket = "taskhost-test");
// The same as host config YAML (an entry of the `s3:` section).
std::string s3rver_bucket_yaml(const std::string& bucket);
// The run's sshd (tests/support/sshd_fixture.sh) as a host config names it,
// and the real directory it serves files from.
SftpHostConfig sshd_host();
// The same as host config YAML (an entry of the `sftp:` section).
std::string sshd_host_yaml(const std::string& name);
std::filesystem::path sshd_files();

// Installs NAME@1.0.0 running fixture plugin `so`, pinned to its real digest
// unless pin is given; extra is appended to the YAML.
InstalledSchema install_fixture(pg::Connection& conn, const std::string& name,
                                const std::string& so, const std::string& extra = "",
                                std::string pin = "");

// Installs the bundled hello schema as the build stamped it.
InstalledSchema install_hello(pg::Connection& conn);
// "NAME@VERSION+BUILD" of a bundled schema as the build stamped it ("hello.yaml").
std::string bundled_ref(const std::string& file);

// Executes one queued run in this process, the way `taskhost run --inline`
// does, and returns it as stored afterwards.
Run execute(const std::string& conninfo, const std::string& run_id,
            const std::string& plugin_dir = fixture_dir, const HostConfig& config = {});

}  // namespace taskhost::test
