#include "support/test_database.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "store/cluster.hpp"
#include "store/migrate.hpp"

namespace taskhost::test {

TestDatabase::TestDatabase() {
  const char* home = std::getenv("TASKHOST_TEST_HOME");
  if (home == nullptr) throw std::runtime_error("TASKHOST_TEST_HOME is unset: run through ctest");
  static std::atomic<int> counter{0};
  name_ = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  EmbeddedCluster cluster(home);
  admin_ = cluster.conninfo("postgres", "postgres");
  pg::Connection(admin_).exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  pg::Connection(admin_).exec("CREATE DATABASE " + name_ + " OWNER taskhost_owner");
  conninfo_ = cluster.conninfo(name_);
  owner_ = cluster.conninfo(name_, "taskhost_owner");
  superuser_ = cluster.conninfo(name_, "postgres");
  pg::Connection owner(owner_);
  migrate(owner, bundled_migrations());
}

TestDatabase::~TestDatabase() {
  try {
    pg::Connection(admin_).exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  } catch (...) {
    // A leftover database dies with the test cluster.
  }
}

}  // namespace taskhost::test
