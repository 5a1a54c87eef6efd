// S3 over libcurl, signed with SigV4. One connection per store, reused.
#include <curl/curl.h>
#include <strings.h>

#include <spdlog/spdlog.h>
#include <ctime>
#include <exception>
#include <map>
#include <thread>

#include "common/curl.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"
#include "services/object_store.hpp"

namespace taskhost {

namespace {

using namespace std::chrono_literals;

constexpr int max_attempts = 4;
constexpr size_t max_error_body = 64 * 1024;

// The raw inner text of every <tag>...</tag> in xml (S3 replies nest simply).
std::vector<std::string> xml_all(const std::string& xml, const std::string& tag) {
  std::vector<std::string> out;
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  for (size_t at = xml.find(open); at != std::string::npos; at = xml.find(open, at)) {
    size_t start = at + open.size(), end = xml.find(close, start);
    if (end == std::string::npos) break;
    out.push_back(xml.substr(start, end - start));
    at = end;
  }
  return out;
}

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// XML text with the five entities and numeric references decoded.
std::string xml_text(const std::string& raw) {
  std::string text;
  for (size_t i = 0; i < raw.size(); ++i) {
    size_t semi = raw[i] == '&' ? raw.find(';', i) : std::string::npos;
    if (semi == std::string::npos) {
      text += raw[i];
      continue;
    }
    std::string entity = raw.substr(i + 1, semi - i - 1);
    if (entity == "amp")
      text += '&';
    else if (entity == "lt")
      text += '<';
    else if (entity == "gt")
      text += '>';
    else if (entity == "quot")
      text += '"';
    else if (entity == "apos")
      text += '\'';
    else if (entity.size() > 1 && entity[0] == '#')
      append_utf8(text, entity[1] == 'x' ? std::stoul(entity.substr(2), nullptr, 16)
                                         : std::stoul(entity.substr(1)));
    i = semi;
  }
  return text;
}

std::string xml_one(const std::string& xml, const std::string& tag) {
  auto all = xml_all(xml, tag);
  return all.empty() ? "" : xml_text(all.front());
}
std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // unless streamed to a sink
};

class S3Store : public ObjectStore {
 public:
  explicit S3Store(S3Endpoint e) : e_(std::move(e)) {
    curl_init_once();
    easy_ = curl_easy_init();
    if (!easy_) throw Error(ErrorKind::environment, "libcurl: cannot create a handle");
    auto scheme_end = e_.endpoint.find("://");
    if (scheme_end == std::string::npos)
      throw Error(ErrorKind::invalid, "S3 endpoint '" + e_.endpoint + "' is not a URL");
    scheme_ = e_.endpoint.substr(0, scheme_end);
    host_ = e_.endpoint.substr(scheme_end + 3);
    while (!host_.empty() && host_.back() == '/') host_.pop_back();
  }
  ~S3Store() override { curl_easy_cleanup(easy_); }

  std::optional<ObjectInfo> head(const std::string& key) override {
    Response r = request("HEAD", key, {}, {}, nullptr, nullptr);
    if (r.status == 404) return std::nullopt;
    check(r, "HEAD", key);
    return info(key, r);
  }

  ObjectInfo get(const std::string& key, const ByteSink& out) override {
    Response r = request("GET", key, {}, {}, nullptr, &out);
    check(r, "GET", key);
    return info(key, r);
  }

  ObjectInfo put(const std::string& key, const ByteSource& in,
                 const std::string& content_type) override {
    std::string part(e_.part_size, '\0');
    size_t n = fill(in, part);
    if (n < part.size()) {
      part.resize(n);
      return put_whole(key, part, content_type);
    }
    // Multipart: parts of part_size held one at a time; abort on failure so
    // no orphaned parts keep costing storage.
    Response created =
        request("POST", key, {{"uploads", ""}}, {{"Content-Type", content_type}}, &empty_, nullptr);
    check(created, "POST (create multipart upload)", key);
    const std::string upload = xml_one(created.body, "UploadId");
    uint64_t total = 0;
    try {
      std::string done = "<CompleteMultipartUpload>";
      for (int number = 1; n > 0; ++number) {
        part.resize(n);
        Response r =
            request("PUT", key, {{"partNumber", std::to_string(number)}, {"uploadId", upload}}, {},
                    &part, nullptr);
        check(r, "PUT (part " + std::to_string(number) + ")", key);
        done += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" +
                xml_escape(r.headers["etag"]) + "</ETag></Part>";
        total += n;
        part.resize(e_.part_size);
        n = fill(in, part);
      }
      done += "</CompleteMultipartUpload>";
      Response r = request("POST", key, {{"uploadId", upload}}, {}, &done, nullptr);
      check(r, "POST (complete multipart upload)", key);
      if (r.body.find("<Error>") != std::string::npos) fail(r, "POST (complete)", key);
      ObjectInfo i{key, total, xml_one(r.body, "ETag"), "", content_type};
      return i;
    } catch (...) {
      try {
        request("DELETE", key, {{"uploadId", upload}}, {}, nullptr, nullptr);
      } catch (const std::exception& e) {
        spdlog::warn("s3://{}/{}: aborting multipart upload {} failed: {}", e_.bucket, key, upload,
                     e.what());
      }
      throw;
    }
  }

