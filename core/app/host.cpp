#include "app/host.hpp"

#include <spdlog/spdlog.h>

#include <boost/dll/runtime_symbol_info.hpp>

#include "store/audit.hpp"
#include "store/migrate.hpp"
#include "webhooks/secrets.hpp"

namespace taskhost::app {

namespace fs = std::filesystem;

Host::Host(HostOptions options) : options_(std::move(options)) {}

fs::path Host::home() const {
  return options_.home.empty() ? default_home() : fs::path(options_.home);
}

fs::path Host::plugin_dir() const {
  if (!options_.plugin_dir.empty()) return options_.plugin_dir;
  return fs::path(boost::dll::program_location().parent_path().parent_path().string()) /
         "lib/taskhost/plugins";
}

fs::path Host::share_dir() const {
  return fs::path(boost::dll::program_location().parent_path().parent_path().string()) /
         "share/taskhost";
}

const HostConfig& Host::config() {
  if (!config_) {
    config_ = options_.config.empty() ? HostConfig() : load_host_config(options_.config);
    if (config_->object_store_dir.empty()) config_->object_store_dir = home() / "objects";
    if (!config_->host_key) config_->host_key_file = home() / "host.key";
  }
  return *config_;
}

const HostKeys& Host::host_keys() {
  if (!host_keys_) host_keys_ = HostKeys::load(config());
  return *host_keys_;
}

const std::string& Host::api_pepper() {
  if (api_pepper_.empty())
    api_pepper_ = config().api_pepper
                      ? config().api_pepper->resolve()
                      : load_or_make_key_file(home() / "api.pepper", "the API key pepper");
  return api_pepper_;
}

const std::string& Host::conninfo() {
  if (conninfo_.empty()) {
    const std::string base = embedded() ? cluster().ensure_running() : options_.database_url;
    // State changes this host makes announce themselves to its default URL.
    std::vector<std::pair<std::string, std::string>> settings;
    if (!config().webhook_default_url.empty())
      settings.emplace_back("taskhost.webhook_default_url", config().webhook_default_url);
    conninfo_ = pg::with_settings(base, settings);
    // Each session of the runtime role is an audit sealer, so that `audit
    // verify` tells what this host appended from what someone with the
    // database password did. (A database that is not the platform's, such
    // as a configured one reached as a role of this name, has no sealers.)
    pg::set_session_setup("taskhost", [keys = host_keys()](pg::Connection& c) {
      try {
        open_audit_sealer(c, keys);
      } catch (const pg::DbError& e) {
        if (e.sqlstate() != "42883" && e.sqlstate() != "3F000") throw;
      }
    });
  }
  return conninfo_;
}

pg::Connection& Host::db() {
  if (!db_) {
    // The embedded database is private to this host: keep it current, as its
    // owner. A shared one is migrated deliberately, with `taskhost migrate`
    // given the owner role's URL.
    if (embedded()) {
      migrate_and_seal();
      owner_db_.reset();  // the owner's connection never outlives the migration
    }
    db_.emplace(conninfo());
    if (!embedded()) require_migrated(*db_, bundled_migrations());
  }
  return *db_;
}

pg::Connection Host::connect() {
  db();  // migrated (embedded) or checked
  return pg::Connection(conninfo());
}

pg::Connection& Host::owner_db() {
  if (!owner_db_) {
    config();
    owner_db_.emplace(embedded() ? (conninfo(), cluster().owner_conninfo())
                                 : options_.database_url);
  }
  return *owner_db_;
}

int Host::migrate_and_seal() {
  int n = migrate(owner_db(), bundled_migrations());
  open_audit_sealer(*owner_db_, host_keys());
  if (webhook_secrets_in_clear(*owner_db_))
    spdlog::info("sealed {} webhook secret(s) stored in clear",
                 reseal_webhook_secrets(*owner_db_, host_keys(), "host:migrate"));
  return n;
}

WorkerOptions Host::worker_options() {
  WorkerOptions o;
  o.conninfo = conninfo();
  o.config = config();
  o.webhooks->allow_destinations = o.config.allow_destinations;
  o.webhooks->keys = host_keys();
  o.plugin_dir = plugin_dir();
  o.dev_mode = options_.dev;
  o.id = default_worker_id();
  return o;
}

}  // namespace taskhost::app
