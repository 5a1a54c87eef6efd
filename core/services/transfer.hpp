#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "services/object_store.hpp"  // ByteSink, ByteSource

namespace taskhost {

// A host-side copy between two granted resources (README "Services",
// object storage's put_from): the services check both grants and audit it;
// this moves the bytes.

struct Transferred {
  uint64_t size = 0;
  std::string sha256;  // lower-case hex of the bytes copied
};

// Streams what `read` pushes into its sink to `write`, which pulls it from
// its source, through a 1 MiB pipe: `read` runs on a thread of its own, so
// memory stays bounded whatever the size. The bytes are hashed on the way.
// If `read` throws, the source `write` pulls from throws the same error
// (never a short end), so the destination aborts and keeps no partial
// object; that error is rethrown. If `write` throws, `read` is stopped and
// write's error is rethrown.
Transferred transfer(const std::function<void(const ByteSink&)>& read,
                     const std::function<void(const ByteSource&)>& write);

}  // namespace taskhost
