// A host-side transfer (object storage's put_from) of one file from OpenSSH's
// sshd into s3rver, as esi-ingest mirrors a vendor file: median MiB/s of 3.
// Usage: transfer_bench S3_ENDPOINT SSHD_PORT USER KEY KNOWN_HOSTS PATH MIB
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "services/object_storage.hpp"

using namespace taskhost;

int main(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr,
                 "usage: transfer_bench S3_ENDPOINT SSHD_PORT USER KEY KNOWN_HOSTS PATH MIB\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  ::setenv("BENCH_S3_KEY", "S3RVER", 1);
  HostConfig config;
  S3BucketConfig b;
  b.endpoint = argv[1];
  b.path_style = true;
  b.access_key_id = {"s3.taskhost-test.access_key_id", "BENCH_S3_KEY", std::nullopt};
  b.secret_access_key = {"s3.taskhost-test.secret_access_key", "BENCH_S3_KEY", std::nullopt};
  config.s3["taskhost-test"] = b;
  SftpHostConfig h;
  h.address = "127.0.0.1";
  h.port = std::atoi(argv[2]);
  h.user = argv[3];
  h.private_key = argv[4];
  h.known_hosts = argv[5];
  config.sftp["vendor"] = h;
  const std::string path = argv[6];
  const double mib = std::atof(argv[7]);
  ObjectStorageService storage("bench", {{"taskhost-test", "bench/", Access::readwrite}}, config,
                               [](const ServiceCall&) {}, false, {{"vendor", path, Access::read}});
  std::vector<double> rates;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    storage.call(
        "put_from",
        {{"bucket", "taskhost-test"},
         {"key", "bench/transfer.bin"},
         {"from", {{"sftp", "vendor"}, {"path", path}}}},
        [](char*, size_t) { return size_t{0}; }, [](const char*, size_t) {});
    rates.push_back(mib /
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(rates.begin(), rates.end());
  std::printf("%.1f\n", rates[1]);
}
