// Four eyes in the application layer and in the database beneath it: a run
// of a schema requiring approval waits until an approver who did not submit
// it decides, whatever the submitter's roles; the database refuses rows that
// would skip the decision even when the application layer is bypassed.
#include <gtest/gtest.h>

#include "app/app.hpp"
#include "store/queue.hpp"
#include "support/fixtures.hpp"
#include "support/test_database.hpp"

namespace taskhost {
namespace {

using app::Actor;
using app::App;

class Approvals : public ::testing::Test {
 protected:
  void SetUp() override {
    pg::Connection conn = db_.connect();
    test::install_fixture(conn, "foureyes", "noop.so",
                          "permissions: { run: [operator, admin], view: [viewer, operator, admin] "
                          "}\napproval: { required: true, approvers: [admin] }\n");
  }

  App as(const std::string& name, std::set<std::string> roles) {
    return App(host_, conn_, Actor{name, std::move(roles)});
  }
  Submitted submit(App& a, bool dry_run = false) {
    return a.submit(a.runnable("foureyes"), Json::object(), std::nullopt, dry_run);
  }
  std::vector<std::string> actions(const std::string& run_id) {
    std::vector<std::string> out;
    AuditFilter f;
    f.run_id = run_id;
    for (const auto& e : list_audit(conn_, f)) out.push_back(e.action);
    return out;
  }

  app::HostOptions options() const {
    app::HostOptions o;
    o.database_url = db_.conninfo();
    o.plugin_dir = test::fixture_dir;
    return o;
  }

  test::TestDatabase db_;
  app::Host host_{options()};
  pg::Connection conn_ = db_.connect();
};

TEST_F(Approvals, TheSubmitterNeverApprovesWhateverItsRoles) {
  App alice = as("cli:alice", {"admin"});
  auto s = submit(alice);
  EXPECT_EQ(s.state, RunState::awaiting_approval);
  EXPECT_TRUE(claim(conn_, "w", 10, std::chrono::seconds(30)).empty())
      << "a run awaiting approval is not claimable";

  // The admin who submitted it, through either front door.
  try {
    alice.approve(s.run_id, "mine");
    ADD_FAILURE() << "the submitter approved its own run";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("cli:alice submitted run " + s.run_id +
                                         " and may not approve or reject it"),
              std::string::npos)
        << e.what();
  }
  App alice_by_key = as("api:alice", {"admin"});
  EXPECT_EQ(test::kind_of([&] { alice_by_key.approve(s.run_id, ""); }), ErrorKind::refused)
      << "api:alice is the same person as cli:alice";
  EXPECT_EQ(test::kind_of([&] { alice_by_key.reject(s.run_id, "no"); }), ErrorKind::refused);

  // An operator may run and control, but is no approver here.
  App carol = as("api:carol", {"operator"});
  try {
    carol.approve(s.run_id, "");
    ADD_FAILURE() << "an operator approved";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("(roles: operator) may not approve or reject runs of "
                                         "foureyes@1.0.0 (approval.approvers: admin)"),
              std::string::npos)
        << e.what();
  }
  // A viewer without view on it would not even find it; nobody at all cannot.
  EXPECT_EQ(test::kind_of([&] { as("api:mallory", {}).approve(s.run_id, ""); }),
            ErrorKind::not_found);

  App bob = as("api:bob", {"admin"});
  EXPECT_EQ(test::kind_of([&] { bob.reject(s.run_id, ""); }), ErrorKind::invalid)
      << "a rejection needs a reason";
  EXPECT_EQ(bob.approve(s.run_id, "looked at it"), RunState::queued);
  EXPECT_EQ(test::kind_of([&] { bob.approve(s.run_id, ""); }), ErrorKind::conflict)
      << "decided once";
  taskhost::Run r = bob.run(s.run_id);
  EXPECT_EQ(r.state, RunState::queued);
  ASSERT_TRUE(r.approval);
  EXPECT_EQ(r.approval->decision, "approved");
  EXPECT_EQ(r.approval->actor, "api:bob");
  EXPECT_EQ(r.approval->reason, "looked at it");
  EXPECT_EQ(claim(conn_, "w", 10, std::chrono::seconds(30)).size(), 1u) << "now it runs";
  EXPECT_EQ(actions(s.run_id),
            (std::vector<std::string>{"run.submitted", "run.approved", "run.started"}));
}

