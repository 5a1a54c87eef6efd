// esi-ingest end to end with real parts: the vendor's files (made by the
// tests' own generator, encrypted and signed with the real gpg) on OpenSSH's
// sshd, mirrored host to host into s3rver, one esi-parser run chained per
// file (for_each), loaded into PostgreSQL; the totals checked against what
// the generator expected. Worker processes are killed and raced.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <taskhost/fixedwidth.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/sha256.hpp"
#include "engine/scheduler.hpp"
#include "engine/submit.hpp"
#include "services/database.hpp"
#include "services/object_storage.hpp"
#include "support/esi_keys.hpp"
#include "support/esi_synth.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"
#include "support/worker_process.hpp"

extern char** environ;

namespace taskhost {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::EsiExpected;
using testing::EsiSynthOptions;
using Totals = std::map<std::string, std::pair<int64_t, int64_t>>;

const fixedwidth::Layout& layout() {
  static const fixedwidth::Layout l =
      fixedwidth::load_layout_file(SOURCE_DIR "/schemas/layouts/esi_rxaccum_v10.yaml");
  return l;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size())
    text.replace(at, from.size(), to);
  return text;
}

template <typename F>
bool eventually(F&& condition, std::chrono::seconds limit) {
  for (auto end = std::chrono::steady_clock::now() + limit;
       std::chrono::steady_clock::now() < end;) {
    if (condition()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

// A `taskhost worker` process with the test's host config.
test::WorkerProcess worker(const std::string& conninfo, const fs::path& config,
                           const std::string& id) {
  return test::WorkerProcess(conninfo, id, {"--config", config.string()}, BUNDLED_PLUGIN_DIR);
}

class EsiIngest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    keys_ =
        new test::EsiKeys(fs::temp_directory_path() / ("esi-ingest-" + std::to_string(getpid())));
  }
  static void TearDownTestSuite() { delete keys_; }

  void SetUp() override {
    conn_.emplace(db_.connect());
    owner_.emplace(db_.connect_as_owner());
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    vendor_ = test::sshd_files() / ("esi-" + std::to_string(getpid()) + "-" + name) / "outgoing";
    fs::remove_all(vendor_.parent_path());
    fs::create_directories(vendor_);
    // The bucket outlives a test: each test mirrors under a prefix of its own.
    prefix_ = "t" + std::to_string(getpid()) + "-" + name + "/in/";
    // The bundled schemas as the build stamped them, the vendor's directory
    // and the raw prefix set to this test's (the plugin's pin stays).
    const auto target = database_target({}, db_.conninfo(), "default");
    for (const char* file : {"esi-parser.yaml", "esi-ingest.yaml"}) {
      std::string yaml = test::slurp(fs::path(BUNDLED_SCHEMA_DIR) / file);
      yaml = replace_all(yaml, "/outgoing", vendor_.string());
      yaml = replace_all(yaml, "in/", prefix_);
      std::vector<Diagnostic> errors;
      auto s = parse_schema(yaml, file, &errors);
      ASSERT_TRUE(s) << format_diagnostics(errors);
      apply_data_migrations(*s, target, BUNDLED_PLUGIN_DIR);
      provision_db_roles(*s, target);
      install_schema(*conn_, *s, "test");
    }
    ingest_ = find_schema(*conn_, SchemaRef::parse("esi-ingest"));
    config_.s3["esi-raw"] = test::s3rver_bucket("esi-raw");
    config_.sftp["esi-vendor"] = test::sshd_host();
    keys_->configure(config_);
  }
  void TearDown() override { fs::remove_all(vendor_.parent_path()); }

  // A generated file, encrypted and signed, in the vendor's directory.
  EsiExpected vendor_file(const std::string& name, EsiSynthOptions o) {
    EsiExpected ex;
    keys_->encrypt(testing::esi_synth_file(layout(), o, &ex), vendor_ / name);
    return ex;
  }

  taskhost::Run ingest(Json params = Json::object()) {
    if (!params.contains("settle_seconds")) params["settle_seconds"] = 0;
    const std::string id = submit_run(*conn_, ingest_, params, "cli:test").run_id;
    return test::execute(db_.conninfo(), id, BUNDLED_PLUGIN_DIR, config_);
  }

  // Fires the run's chain and executes its follow-ups in the order queued.
  std::vector<taskhost::Run> chained(const std::string& parent) {
    fire_chains(*conn_, "test");
    auto ids = conn_->exec(
        "SELECT id FROM taskhost.runs WHERE parent_run_id = $1 ORDER BY queued_seq", {parent});
    std::vector<taskhost::Run> out;
    for (int i = 0; i < ids.rows(); ++i)
      out.push_back(test::execute(db_.conninfo(), ids.text(i, 0), BUNDLED_PLUGIN_DIR, config_));
    return out;
  }

  std::string object(const std::string& key) {
    std::string out;
    open_bucket(config_, "esi-raw")->get(key, [&](const char* d, size_t n) { out.append(d, n); });
    return out;
  }

  // As the tables' owner: the runtime role has no privilege on them.
  int64_t count(const std::string& sql) { return owner_->exec(sql).integer(0, 0); }
  Totals totals() {
    auto r = owner_->exec("SELECT policy_id, deductible_cents, oop_cents FROM esi_policy_totals");
    Totals got;
    for (int i = 0; i < r.rows(); ++i)
      got[r.text(i, 0)] = {std::stoll(r.text(i, 1)), std::stoll(r.text(i, 2))};
    return got;
  }
  static Totals merged(const std::vector<EsiExpected>& files) {
    Totals sum;
    for (const auto& f : files)
      for (const auto& [policy, t] : f.totals) {
        sum[policy].first += t.first;
        sum[policy].second += t.second;
      }
    return sum;
  }

  // The host config as a file, for worker processes.
  fs::path config_file() {
    const fs::path p = vendor_.parent_path() / "taskhost.yml";
    std::ofstream(p) << "s3:\n" + test::s3rver_bucket_yaml("esi-raw") + "sftp:\n" +
                            test::sshd_host_yaml("esi-vendor") + keys_->config_yaml();
    return p;
  }

  test::TestDatabase db_;
  std::optional<pg::Connection> conn_, owner_;
  InstalledSchema ingest_;
  HostConfig config_;
  fs::path vendor_;
  std::string prefix_;
  static inline test::EsiKeys* keys_ = nullptr;
};

TEST_F(EsiIngest, MirrorsNewFilesAndChainsOneParserEachInOrder) {
  EsiSynthOptions a, b;
  a.records = 120;
  a.id_prefix = "A";
  b.records = 80;
  b.seed = 2;
  b.id_prefix = "B";
  b.crlf = true;
  const std::vector<EsiExpected> ex = {vendor_file("MAVN_RxAccum_20261130_060000.pgp", a),
                                       vendor_file("MAVN_RxAccum_20261201_060000.pgp", b)};
  std::ofstream(vendor_ / "README.txt") << "not a vendor file";

  taskhost::Run r = ingest();
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  const Json& files = r.output["files"];
  ASSERT_EQ(files.size(), 2u) << r.output.dump();
  for (size_t i = 0; i < 2; ++i) {
    const std::string name =
        i == 0 ? "MAVN_RxAccum_20261130_060000.pgp" : "MAVN_RxAccum_20261201_060000.pgp";
    const std::string raw = test::slurp(vendor_ / name);
    EXPECT_EQ(files[i]["name"], name);
    EXPECT_EQ(files[i]["key"], prefix_ + name);
    EXPECT_EQ(files[i]["size"], raw.size());
    EXPECT_EQ(files[i]["sha256"], sha256_hex(raw));
    EXPECT_EQ(object(prefix_ + name), raw) << "mirrored raw, byte for byte";
  }
  // The transfers are on the record with their digests.
  auto transfers = test::service_calls(*conn_, r.id, "s3");
  ASSERT_GE(transfers.entries.size(), 2u);
  const auto& last = transfers.entries.back();
  EXPECT_EQ(last.action, "service.s3.put_from");
  EXPECT_EQ(last.detail["sha256"], files[1]["sha256"]);
  EXPECT_EQ(count("SELECT count(*) FROM esi_ingestion_meta WHERE job_type = 'ingestion' AND "
                  "status = 'succeeded' AND most_recent_raw = 'MAVN_RxAccum_20261201_060000.pgp' "
                  "AND cardinality(target_files) = 2 AND jsonb_array_length(files) = 2"),
            1);

  auto parsers = chained(r.id);
  ASSERT_EQ(parsers.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(parsers[i].state, RunState::succeeded) << parsers[i].error.value_or("");
    EXPECT_EQ(parsers[i].params["key"], files[i]["key"]) << "one parser per file, in order";
    EXPECT_EQ(parsers[i].output["dt_records"], ex[i].dt);
    EXPECT_EQ(parsers[i].output["source_sha256"], files[i]["sha256"]);
  }
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"),
            static_cast<int64_t>(ex[0].dt + ex[1].dt));
  EXPECT_EQ(totals(), merged(ex));

  // Nothing new: files [] and no follow-up.
  taskhost::Run again = ingest();
  ASSERT_EQ(again.state, RunState::succeeded) << again.error.value_or("");
  EXPECT_EQ(again.output["files"], Json::array());
  EXPECT_TRUE(chained(again.id).empty());
  EXPECT_EQ(count("SELECT count(*) FROM esi_ingestion_meta WHERE job_type = 'parser'"), 2);
}

