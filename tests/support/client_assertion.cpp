#include "support/client_assertion.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/base64.hpp"

namespace taskhost::test {

ClientAssertionKey::ClientAssertionKey(const std::filesystem::path& file) : file_(file) {
  key_.reset(EVP_RSA_gen(2048), &EVP_PKEY_free);
  if (!key_) throw std::runtime_error("OpenSSL: cannot generate an RSA key");
  std::filesystem::remove(file);
  const mode_t old = ::umask(077);
  FILE* f = std::fopen(file.c_str(), "w");
  ::umask(old);
  if (!f) throw std::runtime_error("cannot create " + file.string());
  const bool ok = PEM_write_PrivateKey(f, key_.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  if (!ok) throw std::runtime_error("cannot write " + file.string());
}

std::string form_field(const std::string& body, const std::string& name) {
  for (size_t at = 0; at <= body.size();) {
    size_t end = body.find('&', at);
    if (end == std::string::npos) end = body.size();
    const std::string pair = body.substr(at, end - at);
    if (pair.rfind(name + "=", 0) == 0) {
      std::string out;
      for (size_t i = name.size() + 1; i < pair.size(); ++i) {
        if (pair[i] == '+') {
          out += ' ';
        } else if (pair[i] == '%' && i + 2 < pair.size()) {
          out += static_cast<char>(std::stoi(pair.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          out += pair[i];
        }
      }
      return out;
    }
    at = end + 1;
  }
  return "";
}

std::string ClientAssertionKey::check(const std::string& body, const std::string& client_id,
                                      const std::string& audience) {
  if (form_field(body, "grant_type") != "client_credentials") return "grant_type";
  if (form_field(body, "client_assertion_type") !=
      "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    return "client_assertion_type";
  if (body.find("client_secret") != std::string::npos) return "a client_secret was sent";
  const std::string jwt = form_field(body, "client_assertion");
  const size_t dot1 = jwt.find('.'), dot2 = jwt.rfind('.');
  if (dot1 == std::string::npos || dot1 == dot2) return "not a compact JWS";
  auto header = base64url_decode(jwt.substr(0, dot1));
  auto payload = base64url_decode(jwt.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = base64url_decode(jwt.substr(dot2 + 1));
  if (!header || !payload || !signature) return "not base64url";
  auto h = nlohmann::json::parse(*header, nullptr, false);
  if (h.is_discarded() || h.value("alg", "") != "RS256") return "alg is not RS256";

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  const std::string signed_part = jwt.substr(0, dot2);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
      EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
          reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) != 1)
    return "signature";

  auto c = nlohmann::json::parse(*payload, nullptr, false);
  if (c.is_discarded() || !c.is_object()) return "claims are not a JSON object";
  if (c.value("iss", "") != client_id || c.value("sub", "") != client_id) return "iss/sub";
  if (c.value("aud", "") != audience) return "aud";
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (!c["iat"].is_number_integer() || !c["exp"].is_number_integer()) return "iat/exp";
  const int64_t iat = c["iat"], exp = c["exp"];
  if (iat > now + 5) return "iat in the future";
  if (exp <= now) return "expired";
  if (exp - iat > 600) return "lives longer than 10 minutes";
  const std::string jti = c.value("jti", "");
  std::lock_guard lock(mutex_);
  if (jti.size() < 16 || !seen_jti_.insert(jti).second) return "jti missing or reused";
  return "";
}

}  // namespace taskhost::test
