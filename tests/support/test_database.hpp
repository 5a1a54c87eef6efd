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

  const std::string& conninfo() const { return conninfo_; }
  pg::Connection connect() const { return pg::Connection(conninfo_); }
  // As the cluster's superuser: for tests that play an attacker.
  pg::Connection connect_as_superuser() const { return pg::Connection(superuser_); }

 private:
  std::string name_, admin_, conninfo_, superuser_;
};

}  // namespace taskhost::test