TEST_F(Approvals, RejectedIsFinalAndACancelledOneIsNeverRetriedUnapproved) {
  App alice = as("cli:alice", {"operator"});
  App bob = as("cli:bob", {"admin"});
  auto rejected = submit(alice);
  EXPECT_EQ(bob.reject(rejected.run_id, "wrong month"), RunState::rejected);
  EXPECT_TRUE(is_final(bob.run(rejected.run_id).state));
  EXPECT_EQ(test::kind_of([&] { bob.control(app::RunControl::retry, rejected.run_id, ""); }),
            ErrorKind::conflict);
  EXPECT_EQ(actions(rejected.run_id), (std::vector<std::string>{"run.submitted", "run.rejected"}));

  auto withdrawn = submit(alice);
  EXPECT_EQ(alice.control(app::RunControl::cancel, withdrawn.run_id, "not needed"),
            RunState::cancelled)
      << "the submitter may withdraw it";
  try {
    bob.control(app::RunControl::retry, withdrawn.run_id, "");
    ADD_FAILURE() << "a never-approved run was retried";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::conflict);
    EXPECT_NE(std::string(e.what()).find("cancelled before anyone approved it"), std::string::npos)
        << e.what();
  }
}

TEST_F(Approvals, ADryRunNeedsNoApproval) {
  App alice = as("cli:alice", {"operator"});
  auto s = submit(alice, true);
  EXPECT_EQ(s.state, RunState::queued);
  taskhost::Run r = alice.run(s.run_id);
  EXPECT_TRUE(r.dry_run);
  EXPECT_FALSE(r.approval_required);
}

// What the application layer checks, the database checks again: the runtime
// role's own SQL cannot queue an unapproved run, record its submitter's
// approval, or rewrite who submitted it.
TEST_F(Approvals, TheDatabaseRefusesWhatWouldSkipTheDecision) {
  App alice = as("cli:alice", {"admin"});
  const std::string id = submit(alice).run_id;
  pg::Connection sql = db_.connect();  // the runtime role, as every taskhost process
  auto refused = [&](const std::string& statement, std::vector<pg::Param> params,
                     const std::string& why) {
    try {
      sql.exec(statement, std::move(params));
      ADD_FAILURE() << statement << " was allowed";
    } catch (const pg::DbError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused("UPDATE taskhost.runs SET state = 'queued' WHERE id = $1", {id},
          "needs an approval before it may be queued");
  refused(
      "INSERT INTO taskhost.run_approvals (run_id, decision, actor) VALUES ($1, 'approved', "
      "'api:alice')",
      {id}, "its submitter may not decide on it");
  refused("UPDATE taskhost.runs SET actor = 'cli:mallory' WHERE id = $1", {id},
          "its submitter, dry_run and approval_required never change");
  refused("UPDATE taskhost.runs SET approval_required = false WHERE id = $1", {id}, "never change");
  refused(
      "INSERT INTO taskhost.runs (schema_id, schema_name, params, state, actor) "
      "SELECT schema_id, schema_name, params, 'queued', 'cli:mallory' FROM taskhost.runs "
      "WHERE id = $1",
      {id}, "needs an approval: it must start awaiting_approval");
  refused("UPDATE taskhost.run_approvals SET decision = 'approved'", {}, "permission denied");
  EXPECT_EQ(get_run(sql, id).state, RunState::awaiting_approval);

  // Through the front door, by someone else, it moves.
  EXPECT_EQ(as("cli:bob", {"admin"}).approve(id, ""), RunState::queued);
}

}  // namespace
}  // namespace taskhost
