// The audit log's append rate: 1 and 4 concurrent writers, one entry per
// transaction and batches of 100 (as the engine appends a claim or a
// completion). Median of 3 rounds. Usage: audit_bench CONNINFO
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <spdlog/spdlog.h>

#include "store/audit.hpp"
#include "store/migrate.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;

namespace {

// Entries per second with `writers` threads each appending `per_writer`
// entries, `batch` per transaction.
double round(const std::string& conninfo, int writers, int per_writer, int batch) {
  std::vector<pg::Connection> conns;
  for (int w = 0; w < writers; ++w) conns.emplace_back(conninfo);
  auto t = Clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; i += batch)
        conns[w].exec(
            "SELECT taskhost.audit_append(array_agg(ROW($1, 'bench.append', NULL, 'item ' || g, "
            "jsonb_build_object('bytes', g))::taskhost.audit_entry ORDER BY g)) "
            "FROM generate_series($2::int, $3::int) g",
            {"bench:" + std::to_string(w), i, i + batch - 1});
    });
  for (auto& th : threads) th.join();
  return writers * per_writer / std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: audit_bench CONNINFO\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  pg::Connection conn(argv[1]);
  pg::Connection owner(std::string(argv[1]) + " user=taskhost_owner");
  migrate(owner, bundled_migrations());
  for (int batch : {1, 100})
    for (int writers : {1, 4}) {
      std::vector<double> rates;
      for (int r = 0; r < 3; ++r)
        rates.push_back(round(argv[1], writers, batch == 1 ? 2000 : 20000, batch));
      std::sort(rates.begin(), rates.end());
      std::printf("audit append, %d writer%s, %3d entr%s per transaction  %8.0f entries/s\n",
                  writers, writers == 1 ? " " : "s", batch, batch == 1 ? "y  " : "ies", rates[1]);
    }
  auto v = verify_audit(conn);
  auto t = Clock::now();
  v = verify_audit(conn);
  std::printf("audit verify                                        %8.0f entries/s (%s)\n",
              v.entries / std::chrono::duration<double>(Clock::now() - t).count(),
              v.ok() ? "intact" : v.why.c_str());
  return 0;
}
