#include "common/ed25519.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "common/base64.hpp"
#include "common/error.hpp"

namespace taskhost {
namespace {

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
using File = std::unique_ptr<FILE, decltype(&std::fclose)>;

File open(const std::filesystem::path& path, const char* mode) {
  File f(std::fopen(path.c_str(), mode), &std::fclose);
  if (!f) throw Error(ErrorKind::environment, "cannot open " + path.string());
  return f;
}

Key read_key(const std::filesystem::path& path, bool is_private) {
  File f = open(path, "r");
  Key key(is_private ? PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr)
                     : PEM_read_PUBKEY(f.get(), nullptr, nullptr, nullptr),
          &EVP_PKEY_free);
  if (!key || EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519)
    throw Error(ErrorKind::environment, path.string() + " is not an Ed25519 " +
                                            (is_private ? "private" : "public") + " key (PEM)");
  return key;
}

}  // namespace

void ed25519_generate(const std::filesystem::path& private_key) {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), &EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    throw Error(ErrorKind::environment, "OpenSSL: cannot generate an Ed25519 key");
  Key key(raw, &EVP_PKEY_free);
  const mode_t old = ::umask(077);  // the private key is never readable by others
  File f(std::fopen(private_key.c_str(), "wx"), &std::fclose);
  ::umask(old);
  if (!f) throw Error(ErrorKind::environment, "cannot create " + private_key.string());
  if (PEM_write_PrivateKey(f.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw Error(ErrorKind::environment, "cannot write " + private_key.string());
  File pub = open(private_key.string() + ".pub", "w");
  if (PEM_write_PUBKEY(pub.get(), key.get()) != 1)
    throw Error(ErrorKind::environment, "cannot write " + private_key.string() + ".pub");
}

std::string ed25519_sign(const std::filesystem::path& private_key, std::string_view message) {
  Key key = read_key(private_key, true);
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned char sig[64];
  size_t len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1)
    throw Error(ErrorKind::environment, "OpenSSL: Ed25519 signing failed");
  return base64_encode(std::string_view(reinterpret_cast<const char*>(sig), len));
}

Ed25519PublicKey::Ed25519PublicKey(const std::filesystem::path& pem) : key_(read_key(pem, false)) {}

bool Ed25519PublicKey::verify(std::string_view message, std::string_view signature) const {
  auto sig = base64_decode(signature);
  if (!sig || sig->size() != 64) return false;
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), 64,
                          reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

}  // namespace taskhost
