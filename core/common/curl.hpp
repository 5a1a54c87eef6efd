#pragma once

#include <curl/curl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address_policy.hpp"

namespace taskhost {

struct CurlUrlCleanup {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using CurlUrl = std::unique_ptr<CURLU, CurlUrlCleanup>;

// url parsed by curl's URL API, the parser a transfer given it (CURLOPT_CURLU)
// uses, so what is accepted here is what is sent: http or https, a valid host
// and port, at most max_url_length bytes. Throws Error(invalid) saying what
// is wrong (without the URL, which may carry a token).
constexpr size_t max_url_length = 4096;
CurlUrl parse_http_url(std::string_view url);

// Initialises libcurl once per process (safe from any thread).
void curl_init_once();

// The SSRF guard of one transfer: the address curl is about to connect to
// (after DNS, so no rebinding gap) must pass refuse_destination; otherwise no
// socket is opened and `refusal` says why.
struct DestinationGuard {
  const std::vector<AddressRange>* allow = nullptr;
  std::string refusal;
};

// What every outbound request of the host carries: http and https only, no
// redirects, no proxy taken from the environment, no signals, and `guard`
// (which must outlive the transfer). Without a guard (destinations the host
// config names itself, e.g. an S3 endpoint) any address may be connected.
void secure_defaults(CURL* easy, DestinationGuard* guard);

// A Retry-After header value (seconds, or an HTTP date) as a wait from now.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now);

// How long to wait before retry number `attempt` (1, 2, ...) of a request:
// first, doubled for each attempt after, plus up as much again at random so
// clients that failed together do not retry together.
std::chrono::milliseconds retry_backoff(std::chrono::milliseconds first, int attempt);

}  // namespace taskhost
