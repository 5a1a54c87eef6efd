// esi-parser end to end with real parts: files made by the tests' own
// generator, encrypted and signed with the real gpg, decrypted by the host's
// OpenPGP service (librnp), parsed and loaded by the sandboxed plugin into
// PostgreSQL; the totals checked against what the generator expected.
#include <gtest/gtest.h>
#include <taskhost/fixedwidth.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/submit.hpp"
#include "services/database.hpp"
#include "support/esi_keys.hpp"
#include "support/esi_synth.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;
namespace fw = fixedwidth;
using testing::EsiExpected;
using testing::EsiSynthOptions;

const std::string& passphrase = test::EsiKeys::passphrase;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const fw::Layout& layout() {
  static const fw::Layout l =
      fw::load_layout_file(SOURCE_DIR "/schemas/layouts/esi_rxaccum_v10.yaml");
  return l;
}

class EsiParser : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    keys_ =
        new test::EsiKeys(fs::temp_directory_path() / ("esi-parser-" + std::to_string(getpid())));
  }
  static void TearDownTestSuite() { delete keys_; }

  void SetUp() override {
    conn_.emplace(db_.connect());
    owner_.emplace(db_.connect_as_owner());
    // As `schema install` does: the plugin's tables, its roles, the schema.
    std::vector<Diagnostic> errors;
    auto s = load_schema_file(BUNDLED_SCHEMA_DIR "/esi-parser.yaml", &errors);
    ASSERT_TRUE(s) << format_diagnostics(errors);
    const auto target = database_target({}, db_.conninfo(), "default");
    apply_data_migrations(*s, target, BUNDLED_PLUGIN_DIR);
    provision_db_roles(*s, target);
    install_schema(*conn_, *s, "test");
    schema_ = find_schema(*conn_, SchemaRef::parse("esi-parser"));
    objects_ = keys_->dir() / ("objects-" + std::to_string(counter_++));
    fs::create_directories(objects_ / "esi-raw" / "in");
    config_.object_store_dir = objects_;
    keys_->configure(config_);
  }

  // Encrypts plain to esi, signed by signer, as in/NAME in the raw bucket.
  std::string put(const std::string& name, const std::string& plain,
                  const std::string& signer = "vendor") {
    keys_->encrypt(plain, objects_ / "esi-raw" / "in" / name, signer);
    return "in/" + name;
  }

  taskhost::Run parse(const std::string& key, Json params = Json::object()) {
    params["key"] = key;
    const std::string id = submit_run(*conn_, schema_, params, "cli:test").run_id;
    return test::execute(db_.conninfo(), id, BUNDLED_PLUGIN_DIR, config_);
  }

  // As the tables' owner: the runtime role has no privilege on them.
  int64_t count(const std::string& sql) { return owner_->exec(sql).integer(0, 0); }

  test::TestDatabase db_;
  std::optional<pg::Connection> conn_, owner_;
  InstalledSchema schema_;
  HostConfig config_;
  fs::path objects_;
  static inline test::EsiKeys* keys_ = nullptr;
  static inline int counter_ = 0;
};

TEST_F(EsiParser, LoadsAFileOnceWithTheTotalsItsGeneratorExpects) {
  EsiExpected ex;
  EsiSynthOptions o;
  o.records = 400;
  o.crlf = true;
  const std::string key =
      put("MAVN_RxAccum_20261130_235900.pgp", testing::esi_synth_file(layout(), o, &ex));
  taskhost::Run r;
  const std::string logs = test::capture_logs([&] { r = parse(key); });
  ASSERT_EQ(r.state, RunState::succeeded) << r.error.value_or("");
  EXPECT_EQ(r.output["dt_records"], ex.dt);
  EXPECT_EQ(r.output["dq"], ex.dq);
  EXPECT_EQ(r.output["dr_accepted"], ex.dr_accepted);
  EXPECT_EQ(r.output["dr_rejected"], ex.dr_rejected);
  EXPECT_EQ(r.output["rejects"], 0);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), static_cast<int64_t>(ex.dt));
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators_staging"), 0);
  auto totals =
      owner_->exec("SELECT policy_id, deductible_cents, oop_cents FROM esi_policy_totals");
  std::map<std::string, std::pair<int64_t, int64_t>> got;
  for (int i = 0; i < totals.rows(); ++i)
    got[totals.text(i, 0)] = {std::stoll(totals.text(i, 1)), std::stoll(totals.text(i, 2))};
  EXPECT_EQ(got, ex.totals);
  // Latin-1 names arrive as UTF-8.
  EXPECT_GT(count("SELECT count(*) FROM esi_accumulators WHERE patient_last_name = 'Müller'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM esi_ingestion_meta WHERE job_type = 'parser' AND "
                  "status = 'succeeded' AND most_recent_parsed = '" +
                  key + "'"),
            1);
  // The secret key and its passphrase appear nowhere.
  const std::string secret_key = read_file(keys_->secret_key());
  const std::string key_body = secret_key.substr(secret_key.find("\n\n") + 2, 64);
  const std::string everything =
      logs + r.output.dump() + r.error.value_or("") +
      owner_->exec("SELECT coalesce(string_agg(t::text, ''), '') FROM taskhost.audit_log t")
          .text(0, 0) +
      owner_->exec("SELECT coalesce(string_agg(t::text, ''), '') FROM esi_ingestion_meta t")
          .text(0, 0);
  EXPECT_EQ(everything.find(passphrase), std::string::npos);
  EXPECT_EQ(everything.find(key_body), std::string::npos);
  auto calls = test::service_calls(*conn_, r.id, "pgp");
  EXPECT_EQ(calls.outcomes["ok"], 2);  // open and decrypt

  // The same file again is skipped; in fixup mode it is loaded over itself.
  taskhost::Run again = parse(key);
  ASSERT_EQ(again.state, RunState::succeeded) << again.error.value_or("");
  EXPECT_EQ(again.output["skipped"], true);
  taskhost::Run fixup = parse(key, {{"mode", "fixup"}});
  ASSERT_EQ(fixup.state, RunState::succeeded) << fixup.error.value_or("");
  EXPECT_EQ(fixup.output["dt_records"], ex.dt);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), static_cast<int64_t>(ex.dt));
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators WHERE run_id = '" + fixup.id + "'"),
            static_cast<int64_t>(ex.dt));
}

