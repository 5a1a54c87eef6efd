// Object stores against real parts: s3rver (npm) on loopback for S3, with
// awscli reading what taskhost wrote and the reverse; and the local-directory
// store behind the same interface.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/sha256.hpp"
#include "services/object_store.hpp"
#include "support/fixtures.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

// The s3rver the ctest fixture started (tests/support/s3rver_fixture.sh).
std::string s3rver_endpoint() {
  std::ifstream in(std::string(std::getenv("TASKHOST_TEST_HOME")) + "-s3rver/port");
  std::string port;
  in >> port;
  return "http://127.0.0.1:" + port;
}

S3Endpoint s3rver(size_t part_size = 8 * 1024 * 1024) {
  S3Endpoint e;
  e.bucket = "taskhost-test";
  e.endpoint = s3rver_endpoint();
  e.path_style = true;
  e.credentials = {"S3RVER", "S3RVER", ""};
  e.part_size = part_size;
  return e;
}

std::string read_all(ObjectStore& store, const std::string& key, int* pieces = nullptr) {
  std::string out;
  store.get(key, [&](const char* d, size_t n) {
    out.append(d, n);
    if (pieces) ++*pieces;
  });
  return out;
}

ObjectInfo write(ObjectStore& store, const std::string& key, const std::string& data,
                 const std::string& type = "application/octet-stream") {
  size_t at = 0;
  return store.put(
      key,
      [&](char* buf, size_t cap) {
        size_t n = std::min(cap, data.size() - at);
        std::copy_n(data.data() + at, n, buf);
        at += n;
        return n;
      },
      type);
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Both stores must behave alike.
class Stores : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path dir =
      fs::temp_directory_path() / ("taskhost-objects-" + std::to_string(::getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::string prefix =
      "t" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()) + "/";
  std::unique_ptr<ObjectStore> store =
      GetParam() == "s3" ? s3_object_store(s3rver(5 << 20)) : local_object_store(dir);
  void TearDown() override { fs::remove_all(dir); }
};

TEST_P(Stores, PutGetHeadDeleteWithAwkwardKeys) {
  for (const std::string name : {"plain.pdf", "with space.pdf", "plus+sign.pdf", "ünïcødé/ሴ.pdf",
                                 "deep/er/still (1).pdf", "amp&lt;.pdf"}) {
    SCOPED_TRACE(name);
    const std::string key = prefix + name, data = "%PDF-1.7 " + name;
    write(*store, key, data, "application/pdf");
    EXPECT_EQ(read_all(*store, key), data);
    auto h = store->head(key);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->size, data.size());
    store->remove(key);
    EXPECT_FALSE(store->head(key).has_value());
  }
  EXPECT_EQ(test::kind_of([&] { read_all(*store, prefix + "missing"); }), ErrorKind::not_found);
}

TEST_P(Stores, ListsInKeyOrderPageByPage) {
  for (const std::string k : {"b", "a", "c/d", "c/e", "e+f", "z z"}) write(*store, prefix + k, k);
  write(*store, "elsewhere-" + prefix + "x", "not listed");
  std::vector<std::string> keys;
  std::optional<std::string> next;
  int pages = 0;
  do {
    auto page = store->list(prefix, next, 2);
    for (const auto& o : page.objects) {
      keys.push_back(o.key.substr(prefix.size()));
      EXPECT_EQ(o.size, keys.back().size());
    }
    next = page.next;
    ++pages;
  } while (next);
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c/d", "c/e", "e+f", "z z"}));
  EXPECT_GE(pages, 3);
  store->remove("elsewhere-" + prefix + "x");
}

TEST_P(Stores, CopyAndStreamALargeObject) {
  // 12 MiB: three parts of 5 MiB on S3; arrives in many pieces, not one.
  const std::string big = random_bytes(12 << 20, 7);
  auto put = write(*store, prefix + "big.bin", big);
  EXPECT_EQ(put.size, big.size());
  store->copy(prefix + "big.bin", prefix + "copy of big.bin");
  int pieces = 0;
  EXPECT_EQ(sha256_hex(read_all(*store, prefix + "copy of big.bin", &pieces)), sha256_hex(big));
  EXPECT_GT(pieces, 3);
}

