#pragma once

#include <chrono>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace taskhost::sigv4 {

// AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/
// reference_sigv.html), for S3 and any AWS-style API. Verified against the
// AWS test suite (tests/data/sigv4) and botocore.

using Pairs = std::vector<std::pair<std::string, std::string>>;

struct Credentials {
  std::string access_key_id, secret_access_key;
  std::string session_token;  // empty unless temporary credentials
};

struct Request {
  std::string method;
  // Encoded once by the signer: for S3 the decoded path ("/bucket/my key");
  // other services sign the path as sent, so they pass it encoded already.
  std::string path;
  Pairs query;                 // decoded names and values
  Pairs headers;               // the headers to sign, Host among them
  std::string payload_sha256;  // hex, or "UNSIGNED-PAYLOAD"
};

struct Options {
  std::string region, service;
  // Remove dot segments and repeated slashes first: every service but S3.
  bool normalize_path = false;
  // Header signing: also sign an x-amz-content-sha256 header (S3 requires it).
  bool content_sha256_header = false;
  // Temporary credentials: add the token after signing instead of signing it
  // (a few services want that).
  bool omit_session_token = false;
};

struct Signature {
  std::string canonical_request, string_to_sign, signature;
  // Header signing: headers to add to the request (X-Amz-Date, the token,
  // x-amz-content-sha256, Authorization). Query signing: query parameters to
  // add (X-Amz-Algorithm ... X-Amz-Signature), still decoded.
  Pairs add;
};

Signature sign_headers(const Request& request, const Credentials& credentials,
                       const Options& options, std::time_t now);

// A presigned request valid for `expires` (at most 7 days).
Signature sign_query(const Request& request, const Credentials& credentials, const Options& options,
                     std::time_t now, std::chrono::seconds expires);

// RFC 3986 percent-encoding of everything but unreserved characters (and
// '/' unless encode_slash), upper-case hex: SigV4's UriEncode.
std::string uri_encode(std::string_view text, bool encode_slash);

}  // namespace taskhost::sigv4
