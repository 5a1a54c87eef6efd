// Parse throughput of the fixed-width toolkit on an ESI file: bytes in,
// esi-parser's COPY rows out (in memory), on one core. Makes the synthetic
// file first if it is missing (bench/esi/e2e uses --make-only for that).
//   parse_bench LAYOUT.yaml FILE [RECORDS] [--make-only]
#include <taskhost/fixedwidth.hpp>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "esi_parser/columns.hpp"
#include "support/esi_synth.hpp"

namespace fw = taskhost::fixedwidth;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: parse_bench LAYOUT.yaml FILE [RECORDS] [--make-only]\n");
    return 2;
  }
  const fw::Layout layout = fw::load_layout_file(argv[1]);
  const std::string path = argv[2];
  if (!std::filesystem::exists(path)) {
    taskhost::testing::EsiSynthOptions o;
    o.records = argc > 3 ? std::stoull(argv[3]) : 1000000;
    std::ofstream out(path, std::ios::binary);
    taskhost::testing::esi_synth(layout, o, [&](std::string_view s) {
      out.write(s.data(), static_cast<std::streamsize>(s.size()));
    });
  }
  if (argc > 4 && std::string_view(argv[4]) == "--make-only") return 0;
  const fw::RecordType& dt = *layout.find("DT");
  const auto columns = esi::columns(dt);
  const int blocks = dt.index("accumulator_balance_count");
  std::string rows;
  uint64_t row_bytes = 0, records = 0;
  fw::FileParser parser(layout, [&](uint64_t line, const fw::RecordType& t,
                                    const std::vector<fw::Value>& v, bool ok) {
    if (&t != &dt || !ok) return;
    ++records;
    esi::append_row(rows, "bench", line, dt, columns, blocks, v);
    if (rows.size() >= (4u << 20)) {  // as the plugin sends them
      row_bytes += rows.size();
      rows.clear();
    }
  });
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(4 << 20);
  uint64_t bytes = 0;
  double busy = 0;  // parsing only, not the disk
  // CPU time of this thread too: on a shared machine the wall clock also
  // counts the time others had the core.
  auto cpu = [] {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
  };
  double cpu_busy = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    bytes += n;
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu();
    parser.feed(std::string_view(buf.data(), n));
    cpu_busy += cpu() - c0;
    busy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  parser.finish();
  row_bytes += rows.size();
  std::printf("%llu DT records, %.2f GB in, %.2f GB of COPY rows out, %llu problems\n",
              static_cast<unsigned long long>(records), bytes / 1e9, row_bytes / 1e9,
              static_cast<unsigned long long>(parser.problem_count()));
  std::printf("parse: %.2f s wall, %.2f GB/s; %.2f s of CPU, %.2f GB/s per core, %.0f records/s\n",
              busy, bytes / 1e9 / busy, cpu_busy, bytes / 1e9 / cpu_busy, records / cpu_busy);
  return parser.problem_count() == 0 ? 0 : 1;
}
