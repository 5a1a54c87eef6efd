#include "store/schemas.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "engine/submit.hpp"
#include "store/runs.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

TaskSchema make(const std::string& version, const std::string& description = "d") {
  std::vector<Diagnostic> errors;
  auto s = parse_schema("name: demo\nversion: " + version + "\ndescription: " + description +
                            "\nplugin: { path: demo.so, sha256: any }\n",
                        "demo.yaml", &errors);
  EXPECT_TRUE(s.has_value()) << format_diagnostics(errors);
  return *s;
}

struct Schemas : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();
};

TEST_F(Schemas, InstallIsIdempotentAndVersionsAreForever) {
  EXPECT_EQ(install_schema(conn, make("1.0.0"), "t"), InstallOutcome::installed);
  EXPECT_EQ(install_schema(conn, make("1.0.0"), "t"), InstallOutcome::unchanged);
  try {
    install_schema(conn, make("1.0.0", "changed"), "t");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_NE(std::string(e.what()).find("demo@1.0.0 is already installed from a different file"),
              std::string::npos);
  }
  // Removal does not free the version for another file.
  remove_schema(conn, {"demo", "1.0.0"}, false, "t");
  EXPECT_EQ(test::kind_of([&] { install_schema(conn, make("1.0.0", "changed"), "t"); }),
            ErrorKind::conflict);
  EXPECT_EQ(install_schema(conn, make("1.0.0"), "t"), InstallOutcome::restored);
}

TEST_F(Schemas, NameResolvesToTheHighestSemverNotTheNewestInstall) {
  for (auto v : {"1.10.0", "1.2.0", "2.0.0-rc.1", "1.9.9"}) install_schema(conn, make(v), "t");
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo")).schema.version.str(), "2.0.0-rc.1");
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo@1.2.0")).schema.version.str(), "1.2.0");
  remove_schema(conn, SchemaRef::parse("demo@2.0.0-rc.1"), false, "t");
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo")).schema.version.str(), "1.10.0");
  EXPECT_EQ(test::kind_of([&] { find_schema(conn, SchemaRef::parse("demo@2.0.0-rc.1")); }),
            ErrorKind::not_found);
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo@2.0.0-rc.1"), true).removed_at.has_value(),
            true);
  EXPECT_EQ(test::kind_of([&] { find_schema(conn, SchemaRef::parse("nope")); }),
            ErrorKind::not_found);
  EXPECT_EQ(list_schemas(conn, false).size(), 3u);
  EXPECT_EQ(list_schemas(conn, true).size(), 4u);
}

// Bundled plugins carry their build's digest as build metadata: a rebuild is
// installed beside the old build (no conflict), the name and the bare version
// resolve to the newest install, and runs stay on the build they started on.
TEST_F(Schemas, EachBuildOfAVersionIsInstalledBesideTheOthers) {
  EXPECT_EQ(install_schema(conn, make("1.0.0+aaaaaaaaaaaa"), "t"), InstallOutcome::installed);
  auto old_run = submit_run(conn, find_schema(conn, SchemaRef::parse("demo")), Json::object(), "t");
  EXPECT_EQ(install_schema(conn, make("1.0.0+0bbbbbbbbbbb", "rebuilt"), "t"),
            InstallOutcome::installed);
  EXPECT_EQ(install_schema(conn, make("0.9.0"), "t"), InstallOutcome::installed);
  for (auto ref : {"demo", "demo@1.0.0", "demo@1.0.0+0bbbbbbbbbbb"})
    EXPECT_EQ(find_schema(conn, SchemaRef::parse(ref)).schema.version.str(), "1.0.0+0bbbbbbbbbbb")
        << ref;
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo@1.0.0+aaaaaaaaaaaa")).schema.description, "d");
  EXPECT_EQ(get_run(conn, old_run.run_id).schema_version, "1.0.0+aaaaaaaaaaaa");
  // The bare version names every build of it.
  EXPECT_EQ(remove_schema(conn, SchemaRef::parse("demo@1.0.0"), true, "t"), 2);
  EXPECT_EQ(find_schema(conn, SchemaRef::parse("demo")).schema.version.str(), "0.9.0");
}

TEST_F(Schemas, RemoveRefusesWhileUnfinishedRunsUseItUnlessForced) {
  install_schema(conn, make("1.0.0"), "t");
  auto s = find_schema(conn, SchemaRef::parse("demo@1.0.0"));
  std::string run = submit_run(conn, s, Json::object(), "t").run_id;
  try {
    remove_schema(conn, SchemaRef::parse("demo"), false, "t");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_STREQ(e.what(),
                 "1 unfinished run(s) use demo; wait for them, or pass --force (they "
                 "finish on the version they started with)");
  }
  EXPECT_EQ(remove_schema(conn, SchemaRef::parse("demo"), true, "t"), 1);
  // The run and its binding survive the removal.
  taskhost::Run r = get_run(conn, run);
  EXPECT_EQ(r.schema_version, "1.0.0");
  EXPECT_EQ(r.state, RunState::queued);
}

}  // namespace
}  // namespace taskhost
