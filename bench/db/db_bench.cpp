// COPY through a plugin's Db::copy_in (SDK -> C ABI -> DatabaseService ->
// libpq, as the schema's role) against psql's \copy of the same rows as CSV.
// Median of 3 rounds each, alternating. Usage: db_bench CONNINFO ROWS CSV
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "plugin/host_api.hpp"
#include "rows.hpp"
#include "services/database.hpp"
#include "store/migrate.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;

namespace {

// A run's host with only the database: what a plugin's calls reach.
class BenchHost : public HostServices {
 public:
  explicit BenchHost(DatabaseService& db) : db_(db) {}
  void log(th_log_level, std::string_view) override {}
  void progress(uint64_t, uint64_t) override {}
  std::string checkpoint_get() override { return "null"; }
  void checkpoint_set(std::string_view) override {}
  void emit(std::string_view, std::string_view) override {}
  bool should_stop() override { return false; }
  std::string params() override { return "{}"; }
  std::string run_info() override { return "{}"; }
  void set_output(std::string_view) override {}
  void attach_file(std::string_view, std::string_view, std::string) override {}
  Json object_storage(const std::string&, const Json&, const ByteSource&,
                      const ByteSink&) override {
    return refuse();
  }
  Json http(const std::string&, const Json&, const ByteSource&, const ByteSink&) override {
    return refuse();
  }
  Json sftp(const std::string&, const Json&, const ByteSource&, const ByteSink&) override {
    return refuse();
  }
  Json db(const std::string& op, const Json& request, const ByteSource& in,
          const ByteSink& out) override {
    return db_.call(op, request, in, out);
  }

 private:
  static Json refuse() { throw Error(ErrorKind::refused, "not granted"); }
  DatabaseService& db_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: db_bench CONNINFO ROWS CSV\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const std::string conninfo = argv[1], csv = argv[3];
  const int64_t rows = std::stoll(argv[2]);
  // The table is the database owner's, on the list schemas may be granted.
  pg::Connection admin(conninfo + " user=taskhost_owner");
  migrate(admin, bundled_migrations());
  admin.exec_script(
      "DROP TABLE IF EXISTS public.copy_bench; CREATE TABLE public.copy_bench (id bigint, "
      "claim_id text, status text, amount numeric(12,2), quantity int, ndc text, filled_on date, "
      "pharmacy text, note text, updated_at timestamptz);"
      "GRANT ALL ON public.copy_bench TO taskhost_provisioner WITH GRANT OPTION");
  std::vector<Diagnostic> errors;
  auto schema = parse_schema(
      "name: copybench\nversion: 1.0.0\nplugin: { path: none.so, sha256: " + std::string(64, 'a') +
          " }\ncapabilities:\n  db: { connection: default, tables: { copy_bench: write } }\n",
      "copybench.yaml", &errors);
  const auto target = database_target({}, conninfo, "default");
  provision_db_roles(*schema, target);

  // The same rows as CSV (the peer) and in COPY's text format (what
  // copy_in sends), so the server's parsing cost shows apart.
  const std::string text = csv + ".txt";
  {
    std::ofstream out_csv(csv, std::ios::binary), out_text(text, std::ios::binary);
    char buf[256];
    for (int64_t i = 0; i < rows; ++i) {
      auto v = bench::row(i, buf);
      for (int k = 0; k < 10; ++k) {
        (out_csv << (k ? "," : "")).write(v[k].data(), v[k].size());
        (out_text << (k ? "\t" : "")).write(v[k].data(), v[k].size());
      }
      out_csv << '\n';
      out_text << '\n';
    }
  }
  const auto csv_mib = static_cast<double>(std::filesystem::file_size(csv)) / (1 << 20);

  DatabaseService service(schema->name, db_roles(*schema), *schema->capabilities.db, target,
                          [](const ServiceCall&) {});
  BenchHost host(service);
  GrantedServices granted;
  granted.db = true;
  th_host_api api = make_host_api(granted);

  auto seconds = [](auto&& f) {
    auto t = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  auto psql = [&](const std::string& file, const char* format) {
    admin.exec("TRUNCATE public.copy_bench");
    const std::string cmd = "psql '" + conninfo + "' -qc \"\\copy public.copy_bench FROM '" + file +
                            "' WITH (FORMAT " + format + ")\"";
    double s = seconds([&] {
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("psql failed: " + cmd);
    });
    if (admin.exec("SELECT count(*) FROM public.copy_bench").integer(0, 0) != rows)
      throw std::runtime_error("psql loaded a different count");
    return s;
  };
  std::vector<double> sdk, psql_csv, psql_text;
  for (int round = 0; round < 3; ++round) {
    admin.exec("TRUNCATE public.copy_bench");
    int64_t loaded = 0;
    sdk.push_back(seconds([&] { loaded = bench::copy_in(&api, as_host(host), rows); }));
    if (loaded != rows) throw std::runtime_error("copy_in loaded " + std::to_string(loaded));
    psql_csv.push_back(psql(csv, "csv"));
    psql_text.push_back(psql(text, "text"));
  }
  // Single statements: what a call costs over a plain libpq statement on an
  // open connection (each commits alone; the host's audit append, one
  // platform transaction per call, is not included here: bench/audit).
  const int64_t statements = 2000;
  std::vector<double> each, plain;
  for (int round = 0; round < 3; ++round) {
    admin.exec("TRUNCATE public.copy_bench");
    each.push_back(seconds([&] { bench::execute_each(&api, as_host(host), statements); }));
    admin.exec("TRUNCATE public.copy_bench");
    plain.push_back(seconds([&] {
      char buf[256];
      for (int64_t i = 0; i < statements; ++i) {
        std::vector<pg::Param> p;
        for (auto v : bench::row(i, buf)) p.emplace_back(std::string(v));
        admin.exec("INSERT INTO public.copy_bench VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                   p);
      }
    }));
  }
  admin.exec("DROP TABLE public.copy_bench");
  std::filesystem::remove(text);
  const double a = median(sdk), b = median(psql_csv), c = median(psql_text);
  std::printf("%lld rows x 10 columns (%.0f MiB as CSV), median of 3\n",
              static_cast<long long>(rows), csv_mib);
  std::printf("%-28s %7.2f s %10.0f rows/s\n", "taskhost Db::copy_in", a, rows / a);
  std::printf("%-28s %7.2f s %10.0f rows/s   ratio %.2f\n", "psql \\copy, the same CSV", b,
              rows / b, b / a);
  std::printf("%-28s %7.2f s %10.0f rows/s   ratio %.2f\n", "psql \\copy, text format", c, rows / c,
              c / a);
  const double e = median(each), f = median(plain);
  std::printf("\n%lld single-row INSERTs, each its own transaction, median of 3\n",
              static_cast<long long>(statements));
  std::printf("%-28s %7.3f ms each %8.0f /s\n", "taskhost Db::execute", e * 1000 / statements,
              statements / e);
  std::printf("%-28s %7.3f ms each %8.0f /s   ratio %.2f\n", "libpq, one connection",
              f * 1000 / statements, statements / f, f / e);
}
