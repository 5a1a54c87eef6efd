#pragma once

#include <filesystem>
#include <string>

#include "config/host_config.hpp"

namespace taskhost::test {

// Three OpenPGP key pairs made by the real gpg for the ESI tests: ours (esi,
// which files are encrypted to), the vendor's (which signs them) and a
// stranger's. Made once per test suite under dir, removed with it.
class EsiKeys {
 public:
  static inline const std::string passphrase = "canary-passphrase-7f3a9c";

  explicit EsiKeys(std::filesystem::path dir);
  ~EsiKeys();
  EsiKeys(const EsiKeys&) = delete;
  EsiKeys& operator=(const EsiKeys&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path secret_key() const { return dir_ / "esi.asc"; }
  // Encrypts plain to esi, signed by signer ("vendor", "stranger", "esi"),
  // into out.
  void encrypt(const std::string& plain, const std::filesystem::path& out,
               const std::string& signer = "vendor") const;
  // The host config's pgp entries: esi (secret key and passphrase, from
  // files) and esi-vendor (the vendor's public key).
  void configure(HostConfig& config) const;
  // The same as host config YAML (a `pgp:` section), for worker processes.
  std::string config_yaml() const;

 private:
  std::filesystem::path dir_;
  std::string gpg_;
};

}  // namespace taskhost::test
