// The plugin side of bench/db: rows through Db::copy_in, as the SDK sends them.
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