TEST_F(EsiIngest, WithoutMetaTheNewestMirroredFileIsWhereItStarts) {
  // Mirrored before the meta table existed: only what is newer is taken.
  EsiSynthOptions o;
  o.records = 5;
  vendor_file("MAVN_RxAccum_20261129_060000.pgp", o);
  vendor_file("MAVN_RxAccum_20261201_060000.pgp", o);
  open_bucket(config_, "esi-raw")
      ->put(
          prefix_ + "MAVN_RxAccum_20261130_060000.pgp", [](char*, size_t) { return size_t{0}; },
          "application/octet-stream");
  taskhost::Run r = ingest();
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  ASSERT_EQ(r.output["files"].size(), 1u);
  EXPECT_EQ(r.output["files"][0]["name"], "MAVN_RxAccum_20261201_060000.pgp");
}

TEST_F(EsiIngest, AFileStillBeingWrittenWaitsForTheNextRun) {
  EsiSynthOptions o;
  o.records = 5;
  vendor_file("MAVN_RxAccum_20261130_060000.pgp", o);
  vendor_file("MAVN_RxAccum_20261202_060000.pgp", o);
  const fs::path growing = vendor_ / "MAVN_RxAccum_20261201_060000.pgp";
  std::ofstream(growing) << "-----BEGIN PGP";
  std::atomic<bool> done = false;
  std::thread writer([&] {
    while (!done) {
      std::ofstream(growing, std::ios::app) << std::string(1000, 'x');
      std::this_thread::sleep_for(100ms);
    }
  });
  taskhost::Run r;
  try {
    r = ingest({{"settle_seconds", 2}});
  } catch (...) {
    done = true;
    writer.join();
    throw;
  }
  done = true;
  writer.join();
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  // The growing file and the later one wait, so the watermark passes neither.
  ASSERT_EQ(r.output["files"].size(), 1u) << r.output.dump();
  EXPECT_EQ(r.output["files"][0]["name"], "MAVN_RxAccum_20261130_060000.pgp");
  EXPECT_EQ(r.output["waiting"],
            (Json{"MAVN_RxAccum_20261201_060000.pgp", "MAVN_RxAccum_20261202_060000.pgp"}));
  EXPECT_FALSE(open_bucket(config_, "esi-raw")->head(prefix_ + "MAVN_RxAccum_20261201_060000.pgp"));

  // Written completely now: the next run takes both.
  taskhost::Run next = ingest({{"settle_seconds", 1}});
  ASSERT_EQ(next.state, RunState::succeeded) << next.error.value_or("");
  ASSERT_EQ(next.output["files"].size(), 2u) << next.output.dump();
  EXPECT_EQ(next.output["files"][0]["sha256"], sha256_hex(test::slurp(growing)));
}

