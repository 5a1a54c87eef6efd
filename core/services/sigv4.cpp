#include "services/sigv4.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost::sigv4 {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Trimmed, with runs of whitespace (folded lines too) made one space.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string normalized(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  if (out.empty()) return "/";
  if (path.back() == '/') out += '/';
  return out;
}

std::string date_time(std::time_t t) {
  char buf[17];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

struct Canonical {
  std::string request, signed_headers;
};

// The canonical request of `request` with `query` as its query.
Canonical canonicalize(const Request& request, const Pairs& query, const Options& options) {
  std::string path = request.path.empty() ? "/" : request.path;
  std::string uri = uri_encode(options.normalize_path ? normalized(path) : path, false);

  Pairs q;
  for (const auto& [k, v] : query) q.emplace_back(uri_encode(k, true), uri_encode(v, true));
  std::sort(q.begin(), q.end());
  std::string query_text;
  for (const auto& [k, v] : q) query_text += (query_text.empty() ? "" : "&") + k + "=" + v;

  // Names lower-cased and sorted; repeated headers joined by ',' in order.
  std::vector<std::pair<std::string, std::string>> h;
  for (const auto& [k, v] : request.headers) {
    std::string name = lower(k), value = canonical_value(v);
    auto it = std::find_if(h.begin(), h.end(), [&](const auto& e) { return e.first == name; });
    if (it == h.end())
      h.emplace_back(name, value);
    else
      it->second += "," + value;
  }
  std::stable_sort(h.begin(), h.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  Canonical c;
  std::string header_text;
  for (const auto& [k, v] : h) {
    header_text += k + ":" + v + "\n";
    c.signed_headers += (c.signed_headers.empty() ? "" : ";") + k;
  }
  c.request = request.method + "\n" + uri + "\n" + query_text + "\n" + header_text + "\n" +
              c.signed_headers + "\n" + request.payload_sha256;
  return c;
}

std::string scope(std::time_t now, const Options& o) {
  return date_time(now).substr(0, 8) + "/" + o.region + "/" + o.service + "/aws4_request";
}

void finish(Signature& s, const Credentials& c, const Options& o, std::time_t now) {
  s.string_to_sign = "AWS4-HMAC-SHA256\n" + date_time(now) + "\n" + scope(now, o) + "\n" +
                     sha256_hex(s.canonical_request);
  std::string key = hmac_sha256("AWS4" + c.secret_access_key, date_time(now).substr(0, 8));
  key = hmac_sha256(key, o.region);
  key = hmac_sha256(key, o.service);
  key = hmac_sha256(key, "aws4_request");
  s.signature = hex_lower(hmac_sha256(key, s.string_to_sign));
}

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xf];
    }
  }
  return out;
}

Signature sign_headers(const Request& request, const Credentials& credentials,
                       const Options& options, std::time_t now) {
  Signature s;
  Request r = request;
  s.add.emplace_back("X-Amz-Date", date_time(now));
  if (!credentials.session_token.empty() && !options.omit_session_token)
    s.add.emplace_back("X-Amz-Security-Token", credentials.session_token);
  if (options.content_sha256_header)
    s.add.emplace_back("x-amz-content-sha256", request.payload_sha256);
  r.headers.insert(r.headers.end(), s.add.begin(), s.add.end());
  Canonical c = canonicalize(r, r.query, options);
  s.canonical_request = c.request;
  finish(s, credentials, options, now);
  if (!credentials.session_token.empty() && options.omit_session_token)
    s.add.emplace_back("X-Amz-Security-Token", credentials.session_token);
  s.add.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id +
                                          "/" + scope(now, options) + ", SignedHeaders=" +
                                          c.signed_headers + ", Signature=" + s.signature);
  return s;
}

Signature sign_query(const Request& request, const Credentials& credentials, const Options& options,
                     std::time_t now, std::chrono::seconds expires) {
  if (expires.count() < 1 || expires > std::chrono::hours(24 * 7))
    throw Error(ErrorKind::invalid, "a presigned URL expires within 1 second to 7 days");
  Signature s;
  Canonical probe = canonicalize(request, {}, options);  // for the signed header list
  s.add = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
           {"X-Amz-Credential", credentials.access_key_id + "/" + scope(now, options)},
           {"X-Amz-Date", date_time(now)},
           {"X-Amz-Expires", std::to_string(expires.count())}};
  if (!credentials.session_token.empty() && !options.omit_session_token)
    s.add.emplace_back("X-Amz-Security-Token", credentials.session_token);
  s.add.emplace_back("X-Amz-SignedHeaders", probe.signed_headers);
  Pairs query = request.query;
  query.insert(query.end(), s.add.begin(), s.add.end());
  s.canonical_request = canonicalize(request, query, options).request;
  finish(s, credentials, options, now);
  if (!credentials.session_token.empty() && options.omit_session_token)
    s.add.emplace_back("X-Amz-Security-Token", credentials.session_token);
  s.add.emplace_back("X-Amz-Signature", s.signature);
  return s;
}

}  // namespace taskhost::sigv4
