#include "config/host_keys.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "common/base64.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost {
namespace {

constexpr size_t key_size = 32, nonce_size = 12, tag_size = 16;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

std::string key_id(const std::string& key) {
  return sha256_hex("taskhost.host_key.v1\n" + key).substr(0, 16);
}

// The key bytes of a base64 value, or an error naming where it came from.
std::string decode_key(const std::string& setting, std::string value) {
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' '))
    value.pop_back();
  auto bytes = base64_decode(value);
  if (!bytes || bytes->size() != key_size)
    throw Error(ErrorKind::invalid,
                setting + ": a host key is 32 random bytes in base64 (openssl rand -base64 32)");
  return *bytes;
}

// A fresh random key in base64, as a key file holds it.
std::string generate() {
  std::string key(key_size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), key_size) != 1)
    throw Error(ErrorKind::environment, "no random bytes for a host key");
  return base64_encode(key);
}

std::filesystem::path next_file(const HostConfig& config) {
  return config.host_key_file.string() + ".next";
}

}  // namespace

std::string load_or_make_key_file(const std::filesystem::path& file, const std::string& what) {
  if (!std::filesystem::exists(file)) {
    std::filesystem::create_directories(file.parent_path());
    // Written aside, then linked into place, which fails if another process
    // made it first.
    const std::filesystem::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
    const std::string text = generate() + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 &&
              ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      ::unlink(tmp.c_str());
      throw Error(ErrorKind::environment,
                  "cannot write " + tmp.string() + ": " + std::strerror(errno));
    }
    if (::link(tmp.c_str(), file.c_str()) == 0)
      spdlog::warn(
          "generated {}: {} (mode 0600); back it up apart from the database, or set it in "
          "the host config",
          what, file.string());
    ::unlink(tmp.c_str());
  }
  return SecretRef{file.string(), std::nullopt, file}.resolve();
}

HostKeys HostKeys::load(const HostConfig& config) {
  HostKeys keys;
  auto add = [&](const std::string& setting, const std::string& value) {
    std::string bytes = decode_key(setting, value);
    keys.keys_.push_back({key_id(bytes), std::move(bytes)});
  };
  if (config.host_key) {
    add(config.host_key->setting, config.host_key->resolve());
    for (const auto& p : config.previous_host_keys) add(p.setting, p.resolve());
    return keys;
  }
  if (config.host_key_file.empty())
    throw Error(ErrorKind::environment,
                "no host key to seal stored secrets with: set host_key in the host config");
  const auto& file = config.host_key_file;
  load_or_make_key_file(file, "the host key (it seals the secrets stored in the database)");
  for (const auto& f : {file, next_file(config)})
    if (f == file || std::filesystem::exists(f))
      add(f.string(), SecretRef{f.string(), std::nullopt, f}.resolve());
  return keys;
}

HostKeys HostKeys::for_rotation(const HostConfig& config) {
  if (config.host_key) return load(config);
  load_or_make_key_file(next_file(config), "the next host key");
  HostKeys keys = load(config);  // host_key_file, then .next
  std::rotate(keys.keys_.begin(), keys.keys_.begin() + 1, keys.keys_.end());
  return keys;
}

void HostKeys::finish_rotation(const HostConfig& config) {
  if (!config.host_key) std::filesystem::rename(next_file(config), config.host_key_file);
}

const std::string& HostKeys::current_id() const {
  if (keys_.empty()) throw Error(ErrorKind::environment, "no host key is loaded");
  return keys_.front().id;
}

HostKeys::Sealed HostKeys::seal(std::string_view plaintext, std::string_view context) const {
  const std::string& id = current_id();
  const Key& key = keys_.front();
  std::string out(nonce_size + plaintext.size() + tag_size, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  if (!ctx || RAND_bytes(o, nonce_size) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.bytes.data()), o) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), o + nonce_size, &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), o + nonce_size + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, tag_size,
                          o + nonce_size + plaintext.size()) != 1)
    throw Error(ErrorKind::environment, "cannot seal a secret (OpenSSL AES-256-GCM)");
  return {id, std::move(out)};
}

std::string HostKeys::open(const std::string& id, std::string_view bytes,
                           std::string_view context) const {
  const Key* key = nullptr;
  for (const auto& k : keys_)
    if (k.id == id) key = &k;
  if (key == nullptr)
    throw Error(ErrorKind::environment,
                "a stored secret is sealed with host key " + id +
                    ", which this host does not have (host_key, previous_host_keys)");
  if (bytes.size() < nonce_size + tag_size)
    throw Error(ErrorKind::environment, "a stored secret is truncated");
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size() - nonce_size - tag_size;
  std::string out(n, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  std::string tag(bytes.substr(nonce_size + n));
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key->bytes.data()), in) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(context.data()),
                        static_cast<int>(context.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        in + nonce_size, static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, tag_size, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) != 1)
    throw Error(ErrorKind::environment, "a stored secret does not open with host key " + id +
                                            ": it was altered, or moved from another record");
  return out;
}

std::string HostKeys::mac_of(const Key& key, std::string_view message, std::string_view context) {
  // The context and its length first: no message of one context reads as
  // another's.
  return hex_lower(hmac_sha256(key.bytes, "taskhost.host_key.mac.v1\n" +
                                              std::to_string(context.size()) + ":" +
                                              std::string(context) + std::string(message)));
}

HostKeys::Mac HostKeys::mac(std::string_view message, std::string_view context) const {
  const std::string& id = current_id();
  return {id, mac_of(keys_.front(), message, context)};
}

bool HostKeys::mac_holds(const std::string& key_id, std::string_view message,
                         std::string_view context, std::string_view hex) const {
  for (const auto& k : keys_)
    if (k.id == key_id) return constant_time_equal(mac_of(k, message, context), hex);
  return false;
}

}  // namespace taskhost