TEST_F(EsiIngest, FixupTakesExactlyTheNamedFilesAgainNonAsciiNamesToo) {
  EsiSynthOptions a, b;
  a.records = 30;
  a.id_prefix = "A";
  b.records = 20;
  b.seed = 3;
  b.id_prefix = "N";
  b.crlf = true;
  const EsiExpected ea = vendor_file("MAVN_RxAccum_20261130_060000.pgp", a);
  const std::string odd = "MAVN_RxAccum_20261130_060000 (Korrektur für Zoë).pgp";
  const EsiExpected eb = vendor_file(odd, b);

  taskhost::Run first = ingest();
  ASSERT_EQ(first.state, RunState::succeeded) << first.error.value_or("");
  ASSERT_EQ(first.output["files"].size(), 1u) << "a name outside the pattern is not taken";
  for (const auto& p : chained(first.id)) ASSERT_EQ(p.state, RunState::succeeded);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), static_cast<int64_t>(ea.dt));

  // Fixup: both named files, re-mirrored and re-parsed though seen before.
  taskhost::Run fixup =
      ingest({{"mode", "fixup"}, {"files", {"MAVN_RxAccum_20261130_060000.pgp", odd}}});
  ASSERT_EQ(fixup.state, RunState::succeeded) << fixup.error.value_or("");
  ASSERT_EQ(fixup.output["files"].size(), 2u);
  EXPECT_EQ(fixup.output["files"][1]["key"], prefix_ + odd);
  EXPECT_EQ(object(prefix_ + odd), test::slurp(vendor_ / odd));
  auto parsers = chained(fixup.id);
  ASSERT_EQ(parsers.size(), 2u);
  for (const auto& p : parsers) {
    ASSERT_EQ(p.state, RunState::succeeded) << p.error.value_or("");
    EXPECT_EQ(p.params["mode"], "fixup");
    EXPECT_FALSE(p.output.contains("skipped")) << "a fixup parses again";
  }
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), static_cast<int64_t>(ea.dt + eb.dt));
  EXPECT_EQ(totals(), merged({ea, eb}));
  // A fixup does not move the incremental watermark.
  EXPECT_EQ(count("SELECT count(*) FROM esi_ingestion_meta WHERE job_type = 'ingestion' AND "
                  "task_type = 'fixup' AND target_files[2] = '" +
                  odd + "'"),
            1);
  EXPECT_EQ(test::kind_of([&] {
              submit_run(*conn_, ingest_, {{"mode", "fixup"}, {"files", "x"}}, "cli:test");
            }),
            ErrorKind::invalid);
  taskhost::Run empty = ingest({{"mode", "fixup"}});
  EXPECT_EQ(empty.state, RunState::failed);
  EXPECT_NE(empty.error.value_or("").find("mode fixup needs the file names"), std::string::npos);
}

