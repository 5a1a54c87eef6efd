#include "store/cluster.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/error.hpp"
#include "common/process.hpp"
#include "store/pg.hpp"

namespace fs = std::filesystem;

namespace taskhost {
namespace {

constexpr const char* system_user = "postgres";

// The newest installed PostgreSQL's server binaries (Debian keeps them out of
// PATH), or $TASKHOST_PG_BINDIR.
fs::path server_bindir() {
  if (const char* dir = std::getenv("TASKHOST_PG_BINDIR")) return dir;
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec))
    if (fs::exists(entry.path() / "bin" / "pg_ctl")) found.push_back(entry.path() / "bin");
  if (found.empty())
    throw Error(ErrorKind::environment,
                "no PostgreSQL server found under /usr/lib/postgresql (install the Debian package "
                "postgresql, or set TASKHOST_PG_BINDIR, or set TASKHOST_DATABASE_URL)");
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoi(a.parent_path().filename().string()) <
           std::stoi(b.parent_path().filename().string());
  });
  return found.back();
}

bool is_root() { return ::geteuid() == 0; }

// argv run as the cluster's owner.
std::vector<std::string> as_owner(std::vector<std::string> argv) {
  if (is_root()) argv.insert(argv.begin(), {"runuser", "-u", system_user, "--"});
  return argv;
}

void give_to_owner(const fs::path& p) {
  if (!is_root()) return;
  struct passwd* pw = ::getpwnam(system_user);
  if (pw == nullptr)
    throw Error(ErrorKind::environment,
                "running as root, but there is no 'postgres' system user to run the embedded "
                "PostgreSQL as (install the Debian package postgresql)");
  if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    throw Error(ErrorKind::environment, "chown " + p.string() + ": " + std::strerror(errno));
}

std::string tail(const fs::path& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "\n  " + all[i];
  return out;
}

void check(const ProcessResult& r, const std::string& what) {
  if (r.exit_code != 0)
    throw Error(ErrorKind::environment,
                what + " failed (exit " + std::to_string(r.exit_code) + "):\n" + r.output);
}

// Holds an exclusive lock on HOME/cluster.lock: one process at a time
// creates or starts the cluster.
class HomeLock {
 public:
  explicit HomeLock(const fs::path& file)
      : fd_(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0)
      throw Error(ErrorKind::environment,
                  "cannot lock " + file.string() + ": " + std::strerror(errno));
  }
  ~HomeLock() { ::close(fd_); }
  HomeLock(const HomeLock&) = delete;
  HomeLock& operator=(const HomeLock&) = delete;

 private:
  int fd_;
};

}  // namespace

fs::path default_home() {
  if (const char* h = std::getenv("TASKHOST_HOME"); h && *h) return h;
  if (is_root()) return "/var/lib/taskhost";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return fs::path(x) / "taskhost";
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0')
    throw Error(ErrorKind::environment, "neither TASKHOST_HOME nor HOME is set");
  return fs::path(home) / ".local" / "share" / "taskhost";
}

EmbeddedCluster::EmbeddedCluster(fs::path home)
    : home_(fs::absolute(home)),
      data_(home_ / "postgres"),
      socket_dir_(home_ / "run"),
      log_(home_ / "postgres.log") {
  // A unix socket path must fit in sun_path (108 bytes with its NUL).
  if ((socket_dir_ / ".s.PGSQL.5432").string().size() > 107)
    throw Error(ErrorKind::invalid,
                "TASKHOST_HOME " + home_.string() +
                    " is too long for a unix socket path; choose a shorter one");
}

std::string EmbeddedCluster::conninfo(const std::string& dbname, const std::string& user) const {
  return "host=" + socket_dir_.string() + " port=5432 dbname=" + dbname + " user=" + user +
         " connect_timeout=10";
}

bool EmbeddedCluster::running() const {
  if (!fs::exists(data_ / "PG_VERSION")) return false;
  return run_process(
             as_owner({(server_bindir() / "pg_ctl").string(), "status", "-D", data_.string()}))
             .exit_code == 0;
}

