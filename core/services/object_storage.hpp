#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "schema/schema.hpp"
#include "services/object_store.hpp"
#include "services/service_call.hpp"

namespace taskhost {

// Object keys as plugins may name them: 1 to 1024 bytes of valid UTF-8, no
// control characters, no leading '/', no empty, '.' or '..' segments.
// Throws Error(invalid) saying what is wrong. A list prefix may also be
// empty or end with '/'.
void check_object_key(const std::string& key);
void check_object_prefix(const std::string& prefix);

// The store behind a bucket name: the host config's s3 entry, or without any
// a directory under object_store_dir. Throws Error(environment) for a bucket
// the config does not name.
std::unique_ptr<ObjectStore> open_bucket(const HostConfig& config, const std::string& bucket);

// A run's object storage: every call checked against the schema's s3 grants
// ({bucket, prefix, access}), performed by the host and audited. The
// operations and their JSON (README "Services"):
//   head {bucket, key}                  -> {exists, size, etag, last_modified, content_type}
//   get {bucket, key}          out body -> {size, etag, last_modified, content_type}
//   put {bucket, key, content_type} in  -> {size, etag}
//   list {bucket, prefix, after?, max?} -> {objects: [{key, size, etag, last_modified}], next?}
//   delete {bucket, key}                -> {}
//   copy {bucket, from, to}             -> {}   (read on from, write on to)
//   presign {bucket, key, expires}      -> {url} (read; expires in seconds)
//   put_from {bucket, key, content_type?, from}    -> {size, sha256, etag}
//       a host-side copy into bucket/key (write) from
//       from: {sftp: HOST, path: PATH}             (sftp read), or
//       from: {object_storage: BUCKET, key: KEY}   (s3 read);
//       both grants are checked before a byte moves, the bytes stream
//       through 1 MiB (services/transfer.hpp) and a failing source leaves
//       no object. Audited as service.s3.put_from with size and SHA-256 (the
//       source's read also as its own get).
// In a dry run every write (put, delete, copy's target) is refused after the
// grant check, so the dry run meets the refusals the real run would.
// A get's reply: size, etag, last_modified, content_type.
Json info_json(const ObjectInfo& i);

class ObjectStorageService {
 public:
  // sftp: the schema's sftp grants, for put_from's SFTP sources.
  ObjectStorageService(std::string schema, std::vector<S3Grant> grants, const HostConfig& config,
                       ServiceAudit audit, bool dry_run = false, std::vector<SftpGrant> sftp = {});
  Json call(const std::string& op, const Json& request, const ByteSource& in, const ByteSink& out);
  // A get whose object the store keeps as a file: that file, the get
  // audited with its size (what is handed over, whatever the plugin then
  // reads). nullptr for anything else, which call() then serves or refuses.
  std::unique_ptr<ObjectFile> get_file(const Json& request);

 private:
  // Throws Error(refused) "permission denied ..." unless a grant covers it.
  void authorize(const std::string& bucket, const std::string& key, Access need) const;
  ObjectStore& store(const std::string& bucket);
  Json put_from(const std::string& bucket, const Json& request, ServiceCall& record);

  std::string schema_;
  std::vector<S3Grant> grants_;
  const HostConfig& config_;
  ServiceAudit audit_;
  bool dry_run_;
  std::vector<SftpGrant> sftp_;
  std::map<std::string, std::unique_ptr<ObjectStore>> stores_;
};

}  // namespace taskhost