TEST_F(EsiIngest, AWorkerKilledDuringTheParsersCopyLeavesTheFileLoadedOnce) {
  EsiSynthOptions o;
  o.records = 30000;  // several 4 MiB COPY flushes
  const EsiExpected ex = vendor_file("MAVN_RxAccum_20261201_060000.pgp", o);
  taskhost::Run r = ingest();
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  fire_chains(*conn_, "test");
  const std::string parser =
      conn_->exec("SELECT id FROM taskhost.runs WHERE parent_run_id = $1", {r.id}).text(0, 0);

  const fs::path config = config_file();
  auto super = db_.connect_as_superuser();
  {
    auto doomed = worker(db_.conninfo(), config, "doomed");
    ASSERT_TRUE(eventually(
        [&] {
          return super
                     .exec(
                         "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                         "query LIKE 'COPY %esi_accumulators_staging%'")
                     .integer(0, 0) > 0;
        },
        120s))
        << "the parser never reached its COPY";
    doomed.signal(SIGKILL);
    doomed.wait();
  }
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), 0) << "nothing of the cut attempt";
  auto rescuer = worker(db_.conninfo(), config, "rescuer");
  ASSERT_TRUE(
      eventually([&] { return get_run(*conn_, parser).state == RunState::succeeded; }, 180s))
      << get_run(*conn_, parser).error.value_or("");
  EXPECT_GE(get_run(*conn_, parser).attempt, 2);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), static_cast<int64_t>(ex.dt));
  EXPECT_EQ(count("SELECT count(DISTINCT transmission_id) FROM esi_accumulators"),
            static_cast<int64_t>(ex.dt));
  EXPECT_EQ(count("SELECT count(*) FROM esi_ingestion_meta WHERE job_type = 'parser' AND "
                  "status = 'succeeded'"),
            1);
  EXPECT_EQ(totals(), ex.totals);
}

TEST_F(EsiIngest, TwoRunsAtOnceTakeEachFileOnce) {
  EsiSynthOptions a, b;
  a.records = 40;
  a.id_prefix = "A";
  b.records = 40;
  b.seed = 4;
  b.id_prefix = "B";
  const std::vector<EsiExpected> ex = {vendor_file("MAVN_RxAccum_20261130_060000.pgp", a),
                                       vendor_file("MAVN_RxAccum_20261201_060000.pgp", b)};
  const Json params = {{"settle_seconds", 1}};
  const std::string one = submit_run(*conn_, ingest_, params, "cli:test").run_id;
  const std::string two = submit_run(*conn_, ingest_, params, "cli:test").run_id;
  const fs::path config = config_file();
  auto w1 = worker(db_.conninfo(), config, "w1");
  auto w2 = worker(db_.conninfo(), config, "w2");
  ASSERT_TRUE(eventually(
      [&] {
        return get_run(*conn_, one).state == RunState::succeeded &&
               get_run(*conn_, two).state == RunState::succeeded &&
               conn_->exec(
                        "SELECT count(*) FROM taskhost.runs WHERE schema_name = 'esi-parser' "
                        "AND state = 'succeeded'")
                       .integer(0, 0) == 2;
      },
      180s));
  const taskhost::Run r1 = get_run(*conn_, one), r2 = get_run(*conn_, two);
  EXPECT_EQ(r1.output["files"].size() + r2.output["files"].size(), 2u)
      << r1.output.dump() << r2.output.dump();
  // concurrency 1: one ran after the other.
  EXPECT_TRUE(*r1.finished_at <= *r2.started_at || *r2.finished_at <= *r1.started_at);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"),
            static_cast<int64_t>(ex[0].dt + ex[1].dt));
  EXPECT_EQ(conn_->exec("SELECT count(*) FROM taskhost.runs WHERE schema_name = 'esi-parser'")
                .integer(0, 0),
            2);
  EXPECT_EQ(totals(), merged(ex));
}

}  // namespace
}  // namespace taskhost
