#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "config/host_config.hpp"
#include "config/host_keys.hpp"
#include "engine/worker.hpp"
#include "store/cluster.hpp"
#include "store/pg.hpp"

namespace taskhost::app {

// Where this process finds its database, plugins and config: the CLI's
// global options (or their environment variables), the same for `serve`.
struct HostOptions {
  std::string database_url;  // empty: the embedded PostgreSQL under home
  std::string home;          // empty: default_home()
  std::string plugin_dir;    // empty: <taskhost>/../lib/taskhost/plugins
  std::string config;        // host config file; empty: no allowances
  bool dev = false;          // accept schemas that pin sha256: any
};

// The one object a process makes from its options: the database (started
// and migrated when it is the embedded one), the host config and keys. Each
// part is made on first use, so `taskhost version` touches nothing. Not
// thread-safe; `serve` makes its connections with connect() up front.
class Host {
 public:
  explicit Host(HostOptions options);

  // The runtime role's connection string, carrying this host's session
  // settings (the webhook default URL database triggers read).
  const std::string& conninfo();
  // This process's own connection as the runtime role; the embedded database
  // is migrated first, a shared one must be.
  pg::Connection& db();
  // A new connection as the runtime role, for pools (the API server).
  pg::Connection connect();
  // Applies pending migrations as the owner, then seals secrets stored in
  // clear before migration 0008. Returns the number applied.
  int migrate_and_seal();

  const HostConfig& config();
  const HostKeys& host_keys();
  // The pepper API keys are stored under: api.pepper, or HOME/api.pepper.
  const std::string& api_pepper();
  std::filesystem::path plugin_dir() const;
  // Data files beside the bin/ holding taskhost: share/taskhost (the
  // portal's static files, the plugin scaffold), in a build tree or an
  // installed one alike.
  std::filesystem::path share_dir() const;
  std::filesystem::path home() const;
  EmbeddedCluster cluster() const { return EmbeddedCluster(home()); }
  bool embedded() const { return options_.database_url.empty(); }
  const HostOptions& options() const { return options_; }
  WorkerOptions worker_options();

 private:
  pg::Connection& owner_db();

  HostOptions options_;
  std::string conninfo_;
  std::optional<pg::Connection> db_, owner_db_;
  std::optional<HostConfig> config_;
  std::optional<HostKeys> host_keys_;
  std::string api_pepper_;
};

}  // namespace taskhost::app
