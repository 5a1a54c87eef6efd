#include "plugin/loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
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

// Plugins are libraries, not data sets: a bigger file is not one.
constexpr uintmax_t max_plugin_size = uintmax_t{1} << 30;

std::string read_plugin(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    refuse(file, ec ? "cannot open it: " + ec.message() : "it is not a regular file");
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) refuse(file, std::string("cannot open it: ") + std::strerror(errno));
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      if (n < 0) refuse(file, std::string("cannot read it: ") + std::strerror(err));
      return bytes;
    }
    bytes.append(buf, static_cast<size_t>(n));
    if (bytes.size() > max_plugin_size) {
      ::close(fd);
      refuse(file, "it is larger than " + std::to_string(max_plugin_size >> 20) + " MiB");
    }
  }
}

// A memfd holding bytes, sealed so they can no longer change.
PluginImage sealed_image(const std::string& bytes) {
  PluginImage image(::memfd_create("taskhost-plugin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (image.fd() < 0)
    throw Error(ErrorKind::environment, std::string("memfd_create: ") + std::strerror(errno));
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(image.fd(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(ErrorKind::environment,
                  std::string("writing the plugin copy: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  if (::fcntl(image.fd(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
      0)
    throw Error(ErrorKind::environment,
                std::string("sealing the plugin copy: ") + std::strerror(errno));
  return image;
}

}  // namespace

PluginInfo check_plugin_file(const std::filesystem::path& file, const std::string* pinned,
                             bool allow_any, std::string* bytes_out) {
  if (pinned && *pinned == "any" && !allow_any)
    refuse(file, "its schema pins sha256: any, which only a host started with --dev accepts");
  std::string bytes = read_plugin(file);
  PluginInfo info;
  info.path = file.string();
  info.sha256 = sha256_hex(bytes);
  if (pinned && *pinned != "any" && !constant_time_equal(info.sha256, *pinned))
    refuse(file, "its SHA-256 is " + info.sha256 + " but the schema pins " + *pinned +
                     ": this is not the reviewed build; review it and pin the new digest");
  info.elf = read_elf(file, bytes);
  if (!info.elf.exports_entry)
    refuse(file, "it does not export " TH_PLUGIN_ENTRY_SYMBOL
                 "(): not a taskhost plugin, or built without TASKHOST_PLUGIN()");
  if (bytes_out) *bytes_out = std::move(bytes);
  return info;
}

VerifiedPlugin verify_plugin(const std::filesystem::path& file, const std::string* pinned,
                             bool allow_any) {
  std::string bytes;
  VerifiedPlugin v;
  v.info = check_plugin_file(file, pinned, allow_any, &bytes);
  v.image = sealed_image(bytes);
  return v;
}

PluginImage::~PluginImage() {
  if (fd_ < 0) return;
  // The dynamic loader knows a library by the name it was opened under and
  // may keep it after dlclose (C++ unique symbols make it undeletable). Were
  // this number reused, a later dlopen of the same name would get the old
  // library back: the descriptor stays open while the library is loaded.
  if (void* still = ::dlopen(path().c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    ::dlclose(still);
    return;
  }
  ::close(fd_);
}

std::string PluginImage::path() const { return "/proc/self/fd/" + std::to_string(fd_); }

void check_descriptor(const std::filesystem::path& file, const DescriptorFields& d) {
  if (!d.has_entry)
    refuse(file, "it does not export " TH_PLUGIN_ENTRY_SYMBOL
                 "(): not a taskhost plugin, or built without TASKHOST_PLUGIN()");
  if (!d.has_descriptor) refuse(file, TH_PLUGIN_ENTRY_SYMBOL "() returned no descriptor");
  if (d.magic != TH_PLUGIN_MAGIC)
    refuse(file, "descriptor magic is " + hex32(d.magic) + ", expected " + hex32(TH_PLUGIN_MAGIC) +
                     ": not a taskhost plugin descriptor");
  const std::string host_abi = abi(TH_ABI_MAJOR, TH_ABI_MINOR);
  const std::string plugin_abi = abi(d.abi_major, d.abi_minor);
  if (d.abi_major != TH_ABI_MAJOR)
    refuse(file, "it was built for plugin ABI " + plugin_abi + " but this host speaks ABI " +
                     host_abi + " (major versions must match): rebuild it against SDK " +
                     std::to_string(TH_ABI_MAJOR) + ".x");
  if (d.abi_minor > TH_ABI_MINOR)
    refuse(file, "it needs plugin ABI " + plugin_abi + " but this host provides ABI " + host_abi +
                     " (a plugin may not be newer than its host): upgrade taskhost or rebuild it "
                     "against an older SDK");
  if (d.struct_size < descriptor_size_1_0)
    refuse(file, "its descriptor is " + std::to_string(d.struct_size) +
                     " bytes, smaller than the " + std::to_string(descriptor_size_1_0) +
                     " bytes ABI 1.0 defines");
  if (!d.has_run || d.name.empty() || d.version.empty())
    refuse(file, "its descriptor lacks a required field (run, name or version)");
}

LoadedPlugin open_plugin(const std::filesystem::path& file, const std::string* pinned,
                         bool allow_any) {
  LoadedPlugin p;
  VerifiedPlugin v = verify_plugin(file, pinned, allow_any);
  p.info_ = std::move(v.info);
  p.image_ = std::move(v.image);
  try {
    p.library_.load(p.image_.path(),
                    boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    refuse(file, std::string("cannot load it: ") + e.what());
  }
  auto entry = p.library_.get<const th_plugin*()>(TH_PLUGIN_ENTRY_SYMBOL);
  const th_plugin* d = entry();
  DescriptorFields f;
  f.has_entry = true;
  f.has_descriptor = d != nullptr;
  if (d) {
    // struct_size, magic and the ABI version lead every descriptor of every
    // ABI version; the rest is read only once they are known to fit.
    f.struct_size = d->struct_size;
    f.magic = d->magic;
    f.abi_major = d->abi_major;
    f.abi_minor = d->abi_minor;
    if (d->magic == TH_PLUGIN_MAGIC && d->struct_size >= descriptor_size_1_0) {
      f.has_run = d->run != nullptr;
      if (d->name) f.name = d->name;
      if (d->version) f.version = d->version;
    }
  }
  check_descriptor(file, f);
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

int LoadedPlugin::run(const th_host_api* api, th_host* host, std::string* message) const {
  char buf[4096] = {0};
  th_error err{buf, sizeof buf};
  int rc = descriptor_->run(api, host, &err);
  if (rc != TH_OK) *message = buf[0] ? buf : "plugin failed without a message";
  return rc;
}

}  // namespace taskhost
