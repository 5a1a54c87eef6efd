// SFTP as a plugin sees it: the sftp_probe fixture runs through the real
// loader and worker against OpenSSH's sshd on loopback, confined to its
// granted paths (symlinks included), every call audited.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/submit.hpp"
#include "store/audit.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

using test::slurp;

TEST(SftpPlugin, EveryCallThroughTheLoaderConfinedAndAudited) {
  const fs::path sshd = std::string(std::getenv("TASKHOST_TEST_HOME")) + "-sshd";
  const fs::path root = fs::canonical(sshd / "files") / "plugin";
  fs::remove_all(root);
  for (const char* d : {"in", "archive", "outside"}) fs::create_directories(root / d);
  std::ofstream(root / "archive" / "old.pgp") << "archived";
  std::ofstream(root / "outside" / "secret.txt") << "secret";
  fs::create_directory_symlink(root / "outside", root / "in" / "escape");

  test::TestDatabase db;
  pg::Connection conn = db.connect();
  auto schema = test::install_fixture(
      conn, "sftpprobe", "sftp_probe.so",
      "params: { host: { type: string }, in: { type: string }, archive: { type: string }, "
      "outside: { type: string } }\n"
      "capabilities:\n"
      "  sftp:\n"
      "    - { host: vendor, path: '" +
          (root / "in").string() +
          "', access: readwrite }\n"
          "    - { host: vendor, path: '" +
          (root / "archive").string() + "', access: read }\n");
  HostConfig config;
  SftpHostConfig vendor;
  vendor.address = "127.0.0.1";
  vendor.port = std::stoi(slurp(sshd / "port"));
  vendor.user = slurp(sshd / "user");
  vendor.user.pop_back();
  vendor.private_key = sshd / "id_ed25519";
  vendor.known_hosts = sshd / "known_hosts";
  config.sftp["vendor"] = vendor;

  std::string id = submit_run(conn, schema,
                              {{"host", "vendor"},
                               {"in", (root / "in").string()},
                               {"archive", (root / "archive").string()},
                               {"outside", (root / "outside").string()}},
                              "cli:test")
                       .run_id;
  taskhost::Run r = test::execute(db.conninfo(), id, test::fixture_dir, config);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& out = r.output;
  EXPECT_EQ(out["put"], 3);
  EXPECT_EQ(out["list"],
            Json::array({Json::array({"RXACCUM_1.pgp", 3}), Json::array({"RXACCUM_2.pgp", 4})}));
  EXPECT_EQ(out["get"], "two!");
  EXPECT_EQ(out["archived"], "archived");
  EXPECT_EQ(slurp(root / "in" / "done" / "RXACCUM_1.pgp"), "one");
  EXPECT_FALSE(fs::exists(root / "in" / "readme.txt"));

  const Json& refused = out["refused"];
  test::expect_refused(refused, "outside", TH_ERR_PERMISSION,
                       "permission denied: schema sftpprobe has no sftp read grant for vendor:" +
                           (root / "outside").string());
  test::expect_refused(refused, "write_read_only", TH_ERR_PERMISSION, "no sftp write grant");
  test::expect_refused(refused, "dot_dot", TH_ERR_INVALID, "has an empty, '.' or '..' segment");
  test::expect_refused(refused, "symlink_out", TH_ERR_PERMISSION,
                       "resolves to " + (root / "outside" / "secret.txt").string());
  test::expect_refused(refused, "rename_out", TH_ERR_PERMISSION, "no sftp write grant");
  test::expect_refused(refused, "relative", TH_ERR_INVALID, "is not absolute");
  test::expect_refused(refused, "other_host", TH_ERR_PERMISSION, "nothing granted on that host");
  EXPECT_TRUE(fs::exists(root / "in" / "RXACCUM_2.pgp")) << "the refused rename moved nothing";

  auto calls = test::service_calls(conn, id, "sftp");
  EXPECT_EQ(calls.outcomes["denied"], 5);
  const auto& entries = calls.entries;
  EXPECT_EQ(entries.at(0).action, "service.sftp.put");
  EXPECT_EQ(entries.at(0).subject, "vendor:" + (root / "in" / "RXACCUM_1.pgp").string());
  EXPECT_EQ(entries.at(0).detail["bytes"], 3);
  fs::remove_all(root);
}

}  // namespace
}  // namespace taskhost
