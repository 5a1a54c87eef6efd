// Host-side transfers (object storage's and SFTP's put_from) against the
// real parts: OpenSSH's sshd and s3rver on loopback. Both grants are checked
// before a byte moves, the bytes stream through bounded memory with their
// SHA-256, and a source that fails leaves no object behind.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#ifdef __SANITIZE_ADDRESS__
// libasan's (GCC ships no header for it).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#else
#include <malloc.h>
#endif

#include "common/sha256.hpp"
#include "services/object_storage.hpp"
#include "services/sftp_service.hpp"
#include "services/transfer.hpp"
#include "support/fixtures.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

const std::string bucket = "taskhost-test";

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Bytes this process has allocated and not freed: the allocator's own
// count (ASan's, whose quarantine keeps freed memory resident, or glibc's).
size_t heap_in_use() {
#ifdef __SANITIZE_ADDRESS__
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

// The most heap in use while f runs, above what was in use before, sampled
// every 2 ms.
template <typename F>
size_t peak_heap_growth(F&& f) {
  const size_t before = heap_in_use();
  std::atomic<size_t> peak = before;
  std::atomic<bool> done = false;
  std::thread sampler([&] {
    while (!done) {
      peak = std::max(peak.load(), heap_in_use());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  try {
    f();
  } catch (...) {
    done = true;
    sampler.join();
    throw;
  }
  done = true;
  sampler.join();
  return peak - before;
}

class Transfer : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.s3[bucket] = test::s3rver_bucket();
    config_.sftp["vendor"] = test::sshd_host();
    root_ = test::sshd_files() / ("transfer-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    for (const char* d : {"outgoing", "private", "back"}) fs::create_directories(root_ / d);
    prefix_ = "transfer-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<S3Grant> s3_grants() const {
    return {{bucket, prefix_ + "raw/", Access::readwrite},
            {bucket, prefix_ + "shared/", Access::read}};
  }
  std::vector<SftpGrant> sftp_grants() const {
    return {{"vendor", (root_ / "outgoing").string(), Access::read},
            {"vendor", (root_ / "back").string(), Access::write}};
  }
  ObjectStorageService storage() {
    return ObjectStorageService(
        "ingest", s3_grants(), config_, [this](const ServiceCall& c) { calls_.push_back(c); },
        false, sftp_grants());
  }
  Json put_from(const std::string& key, const Json& from) {
    return storage().call(
        "put_from", {{"bucket", bucket}, {"key", key}, {"from", from}},
        [](char*, size_t) { return size_t{0}; }, [](const char*, size_t) {});
  }
  std::unique_ptr<ObjectStore> store() { return open_bucket(config_, bucket); }
  std::string object(const std::string& key) {
    std::string out;
    store()->get(key, [&](const char* d, size_t n) { out.append(d, n); });
    return out;
  }
  // The audit records of one service and operation, in order.
  std::vector<ServiceCall> audited(const std::string& service, const std::string& op) const {
    std::vector<ServiceCall> out;
    for (const auto& c : calls_)
      if (c.service == service && c.operation == op) out.push_back(c);
    return out;
  }

  HostConfig config_;
  fs::path root_;
  std::string prefix_;
  std::vector<ServiceCall> calls_;
};

TEST_F(Transfer, SftpToObjectStorageExactBytesWithTheirDigestAudited) {
  // Above the 8 MiB part size: a multipart upload, fed 1 MiB at a time.
  const std::string bytes = random_bytes(9 * 1024 * 1024 + 77, 1);
  std::ofstream(root_ / "outgoing" / "MAVN_RxAccum_20261201_010203.pgp", std::ios::binary) << bytes;
  const Json r =
      put_from(prefix_ + "raw/MAVN_RxAccum_20261201_010203.pgp",
               {{"sftp", "vendor"},
                {"path", (root_ / "outgoing" / "MAVN_RxAccum_20261201_010203.pgp").string()}});
  EXPECT_EQ(r["size"], bytes.size());
  EXPECT_EQ(r["sha256"], sha256_hex(bytes));
  EXPECT_EQ(object(prefix_ + "raw/MAVN_RxAccum_20261201_010203.pgp"), bytes);

  auto transfers = audited("s3", "put_from");
  ASSERT_EQ(transfers.size(), 1u);
  EXPECT_EQ(transfers[0].outcome, "ok");
  EXPECT_EQ(transfers[0].bytes, bytes.size());
  EXPECT_EQ(transfers[0].sha256, sha256_hex(bytes));
  EXPECT_EQ(transfers[0].resource,
            "sftp:vendor:" + (root_ / "outgoing" / "MAVN_RxAccum_20261201_010203.pgp").string() +
                " -> " + bucket + "/" + prefix_ + "raw/MAVN_RxAccum_20261201_010203.pgp");
  auto reads = audited("sftp", "get");
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].bytes, bytes.size());
}

TEST_F(Transfer, ObjectStorageToObjectStorageAndBackToSftp) {
  const std::string bytes = random_bytes(3 * 1024 * 1024 + 5, 2);
  std::string_view rest = bytes;
  store()->put(
      prefix_ + "shared/a.bin",
      [&](char* buf, size_t cap) {
        size_t n = std::min(cap, rest.size());
        std::copy_n(rest.data(), n, buf);
        rest.remove_prefix(n);
        return n;
      },
      "application/octet-stream");
  const Json r = put_from(prefix_ + "raw/b.bin",
                          {{"object_storage", bucket}, {"key", prefix_ + "shared/a.bin"}});
  EXPECT_EQ(r["size"], bytes.size());
  EXPECT_EQ(r["sha256"], sha256_hex(bytes));
  EXPECT_EQ(object(prefix_ + "raw/b.bin"), bytes);

  // Object storage to SFTP: the same copy as an op of the SFTP service.
  SftpService sftp(
      "ingest", sftp_grants(), config_, [this](const ServiceCall& c) { calls_.push_back(c); },
      false, s3_grants());
  const Json back = sftp.call(
      "put_from",
      {{"host", "vendor"},
       {"path", (root_ / "back" / "b.bin").string()},
       {"from", {{"object_storage", bucket}, {"key", prefix_ + "raw/b.bin"}}}},
      [](char*, size_t) { return size_t{0}; }, [](const char*, size_t) {});
  EXPECT_EQ(back["sha256"], sha256_hex(bytes));
  EXPECT_EQ(test::slurp(root_ / "back" / "b.bin"), bytes);
  EXPECT_EQ(audited("sftp", "put_from").at(0).sha256, sha256_hex(bytes));

  // To an SFTP path outside the write grant: refused, nothing read.
  const auto gets = audited("s3", "get").size();
  EXPECT_EQ(test::kind_of([&] {
              sftp.call(
                  "put_from",
                  {{"host", "vendor"},
                   {"path", (root_ / "outgoing" / "b.bin").string()},
                   {"from", {{"object_storage", bucket}, {"key", prefix_ + "raw/b.bin"}}}},
                  [](char*, size_t) { return size_t{0}; }, [](const char*, size_t) {});
            }),
            ErrorKind::refused);
  EXPECT_EQ(audited("s3", "get").size(), gets);
  EXPECT_FALSE(fs::exists(root_ / "outgoing" / "b.bin"));
}

TEST_F(Transfer, ADeniedSourceMovesNothing) {
  std::ofstream(root_ / "private" / "x.pgp") << "not yours";
  try {
    put_from(prefix_ + "raw/x.pgp",
             {{"sftp", "vendor"}, {"path", (root_ / "private" / "x.pgp").string()}});
    FAIL() << "a source outside the sftp grant was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("permission denied: schema ingest has no sftp read grant "
                                         "for vendor:" +
                                         (root_ / "private" / "x.pgp").string()),
              std::string::npos)
        << e.what();
  }
  // And an object the s3 grants do not let it read.
  EXPECT_EQ(test::kind_of([&] {
              put_from(prefix_ + "raw/y", {{"object_storage", bucket}, {"key", "elsewhere/y"}});
            }),
            ErrorKind::refused);
  EXPECT_FALSE(store()->head(prefix_ + "raw/x.pgp"));
  EXPECT_FALSE(store()->head(prefix_ + "raw/y"));
  EXPECT_TRUE(audited("sftp", "get").empty());
  auto transfers = audited("s3", "put_from");
  ASSERT_EQ(transfers.size(), 2u);
  EXPECT_EQ(transfers[0].outcome, "denied");
  EXPECT_EQ(transfers[1].outcome, "denied");
}