  ObjectPage list(const std::string& prefix, const std::optional<std::string>& after,
                  int max) override {
    sigv4::Pairs q = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max)}};
    // start-after (a key) rather than S3's opaque continuation tokens: the
    // same page boundary, and servers like s3rver cannot decode their own.
    if (after) q.emplace_back("start-after", *after);
    Response r = request("GET", "", q, {}, nullptr, nullptr);
    check(r, "GET (list)", prefix + "*");
    ObjectPage page;
    for (const auto& c : xml_all(r.body, "Contents")) {
      ObjectInfo i;
      i.key = xml_one(c, "Key");
      i.size = std::stoull(xml_one(c, "Size").empty() ? "0" : xml_one(c, "Size"));
      i.etag = xml_one(c, "ETag");
      i.last_modified = xml_one(c, "LastModified");
      page.objects.push_back(std::move(i));
    }
    if (xml_one(r.body, "IsTruncated") == "true" && !page.objects.empty())
      page.next = page.objects.back().key;
    return page;
  }

  void remove(const std::string& key) override {
    Response r = request("DELETE", key, {}, {}, nullptr, nullptr);
    if (r.status != 404) check(r, "DELETE", key);
  }

  void copy(const std::string& from, const std::string& to) override {
    Response r =
        request("PUT", to, {},
                {{"x-amz-copy-source", "/" + e_.bucket + "/" + sigv4::uri_encode(from, false)}},
                &empty_, nullptr);
    check(r, "PUT (copy from " + from + ")", to);
    if (r.body.find("<Error>") != std::string::npos) fail(r, "PUT (copy)", to);
  }

  std::string presign_get(const std::string& key, std::chrono::seconds expires) override {
    sigv4::Request req{"GET", path(key), {}, {{"Host", host()}}, "UNSIGNED-PAYLOAD"};
    auto s = sigv4::sign_query(req, e_.credentials, options(), std::time(nullptr), expires);
    std::string q;
    for (const auto& [k, v] : s.add)
      q += (q.empty() ? "" : "&") + sigv4::uri_encode(k, true) + "=" + sigv4::uri_encode(v, true);
    return url(key, {}) + "?" + q;
  }

 private:
  static size_t fill(const ByteSource& in, std::string& buf) {
    size_t n = 0;
    while (n < buf.size()) {
      size_t got = in(buf.data() + n, buf.size() - n);
      if (got == 0) break;
      n += got;
    }
    return n;
  }

  ObjectInfo put_whole(const std::string& key, const std::string& body,
                       const std::string& content_type) {
    Response r = request("PUT", key, {}, {{"Content-Type", content_type}}, &body, nullptr);
    check(r, "PUT", key);
    return {key, body.size(), r.headers["etag"], "", content_type};
  }

  static ObjectInfo info(const std::string& key, Response& r) {
    ObjectInfo i;
    i.key = key;
    i.size = r.headers.count("content-length") ? std::stoull(r.headers["content-length"]) : 0;
    i.etag = r.headers["etag"];
    i.last_modified = r.headers["last-modified"];
    i.content_type = r.headers["content-type"];
    return i;
  }

  [[noreturn]] void fail(const Response& r, const std::string& what, const std::string& key) {
    std::string code = xml_one(r.body, "Code"), message = xml_one(r.body, "Message");
    std::string text = "S3 " + what + " s3://" + e_.bucket + "/" + key + ": HTTP " +
                       std::to_string(r.status) + (code.empty() ? "" : " " + code) +
                       (message.empty() ? "" : ": " + message);
    throw Error(r.status == 404 ? ErrorKind::not_found : ErrorKind::environment, text);
  }
  void check(const Response& r, const std::string& what, const std::string& key) {
    if (r.status < 200 || r.status >= 300) fail(r, what, key);
  }

  sigv4::Options options() const {
    sigv4::Options o;
    o.region = e_.region;
    o.service = "s3";
    o.content_sha256_header = true;
    return o;
  }
  std::string host() const { return e_.path_style ? host_ : e_.bucket + "." + host_; }
  // The decoded path that is signed, and its encoding that is sent.
  std::string path(const std::string& key) const {
    return e_.path_style ? "/" + e_.bucket + "/" + key : "/" + key;
  }
  std::string url(const std::string& key, const sigv4::Pairs& query) const {
    std::string u = scheme_ + "://" + host() + sigv4::uri_encode(path(key), false);
    std::string q;
    for (const auto& [k, v] : query)
      q += (q.empty() ? "" : "&") + sigv4::uri_encode(k, true) + "=" + sigv4::uri_encode(v, true);
    return q.empty() ? u : u + "?" + q;
  }

  // One operation, retried on 5xx, 429 and connection failures while no
  // byte has reached the sink (every operation here is idempotent).
  Response request(const std::string& method, const std::string& key, const sigv4::Pairs& query,
                   const sigv4::Pairs& headers, const std::string* body, const ByteSink* sink) {
    for (int attempt = 1;; ++attempt) {
      bool streamed = false;
      std::string transport_error;
      Response r = send(method, key, query, headers, body, sink, streamed, transport_error);
      bool retryable = !transport_error.empty() || r.status >= 500 || r.status == 429;
      if (!retryable) return r;
      std::string why =
          transport_error.empty() ? "HTTP " + std::to_string(r.status) : transport_error;
      if (streamed || attempt == max_attempts) {
        if (!transport_error.empty())
          throw Error(ErrorKind::environment, "S3 " + method + " s3://" + e_.bucket + "/" + key +
                                                  ": " + why + " (attempt " +
                                                  std::to_string(attempt) + ")");
        return r;
      }
      const auto wait = retry_backoff(std::chrono::milliseconds(100), attempt);
      spdlog::debug("S3 {} s3://{}/{}: {}; retrying in {} ms", method, e_.bucket, key, why,
                    wait.count());
      std::this_thread::sleep_for(wait);
    }
  }

  struct Transfer {
    Response* response;
    const ByteSink* sink;
    CURL* easy;
    bool* streamed;
    std::exception_ptr error;
  };

  static size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) t->response->headers.clear();  // a new response
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      while (!value.empty() &&
             (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
        value.pop_back();
      t->response->headers[name] = value;
    }
    return size * n;
  }

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (t->sink && status >= 200 && status < 300) {
      try {
        (*t->sink)(data, size * n);
        *t->streamed = true;
      } catch (...) {
        t->error = std::current_exception();
        return 0;  // aborts the transfer
      }
    } else if (t->response->body.size() < max_error_body) {
      t->response->body.append(data, size * n);
    }
    return size * n;
  }

  Response send(const std::string& method, const std::string& key, const sigv4::Pairs& query,
                const sigv4::Pairs& extra, const std::string* body, const ByteSink* sink,
                bool& streamed, std::string& transport_error) {
    sigv4::Request req{
        method, path(key), query, {{"Host", host()}}, body ? sha256_hex(*body) : sha256_hex("")};
    for (const auto& h : extra) req.headers.push_back(h);
    auto signature = sigv4::sign_headers(req, e_.credentials, options(), std::time(nullptr));

    curl_slist* list = nullptr;
    for (const auto& [k, v] : extra) list = curl_slist_append(list, (k + ": " + v).c_str());
    for (const auto& [k, v] : signature.add) list = curl_slist_append(list, (k + ": " + v).c_str());
    list = curl_slist_append(list, "Expect:");
    bool typed = false;
    for (const auto& h : extra) typed = typed || strcasecmp(h.first.c_str(), "content-type") == 0;
    if (!typed) list = curl_slist_append(list, "Content-Type:");  // not curl's form default

    Response r;
    Transfer t{&r, sink, easy_, &streamed, nullptr};
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_reset(easy_);
    secure_defaults(easy_, nullptr);
    const std::string u = url(key, query);
    curl_easy_setopt(easy_, CURLOPT_URL, u.c_str());
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
    // An I/O timeout, not a total one: a 5 GB object may take long.
    curl_easy_setopt(easy_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy_, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, on_body);
    // Large reads: a body streamed to a sandboxed plugin crosses the broker
    // as one frame per piece curl hands over (16 KiB by default).
    curl_easy_setopt(easy_, CURLOPT_BUFFERSIZE, 256L << 10);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, errbuf);
    if (method == "HEAD") {
      curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
    } else if (method != "GET") {
      curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    if (body) {
      curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    }
    CURLcode code = curl_easy_perform(easy_);
    curl_slist_free_all(list);
    if (t.error) std::rethrow_exception(t.error);
    if (code != CURLE_OK) {
      transport_error = *errbuf ? errbuf : curl_easy_strerror(code);
      return r;
    }
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
  }

  S3Endpoint e_;
  CURL* easy_ = nullptr;
  std::string scheme_, host_;
  const std::string empty_;
};

}  // namespace

std::unique_ptr<ObjectStore> s3_object_store(const S3Endpoint& endpoint) {
  return std::make_unique<S3Store>(endpoint);
}

}  // namespace taskhost
