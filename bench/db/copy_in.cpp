// The plugin side of bench/db: rows through Db, as the SDK sends them.
#include <taskhost/sdk.hpp>

#include "rows.hpp"

int64_t bench::copy_in(const th_host_api* api, th_host* host, int64_t n) {
  taskhost::Context ctx(api, host);
  int64_t i = 0;
  char buf[256];
  return ctx.db().copy_in("copy_bench", columns, [&](taskhost::CopyRow& r) {
    if (i == n) return false;
    for (auto v : row(i++, buf)) r.add(v);
    return true;
  });
}

void bench::execute_each(const th_host_api* api, th_host* host, int64_t n) {
  taskhost::Context ctx(api, host);
  char buf[256];
  for (int64_t i = 0; i < n; ++i) {
    auto v = row(i, buf);
    ctx.db().execute("INSERT INTO copy_bench VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                     {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]});
  }
}
