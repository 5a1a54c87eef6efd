// The audit log: what is recorded, that it commits with its change, that the
// platform cannot change it, and that a superuser's tampering is caught.
#include "store/audit.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/submit.hpp"
#include "store/queue.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

struct Audit : ::testing::Test {
  test::TestDatabase db;
  pg::Connection conn = db.connect();

  void fill(int n) {
    for (int i = 1; i <= n; ++i)
      append_audit(conn, "tester", "test.entry", std::nullopt, "item " + std::to_string(i),
                   {{"i", i}});
  }
  // A superuser with triggers off: the strongest attacker inside the database.
  pg::Connection attacker() {
    auto c = db.connect_as_superuser();
    c.exec("SET session_replication_role = replica");
    return c;
  }
  // The attacker's best move: entries from `first` on get another actor and
  // recomputed hashes, so the chain stays consistent; the head is left as it
  // was (an inconsistency verify sees) unless also_head.
  void rewrite_suffix(int64_t first, bool also_head) {
    attacker().exec(
        "DO $$ DECLARE r record; prev text; cur text; BEGIN "
        "  SELECT hash INTO prev FROM taskhost.audit_log WHERE seq = " +
        std::to_string(first - 1) +
        "; "
        "  FOR r IN SELECT * FROM taskhost.audit_log WHERE seq >= " +
        std::to_string(first) +
        " ORDER BY seq LOOP "
        "    cur := taskhost.audit_hash(r.seq, prev, r.at, 'mallory', r.action, r.run_id, "
        "      r.subject, r.detail); "
        "    UPDATE taskhost.audit_log SET actor = 'mallory', prev_hash = prev, hash = cur "
        "      WHERE seq = r.seq; "
        "    prev := cur; "
        "  END LOOP; " +
        (also_head ? "UPDATE taskhost.audit_head SET hash = prev; " : "") + "END $$");
  }
  int64_t count() { return conn.exec("SELECT count(*) FROM taskhost.audit_log").integer(0, 0); }
  std::vector<std::string> actions(const AuditFilter& f) {
    std::vector<std::string> out;
    for (const auto& e : list_audit(conn, f)) out.push_back(e.actor + " " + e.action);
    return out;
  }
};

TEST_F(Audit, RecordsRunTransitionsAndSchemaChangesWithTheirActors) {
  auto noop = test::install_fixture(conn, "noop", "noop.so");
  const std::string id = submit_run(conn, noop, Json::object(), "cli:alice").run_id;
  auto claimed = claim(conn, "worker:a", 1, std::chrono::seconds(60));
  ASSERT_EQ(claimed.size(), 1u);
  Completion ok;
  ok.run_id = id;
  ok.attempt = 1;
  ok.succeeded = true;
  ok.reason = "plugin returned";
  complete(conn, "worker:a", {ok});
  EXPECT_THROW(retry_run(conn, id, "cli:bob", "once more"), Error);  // it succeeded
  const std::string other = submit_run(conn, noop, Json::object(), "cli:alice").run_id;
  cancel_run(conn, other, "cli:bob", "wrong batch");
  retry_run(conn, other, "cli:bob", "right batch after all");

  AuditFilter about_id;
  about_id.run_id = id;
  EXPECT_EQ(actions(about_id),
            (std::vector<std::string>{"cli:alice run.submitted", "worker:a run.started",
                                      "worker:a run.succeeded"}));
  AuditFilter about_other;
  about_other.run_id = other;
  auto entries = list_audit(conn, about_other);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[1].action, "run.cancelled");
  EXPECT_EQ(
      entries[1].detail,
      (Json{{"from", "queued"}, {"to", "cancelled"}, {"attempt", 0}, {"reason", "wrong batch"}}));
  EXPECT_EQ(entries[2].action, "run.retried");

  AuditFilter schemas;
  schemas.action = "schema.";
  auto installed = list_audit(conn, schemas);
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0].action, "schema.installed");
  EXPECT_EQ(installed[0].subject, "noop@1.0.0");
  EXPECT_EQ(installed[0].seq, 1);

  auto v = verify_audit(conn);
  EXPECT_TRUE(v.ok()) << v.why;
  EXPECT_EQ(v.entries, count());
}

