// The host's frame decoder on hostile input: a byte string is read as a
// sequence of frames and each body as its kind's layout. Any outcome but
// FrameError (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sandbox/frame.hpp"

using namespace taskhost::sandbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  try {
    while (rest.size() >= header_size) {
      Header h = parse_header(rest);
      if (rest.size() - header_size < h.body_size) return 0;
      std::string_view body = rest.substr(header_size, h.body_size);
      rest.remove_prefix(header_size + h.body_size);
      switch (h.kind) {
        case Kind::prepare:
          parse_prepare(body);
          break;
        case Kind::go:
          parse_go(body);
          break;
        case Kind::read:
          parse_read(body);
          break;
        case Kind::chunk:
          parse_chunk(body);
          break;
        case Kind::result:
        case Kind::done:
          parse_result(body);
          break;
        case Kind::hello:
          parse_hello(body);
          break;
        case Kind::call:
          parse_call(body);
          break;
        case Kind::data:
          parse_data(body);
          break;
        case Kind::abort:
          parse_abort(body);
          break;
        case Kind::setup_failed:
        case Kind::unavailable:
          parse_setup_failed(body);
          break;
        case Kind::syscall_denied:
          parse_syscall_denied(body);
          break;
        case Kind::start:
        case Kind::stop:
        case Kind::source_failed:
          break;
      }
    }
  } catch (const FrameError&) {
  }
  return 0;
}
