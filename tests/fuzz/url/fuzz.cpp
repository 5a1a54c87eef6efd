// A URL as schema install (hooks.url, capabilities.http) and the host config
// check it, with the parser webhook deliveries use.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/curl.hpp"
#include "common/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    taskhost::parse_http_url(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const taskhost::Error&) {
  }
  return 0;
}
