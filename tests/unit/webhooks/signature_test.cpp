#include "webhooks/signature.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/base64.hpp"
#include "common/error.hpp"

namespace taskhost {
namespace {

TEST(WebhookSignature, MatchesTheStandardWebhooksVector) {
  std::ifstream in(TEST_DATA_DIR "/webhooks/standard-webhooks-vector.json");
  ASSERT_TRUE(in) << "missing " TEST_DATA_DIR "/webhooks/standard-webhooks-vector.json";
  auto v = nlohmann::json::parse(in);
  EXPECT_EQ(webhook_signature(v["secret"].get<std::string>(), v["msg_id"].get<std::string>(),
                              v["timestamp"].get<int64_t>(), v["payload"].get<std::string>()),
            v["signature"]);
  // Any change to id, time or body changes the signature.
  EXPECT_NE(webhook_signature(v["secret"].get<std::string>(), v["msg_id"].get<std::string>(),
                              v["timestamp"].get<int64_t>() + 1, v["payload"].get<std::string>()),
            v["signature"]);
}

TEST(WebhookSignature, RefusesAMalformedSecret) {
  EXPECT_THROW(webhook_signature("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", 1, "{}"), Error);
  EXPECT_THROW(webhook_signature("whsec_not base64!", "id", 1, "{}"), Error);
  EXPECT_THROW(webhook_signature("whsec_", "id", 1, "{}"), Error);
}

TEST(WebhookSignature, NewSecretsAreRandom32ByteKeys) {
  auto a = new_webhook_secret(), b = new_webhook_secret();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.rfind("whsec_", 0), 0u);
  auto key = base64_decode(a.substr(6));
  ASSERT_TRUE(key);
  EXPECT_EQ(key->size(), 32u);
}

TEST(Base64, RoundTripsEveryPaddingLength) {
  for (const std::string& s :
       std::vector<std::string>{"", "f", "fo", "foo", "foob", std::string("\0\xff\x10", 3)}) {
    auto back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_FALSE(base64_decode("Zm9"));
}

}  // namespace
}  // namespace taskhost
