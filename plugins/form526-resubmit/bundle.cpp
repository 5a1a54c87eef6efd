#include "bundle.hpp"

#include <openssl/evp.h>
#include <zip.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace form526 {
namespace {

[[noreturn]] void fail(const std::string& what, zip_error_t* e) {
  std::string message = "zip: " + what + ": " + zip_error_strerror(e);
  zip_error_fini(e);
  throw std::runtime_error(message);
}

[[noreturn]] void fail(const std::string& what, zip_t* z) {
  throw std::runtime_error("zip: " + what + ": " + zip_strerror(z));
}

time_t midnight_utc(const std::string& date) {
  std::tm tm{};
  tm.tm_year = std::stoi(date.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(date.substr(5, 2)) - 1;
  tm.tm_mday = std::stoi(date.substr(8, 2));
  return ::timegm(&tm);
}

}  // namespace

std::string zip_bundle(const std::vector<BundleFile>& files, const std::string& date) {
  zip_error_t error;
  zip_error_init(&error);
  // The archive is written into a buffer source, kept past zip_close.
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  if (buffer == nullptr) fail("buffer", &error);
  std::unique_ptr<zip_source_t, decltype(&zip_source_free)> keep(buffer, &zip_source_free);
  zip_source_keep(buffer);
  zip_t* z = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  if (z == nullptr) fail("open", &error);
  const time_t mtime = midnight_utc(date);
  for (const auto& f : files) {
    zip_source_t* s = zip_source_buffer(z, f.data.data(), f.data.size(), 0);
    if (s == nullptr) {
      zip_discard(z);
      fail(f.name, z);
    }
    const zip_int64_t index = zip_file_add(z, f.name.c_str(), s, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(s);
      std::string message = std::string("zip: ") + f.name + ": " + zip_strerror(z);
      zip_discard(z);
      throw std::runtime_error(message);
    }
    if (zip_set_file_compression(z, index, f.compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                 f.compress ? 6 : 0) < 0 ||
        zip_file_set_mtime(z, index, mtime, 0) < 0) {
      std::string message = std::string("zip: ") + f.name + ": " + zip_strerror(z);
      zip_discard(z);
      throw std::runtime_error(message);
    }
  }
  if (zip_close(z) < 0) {
    std::string message = std::string("zip: close: ") + zip_strerror(z);
    zip_discard(z);
    throw std::runtime_error(message);
  }
  zip_stat_t st;
  if (zip_source_open(buffer) < 0 || zip_source_stat(buffer, &st) < 0)
    fail("read back", zip_source_error(buffer));
  std::string out(st.size, '\0');
  const zip_int64_t n = zip_source_read(buffer, out.data(), out.size());
  zip_source_close(buffer);
  if (n != static_cast<zip_int64_t>(out.size())) fail("read back", zip_source_error(buffer));
  return out;
}

std::string attachment_entry_name(size_t index, const Attachment& a) {
  std::string base = a.file_name;
  for (const char sep : {'/', '\\'}) {
    const auto cut = base.find_last_of(sep);
    if (cut != std::string::npos) base.erase(0, cut + 1);
  }
  std::replace_if(
      base.begin(), base.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }, '_');
  if (base.empty() || base == "." || base == "..") base = "document";
  return "attachment_" + std::to_string(index + 1) + "_" + a.document_type + "_" + base;
}

bool already_compressed(const std::string& file_name) {
  const auto dot = file_name.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string ext = file_name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {"pdf", "jpg", "jpeg", "png", "gif", "zip", "heic", "webp"})
    if (ext == e) return true;
  return false;
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

}  // namespace form526
