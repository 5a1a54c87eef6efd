#pragma once

#include <filesystem>
#include <string>

namespace taskhost {

// Where taskhost keeps its embedded database when TASKHOST_DATABASE_URL is
// unset: $TASKHOST_HOME if set; else /var/lib/taskhost when running as root;
// else $XDG_DATA_HOME/taskhost (default ~/.local/share/taskhost).
std::filesystem::path default_home();

// A private PostgreSQL cluster under HOME/postgres, reachable only through a
// unix socket in HOME/run (mode 0700). It runs as the invoking user, or as
// the `postgres` system user when invoked as root (PostgreSQL refuses root).
// Local connections are trusted: the socket directory's permissions are the
// access control.
class EmbeddedCluster {
 public:
  explicit EmbeddedCluster(std::filesystem::path home);

  // Creates the cluster on first use and starts it unless it runs already;
  // ensures the roles (taskhost_owner owns the `taskhost` database and
  // applies migrations, taskhost is the runtime, taskhost_provisioner makes
  // schema roles: migrations/0007_roles.sql) and the database. Safe to call
  // from several processes at once. Returns a libpq connection string for
  // the `taskhost` database as the runtime role. Throws Error(environment)
  // with PostgreSQL's log tail on failure.
  std::string ensure_running();

  // Stops the cluster if it runs (fast shutdown).
  void stop();

  bool running() const;

  // Connection string for database dbname as role user.
  std::string conninfo(const std::string& dbname = "taskhost",
                       const std::string& user = "taskhost") const;
  // As the owner role: for `taskhost migrate` and nothing else.
  std::string owner_conninfo() const { return conninfo("taskhost", "taskhost_owner"); }

  const std::filesystem::path& home() const { return home_; }

 private:
  // As the cluster's superuser: makes the three roles and the database, and
  // hands a database made before the split to the owner role.
  void bootstrap_roles() const;

  std::filesystem::path home_, data_, socket_dir_, log_;
};

}  // namespace taskhost
