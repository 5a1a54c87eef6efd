#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "schema/schema.hpp"
#include "services/object_storage.hpp"
#include "services/service_call.hpp"

namespace taskhost {

// A run's OpenPGP (librnp): decrypts an object the schema's s3 grants let it
// read, with a secret key from the host config that capabilities.pgp grants,
// and streams the plaintext to the plugin in chunks it pulls. The secret
// key and its passphrase are read from their references for each file and
// never leave the host; a granted `verify` key makes a valid signature by
// that key a condition of the last chunk.
//   open {pgp_key, bucket, key}    -> {}     (starts decrypting; replaces an open one)
//   read {max}             out     -> {eof: false}, or at the end
//        {eof: true, size, source_size, source_sha256, signer, verified}
// The plaintext streams as it is decrypted: only the read that says eof
// (after the signature and integrity checks) means the file is good, so
// commit nothing before it. A refusal (not encrypted, wrong key, altered,
// unsigned, signed by another key) fails that read with Error(invalid)
// naming the object and why. Each file is audited as service.pgp.decrypt.
class PgpService {
 public:
  PgpService(std::string schema, std::vector<PgpGrant> grants, std::vector<S3Grant> s3,
             const HostConfig& config, ServiceAudit audit);
  ~PgpService();
  PgpService(const PgpService&) = delete;
  PgpService& operator=(const PgpService&) = delete;
  Json call(const std::string& op, const Json& request, const ByteSource& in, const ByteSink& out);

  struct Stream;  // one file being decrypted, on its own threads

 private:
  Json open(const Json& request);
  Json read(const Json& request, const ByteSink& out);

  std::string schema_;
  std::vector<PgpGrant> grants_;
  std::vector<S3Grant> s3_;
  const HostConfig& config_;
  ServiceAudit audit_;
  std::unique_ptr<Stream> stream_;
};

}  // namespace taskhost
