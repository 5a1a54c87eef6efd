// A dry run as a plugin sees it: the dry_probe fixture, in the sandbox (the
// default), tries every write each service offers against real parts
// (object storage, OpenSSH's sshd, PostgreSQL, an HTTP server on loopback);
// the host refuses each, naming the dry run, audits each refusal, and lets
// the reads through.
#include <gtest/gtest.h>
#include <taskhost/plugin.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "engine/submit.hpp"
#include "services/database.hpp"
#include "store/audit.hpp"
#include "support/fixtures.hpp"
#include "support/http_receiver.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

using test::slurp;

TEST(DryRun, EveryServiceWriteIsRefusedAndEveryReadWorks) {
  // Object storage: the local store under a directory of this test.
  const fs::path objects =
      fs::temp_directory_path() / ("taskhost-dry-objects-" + std::to_string(::getpid()));
  fs::remove_all(objects);
  fs::create_directories(objects / "claims" / "in");
  std::ofstream(objects / "claims" / "in" / "existing.txt") << "stored";

  const fs::path sshd = std::string(std::getenv("TASKHOST_TEST_HOME")) + "-sshd";
  const fs::path remote = fs::canonical(sshd / "files") / "dry";
  fs::remove_all(remote);
  fs::create_directories(remote);
  std::ofstream(remote / "existing.txt") << "remote";

  std::vector<std::string> methods;
  std::mutex mutex;
  test::HttpReceiver server([&](const test::HttpRequest& r) -> test::HttpResponse {
    std::lock_guard lock(mutex);
    methods.push_back(r.method + " " + r.target);
    return {200, {}, {}, "ok"};
  });
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  test::TestDatabase db;
  pg::Connection conn = db.connect();
  db.connect_as_owner().exec_script(
      "CREATE TABLE public.claims (id serial PRIMARY KEY, status text NOT NULL);"
      "INSERT INTO public.claims (status) VALUES ('a'), ('b');"
      "GRANT SELECT, INSERT, UPDATE, DELETE ON public.claims TO taskhost_provisioner "
      "  WITH GRANT OPTION;"
      "GRANT USAGE ON SEQUENCE public.claims_id_seq TO taskhost_provisioner WITH GRANT OPTION");
  auto schema =
      test::install_fixture(conn, "dryprobe", "dry_probe.so",
                            "params: { bucket: { type: string }, sftp_host: { type: string }, "
                            "sftp_dir: { type: string }, base: { type: string } }\n"
                            "capabilities:\n"
                            "  s3: [ { bucket: claims, prefix: in/, access: readwrite } ]\n"
                            "  sftp: [ { host: vendor, path: '" +
                                remote.string() +
                                "', access: readwrite } ]\n"
                                "  db: { connection: default, tables: { claims: write } }\n"
                                "  http:\n"
                                "    - { base_url: '" +
                                base +
                                "/api/' }\n"
                                "    - { base_url: '" +
                                base + "/status/', safe_methods: [POST] }\n");
  provision_db_roles(schema.schema, database_target({}, db.conninfo(), "default"));

  HostConfig config;
  config.object_store_dir = objects;
  config.allow_destinations = {AddressRange::parse("127.0.0.0/8")};
  SftpHostConfig vendor;
  vendor.address = "127.0.0.1";
  vendor.port = std::stoi(slurp(sshd / "port"));
  vendor.user = slurp(sshd / "user");
  vendor.user.pop_back();
  vendor.private_key = sshd / "id_ed25519";
  vendor.known_hosts = sshd / "known_hosts";
  config.sftp["vendor"] = vendor;

  const Json params = {
      {"bucket", "claims"}, {"sftp_host", "vendor"}, {"sftp_dir", remote.string()}, {"base", base}};
  auto submitted = submit_run(conn, schema, params, "cli:test", std::nullopt, true);
  EXPECT_EQ(submitted.state, RunState::queued);
  taskhost::Run r = test::execute(db.conninfo(), submitted.run_id, test::fixture_dir, config);
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_TRUE(r.dry_run);
  const Json& out = r.output;
  EXPECT_EQ(out["dry_run"], true) << "ctx.dry_run() tells the plugin";

  // The reads.
  EXPECT_EQ(out["s3_get"], "stored");
  EXPECT_EQ(out["s3_listed"], 1);
  EXPECT_EQ(out["sftp_get"], "remote");
  EXPECT_EQ(out["sftp_listed"], 1);
  EXPECT_EQ(out["db_read"], "2");
  EXPECT_EQ(out["http_get"], 200);
  EXPECT_EQ(out["http_head"], 200);
  EXPECT_EQ(out["http_safe_post"], 200) << "a method the grant declares safe";

  // The writes, each refused naming the dry run.
  const Json& refused = out["refused"];
  const std::string dry =
      "refused: this run is a dry run, in which services may read but never "
      "write";
  test::expect_refused(refused, "s3_put", TH_ERR_PERMISSION,
                       "dry run: s3 write of claims/in/new.txt " + dry);
  test::expect_refused(refused, "s3_copy", TH_ERR_PERMISSION,
                       "dry run: s3 write of claims/in/copy.txt " + dry);
  test::expect_refused(refused, "s3_delete", TH_ERR_PERMISSION,
                       "dry run: s3 write of claims/in/existing.txt " + dry);
  test::expect_refused(refused, "sftp_put", TH_ERR_PERMISSION,
                       "dry run: sftp write of vendor:" + (remote / "new.txt").string());
  test::expect_refused(refused, "sftp_rename", TH_ERR_PERMISSION,
                       "dry run: sftp write of vendor:" + (remote / "existing.txt").string());
  test::expect_refused(refused, "sftp_remove", TH_ERR_PERMISSION, "dry run: sftp write");
  test::expect_refused(refused, "sftp_mkdir", TH_ERR_PERMISSION,
                       "dry run: sftp write of vendor:" + (remote / "sub").string());
  test::expect_refused(refused, "db_insert", TH_ERR_PERMISSION,
                       "dry run: db query (cannot execute INSERT in a read-only transaction)");
  test::expect_refused(refused, "db_update", TH_ERR_PERMISSION,
                       "cannot execute UPDATE in a read-only transaction");
  test::expect_refused(refused, "db_read_write", TH_ERR_INVALID,
                       "transaction read-write mode must be set before any query");
  test::expect_refused(refused, "db_copy_in", TH_ERR_PERMISSION, "dry run: db copy_in into claims");
  for (const char* m : {"post", "put", "delete", "patch"})
    test::expect_refused(refused, std::string("http_") + m, TH_ERR_PERMISSION, "dry run: http ");
  test::expect_refused(refused, "http_post", TH_ERR_PERMISSION,
                       "dry run: http POST " + base +
                           "/api/item (only GET, HEAD and a grant's "
                           "safe_methods may be sent) " +
                           dry);

  // Nothing changed anywhere.
  EXPECT_EQ(slurp(objects / "claims" / "in" / "existing.txt"), "stored");
  EXPECT_FALSE(fs::exists(objects / "claims" / "in" / "new.txt"));
  EXPECT_FALSE(fs::exists(objects / "claims" / "in" / "copy.txt"));
  EXPECT_EQ(slurp(remote / "existing.txt"), "remote");
  EXPECT_FALSE(fs::exists(remote / "new.txt"));
  EXPECT_FALSE(fs::exists(remote / "moved.txt"));
  EXPECT_FALSE(fs::exists(remote / "sub"));
  EXPECT_EQ(db.connect_as_owner()
                .exec("SELECT string_agg(status, ',' ORDER BY id) FROM public.claims")
                .text(0, 0),
            "a,b");
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(methods,
              (std::vector<std::string>{"GET /api/item", "HEAD /api/item", "POST /status/bulk"}))
        << "a refused request is never sent";
  }

  // Its own record is kept: that is how a dry run reports.
  EXPECT_EQ(get_run(conn, r.id).output["dry_run"], true);
  EXPECT_EQ(run_events(conn, r.id, 10).at(0).name, "item.checked");
  EXPECT_EQ(run_files(conn, r.id).at(0).name, "plan.txt");

  // Each refusal is audited like any other refused call.
  for (const auto& [service, denied] :
       std::vector<std::pair<std::string, int>>{{"s3", 3}, {"sftp", 4}, {"db", 3}, {"http", 4}}) {
    auto calls = test::service_calls(conn, r.id, service);
    EXPECT_EQ(calls.outcomes["denied"], denied) << service;
  }
  AuditFilter submission;
  submission.run_id = r.id;
  submission.action = "run.submitted";
  auto submitted_entry = list_audit(conn, submission);
  ASSERT_EQ(submitted_entry.size(), 1u);
  EXPECT_EQ(submitted_entry[0].detail["reason"], "submitted as a dry run");

  fs::remove_all(objects);
  fs::remove_all(remote);
}

}  // namespace
}  // namespace taskhost
