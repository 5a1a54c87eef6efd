#pragma once

#include <taskhost/plugin.h>

#include <boost/dll/shared_library.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

#include "plugin/elf.hpp"

namespace taskhost {

struct PluginInfo {
  std::string path;
  std::string sha256;  // of the file as read (and loaded)
  ElfSummary elf;
  // From the descriptor: known only once the library is loaded.
  std::string name, version, description;
  uint32_t abi_major = 0, abi_minor = 0;
};

// Reads a plugin file and checks it without running any of its code: its
// SHA-256 equals pinned (a 64-hex digest, or "any", which only a host started
// in development mode, allow_any, accepts; no pin: no check), and it is an
// ELF shared library exporting TH_PLUGIN_ENTRY_SYMBOL. Throws Error(refused)
// saying exactly why. Fills *bytes with the file's content when given.
PluginInfo check_plugin_file(const std::filesystem::path& file, const std::string* pinned,
                             bool allow_any, std::string* bytes = nullptr);

// The sealed in-memory copy of a plugin file that a library is loaded from
// (as /proc/self/fd/N). Each load gets a copy of its own, so the dynamic
// loader never mistakes one plugin, or one build, for another loaded earlier.
class PluginImage {
 public:
  explicit PluginImage(int fd = -1) : fd_(fd) {}
  ~PluginImage();
  PluginImage(PluginImage&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  PluginImage& operator=(PluginImage&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int fd() const { return fd_; }
  std::string path() const;

 private:
  int fd_;
};

// A plugin file that passed check_plugin_file, as a sealed copy of the very
// bytes that were checked: what a sandbox loads (sent to its process) and
// what the in-process loader loads, so the file cannot be swapped between
// the check and the load.
struct VerifiedPlugin {
  PluginInfo info;
  PluginImage image;
};
VerifiedPlugin verify_plugin(const std::filesystem::path& file, const std::string* pinned,
                             bool allow_any);

// What a loaded library's descriptor says, as the process that loaded it
// (this one, or a sandbox's) read it: only the fields struct_size covers.
struct DescriptorFields {
  bool has_entry = false;       // the entry symbol exists
  bool has_descriptor = false;  // and returned a descriptor
  uint32_t struct_size = 0, magic = 0, abi_major = 0, abi_minor = 0;
  bool has_run = false;
  std::string_view name, version;
};
// Throws Error(refused) naming file and exactly why, unless this host can run
// a plugin with this descriptor: magic, ABI major equal, minor not newer,
// the size of ABI 1.0 at least, run, name and version present.
void check_descriptor(const std::filesystem::path& file, const DescriptorFields& d);

// A plugin whose digest and ABI were checked. Owns the library: everything
// the plugin created must be gone before this object is destroyed.
class LoadedPlugin {
 public:
  const PluginInfo& info() const { return info_; }
  // Calls the plugin's run. On failure returns the th_code and sets *message.
  int run(const th_host_api* api, th_host* host, std::string* message) const;

 private:
  friend LoadedPlugin open_plugin(const std::filesystem::path&, const std::string*, bool);
  PluginImage image_;  // declared first: outlives the library
  boost::dll::shared_library library_;
  const th_plugin* descriptor_ = nullptr;
  PluginInfo info_;
};

// check_plugin_file, then loads the very bytes it checked (a sealed copy, so
// the file cannot be swapped in between) and checks the descriptor's magic,
// ABI major (equal) and minor (not newer than the host's), and its size.
// Throws Error(refused) with a message saying exactly why.
LoadedPlugin load_plugin(const std::filesystem::path& file, const std::string& pinned,
                         bool allow_any);

}  // namespace taskhost
