#pragma once

#include <taskhost/plugin.h>

#include <boost/dll/shared_library.hpp>
#include <cstdint>
#include <filesystem>
#include <string>

namespace taskhost {

struct PluginInfo {
  std::string path;
  std::string sha256;  // of the file as loaded
  std::string name, version, description;
  uint32_t abi_major = 0, abi_minor = 0;
};

// A plugin whose digest and ABI were checked. Owns the library: everything
// the plugin created must be gone before this object is destroyed.
class LoadedPlugin {
 public:
  const PluginInfo& info() const { return info_; }
  // Calls the plugin's run. On failure returns the th_code and sets *message.
  int run(const th_host_api* api, th_host* host, std::string* message) const;

 private:
  friend LoadedPlugin open_plugin(const std::filesystem::path&, const std::string*, bool);
  boost::dll::shared_library library_;
  const th_plugin* descriptor_ = nullptr;
  PluginInfo info_;
};

// What `pinned` a schema may carry: a 64-hex SHA-256, or "any" which only a
// host started in development mode (allow_any) accepts.
//
// Loads file after checking, in this order: its SHA-256 equals pinned (the
// digest is taken of the same open file that is then loaded, so the file
// cannot be swapped in between), the entry symbol exists, the descriptor's
// magic, ABI major (equal) and minor (not newer than the host's), its size.
// Throws Error(refused) with a message saying exactly why.
LoadedPlugin load_plugin(const std::filesystem::path& file, const std::string& pinned,
                         bool allow_any);

// Loads file with only the ABI checks, for `taskhost plugin inspect`. This
// runs the library's static initialisers: inspect only files under review.
LoadedPlugin inspect_plugin(const std::filesystem::path& file);

}  // namespace taskhost
