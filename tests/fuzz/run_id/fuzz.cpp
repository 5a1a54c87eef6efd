// A run id or prefix as `runs show|cancel|...` take it: what check_run_id
// accepts must be safe inside LIKE (no wildcard, no escape) and short; and
// the text helpers every message about it goes through keep their promises.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"
#include "store/runs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskhost;
  const std::string id(reinterpret_cast<const char*>(data), size);
  try {
    check_run_id(id);
    if (id.size() < 8 || id.size() > 36 || id.find_first_not_of("0123456789abcdef-") != id.npos)
      std::abort();
  } catch (const Error& e) {
    if (invalid_utf8_at(e.what())) std::abort();
  }
  const std::string stored = storable(id, 64);
  if (stored.size() > 64 || invalid_utf8_at(stored) || stored.find('\0') != stored.npos)
    std::abort();
  const std::string shown = printable(id);
  for (unsigned char c : shown)
    if (c < 0x20 || c == 0x7F) std::abort();
  return 0;
}