TEST_F(Transfer, ADeniedDestinationReadsNothing) {
  std::ofstream(root_ / "outgoing" / "x.pgp") << "vendor bytes";
  // shared/ is granted read only.
  try {
    put_from(prefix_ + "shared/x.pgp",
             {{"sftp", "vendor"}, {"path", (root_ / "outgoing" / "x.pgp").string()}});
    FAIL() << "a write outside the s3 grant went through";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("has no s3 write grant for " + bucket + "/" + prefix_ +
                                         "shared/x.pgp"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(store()->head(prefix_ + "shared/x.pgp"));
  EXPECT_TRUE(audited("sftp", "get").empty());
  EXPECT_EQ(audited("s3", "put_from").at(0).outcome, "denied");
}

TEST_F(Transfer, AMissingSourceFileIsNotFoundAndLeavesNoObject) {
  EXPECT_EQ(test::kind_of([&] {
              put_from(prefix_ + "raw/gone.pgp",
                       {{"sftp", "vendor"}, {"path", (root_ / "outgoing" / "gone.pgp").string()}});
            }),
            ErrorKind::not_found);
  EXPECT_EQ(test::kind_of([&] {
              put_from(prefix_ + "raw/gone2",
                       {{"object_storage", bucket}, {"key", prefix_ + "shared/gone"}});
            }),
            ErrorKind::not_found);
  EXPECT_FALSE(store()->head(prefix_ + "raw/gone.pgp"));
  EXPECT_FALSE(store()->head(prefix_ + "raw/gone2"));
  EXPECT_EQ(test::kind_of([&] {
              put_from(prefix_ + "raw/z", {{"sftp", "vendor"}});
            }),
            ErrorKind::invalid);
}

TEST_F(Transfer, ASourceFailingMidwayAbortsTheUpload) {
  // 10 MiB arrive (a multipart upload is under way), then the source fails:
  // its error comes back and S3 keeps no object under the key.
  auto s = store();
  const std::string chunk(1 << 20, 'x');
  try {
    transfer(
        [&](const ByteSink& out) {
          for (int i = 0; i < 10; ++i) out(chunk.data(), chunk.size());
          throw Error(ErrorKind::environment, "sftp get: connection lost");
        },
        [&](const ByteSource& in) {
          s->put(prefix_ + "raw/half.pgp", in, "application/octet-stream");
        });
    FAIL() << "a failed source made a complete transfer";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "sftp get: connection lost");
  }
  EXPECT_FALSE(s->head(prefix_ + "raw/half.pgp"));
}

TEST_F(Transfer, MemoryStaysBoundedWhateverTheSize) {
  // 64 MiB through a 1 MiB pipe and 8 MiB parts: the heap grows by far less
  // than the file (were it held whole it would grow by 64 MiB).
  const size_t size = 64u << 20;
  {
    std::ofstream f(root_ / "outgoing" / "big.pgp", std::ios::binary);
    const std::string block = random_bytes(1 << 20, 3);
    for (size_t i = 0; i < size / block.size(); ++i) f << block;
  }
  Json r;
  const size_t growth = peak_heap_growth([&] {
    r = put_from(prefix_ + "raw/big.pgp",
                 {{"sftp", "vendor"}, {"path", (root_ / "outgoing" / "big.pgp").string()}});
  });
  EXPECT_EQ(r["size"], size);
  EXPECT_EQ(store()->head(prefix_ + "raw/big.pgp")->size, size);
  EXPECT_LT(growth, 24u << 20) << "peak grew by " << (growth >> 20) << " MiB";
}

}  // namespace
}  // namespace taskhost
