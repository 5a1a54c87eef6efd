// The benchmark's rows: row i's ten values, the same for both sides.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

inline const std::vector<std::string> columns = {"id",       "claim_id",  "status",    "amount",
                                                 "quantity", "ndc",       "filled_on", "pharmacy",
                                                 "note",     "updated_at"};

// Row i's ten values, formatted into buf; each a view into it.
inline std::array<std::string_view, 10> row(int64_t i, char (&buf)[256]) {
  static const char* status[] = {"pending", "sent", "failed"};
  std::array<std::string_view, 10> v;
  int offsets[11], n = 0;
  auto field = [&](int k, const char* fmt, auto... args) {
    offsets[k] = n;
    n += std::snprintf(buf + n, sizeof buf - n, fmt, args...);
  };
  field(0, "%lld", static_cast<long long>(i));
  field(1, "C%010lld", static_cast<long long>(i * 7919 % 10000000000LL));
  field(2, "%s", status[i % 3]);
  field(3, "%lld.%02lld", static_cast<long long>(i % 100000), static_cast<long long>(i % 100));
  field(4, "%lld", static_cast<long long>(i % 90 + 1));
  field(5, "%011lld", static_cast<long long>(i * 104729 % 100000000000LL));
  field(6, "2026-%02lld-%02lld", static_cast<long long>(i % 12 + 1),
        static_cast<long long>(i % 28 + 1));
  field(7, "Pharmacy %lld", static_cast<long long>(i % 5000));
  field(8, "refill %lld of 7", static_cast<long long>(i % 7 + 1));
  field(9, "2026-11-22 %02lld:%02lld:%02lld+00", static_cast<long long>(i / 3600 % 24),
        static_cast<long long>(i / 60 % 60), static_cast<long long>(i % 60));
  offsets[10] = n;
  for (int k = 0; k < 10; ++k) v[k] = {buf + offsets[k], size_t(offsets[k + 1] - offsets[k])};
  return v;
}

}  // namespace bench

#include <taskhost/plugin.h>

namespace bench {
// Loads rows 0..n-1 into copy_bench through the SDK's Db::copy_in, as a
// plugin would (copy_in.cpp: the SDK and the host each have their own Error,
// so they live in separate files); returns the rows loaded.
int64_t copy_in(const th_host_api* api, th_host* host, int64_t n);
// Inserts rows 0..n-1 with one execute() each, each its own transaction.
void execute_each(const th_host_api* api, th_host* host, int64_t n);
}  // namespace bench