std::string EmbeddedCluster::ensure_running() {
  fs::create_directories(home_);
  HomeLock lock(home_ / "cluster.lock");
  const fs::path bin = server_bindir();

  if (!fs::exists(data_ / "PG_VERSION")) {
    // initdb into a scratch folder and rename, so a crash never leaves a
    // half-made cluster where a real one is expected.
    const fs::path scratch = home_ / "postgres.init";
    fs::remove_all(scratch);
    fs::create_directories(scratch);
    fs::permissions(scratch, fs::perms::owner_all);
    give_to_owner(scratch);
    spdlog::info("creating the embedded PostgreSQL cluster in {}", data_.string());
    check(run_process(as_owner({(bin / "initdb").string(), "-D", scratch.string(), "-U", "postgres",
                                "--auth-local=trust", "--auth-host=reject", "-E", "UTF8",
                                "--no-locale", "--no-instructions"})),
          "initdb");
    std::ofstream conf(scratch / "postgresql.conf", std::ios::app);
    conf << "\n# taskhost embedded cluster: unix socket only\n"
         << "listen_addresses = ''\n"
         << "unix_socket_directories = '" << socket_dir_.string() << "'\n"
         << "unix_socket_permissions = 0700\n"
         << "port = 5432\n";
    conf.close();
    fs::rename(scratch, data_);
  }
  fs::create_directories(socket_dir_);
  fs::permissions(socket_dir_, fs::perms::owner_all);
  give_to_owner(socket_dir_);

  if (!running()) {
    if (is_root() && run_process(as_owner({"test", "-x", data_.string()})).exit_code != 0)
      throw Error(ErrorKind::environment,
                  "the postgres user cannot reach " + data_.string() +
                      ": a parent directory is closed to it; set TASKHOST_HOME elsewhere");
    if (!fs::exists(log_)) std::ofstream(log_).close();
    give_to_owner(log_);
    auto r = run_process(as_owner({(bin / "pg_ctl").string(), "start", "-D", data_.string(), "-l",
                                   log_.string(), "-w", "-t", "60"}));
    if (r.exit_code != 0)
      throw Error(ErrorKind::environment, "cannot start the embedded PostgreSQL in " +
                                              data_.string() + ":\n" + r.output +
                                              "log tail:" + tail(log_, 20));
    spdlog::info("started the embedded PostgreSQL ({})", socket_dir_.string());
  }

  bootstrap_roles();
  return conninfo();
}

void EmbeddedCluster::bootstrap_roles() const {
  pg::Connection admin(conninfo("postgres", "postgres"));
  // One look on every start; the work only on the first (or after an upgrade
  // from the single all-powerful role).
  if (admin
          .exec("SELECT count(*) = 4 AND bool_and(NOT rolcreatedb AND NOT rolsuper AND "
                "  (rolcreaterole = (rolname = 'taskhost_provisioner'))) AND "
                "  (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'taskhost') = "
                "  'taskhost_owner' "
                "FROM pg_roles WHERE rolname IN ('taskhost', 'taskhost_owner', "
                "'taskhost_provisioner', 'taskhost_data')")
          .boolean(0, 0))
    return;
  admin.exec_script(
      "DO $$ BEGIN "
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost_owner') THEN "
      "    CREATE ROLE taskhost_owner LOGIN; END IF; "
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost') THEN "
      "    CREATE ROLE taskhost LOGIN; END IF; "
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost_provisioner') THEN "
      "    CREATE ROLE taskhost_provisioner NOLOGIN CREATEROLE; END IF; "
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost_data') THEN "
      "    CREATE ROLE taskhost_data NOLOGIN; END IF; "
      "END $$;"
      "ALTER ROLE taskhost_owner LOGIN NOCREATEDB NOCREATEROLE;"
      "ALTER ROLE taskhost LOGIN NOCREATEDB NOCREATEROLE;"
      "ALTER ROLE taskhost_provisioner NOLOGIN NOCREATEDB CREATEROLE;"
      "ALTER ROLE taskhost_data NOLOGIN NOCREATEDB NOCREATEROLE;"
      // The owner hands each its function (migrations 0007 and 0010).
      "GRANT taskhost_provisioner, taskhost_data TO taskhost_owner");
  if (admin.exec("SELECT 1 FROM pg_database WHERE datname = 'taskhost'").rows() == 0) {
    admin.exec("CREATE DATABASE taskhost OWNER taskhost_owner");
    return;
  }
  // A cluster made before the split: the runtime role owned everything.
  if (admin
          .exec("SELECT pg_get_userbyid(datdba) = 'taskhost_owner' FROM pg_database "
                "WHERE datname = 'taskhost'")
          .boolean(0, 0))
    return;  // only a role was missing
  spdlog::info("moving the platform database's objects from role taskhost to taskhost_owner");
  admin.exec("ALTER DATABASE taskhost OWNER TO taskhost_owner");
  pg::Connection platform(conninfo("taskhost", "postgres"));
  platform.exec("REASSIGN OWNED BY taskhost TO taskhost_owner");
  // Memberships it took to provision schema roles.
  platform.exec(
      "DO $$ DECLARE r record; BEGIN "
      "  FOR r IN SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
      "    WHERE m.member = 'taskhost'::regrole LOOP "
      "    EXECUTE format('REVOKE %I FROM taskhost', r.rolname); END LOOP; END $$");
}

void EmbeddedCluster::stop() {
  if (!fs::exists(data_ / "PG_VERSION")) return;
  HomeLock lock(home_ / "cluster.lock");
  if (!running()) return;
  check(run_process(as_owner({(server_bindir() / "pg_ctl").string(), "stop", "-D", data_.string(),
                              "-m", "fast", "-w"})),
        "pg_ctl stop");
}

}  // namespace taskhost
