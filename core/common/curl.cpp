#include "common/curl.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "common/error.hpp"

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
