#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "config/host_config.hpp"

namespace taskhost {

// The host keys that seal secrets the platform stores (webhook signing
// secrets today): AES-256-GCM with a random 96-bit nonce, the record's
// context as associated data (a sealed value moved to another record does
// not open), and the id of the key beside each ciphertext so that keys can
// rotate. A key is 32 random bytes in base64 (`openssl rand -base64 32`).
class HostKeys {
 public:
  struct Sealed {
    std::string key_id;  // 16 hex digits naming the key
    std::string bytes;   // nonce (12) | ciphertext | tag (16)
  };

  // No key: seal and open throw Error(environment).
  HostKeys() = default;

  // The config's host_key (current) and previous_host_keys (open only). With
  // no host_key: host_key_file (the embedded default, HOME/host.key), made
  // with mode 0600 on first use, and host_key_file + ".next" if a rotation
  // left one. Throws Error(environment) naming the setting or file.
  static HostKeys load(const HostConfig& config);

  // A rotation (`taskhost keys rotate-host-key`) re-seals everything with
  // the current key of for_rotation(config), then calls finish_rotation.
  // With host_key configured, that is the configured key (the operator made
  // the new one current and listed the old in previous_host_keys). Without,
  // a new key is made beside host_key_file (".next", which load() opens with
  // too, should the rotation stop half-way) and finish_rotation moves it into
  // host_key_file's place.
  static HostKeys for_rotation(const HostConfig& config);
  static void finish_rotation(const HostConfig& config);

  Sealed seal(std::string_view plaintext, std::string_view context) const;
  // Throws Error(environment) when no key has key_id, or when bytes were not
  // sealed by it for this context (altered, or moved from another record).
  std::string open(const std::string& key_id, std::string_view bytes,
                   std::string_view context) const;

  // A MAC (HMAC-SHA256, hex) of message under the current key, for the
  // purpose named by context (a MAC for one purpose proves nothing for
  // another).
  struct Mac {
    std::string key_id, hex;
  };
  Mac mac(std::string_view message, std::string_view context) const;
  // Whether hex is the MAC of message for context under key key_id, which
  // this host has; compared in constant time.
  bool mac_holds(const std::string& key_id, std::string_view message, std::string_view context,
                 std::string_view hex) const;

  const std::string& current_id() const;

 private:
  struct Key {
    std::string id, bytes;
  };
  static std::string mac_of(const Key& key, std::string_view message, std::string_view context);
  std::vector<Key> keys_;  // the current one first
};

// The text of a key file (32 random bytes in base64), made with mode 0600 on
// first use (the log says so, naming `what`): the embedded default's keys.
std::string load_or_make_key_file(const std::filesystem::path& file, const std::string& what);

}  // namespace taskhost
