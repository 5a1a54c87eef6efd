#include "support/esi_keys.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace taskhost::test {

namespace fs = std::filesystem;

namespace {
void sh(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
}
}  // namespace

EsiKeys::EsiKeys(fs::path dir) : dir_(std::move(dir)) {
  fs::create_directories(dir_ / "gnupg");
  fs::permissions(dir_ / "gnupg", fs::perms::owner_all);
  gpg_ = "GNUPGHOME=" + (dir_ / "gnupg").string() +
         " gpg --batch --quiet --pinentry-mode loopback --passphrase " + passphrase + " ";
  for (const char* who : {"esi", "vendor", "stranger"})
    sh(gpg_ + "--quick-gen-key '" + who + " <" + who +
       "@test.invalid>' future-default default never");
  sh(gpg_ + "--armor --export-secret-keys esi@test.invalid > " + secret_key().string());
  sh(gpg_ + "--armor --export vendor@test.invalid > " + (dir_ / "vendor.pub.asc").string());
  std::ofstream(dir_ / "passphrase") << passphrase;
}

EsiKeys::~EsiKeys() {
  std::system(("GNUPGHOME=" + (dir_ / "gnupg").string() + " gpgconf --kill gpg-agent").c_str());
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void EsiKeys::encrypt(const std::string& plain, const fs::path& out,
                      const std::string& signer) const {
  const fs::path in = dir_ / ("plain-" + std::to_string(::getpid()));
  std::ofstream(in, std::ios::binary) << plain;
  sh(gpg_ + "--yes --trust-model always -r esi@test.invalid --local-user " + signer +
     "@test.invalid --sign --encrypt -o '" + out.string() + "' '" + in.string() + "'");
  fs::remove(in);
}

void EsiKeys::configure(HostConfig& config) const {
  auto secret = [](const fs::path& p) {
    SecretRef r;
    r.file = p;
    return r;
  };
  config.pgp["esi"].secret_key = secret(secret_key());
  config.pgp["esi"].passphrase = secret(dir_ / "passphrase");
  config.pgp["esi-vendor"].public_key = secret(dir_ / "vendor.pub.asc");
}

std::string EsiKeys::config_yaml() const {
  return "pgp:\n  esi: { secret_key: { file: " + secret_key().string() +
         " }, passphrase: { file: " + (dir_ / "passphrase").string() +
         " } }\n  esi-vendor: { public_key: { file: " + (dir_ / "vendor.pub.asc").string() +
         " } }\n";
}

}  // namespace taskhost::test
