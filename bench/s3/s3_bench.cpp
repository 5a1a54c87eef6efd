// S3 put and get of one file through taskhost's client, MiB/s, median of 3.
// Usage: s3_bench ENDPOINT BUCKET FILE
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "services/object_store.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: s3_bench ENDPOINT BUCKET FILE\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  S3Endpoint e;
  e.endpoint = argv[1];
  e.bucket = argv[2];
  e.path_style = true;
  e.credentials = {"S3RVER", "S3RVER", ""};
  auto store = s3_object_store(e);
  const std::filesystem::path file = argv[3];
  const double mib = static_cast<double>(std::filesystem::file_size(file)) / (1 << 20);

  std::vector<double> put, get;
  for (int round = 0; round < 3; ++round) {
    FILE* in = std::fopen(file.c_str(), "rb");
    auto t = Clock::now();
    store->put(
        "bench/taskhost.bin", [&](char* buf, size_t cap) { return std::fread(buf, 1, cap, in); },
        "application/octet-stream");
    put.push_back(mib / std::chrono::duration<double>(Clock::now() - t).count());
    std::fclose(in);

    FILE* out = std::fopen((file.string() + ".back").c_str(), "wb");
    t = Clock::now();
    store->get("bench/taskhost.bin", [&](const char* d, size_t n) { std::fwrite(d, 1, n, out); });
    std::fclose(out);
    get.push_back(mib / std::chrono::duration<double>(Clock::now() - t).count());
  }
  std::sort(put.begin(), put.end());
  std::sort(get.begin(), get.end());
  std::printf("%.0f %.0f\n", put[1], get[1]);
  return 0;
}
