#include "common/curl.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "common/error.hpp"
#include "common/pattern.hpp"

namespace taskhost {

namespace {

std::string address_text(const sockaddr* a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a)->sin_addr, buf, sizeof buf);
  else if (a->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, buf, sizeof buf);
  return buf;
}

curl_socket_t open_guarded(void* clientp, curlsocktype, curl_sockaddr* address) {
  auto* guard = static_cast<DestinationGuard*>(clientp);
  static const std::vector<AddressRange> none;
  if (auto why = refuse_destination(&address->addr, guard->allow ? *guard->allow : none)) {
    guard->refusal = "destination refused: " + address_text(&address->addr) + " is " + *why +
                     " and not in allow_destinations";
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now) {
  std::string v(value);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
  v.erase(0, v.find_first_not_of(" \t"));
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return v.size() > 9 ? std::chrono::seconds(999'999'999) : std::chrono::seconds(std::stol(v));
  time_t at = curl_getdate(v.c_str(), nullptr);
  if (at < 0) return std::nullopt;
  auto wait = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::from_time_t(at) - now);
  return std::max(wait, std::chrono::seconds(0));
}

CurlUrl parse_http_url(std::string_view url) {
  if (url.size() > max_url_length)
    throw Error(ErrorKind::invalid, "longer than " + std::to_string(max_url_length) + " bytes");
  if (url.find('\0') != std::string_view::npos)
    throw Error(ErrorKind::invalid, "holds a NUL character");
  CurlUrl u(curl_url());
  if (!u) throw Error(ErrorKind::environment, "libcurl: out of memory");
  // No flags: no scheme guessing, no spaces, no non-http scheme passes.
  if (auto rc = curl_url_set(u.get(), CURLUPART_URL, std::string(url).c_str(), 0); rc != CURLUE_OK)
    throw Error(ErrorKind::invalid, curl_url_strerror(rc));
  auto part = [&](CURLUPart which) {
    char* text = nullptr;
    curl_url_get(u.get(), which, &text, 0);
    std::string out = text ? text : "";
    curl_free(text);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https")
    throw Error(ErrorKind::invalid, "the scheme must be http or https");
  // curl decodes a percent-encoded host ("%31%32%37.0.0.1" is 127.0.0.1):
  // a host must be written as it is, a name or an address.
  const auto authority = url.substr(url.find("://") + 3);
  if (authority.substr(0, authority.find_first_of("/?#")).find('%') != std::string_view::npos)
    throw Error(ErrorKind::invalid, "the host is percent-encoded");
  static const Pattern name_re("[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?");
  const std::string host = part(CURLUPART_HOST);
  if (host.rfind('[', 0) != 0 && !name_re.matches(host))
    throw Error(ErrorKind::invalid,
                "the host must be a DNS name, an IPv4 or a bracketed IPv6 address");
  return u;
}

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw Error(ErrorKind::environment, "libcurl failed to initialise");
  });
}

void secure_defaults(CURL* easy, DestinationGuard* guard) {
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  if (!guard) return;
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_guarded);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, guard);
}

std::chrono::milliseconds retry_backoff(std::chrono::milliseconds first, int attempt) {
  thread_local std::mt19937 rng(std::random_device{}());
  const auto base = first * (int64_t{1} << (attempt - 1));
  return base + std::chrono::milliseconds(rng() % (base.count() + 1));
}

}  // namespace taskhost
