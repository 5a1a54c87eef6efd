#include "common/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <memory>

#include "common/base64.hpp"
#include "common/error.hpp"

namespace taskhost {

std::string jwt_rs256(const nlohmann::json& claims, std::string_view private_key_pem) {
  auto fail = [](const std::string& why) {
    throw Error(ErrorKind::environment, "JWT client assertion: " + why);
  };
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size())), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr,
      &EVP_PKEY_free);
  if (!key) fail("the private key is not an unencrypted PEM private key");
  if (EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA) fail("RS256 needs an RSA private key");
  if (EVP_PKEY_bits(key.get()) < 2048) fail("the RSA key has fewer than 2048 bits");

  const std::string signing_input =
      base64url_encode(R"({"alg":"RS256","typ":"JWT"})") + "." + base64url_encode(claims.dump());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t size = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1)
    fail("OpenSSL cannot sign with the key");
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1)
    fail("OpenSSL cannot sign with the key");
  signature.resize(size);
  return signing_input + "." + base64url_encode(signature);
}

std::string random_hex_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw Error(ErrorKind::environment, "OpenSSL: no random bytes");
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

}  // namespace taskhost
