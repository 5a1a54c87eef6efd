// The host config (taskhost.yml) as every command reads it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "config/host_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    taskhost::parse_host_config(std::string(reinterpret_cast<const char*>(data), size),
                                "taskhost.yml");
  } catch (const taskhost::Error&) {
  }
  return 0;
}
