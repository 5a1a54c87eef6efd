#include "common/sha256.hpp"

#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

namespace taskhost {
namespace {

// FIPS 180-2 examples.
TEST(Sha256, KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, FileDigestEqualsMemoryDigest) {
  std::string data(200'000, 'x');  // several read() chunks
  data[123'456] = 'y';
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  fwrite(data.data(), 1, data.size(), f);
  fflush(f);
  lseek(fileno(f), 0, SEEK_SET);
  EXPECT_EQ(sha256_hex_fd(fileno(f)), sha256_hex(data));
  fclose(f);
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

}  // namespace
}  // namespace taskhost
