#pragma once

#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "schema/schema.hpp"
#include "services/object_store.hpp"  // ByteSink, ByteSource
#include "services/service_call.hpp"

namespace taskhost {

// A run's outbound HTTP: requests only under the schema's granted base URLs
// (capabilities.http: {base_url, credential}), the credential injected by the
// host, the SSRF guard on the connected address, retries on 429/5xx (and
// connection failures) for idempotent requests honouring Retry-After,
// redirects followed only within the grant, a response size limit, one
// kept-alive connection per origin for the run. One operation:
//   request {credential?, method, url, headers?, idempotent?, timeout_ms?,
//            max_response_bytes?}   in body, out body
//     -> {status, headers: {lower-case name: value}, bytes}
// In a dry run only GET and HEAD are sent, and the methods a grant covering
// the URL lists as safe_methods (a status query sent as POST); the rest are
// refused before anything is sent.
class HttpService {
 public:
  HttpService(std::string schema, std::vector<HttpGrant> grants, const HostConfig& config,
              ServiceAudit audit, bool dry_run = false);
  ~HttpService();
  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  Json call(const std::string& op, const Json& request, const ByteSource& in, const ByteSink& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskhost
