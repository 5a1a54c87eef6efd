#include "plugin/loader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <sstream>

#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost {
namespace {

// The bytes of a descriptor as ABI 1.0 defines it.
constexpr size_t descriptor_size_1_0 = offsetof(th_plugin, run) + sizeof(th_plugin::run);

std::string hex32(uint32_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::string abi(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

[[noreturn]] void refuse(const std::filesystem::path& file, const std::string& why) {
  throw Error(ErrorKind::refused, "plugin " + file.string() + " refused: " + why);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

LoadedPlugin open_plugin(const std::filesystem::path& file, const std::string* pinned,
                         bool allow_any) {
  if (pinned && *pinned == "any" && !allow_any)
    refuse(file, "its schema pins sha256: any, which only a host started with --dev accepts");

  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) refuse(file, std::string("cannot open it: ") + std::strerror(errno));
  LoadedPlugin p;
  p.info_.path = file.string();
  p.info_.sha256 = sha256_hex_fd(fd.get());
  if (pinned && *pinned != "any" && !constant_time_equal(p.info_.sha256, *pinned))
    refuse(file, "its SHA-256 is " + p.info_.sha256 + " but the schema pins " + *pinned +
                     ": this is not the reviewed build; review it and pin the new digest");

  // Load the very file that was hashed, through its open descriptor.
  const std::string fd_path = "/proc/self/fd/" + std::to_string(fd.get());
  try {
    p.library_.load(fd_path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    refuse(file, std::string("cannot load it: ") + e.what());
  }
  if (!p.library_.has(TH_PLUGIN_ENTRY_SYMBOL))
    refuse(file, "it does not export " TH_PLUGIN_ENTRY_SYMBOL
                 "(): not a taskhost plugin, or built without TASKHOST_PLUGIN()");
  auto entry = p.library_.get<const th_plugin*()>(TH_PLUGIN_ENTRY_SYMBOL);
  const th_plugin* d = entry();
  if (d == nullptr) refuse(file, TH_PLUGIN_ENTRY_SYMBOL "() returned no descriptor");
  // struct_size, magic and the ABI version lead every descriptor of every
  // ABI version; the rest is read only once they are known to fit.
  if (d->magic != TH_PLUGIN_MAGIC)
    refuse(file, "descriptor magic is " + hex32(d->magic) + ", expected " + hex32(TH_PLUGIN_MAGIC) +
                     ": not a taskhost plugin descriptor");
  const std::string host_abi = abi(TH_ABI_MAJOR, TH_ABI_MINOR);
  const std::string plugin_abi = abi(d->abi_major, d->abi_minor);
  if (d->abi_major != TH_ABI_MAJOR)
    refuse(file, "it was built for plugin ABI " + plugin_abi + " but this host speaks ABI " +
                     host_abi + " (major versions must match): rebuild it against SDK " +
                     std::to_string(TH_ABI_MAJOR) + ".x");
  if (d->abi_minor > TH_ABI_MINOR)
    refuse(file, "it needs plugin ABI " + plugin_abi + " but this host provides ABI " + host_abi +
                     " (a plugin may not be newer than its host): upgrade taskhost or rebuild it "
                     "against an older SDK");
  if (d->struct_size < descriptor_size_1_0)
    refuse(file, "its descriptor is " + std::to_string(d->struct_size) +
                     " bytes, smaller than the " + std::to_string(descriptor_size_1_0) +
                     " bytes ABI 1.0 defines");
  if (d->run == nullptr || d->name == nullptr || d->version == nullptr)
    refuse(file, "its descriptor lacks a required field (run, name or version)");

  p.descriptor_ = d;
  p.info_.name = d->name;
  p.info_.version = d->version;
  p.info_.description = d->description ? d->description : "";
  p.info_.abi_major = d->abi_major;
  p.info_.abi_minor = d->abi_minor;
  return p;
}

LoadedPlugin load_plugin(const std::filesystem::path& file, const std::string& pinned,
                         bool allow_any) {
  return open_plugin(file, &pinned, allow_any);
}

LoadedPlugin inspect_plugin(const std::filesystem::path& file) {
  return open_plugin(file, nullptr, false);
}

int LoadedPlugin::run(const th_host_api* api, th_host* host, std::string* message) const {
  char buf[4096] = {0};
  th_error err{buf, sizeof buf};
  int rc = descriptor_->run(api, host, &err);
  if (rc != TH_OK) *message = buf[0] ? buf : "plugin failed without a message";
  return rc;
}

}  // namespace taskhost
