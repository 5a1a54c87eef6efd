#pragma once

#include <string>

#include "store/pg.hpp"

namespace taskhost::test {

// A migrated database of its own for one test, in the test run's cluster
// (TASKHOST_TEST_HOME), dropped again when the test ends.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // As the runtime role (taskhost), as workers and the CLI connect.
  const std::string& conninfo() const { return conninfo_; }
  pg::Connection connect() const { return pg::Connection(conninfo_); }
  // As the owner role (taskhost_owner), as `taskhost migrate` connects.
  const std::string& owner_conninfo() const { return owner_; }
  pg::Connection connect_as_owner() const { return pg::Connection(owner_); }
  const std::string& superuser_conninfo() const { return superuser_; }
  // As the cluster's superuser: for tests that play an attacker.
  pg::Connection connect_as_superuser() const { return pg::Connection(superuser_); }

 private:
  std::string name_, admin_, conninfo_, owner_, superuser_;
};

}  // namespace taskhost::test
