// The SFTP client against OpenSSH's sshd on loopback (the parts fixture):
// key authentication, host keys checked against known_hosts, streamed
// transfers, put by temporary name and rename, reconnection.
#include "services/sftp_client.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "common/process.hpp"
#include "common/sha256.hpp"
#include "support/fixtures.hpp"

namespace taskhost {
namespace {

namespace fs = std::filesystem;

fs::path sshd_dir() { return std::string(std::getenv("TASKHOST_TEST_HOME")) + "-sshd"; }

using test::slurp;

SftpEndpoint endpoint(const std::string& known_hosts = "known_hosts",
                      const fs::path& dir = sshd_dir()) {
  SftpEndpoint e;
  e.address = "127.0.0.1";
  e.port = std::stoi(slurp(dir / "port"));
  e.user = slurp(dir / "user");
  e.user.pop_back();  // newline
  e.private_key = dir / "id_ed25519";
  e.known_hosts = dir / known_hosts;
  e.timeout = std::chrono::seconds(10);
  return e;
}

struct Sftp : ::testing::Test {
  fs::path root =
      sshd_dir() / "files" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
  SftpClient client{endpoint()};
  void SetUp() override { fs::create_directories(root); }
  void TearDown() override { fs::remove_all(root); }
  uint64_t put(const std::string& path, const std::string& data) {
    size_t at = 0;
    return client.put(path, [&](char* buf, size_t cap) {
      size_t n = std::min(cap, data.size() - at);
      std::copy_n(data.data() + at, n, buf);
      at += n;
      return n;
    });
  }
  std::string get(const std::string& path, int* pieces = nullptr) {
    std::string out;
    client.get(path, [&](const char* d, size_t n) {
      out.append(d, n);
      if (pieces) ++*pieces;
    });
    return out;
  }
};

TEST_F(Sftp, PutListGetRenameRemoveMkdir) {
  const std::string dir = root.string();
  EXPECT_EQ(put(dir + "/RXACCUM_20261122.pgp", "first"), 5u);
  put(dir + "/RXACCUM_20261123.pgp", "second!");
  put(dir + "/notes.txt", "x");
  EXPECT_EQ(put(dir + "/RXACCUM_20261122.pgp", "replaced"), 8u) << "put replaces";
  client.mkdir(dir + "/done");
  auto files = client.list(dir, "RXACCUM_*.pgp");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, "RXACCUM_20261122.pgp");
  EXPECT_EQ(files[0].size, 8u);
  EXPECT_GT(files[0].mtime, 1700000000);
  EXPECT_EQ(files[1].size, 7u);
  EXPECT_EQ(client.list(dir, "*").size(), 4u) << "the directory too";
  EXPECT_EQ(std::distance(fs::directory_iterator(root), fs::directory_iterator()), 4)
      << "no temporary or set-aside names left";
  EXPECT_EQ(get(dir + "/RXACCUM_20261122.pgp"), "replaced");
  client.rename(dir + "/RXACCUM_20261122.pgp", dir + "/done/RXACCUM_20261122.pgp");
  EXPECT_EQ(slurp(root / "done" / "RXACCUM_20261122.pgp"), "replaced");
  client.remove(dir + "/notes.txt");
  EXPECT_FALSE(fs::exists(root / "notes.txt"));
  EXPECT_EQ(test::kind_of([&] { get(dir + "/missing"); }), ErrorKind::not_found);
}

TEST_F(Sftp, LargeFilesStreamBothWays) {
  std::string big(20 << 20, '\0');
  std::mt19937 rng(3);
  for (auto& c : big) c = static_cast<char>(rng());
  put(root.string() + "/big.bin", big);
  EXPECT_EQ(sha256_hex(slurp(root / "big.bin")), sha256_hex(big));
  int pieces = 0;
  EXPECT_EQ(sha256_hex(get(root.string() + "/big.bin", &pieces)), sha256_hex(big));
  EXPECT_GT(pieces, 100);
}

TEST_F(Sftp, RealpathResolvesSymlinks) {
  fs::create_directories(root / "target");
  fs::create_symlink(root / "target", root / "link");
  EXPECT_EQ(client.realpath(root.string() + "/link"), fs::canonical(root / "target").string());
}

// On an sshd of its own: killing the shared one's sessions would cut the
// other tests' connections too.
TEST(SftpSession, ReconnectsAfterTheSessionDropped) {
  const fs::path dir = fs::temp_directory_path() / ("taskhost-sshd-" + std::to_string(::getpid()));
  const std::string fixture = SOURCE_DIR "/tests/support/sshd_fixture.sh";
  ASSERT_EQ(run_process({fixture, "start", dir.string()}).exit_code, 0);
  SftpClient client(endpoint("known_hosts", dir));
  const std::string files = (dir / "files").string();
  std::ofstream(dir / "files" / "a") << "a";
  EXPECT_EQ(client.list(files, "*").size(), 1u);
  // Kill the server side of the session (sshd's per-connection children).
  const std::string pid = slurp(dir / "sshd.pid");
  run_process({"pkill", "-P", pid.substr(0, pid.find('\n'))});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(client.list(files, "*").size(), 1u) << "reconnected";
  run_process({fixture, "stop", dir.string()});
}

TEST(SftpHostKeys, AWrongOrUnknownHostKeyIsRefused) {
  SftpClient wrong(endpoint("wrong_known_hosts"));
  try {
    wrong.list("/", "*");
    FAIL() << "connected despite a wrong host key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(e.what()).find("the host key does not match"), std::string::npos)
        << e.what();
  }
  const fs::path empty = fs::temp_directory_path() / ("known-" + std::to_string(::getpid()));
  std::ofstream(empty).close();
  SftpEndpoint e = endpoint();
  e.known_hosts = empty;
  SftpClient unknown(e);
  try {
    unknown.list("/", "*");
    FAIL() << "trusted an unknown host key";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::refused);
    EXPECT_NE(std::string(err.what()).find("no trust on first use"), std::string::npos)
        << err.what();
  }
  EXPECT_EQ(fs::file_size(empty), 0u) << "nothing was added to known_hosts";
  fs::remove(empty);
}

}  // namespace
}  // namespace taskhost
