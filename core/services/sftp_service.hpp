#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "schema/schema.hpp"
#include "services/service_call.hpp"
#include "services/sftp_client.hpp"

namespace taskhost {

// Remote paths as plugins may name them: absolute, at most 4,096 bytes, no
// control characters, no empty, '.' or '..' segments. Throws Error(invalid).
void check_remote_path(const std::string& path);

// A run's SFTP: every call checked against the schema's sftp grants
// ({host, path, access}) twice, on the path as written and on the server's
// realpath of it (so a symlink cannot lead out), performed and audited.
//   list {host, path, glob?}  -> {files: [{name, size, mtime, directory}]}
//   get {host, path}     out  -> {size}
//   put {host, path}     in   -> {size}   (temporary name, then rename)
//   rename {host, from, to}   -> {}       (write on both)
//   remove {host, path}       -> {}
//   mkdir {host, path}        -> {}
//   put_from {host, path, from: {object_storage: BUCKET, key: KEY}}
//                             -> {size, sha256}   a host-side copy of an object
//       (s3 read) to path (write), as object storage's put_from: both grants
//       checked first, 1 MiB in flight, written to a temporary name so a
//       failing source leaves no file.
// In a dry run every write (put, rename, remove, mkdir) is refused after both
// checks.
class SftpService {
 public:
  // s3: the schema's s3 grants, for put_from's sources.
  SftpService(std::string schema, std::vector<SftpGrant> grants, const HostConfig& config,
              ServiceAudit audit, bool dry_run = false, std::vector<S3Grant> s3 = {});
  Json call(const std::string& op, const Json& request, const ByteSource& in, const ByteSink& out);

  // Throws Error(refused) unless a grant on host covers path with `need`;
  // with `exists`, the server's realpath of path must be covered too, else
  // that of its parent directory (Error(not_found) for a missing path).
  // Public for transfers, which check their source before moving a byte.
  void authorize(const std::string& host, const std::string& path, Access need, bool exists);

 private:
  SftpClient& client(const std::string& host);
  Json put_from(const std::string& host, const std::string& path, const Json& request,
                ServiceCall& record);

  std::string schema_;
  std::vector<SftpGrant> grants_;
  const HostConfig& config_;
  ServiceAudit audit_;
  bool dry_run_;
  std::vector<S3Grant> s3_;
  std::map<std::string, std::unique_ptr<SftpClient>> clients_;
};

}  // namespace taskhost
