#include "services/transfer.hpp"

#include <exception>
#include <thread>

#include "common/error.hpp"
#include "common/sha256.hpp"
#include "services/byte_pipe.hpp"

namespace taskhost {
namespace {
struct Stopped {};  // the writer gave up: the reader need not go on
}  // namespace

Transferred transfer(const std::function<void(const ByteSink&)>& read,
                     const std::function<void(const ByteSource&)>& write) {
  BytePipe pipe(1 << 20);
  Sha256 sha;
  uint64_t size = 0;
  std::exception_ptr read_failure;
  bool complete = false;
  std::thread reader([&] {
    try {
      read([&](const char* data, size_t n) {
        sha.update({data, n});
        size += n;
        if (!pipe.write(data, n)) throw Stopped{};
      });
      complete = true;
    } catch (const Stopped&) {
    } catch (...) {
      read_failure = std::current_exception();
    }
    pipe.close();  // after read_failure is set: the writer sees both together
  });
  try {
    write([&](char* buf, size_t capacity) {
      const size_t n = pipe.read(buf, capacity);
      if (n == 0 && read_failure) std::rethrow_exception(read_failure);
      return n;
    });
  } catch (...) {
    pipe.abort();
    reader.join();
    // The source's own error explains a destination that stopped for it.
    if (read_failure) std::rethrow_exception(read_failure);
    throw;
  }
  pipe.abort();  // a destination that stopped pulling early must not block the reader
  reader.join();
  if (read_failure) std::rethrow_exception(read_failure);
  if (!complete)
    throw Error(ErrorKind::environment, "transfer: the destination stopped before the end");
  return {size, sha.hex()};
}

}  // namespace taskhost
