#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "services/sigv4.hpp"

namespace taskhost {

// Object storage as the host performs it for plugins: S3 over libcurl, or a
// local directory (the embedded default). Keys reaching a store have been
// checked already (services/object_key.hpp); a store only does the I/O.

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  std::string etag, last_modified, content_type;
};

struct ObjectPage {
  std::vector<ObjectInfo> objects;
  std::optional<std::string> next;  // when there is more: the key to list after
};

// Receives a body in pieces; throws to abort the transfer.
using ByteSink = std::function<void(const char* data, size_t size)>;
// Fills buf with up to capacity bytes; returns 0 at the end.
using ByteSource = std::function<size_t(char* buf, size_t capacity)>;

// An object's file, open read-only; closed with this.
struct ObjectFile {
  ObjectFile(int fd, ObjectInfo info) : fd(fd), info(std::move(info)) {}
  ~ObjectFile();
  ObjectFile(const ObjectFile&) = delete;
  ObjectFile& operator=(const ObjectFile&) = delete;
  int fd;
  ObjectInfo info;  // size: the file's, as opened
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual std::optional<ObjectInfo> head(const std::string& key) = 0;
  // Streams the object into out. Throws Error(not_found).
  virtual ObjectInfo get(const std::string& key, const ByteSink& out) = 0;
  // The object as a file open read-only, where the store keeps objects as
  // files (the local store), so that a sandboxed plugin reads it directly
  // instead of through the broker; nullptr from stores that do not. Throws
  // Error(not_found).
  virtual std::unique_ptr<ObjectFile> open_file(const std::string&) { return nullptr; }
  // Streams in to the object; memory stays bounded whatever its size.
  virtual ObjectInfo put(const std::string& key, const ByteSource& in,
                         const std::string& content_type) = 0;
  // Keys under prefix in key order, up to max per page.
  virtual ObjectPage list(const std::string& prefix, const std::optional<std::string>& after,
                          int max) = 0;
  virtual void remove(const std::string& key) = 0;
  virtual void copy(const std::string& from, const std::string& to) = 0;
  // A URL anyone holding it can GET until it expires.
  virtual std::string presign_get(const std::string& key, std::chrono::seconds expires) = 0;
};

struct S3Endpoint {
  std::string bucket;
  std::string endpoint;  // scheme://host[:port], e.g. https://s3.us-east-1.amazonaws.com
  std::string region = "us-east-1";
  bool path_style = false;  // https://host/bucket/key instead of https://bucket.host/key
  sigv4::Credentials credentials;
  // Above this a put becomes a multipart upload of parts this size.
  size_t part_size = 8 * 1024 * 1024;
};

std::unique_ptr<ObjectStore> s3_object_store(const S3Endpoint& endpoint);

// Objects as files under root/<key>, for hosts without S3. Presigned URLs
// are file:// URLs (local use only).
std::unique_ptr<ObjectStore> local_object_store(const std::filesystem::path& root);

}  // namespace taskhost