TEST_F(Audit, AnEntryCommitsAndRollsBackWithItsChange) {
  auto noop = test::install_fixture(conn, "noop", "noop.so");
  const std::string id = submit_run(conn, noop, Json::object(), "cli:alice").run_id;
  const int64_t before = count();
  {
    pg::Transaction tx(conn);
    tx.exec(
        "INSERT INTO taskhost.run_transitions (run_id, attempt, from_state, to_state, actor) "
        "VALUES ($1, 0, 'queued', 'cancelled', 'cli:alice')",
        {id});
    EXPECT_EQ(count(), before + 1);
  }  // rolled back
  EXPECT_EQ(count(), before);
  EXPECT_EQ(get_run(conn, id).state, RunState::queued);

  // The reverse: when the entry cannot be written, the change does not happen.
  db.connect_as_superuser().exec(
      "ALTER TABLE taskhost.audit_log ADD CONSTRAINT no_cancel CHECK (action <> 'run.cancelled') "
      "NOT VALID");
  EXPECT_THROW(cancel_run(conn, id, "cli:alice", "changed my mind"), pg::DbError);
  EXPECT_EQ(get_run(conn, id).state, RunState::queued);
  EXPECT_TRUE(verify_audit(conn).ok());
}

TEST_F(Audit, ThePlatformRoleCannotChangeOrRemoveEntries) {
  fill(3);
  for (const char* sql :
       {"UPDATE taskhost.audit_log SET actor = 'x' WHERE seq = 2",
        "DELETE FROM taskhost.audit_log WHERE seq = 2", "TRUNCATE taskhost.audit_log"}) {
    try {
      conn.exec(sql);
      ADD_FAILURE() << sql << " was allowed";
    } catch (const pg::DbError& e) {
      EXPECT_EQ(e.sqlstate(), "42501") << sql << ": " << e.what();  // insufficient_privilege
    }
  }
  // Even a superuser meets the trigger unless it turns triggers off.
  auto super = db.connect_as_superuser();
  try {
    super.exec("DELETE FROM taskhost.audit_log WHERE seq = 2");
    ADD_FAILURE() << "a superuser deleted an entry with the trigger on";
  } catch (const pg::DbError& e) {
    EXPECT_NE(std::string(e.what()).find("append-only (DELETE refused)"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(verify_audit(conn).entries, 3);
}

TEST_F(Audit, AChangedEntryIsCaughtAtThatEntry) {
  fill(10);
  attacker().exec("UPDATE taskhost.audit_log SET actor = 'Tester' WHERE seq = 4");
  auto v = verify_audit(conn);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(*v.broken_seq, 4);
  EXPECT_EQ(v.why, "entry 4 does not match its hash: its content was changed");
  EXPECT_EQ(v.entries, 3);
}

TEST_F(Audit, AChangedDetailOrTimeIsCaught) {
  fill(10);
  attacker().exec("UPDATE taskhost.audit_log SET detail = '{\"i\": 60}' WHERE seq = 6");
  EXPECT_EQ(verify_audit(conn).broken_seq, 6);
  attacker().exec("UPDATE taskhost.audit_log SET at = at - interval '1 microsecond' WHERE seq = 2");
  EXPECT_EQ(verify_audit(conn).broken_seq, 2);
}

TEST_F(Audit, ADeletedEntryIsCaughtWhereItWas) {
  fill(10);
  attacker().exec("DELETE FROM taskhost.audit_log WHERE seq = 5");
  auto v = verify_audit(conn);
  EXPECT_EQ(v.broken_seq, 5);
  EXPECT_EQ(v.why, "entry 5 is missing (the next entry is 6)");
}

TEST_F(Audit, SwappedEntriesAreCaughtAtTheFirst) {
  fill(10);
  attacker().exec(
      "UPDATE taskhost.audit_log a SET (at, actor, action, run_id, subject, detail, prev_hash, "
      "hash) = (SELECT at, actor, action, run_id, subject, detail, prev_hash, hash "
      "FROM taskhost.audit_log b WHERE b.seq = CASE a.seq WHEN 3 THEN 7 ELSE 3 END) "
      "WHERE seq IN (3, 7)");
  auto v = verify_audit(conn);
  EXPECT_EQ(v.broken_seq, 3);
  EXPECT_NE(v.why.find("reordered"), std::string::npos) << v.why;
}

TEST_F(Audit, ARemovedTailIsCaughtByTheHead) {
  fill(10);
  attacker().exec("DELETE FROM taskhost.audit_log WHERE seq > 8");
  auto v = verify_audit(conn);
  EXPECT_EQ(v.broken_seq, 9);
  EXPECT_EQ(v.why,
            "the chain head is at entry 10 but the log ends at entry 8: entries after it were "
            "removed or the head was altered");
}

// Rewriting entries 6.. with recomputed hashes: the chain itself stays
// consistent, so only the head (or an anchor outside the database) shows it.
TEST_F(Audit, ARewrittenSuffixIsCaughtUnlessTheHeadIsRewrittenToo) {
  fill(10);
  rewrite_suffix(6, false);
  auto v = verify_audit(conn);
  EXPECT_EQ(v.broken_seq, 11) << v.why;
  rewrite_suffix(6, true);
  EXPECT_TRUE(verify_audit(conn).ok())
      << "a rewrite that includes the head needs an outside anchor";
}

TEST_F(Audit, SignedCheckpointsCatchARewriteOfLogAndHead) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("taskhost-audit-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path key = dir / "audit.pem", pub = dir / "audit.pem.pub", file = dir / "cp.jsonl";
  fill(5);
  EXPECT_EQ(write_audit_checkpoint(conn, key, file), 5);
  EXPECT_EQ(fs::status(key).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  fill(5);
  EXPECT_EQ(write_audit_checkpoint(conn, key, file), 10);
  auto v = verify_audit_checkpoints(conn, pub, file);
  EXPECT_TRUE(v.ok()) << v.why;
  EXPECT_EQ(v.entries, 2);

  // Rewrite entries 4.. and the head consistently: the chain verifies, the
  // checkpoint at entry 5 does not.
  rewrite_suffix(4, true);
  EXPECT_TRUE(verify_audit(conn).ok());
  v = verify_audit_checkpoints(conn, pub, file);
  EXPECT_EQ(v.broken_seq, 5);
  EXPECT_NE(v.why.find("differs from the one signed at"), std::string::npos) << v.why;

  // A forged checkpoint line (the attacker's own hash) fails its signature.
  std::string text;
  {
    std::ifstream in(file);
    std::getline(in, text);
  }
  Json forged = Json::parse(text);
  forged["hash"] = std::string(64, 'f');
  std::ofstream(dir / "forged.jsonl") << forged.dump() << "\n";
  v = verify_audit_checkpoints(conn, pub, dir / "forged.jsonl");
  EXPECT_EQ(v.broken_seq, 5);
  EXPECT_NE(v.why.find("signature does not verify"), std::string::npos) << v.why;
  fs::remove_all(dir);
}

TEST_F(Audit, ConcurrentWritersLeaveOneContiguousChain) {
  fill(1);
  constexpr int writers = 8, per_writer = 5000, per_tx = 250;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      pg::Connection c = db.connect();
      // Batches, as the engine appends them (one call per transaction).
      for (int i = 0; i < per_writer; i += per_tx)
        c.exec(
            "SELECT taskhost.audit_append(array_agg(ROW($1, 'test.concurrent', NULL, g::text, "
            "'{}')::taskhost.audit_entry ORDER BY g)) FROM generate_series($2::int, $3::int) g",
            {"writer:" + std::to_string(w), i, i + per_tx - 1});
    });
  for (auto& t : threads) t.join();
  auto v = verify_audit(conn);
  EXPECT_TRUE(v.ok()) << v.why;
  EXPECT_EQ(v.entries, 1 + writers * per_writer);
  auto r = conn.exec(
      "SELECT count(DISTINCT actor), min(seq), max(seq) FROM taskhost.audit_log "
      "WHERE action = 'test.concurrent'");
  EXPECT_EQ(r.integer(0, 0), writers);
  EXPECT_EQ(r.integer(0, 1), 2);
  EXPECT_EQ(r.integer(0, 2), 1 + writers * per_writer);
}

}  // namespace
}  // namespace taskhost
