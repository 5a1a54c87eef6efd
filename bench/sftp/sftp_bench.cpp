// SFTP get of one remote file through taskhost's client into a local file,
// MiB/s, median of 3. Usage: sftp_bench PORT USER KEY KNOWN_HOSTS REMOTE LOCAL
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "services/sftp_client.hpp"

using namespace taskhost;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: sftp_bench PORT USER KEY KNOWN_HOSTS REMOTE LOCAL\n");
    return 2;
  }
  SftpEndpoint e;
  e.address = "127.0.0.1";
  e.port = std::atoi(argv[1]);
  e.user = argv[2];
  e.private_key = argv[3];
  e.known_hosts = argv[4];
  SftpClient client(e);
  std::vector<double> rates;
  for (int round = 0; round < 3; ++round) {
    FILE* out = std::fopen(argv[6], "wb");
    auto t = Clock::now();
    uint64_t n =
        client.get(argv[5], [&](const char* d, size_t size) { std::fwrite(d, 1, size, out); });
    std::fclose(out);
    rates.push_back(static_cast<double>(n) / (1 << 20) /
                    std::chrono::duration<double>(Clock::now() - t).count());
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%.0f\n", rates[1]);
  return 0;
}
