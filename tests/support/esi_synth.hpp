#pragma once

#include <taskhost/fixedwidth.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace taskhost::testing {

// Synthetic ESI accumulator files (schemas/layouts/esi_rxaccum_v10.yaml) for
// tests and benchmarks: made-up members, names with Latin-1 letters, DQ and
// DR records with accepted and rejected responses, one to four accumulator
// blocks each with signed amounts. No real data: every value is drawn from
// a seeded generator, so a seed always gives the same file.
struct EsiSynthOptions {
  uint64_t records = 100;  // DT records
  uint64_t seed = 1;
  bool crlf = false;
  std::string batch = "0000001";
  std::string id_prefix = "TX";  // transmission ids are prefix + sequence number
};

// What a correct parser must find in the file.
struct EsiExpected {
  uint64_t dt = 0, dq = 0, dr_accepted = 0, dr_rejected = 0;
  // policy (cardholder_id_alternate) -> {deductible cents, out-of-pocket
  // cents}: signed applied amounts of qualifiers 04 / 05 over DQ records and
  // DR records whose status is A. Every policy in the file is listed.
  std::map<std::string, std::pair<int64_t, int64_t>> totals;
};

// Writes the file in pieces to write (a 1.7 GB file is never in memory).
EsiExpected esi_synth(const fixedwidth::Layout& layout, const EsiSynthOptions& options,
                      const std::function<void(std::string_view)>& write);

// The whole file in memory, for small tests.
std::string esi_synth_file(const fixedwidth::Layout& layout, const EsiSynthOptions& options,
                           EsiExpected* expected = nullptr);

}  // namespace taskhost::testing