TEST_F(EsiParser, RefusesAFileSignedByAnotherKeyOrAltered) {
  EsiSynthOptions o;
  o.records = 20;
  const std::string plain = testing::esi_synth_file(layout(), o);
  taskhost::Run wrong = parse(put("wrong.pgp", plain, "stranger"));
  ASSERT_EQ(wrong.state, RunState::failed);
  EXPECT_NE(wrong.error->find("in/wrong.pgp refused: it is signed by key"), std::string::npos)
      << *wrong.error;
  EXPECT_NE(wrong.error->find("not by esi-vendor"), std::string::npos) << *wrong.error;

  const std::string key = put("altered.pgp", plain);
  const fs::path file = objects_ / "esi-raw" / key;
  std::string bytes = read_file(file);
  bytes[bytes.size() / 2] ^= 0x20;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  taskhost::Run altered = parse(key);
  ASSERT_EQ(altered.state, RunState::failed);
  EXPECT_NE(altered.error->find("in/altered.pgp refused"), std::string::npos) << *altered.error;
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), 0);
}

TEST_F(EsiParser, AStructuralErrorLoadsNothingAndNamesTheLine) {
  EsiSynthOptions o;
  o.records = 30;
  std::string plain = testing::esi_synth_file(layout(), o);
  std::string wrong_count = plain;
  wrong_count.replace(wrong_count.size() - 1 - 1700 + 209, 10, "0000000031");
  taskhost::Run r = parse(put("count.pgp", wrong_count));
  ASSERT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error->find("nothing was loaded: line 32 TR: the trailer's record_count is 31 but "
                          "the file has 30 DT records"),
            std::string::npos)
      << *r.error;
  std::string truncated = plain;
  truncated.erase(1701 * 5 + 100, 50);  // line 6 loses 50 bytes
  r = parse(put("short.pgp", truncated));
  ASSERT_EQ(r.state, RunState::failed);
  EXPECT_NE(r.error->find("line 6"), std::string::npos) << *r.error;
  EXPECT_NE(r.error->find("the record is 1650 bytes, the layout's are 1700"), std::string::npos)
      << *r.error;
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), 0);
}

TEST_F(EsiParser, FieldRejectsFailTheRunUnlessMaxRejectsAllowsThem) {
  EsiSynthOptions o;
  o.records = 10;
  std::string plain = testing::esi_synth_file(layout(), o);
  plain.replace(1701 * 3 + 315, 8, "20261399");  // line 4's date_of_service
  const std::string key = put("rejects.pgp", plain);
  taskhost::Run strict = parse(key);
  ASSERT_EQ(strict.state, RunState::failed);
  EXPECT_NE(strict.error->find("1 records have field problems, more than max_rejects (0); the "
                               "first: line 4 DT date_of_service '20261399': not a date"),
            std::string::npos)
      << *strict.error;
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM esi_rejects WHERE line = 4 AND field = 'date_of_service' "
                  "AND value = '20261399'"),
            1);
  taskhost::Run lenient = parse(key, {{"max_rejects", 1}});
  ASSERT_EQ(lenient.state, RunState::succeeded) << lenient.error.value_or("");
  EXPECT_EQ(lenient.output["rejects"], 1);
  EXPECT_EQ(lenient.output["dt_records"], 9);
  EXPECT_EQ(count("SELECT count(*) FROM esi_accumulators"), 9);
}

}  // namespace
}  // namespace taskhost