TEST_P(Stores, AFailedUploadLeavesNoObject) {
  const std::string big = random_bytes(11 << 20, 8);
  size_t at = 0;
  EXPECT_THROW(store->put(
                   prefix + "broken.bin",
                   [&](char* buf, size_t cap) -> size_t {
                     if (at > (7 << 20)) throw Error(ErrorKind::environment, "source failed");
                     size_t n = std::min(cap, big.size() - at);
                     std::copy_n(big.data() + at, n, buf);
                     at += n;
                     return n;
                   },
                   "application/octet-stream"),
               Error);
  EXPECT_FALSE(store->head(prefix + "broken.bin").has_value());
}

INSTANTIATE_TEST_SUITE_P(Both, Stores, ::testing::Values("s3", "local"),
                         [](const auto& info) { return info.param; });

// awscli, the reference client, on the same server.
ProcessResult aws(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"env",
                                   "AWS_ACCESS_KEY_ID=S3RVER",
                                   "AWS_SECRET_ACCESS_KEY=S3RVER",
                                   "AWS_DEFAULT_REGION=us-east-1",
                                   "AWS_CONFIG_FILE=/dev/null",
                                   "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                                   "aws",
                                   "--endpoint-url",
                                   s3rver_endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

TEST(S3, AwscliReadsWhatTaskhostWroteAndTheReverse) {
  auto store = s3_object_store(s3rver());
  const std::string prefix = "interop-" + std::to_string(::getpid()) + "/";
  const fs::path file = fs::temp_directory_path() / ("aws-" + std::to_string(::getpid()));
  for (const std::string name : {"a b.pdf", "ü+ሴ.pdf", "x+y=z.txt"}) {
    SCOPED_TRACE(name);
    write(*store, prefix + "ours/" + name, "from taskhost: " + name);
    auto r = aws({"s3", "cp", "s3://taskhost-test/" + prefix + "ours/" + name, file.string()});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(file);
    std::stringstream got;
    got << in.rdbuf();
    EXPECT_EQ(got.str(), "from taskhost: " + name);

    std::ofstream(file) << "from awscli: " << name;
    r = aws({"s3", "cp", file.string(), "s3://taskhost-test/" + prefix + "theirs/" + name});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_all(*store, prefix + "theirs/" + name), "from awscli: " + name);
  }
  fs::remove(file);
  auto listed = store->list(prefix + "theirs/", std::nullopt, 100);
  EXPECT_EQ(listed.objects.size(), 3u);
}

TEST(S3, PresignedUrlServesTheObjectToAnyone) {
  auto store = s3_object_store(s3rver());
  const std::string key = "presign-" + std::to_string(::getpid()) + "/claim 526+.pdf";
  write(*store, key, "%PDF shared");
  const std::string url = store->presign_get(key, std::chrono::minutes(5));
  EXPECT_NE(url.find("X-Amz-Credential=S3RVER%2F"), std::string::npos) << url;
  EXPECT_NE(url.find("X-Amz-Expires=300&"), std::string::npos) << url;
  auto r = run_process({"python3", "-c",
                        "import sys, urllib.request; "
                        "sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
                        url});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "%PDF shared");
}

// s3rver checks the access key but not SigV4 signatures themselves (the
// signer is verified against the AWS suite and botocore instead).
TEST(S3, UnknownCredentialsAreRefusedClearly) {
  S3Endpoint e = s3rver();
  e.credentials = {"AKIDUNKNOWN", "canary-secret-5c1f", ""};
  auto store = s3_object_store(e);
  try {
    write(*store, "nope", "x");
    FAIL() << "accepted unknown credentials";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("HTTP 403 InvalidAccessKeyId"), std::string::npos)
        << err.what();
    EXPECT_EQ(std::string(err.what()).find("canary-secret"), std::string::npos)
        << "no secret in errors";
  }
}

}  // namespace
}  // namespace taskhost
