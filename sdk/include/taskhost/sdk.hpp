// taskhost C++ SDK: what plugin authors write against. Header-only.
//
//   struct Hello {
//     static constexpr const char* name = "hello";
//     static constexpr const char* version = "1.0.0";
//     static constexpr const char* description = "Greets";
//     void run(taskhost::Context& ctx);
//   };
//   TASKHOST_PLUGIN(Hello)
//
// run() reports failure by throwing: taskhost::Error carries a th_code,
// taskhost::PermanentError means "do not retry", any other std::exception is
// a retryable failure. The generated trampoline is noexcept: nothing unwinds
// across the C ABI.
#pragma once

#include <taskhost/plugin.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace taskhost {

using Json = nlohmann::json;

// A failure with an ABI code. OK is code TH_OK with an empty message.
class Status {
 public:
  Status() = default;
  Status(th_code code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const { return code_ == TH_OK; }
  th_code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  th_code code_ = TH_OK;
  std::string message_;
};

// A value or the Status saying why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  Result(Status status) : status_(std::move(status)) {}
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Precondition: ok().
  T& value() { return *value_; }
  const T& value() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

class Error : public std::runtime_error {
 public:
  Error(th_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  explicit Error(const Status& s) : Error(s.code(), s.message()) {}
  th_code code() const { return code_; }

 private:
  th_code code_;
};

// The run failed and retrying will not help (bad input, rejected by policy).
class PermanentError : public Error {
 public:
  explicit PermanentError(const std::string& message) : Error(TH_ERR_PERMANENT, message) {}
};

namespace detail {

inline th_str str(std::string_view s) { return th_str{s.data(), s.size()}; }

inline int append_to_string(void* user, const char* data, size_t size) {
  static_cast<std::string*>(user)->append(data, size);
  return 0;
}

// Owns the message buffer a host call may write into.
struct ErrorBuffer {
  char message[1024] = {0};
  th_error err{message, sizeof message};
  Status status(int code) const {
    return code == TH_OK ? Status() : Status(static_cast<th_code>(code), message);
  }
};

inline void write_error(th_error* err, std::string_view message) {
  if (err == nullptr || err->message == nullptr || err->capacity == 0) return;
  size_t n = message.size() < err->capacity - 1 ? message.size() : err->capacity - 1;
  std::memcpy(err->message, message.data(), n);
  err->message[n] = '\0';
}

// A th_source reading bytes the caller holds.
struct BytesSource {
  std::string_view rest;
  th_source source{this, &BytesSource::read};
  explicit BytesSource(std::string_view data) : rest(data) {}
  BytesSource(const BytesSource&) = delete;
  static int64_t read(void* user, char* buf, size_t capacity) {
    auto* c = static_cast<BytesSource*>(user);
    size_t n = c->rest.size() < capacity ? c->rest.size() : capacity;
    if (n > 0) std::memcpy(buf, c->rest.data(), n);
    c->rest.remove_prefix(n);
    return static_cast<int64_t>(n);
  }
};

// A th_source pulling from fill(buf, capacity) -> bytes written, 0 at the end.
template <typename F>
struct FillSource {
  F* fill;
  th_source source{this, &FillSource::read};
  explicit FillSource(F& f) : fill(&f) {}
  FillSource(const FillSource&) = delete;
  static int64_t read(void* user, char* buf, size_t capacity) {
    try {
      return static_cast<int64_t>((*static_cast<FillSource*>(user)->fill)(buf, capacity));
    } catch (...) {
      return -1;  // the host reports a failed source
    }
  }
};

// A th_sink handing each piece to chunk(std::string_view).
template <typename F>
struct ChunkSink {
  F* chunk;
  th_sink sink{this, &ChunkSink::write};
  explicit ChunkSink(F& f) : chunk(&f) {}
  ChunkSink(const ChunkSink&) = delete;
  static int write(void* user, const char* data, size_t size) {
    try {
      (*static_cast<ChunkSink*>(user)->chunk)(std::string_view(data, size));
      return 0;
    } catch (...) {
      return 1;  // aborts the transfer; the host reports it
    }
  }
};

}  // namespace detail

// A granted service (object storage, SFTP, SQL, HTTP). Operations and their
// request/reply JSON are documented per service. Cheap to copy; valid only
// during run().
class Service {
 public:
  Service(th_service_fn fn, th_host* host) : fn_(fn), host_(host) {}

  // Calls op with a JSON request. body_in/body_out stream the payload, if any.
  Result<Json> call(std::string_view op, const Json& request, th_source* body_in = nullptr,
                    th_sink* body_out = nullptr) const {
    std::string req = request.dump(), reply;
    th_sink reply_sink{&reply, detail::append_to_string};
    detail::ErrorBuffer eb;
    int rc = fn_(host_, detail::str(op), detail::str(req), body_in, body_out, &reply_sink, &eb.err);
    if (rc != TH_OK) return eb.status(rc);
    if (reply.empty()) return Json::object();
    Json parsed = Json::parse(reply, nullptr, false);
    if (parsed.is_discarded()) return Status(TH_ERR_INTERNAL, "host sent a malformed reply");
    return parsed;
  }

 private:
  th_service_fn fn_;
  th_host* host_;
};

// The objects of one bucket the schema grants (capabilities.s3: bucket,
// prefix, access). The host checks every call against the grant, performs it
// and audits it; failures throw Error: TH_ERR_PERMISSION outside the grant,
// TH_ERR_INVALID for a malformed key, TH_ERR_NOT_FOUND for a missing object,
// TH_ERR_IO for storage failures. Valid only during run().
class Bucket {
 public:
  struct Object {
    std::string key;
    uint64_t size = 0;
    std::string etag, last_modified, content_type;
  };

  Bucket(Service service, std::string name) : service_(service), name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  std::optional<Object> head(std::string_view key) const {
    Json r = call("head", {{"key", key}});
    if (!r.value("exists", false)) return std::nullopt;
    return object(key, r);
  }
  // The whole object, in memory: for small objects.
  std::string get(std::string_view key) const {
    std::string out;
    get(key, [&](std::string_view chunk) { out.append(chunk); });
    return out;
  }
  // Streams the object to `chunk` piece by piece, whatever its size.
  template <typename F>
  Object get(std::string_view key, F&& chunk) const {
    detail::ChunkSink<std::remove_reference_t<F>> out(chunk);
    return object(key, call("get", {{"key", key}}, nullptr, &out.sink));
  }
  Object put(std::string_view key, std::string_view data,
             std::string_view content_type = "application/octet-stream") const {
    std::string_view rest = data;
    return put(
        key,
        [&](char* buf, size_t cap) {
          size_t n = rest.size() < cap ? rest.size() : cap;
          std::memcpy(buf, rest.data(), n);
          rest.remove_prefix(n);
          return n;
        },
        content_type);
  }
  // Streams the object from `fill(buf, capacity)`, which returns the bytes it
  // wrote and 0 at the end: a file of any size is never held in memory.
  template <typename F,
            typename = std::enable_if_t<std::is_invocable_r_v<size_t, F&, char*, size_t>>>
  Object put(std::string_view key, F&& fill, std::string_view content_type) const {
    detail::FillSource<std::remove_reference_t<F>> in(fill);
    return object(key, call("put", {{"key", key}, {"content_type", content_type}}, &in.source));
  }
  // Every object under prefix, in key order (all pages).
  std::vector<Object> list(std::string_view prefix = "") const {
    std::vector<Object> out;
    Json request = {{"prefix", prefix}};
    for (;;) {
      Json r = call("list", request);
      for (const auto& o : r["objects"]) out.push_back(object(o["key"].get<std::string>(), o));
      if (!r.contains("next")) return out;
      request["after"] = r["next"];
    }
  }
  void remove(std::string_view key) const { call("delete", {{"key", key}}); }
  void copy(std::string_view from, std::string_view to) const {
    call("copy", {{"from", from}, {"to", to}});
  }
  // What a host-side copy moved: its size and the SHA-256 of its bytes.
  struct Transferred {
    uint64_t size = 0;
    std::string sha256;
  };
  // Copies a file from an SFTP host the schema grants (read) into this
  // bucket (write), host to host: the bytes never pass through the plugin,
  // however large. Both grants are checked before a byte moves; a source
  // that fails midway leaves no object.
  Transferred put_from_sftp(std::string_view key, std::string_view host,
                            std::string_view path) const {
    return transferred(
        call("put_from", {{"key", key}, {"from", {{"sftp", host}, {"path", path}}}}));
  }
  // The same from an object of a bucket the schema grants (read).
  Transferred put_from_bucket(std::string_view key, std::string_view bucket,
                              std::string_view source_key) const {
    return transferred(call(
        "put_from", {{"key", key}, {"from", {{"object_storage", bucket}, {"key", source_key}}}}));
  }
  // A URL that lets anyone GET the object until it expires (at most 7 days).
  std::string presign(std::string_view key, int64_t expires_seconds) const {
    return call("presign", {{"key", key}, {"expires", expires_seconds}})["url"];
  }

 private:
  Json call(const char* op, Json request, th_source* in = nullptr, th_sink* out = nullptr) const {
    request["bucket"] = name_;
    Result<Json> r = service_.call(op, request, in, out);
    if (!r.ok()) throw Error(r.status());
    return r.value();
  }
  static Object object(std::string_view key, const Json& r) {
    return {std::string(key), r.value("size", uint64_t{0}), r.value("etag", ""),
            r.value("last_modified", ""), r.value("content_type", "")};
  }
  static Transferred transferred(const Json& r) {
    return {r.value("size", uint64_t{0}), r.value("sha256", "")};
  }

  Service service_;
  std::string name_;
};

// Files on one SFTP host the schema grants (capabilities.sftp: host, path,
// access). Paths are absolute; the host confines them to the granted path
// (symlinks resolved on the server and checked again), performs the call and
// audits it. Failures throw Error like Bucket's.
class Sftp {
 public:
  struct File {
    std::string name;
    uint64_t size = 0;
    int64_t mtime = 0;
    bool directory = false;
  };

  Sftp(Service service, std::string host) : service_(service), host_(std::move(host)) {}

  // Entries of dir matching a glob such as "RXACCUM_*.pgp", by name.
  std::vector<File> list(std::string_view dir, std::string_view glob = "*") const {
    std::vector<File> out;
    const Json reply = call("list", {{"path", dir}, {"glob", glob}});
    for (const auto& f : reply["files"])
      out.push_back({f["name"], f["size"], f["mtime"], f["directory"]});
    return out;
  }
  std::string get(std::string_view path) const {
    std::string out;
    get(path, [&](std::string_view chunk) { out.append(chunk); });
    return out;
  }
  // Streams the file to `chunk` piece by piece, whatever its size.
  template <typename F>
  uint64_t get(std::string_view path, F&& chunk) const {
    detail::ChunkSink<std::remove_reference_t<F>> out(chunk);
    return call("get", {{"path", path}}, nullptr, &out.sink)["size"];
  }
  // Written to a temporary name, then renamed into place.
  uint64_t put(std::string_view path, std::string_view data) const {
    detail::BytesSource in(data);
    return call("put", {{"path", path}}, &in.source)["size"];
  }
  void rename(std::string_view from, std::string_view to) const {
    call("rename", {{"from", from}, {"to", to}});
  }
  void remove(std::string_view path) const { call("remove", {{"path", path}}); }
  void mkdir(std::string_view path) const { call("mkdir", {{"path", path}}); }
  // Copies an object of a bucket the schema grants (read) to path (write),
  // host to host, as Bucket::put_from_sftp the other way: {size, sha256}.
  Bucket::Transferred put_from_bucket(std::string_view path, std::string_view bucket,
                                      std::string_view key) const {
    Json r =
        call("put_from", {{"path", path}, {"from", {{"object_storage", bucket}, {"key", key}}}});
    return {r.value("size", uint64_t{0}), r.value("sha256", "")};
  }

 private:
  Json call(const char* op, Json request, th_source* in = nullptr, th_sink* out = nullptr) const {
    request["host"] = host_;
    Result<Json> r = service_.call(op, request, in, out);
    if (!r.ok()) throw Error(r.status());
    return r.value();
  }

  Service service_;
  std::string host_;
};

// Decryption with a secret key the schema grants (capabilities.pgp: key,
// verify), of an object its s3 grants let it read. The key never reaches the
// plugin: the host decrypts and the plugin pulls the plaintext in chunks,
// making any other host calls (a COPY of the rows so far) between them.
//   Pgp pgp = ctx.pgp("esi");
//   pgp.open("raw-bucket", "in/file.pgp");
//   for (std::string chunk; !(chunk = pgp.read()).empty();) ...
//   pgp.result()  // after the last read: size, source_sha256, signer ...
// The last read (the one returning "") checks the signature and integrity:
// until it returned, treat the plaintext as unverified (commit nothing). A
// refused file throws Error(TH_ERR_INVALID) naming why. Valid only during run().
class Pgp {
 public:
  Pgp(Service service, std::string key) : service_(service), key_(std::move(key)) {}

  void open(std::string_view bucket, std::string_view object_key) {
    result_ = Json();
    call("open", {{"pgp_key", key_}, {"bucket", bucket}, {"key", object_key}});
  }
  // The next piece of plaintext, at most max bytes (up to 8 MiB); "" at the end.
  std::string read(size_t max = 1 << 20) {
    std::string out;
    th_sink sink{&out, detail::append_to_string};
    Json r = call("read", {{"max", max}}, &sink);
    if (r.value("eof", false)) result_ = r;
    return out;
  }
  // After the last read: {size, source_size, source_sha256, signer, verified}.
  const Json& result() const { return result_; }

 private:
  Json call(const char* op, const Json& request, th_sink* out = nullptr) const {
    Result<Json> r = service_.call(op, request, nullptr, out);
    if (!r.ok()) throw Error(r.status());
    return r.value();
  }
  Service service_;
  std::string key_;
  Json result_;
};

struct HttpOptions {
  std::map<std::string, std::string> headers;
  bool idempotent = false;  // retry a POST or PATCH too (e.g. a bulk status query)
  int64_t timeout_ms = 30'000;
  uint64_t max_response_bytes = 64u << 20;
};

// Outbound HTTP with one of the schema's credentials (capabilities.http:
// base_url, credential; "" for none). The host injects the credential,
// keeps the connection alive between calls, retries idempotent requests on
// 429/5xx, and refuses URLs outside the grant with TH_ERR_PERMISSION.
class Http {
 public:
  struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
  };
  using Options = HttpOptions;

  Http(Service service, std::string credential)
      : service_(service), credential_(std::move(credential)) {}

  Response request(std::string_view method, std::string_view url, std::string_view body = {},
                   const Options& options = {}) const {
    Json request = {{"credential", credential_},
                    {"method", method},
                    {"url", url},
                    {"timeout_ms", options.timeout_ms},
                    {"max_response_bytes", options.max_response_bytes},
                    {"headers", options.headers}};
    if (options.idempotent || (method != "POST" && method != "PATCH")) request["idempotent"] = true;
    detail::BytesSource in(body);
    Response response;
    th_sink out{&response.body, detail::append_to_string};
    Result<Json> r = service_.call("request", request, &in.source, &out);
    if (!r.ok()) throw Error(r.status());
    response.status = r.value()["status"];
    for (const auto& [k, v] : r.value()["headers"].items()) response.headers[k] = v;
    return response;
  }
  Response get(std::string_view url, const Options& options = {}) const {
    return request("GET", url, {}, options);
  }
  // POSTs JSON; idempotent says whether the host may retry it.
  Response post_json(std::string_view url, const Json& body, bool idempotent = false) const {
    Options o;
    o.headers["Content-Type"] = "application/json";
    o.idempotent = idempotent;
    return request("POST", url, body.dump(), o);
  }

 private:
  Service service_;
  std::string credential_;
};

// One row for Db::copy_in, written value by value in column order.
class CopyRow {
 public:
  explicit CopyRow(std::string& out) : out_(out) {}
  CopyRow& add(std::string_view text) {
    separate();
    size_t clean = 0;  // PostgreSQL's COPY text format: escape \ tab newline CR
    for (size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (c != '\\' && c != '\t' && c != '\n' && c != '\r') continue;
      out_.append(text.data() + clean, i - clean);
      out_ += '\\';
      out_ += c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
      clean = i + 1;
    }
    out_.append(text.data() + clean, text.size() - clean);
    return *this;
  }
  CopyRow& add(const char* text) { return add(std::string_view(text)); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  CopyRow& add(T number) {
    separate();
    if constexpr (std::is_same_v<T, bool>)
      out_ += number ? "true" : "false";
    else
      out_ += Json(number).dump();
    return *this;
  }
  CopyRow& add(std::nullopt_t) { return null(); }
  CopyRow& null() {
    separate();
    out_ += "\\N";
    return *this;
  }

 private:
  void separate() {
    if (!first_) out_ += '\t';
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

// The schema's database (capabilities.db: connection, tables). The host runs
// each statement on its own connection as a role holding exactly the
// granted table privileges, inside a transaction: the plugin's own between
// begin() and commit()/rollback(), otherwise one per statement. PostgreSQL
// enforces the grant; failures throw Error: TH_ERR_PERMISSION for a
// privilege PostgreSQL refused, TH_ERR_INVALID for the statement's own
// mistakes (syntax, constraints; the message ends with the SQLSTATE),
// TH_ERR_IO for the rest. Valid only during run().
class Db {
 public:
  // A statement parameter: text (the server infers its type), a number, a
  // boolean, null, a vector of those (an array: one statement for a batch,
  // e.g. "... FROM unnest($1::text[], $2::int[])"), or bytes sent as bytea.
  class Param {
   public:
    Param(std::string_view text) : json_(std::string(text)) {}
    Param(const char* text) : json_(text) {}
    Param(const std::string& text) : json_(text) {}
    template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
    Param(T number) : json_(number) {}
    template <typename T>
    Param(const std::optional<T>& value) : json_(value ? Param(*value).json_ : Json()) {}
    template <typename T>
    Param(const std::vector<T>& items) : json_(Json::array()) {
      for (const auto& item : items) json_.push_back(Param(item).json_);
    }
    Param(std::nullptr_t) {}
    Param(std::nullopt_t) {}
    static Param bytea(std::string_view bytes) {
      Param p(nullptr);
      p.json_ = {{"base64", base64(bytes)}, {"type", 17}};
      return p;
    }
    const Json& json() const { return json_; }

   private:
    static std::string base64(std::string_view in) {
      static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      std::string out;
      for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t n = static_cast<uint8_t>(in[i]) << 16;
        if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
        if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
        out += a[n >> 18 & 63];
        out += a[n >> 12 & 63];
        out += i + 1 < in.size() ? a[n >> 6 & 63] : '=';
        out += i + 2 < in.size() ? a[n & 63] : '=';
      }
      return out;
    }
    Json json_;
  };
  using Row = std::vector<std::optional<std::string>>;  // text values, NULL as nullopt
  struct Rows {
    std::vector<std::string> columns;
    std::vector<Row> rows;
    int64_t affected = 0;  // rows changed by INSERT/UPDATE/DELETE
  };

  explicit Db(Service service) : service_(service) {}

  // Runs one statement with $1, $2 ... bound to params.
  Rows query(std::string_view sql, const std::vector<Param>& params = {}) const {
    Json p = Json::array();
    for (const auto& v : params) p.push_back(v.json());
    Json r = call("query", {{"sql", sql}, {"params", p}});
    Rows out;
    for (const auto& c : r["columns"]) out.columns.push_back(c["name"]);
    for (const auto& row : r["rows"]) {
      Row values;
      for (const auto& v : row)
        values.push_back(v.is_null() ? std::nullopt : std::optional<std::string>(v));
      out.rows.push_back(std::move(values));
    }
    out.affected = r["affected"];
    return out;
  }
  // Runs one statement; the rows it changed.
  int64_t execute(std::string_view sql, const std::vector<Param>& params = {}) const {
    return query(sql, params).affected;
  }

  void begin() const { call("begin", Json::object()); }
  void commit() const { call("commit", Json::object()); }
  void rollback() const { call("rollback", Json::object()); }
  void savepoint(std::string_view name) const { call("savepoint", {{"name", name}}); }
  void release(std::string_view name) const { call("release", {{"name", name}}); }
  void rollback_to(std::string_view name) const { call("rollback_to", {{"name", name}}); }
  // Runs f() inside begin() ... commit(); rolls back if f throws.
  template <typename F>
  void transaction(F&& f) const {
    begin();
    try {
      f();
    } catch (...) {
      try {
        rollback();
      } catch (...) {
        // the first failure is the one to report
      }
      throw;
    }
    commit();
  }

  // Bulk load with COPY: next(row) adds one row's values (CopyRow::add) and
  // returns true, or returns false when there are no more rows. Streams: the
  // rows are never all in memory. Returns the rows loaded. The table must be
  // granted write; it is named as the grant names it.
  template <typename F>
  int64_t copy_in(std::string_view table, const std::vector<std::string>& columns, F&& next) const {
    std::string pending;
    size_t sent = 0;
    bool done = false;
    auto fill = [&](char* buf, size_t capacity) -> size_t {
      pending.erase(0, sent);
      sent = 0;
      while (!done && pending.size() < capacity) {
        const size_t before = pending.size();
        CopyRow row(pending);
        if (!next(row)) {
          pending.resize(before);
          done = true;
        } else {
          pending += '\n';
        }
      }
      sent = pending.size() < capacity ? pending.size() : capacity;
      std::memcpy(buf, pending.data(), sent);
      return sent;
    };
    detail::FillSource<decltype(fill)> in(fill);
    return call("copy_in", {{"table", table}, {"columns", columns}}, &in.source)["rows"];
  }
  // The same from rows already in COPY's text format (tab-separated, \N for
  // null, backslash escapes, one row per line): for loaders that format
  // values themselves. Returns the rows loaded.
  int64_t copy_in_text(std::string_view table, const std::vector<std::string>& columns,
                       std::string_view rows) const {
    detail::BytesSource in(rows);
    return call("copy_in", {{"table", table}, {"columns", columns}}, &in.source)["rows"];
  }

 private:
  Json call(const char* op, const Json& request, th_source* in = nullptr) const {
    Result<Json> r = service_.call(op, request, in);
    if (!r.ok()) throw Error(r.status());
    return r.value();
  }

  Service service_;
};

// The plugin's view of its run. Valid only during run(), on its thread.
// Calls that record state (checkpoint, emit, progress, output) throw Error
// when the host could not record it: the run cannot continue safely then.
class Context {
 public:
  Context(const th_host_api* api, th_host* host) : api_(api), host_(host) {}

  void log(th_log_level level, std::string_view message) const {
    api_->log(host_, level, detail::str(message));
  }
  void debug(std::string_view m) const { log(TH_LOG_DEBUG, m); }
  void info(std::string_view m) const { log(TH_LOG_INFO, m); }
  void warn(std::string_view m) const { log(TH_LOG_WARN, m); }
  void error(std::string_view m) const { log(TH_LOG_ERROR, m); }

  void progress(uint64_t done, uint64_t total) const {
    detail::ErrorBuffer eb;
    check(api_->progress(host_, done, total, &eb.err), eb);
  }

  // The last checkpoint stored by this run (any attempt), or null.
  Json checkpoint() const { return fetch_json(api_->checkpoint_get); }
  void checkpoint(const Json& state) const {
    std::string s = state.dump();
    detail::ErrorBuffer eb;
    check(api_->checkpoint_set(host_, detail::str(s), &eb.err), eb);
  }

  // An event of the run (a webhook's payload when the schema subscribes to
  // it). The host writes events in batches: before this plugin's next
  // service call, checkpoint, progress, output or file, so nothing done after
  // an event is on record before it, and at the latest when run() returns.
  // Emitting per item is cheap. An error of a batch's write surfaces from
  // the call that wrote it.
  void emit(std::string_view event, const Json& payload) const {
    std::string s = payload.dump();
    detail::ErrorBuffer eb;
    check(api_->emit(host_, detail::str(event), detail::str(s), &eb.err), eb);
  }

  // Records a sample of a metric the schema declares (`metrics:`): adds
  // value to a counter, sets a gauge. labels gives each declared label one
  // of its declared values. Throws Error(TH_ERR_INVALID) for anything the
  // schema does not declare, Error(TH_ERR_NOT_SUPPORTED) on a host older
  // than ABI 1.3. Samples are summed by the host and stored with the next
  // checkpoint (with it or not at all), or within a second.
  void metric(std::string_view name, double value, const Json& labels = Json::object()) const {
    if (!TH_HOST_HAS(api_, metric))
      throw Error(TH_ERR_NOT_SUPPORTED, "this host records no plugin metrics (ABI < 1.3)");
    std::string l = labels.dump();
    detail::ErrorBuffer eb;
    check(api_->metric(host_, detail::str(name), detail::str(l), value, &eb.err), eb);
  }

  // True once a cancel or pause was requested: stop at the next safe point.
  bool should_stop() const { return api_->should_stop(host_) != 0; }

  // True in a dry run (`taskhost run --dry-run`): the host refuses every
  // write a service would make with Error(TH_ERR_PERMISSION) "dry run: ...",
  // and reads work, so report what a real run would do. The run's own
  // output, events, progress, checkpoints and files are still stored.
  bool dry_run() const { return TH_HOST_HAS(api_, dry_run) && api_->dry_run(host_) != 0; }

  const Json& params() const {
    if (!params_) params_ = fetch_json(api_->params);
    return *params_;
  }
  // Typed access to one parameter. Defaults were filled in by the host, so a
  // missing parameter is one the schema marks optional without a default.
  template <typename T>
  T param(const std::string& name) const {
    const Json& p = params();
    auto it = p.find(name);
    if (it == p.end() || it->is_null())
      throw PermanentError("parameter '" + name + "' was not given");
    try {
      return it->get<T>();
    } catch (const Json::exception&) {
      throw PermanentError("parameter '" + name + "' has type " + it->type_name());
    }
  }
  template <typename T>
  std::optional<T> optional_param(const std::string& name) const {
    const Json& p = params();
    auto it = p.find(name);
    if (it == p.end() || it->is_null()) return std::nullopt;
    return param<T>(name);
  }

  // {"run_id": "...", "attempt": N, "schema": "...", "schema_version": "..."}
  Json run_info() const { return fetch_json(api_->run_info); }

  void set_output(const Json& output) const {
    std::string s = output.dump();
    detail::ErrorBuffer eb;
    check(api_->set_output(host_, detail::str(s), &eb.err), eb);
  }

  // Attaches a file to the run's output (`taskhost runs output ID --file NAME`).
  void attach_file(std::string_view name, std::string_view content_type,
                   std::string_view data) const {
    detail::BytesSource source(data);
    detail::ErrorBuffer eb;
    check(api_->attach_file(host_, detail::str(name), detail::str(content_type), &source.source,
                            &eb.err),
          eb);
  }

  // A bucket the schema grants. Throws Error(TH_ERR_NOT_SUPPORTED) when it
  // grants no object storage at all; the host refuses buckets it does not
  // grant at the first call.
  Bucket s3(std::string_view bucket) const {
    auto s = service(api_->object_storage);
    if (!s)
      throw Error(TH_ERR_NOT_SUPPORTED, "the schema grants no object storage (capabilities.s3)");
    return Bucket(*s, std::string(bucket));
  }

  // An SFTP host the schema grants. Throws Error(TH_ERR_NOT_SUPPORTED) when
  // it grants no SFTP at all.
  Sftp sftp(std::string_view host) const {
    auto s = service(api_->sftp);
    if (!s) throw Error(TH_ERR_NOT_SUPPORTED, "the schema grants no SFTP (capabilities.sftp)");
    return Sftp(*s, std::string(host));
  }

  // HTTP with a credential the schema grants ("" for a grant without one).
  // Throws Error(TH_ERR_NOT_SUPPORTED) when it grants no HTTP at all.
  Http http(std::string_view credential) const {
    auto s = service(api_->http);
    if (!s) throw Error(TH_ERR_NOT_SUPPORTED, "the schema grants no HTTP (capabilities.http)");
    return Http(*s, std::string(credential));
  }

  // OpenPGP with a secret key the schema grants. Throws
  // Error(TH_ERR_NOT_SUPPORTED) when it grants none (or the host is older).
  Pgp pgp(std::string_view key) const {
    auto s = TH_HOST_HAS(api_, pgp) ? service(api_->pgp) : std::nullopt;
    if (!s) throw Error(TH_ERR_NOT_SUPPORTED, "the schema grants no OpenPGP (capabilities.pgp)");
    return Pgp(*s, std::string(key));
  }

  // Which services the schema grants; the handles of the others throw.
  struct Grants {
    bool object_storage = false, sftp = false, db = false, http = false, pgp = false;
  };
  Grants grants() const {
    Grants g;
    g.object_storage = api_->object_storage != nullptr;
    g.sftp = api_->sftp != nullptr;
    g.db = api_->db != nullptr;
    g.http = api_->http != nullptr;
    g.pgp = TH_HOST_HAS(api_, pgp);
    return g;
  }

  // The schema's database (capabilities.db). Throws
  // Error(TH_ERR_NOT_SUPPORTED) when it grants none.
  Db db() const {
    auto s = service(api_->db);
    if (!s) throw Error(TH_ERR_NOT_SUPPORTED, "the schema grants no database (capabilities.db)");
    return Db(*s);
  }

 private:
  static void check(int rc, const detail::ErrorBuffer& eb) {
    if (rc != TH_OK) throw Error(eb.status(rc));
  }
  Json fetch_json(int (*fn)(th_host*, th_sink*, th_error*)) const {
    std::string out;
    th_sink sink{&out, detail::append_to_string};
    detail::ErrorBuffer eb;
    check(fn(host_, &sink, &eb.err), eb);
    return Json::parse(out);
  }
  std::optional<Service> service(th_service_fn fn) const {
    if (fn == nullptr) return std::nullopt;
    return Service(fn, host_);
  }

  const th_host_api* api_;
  th_host* host_;
  mutable std::optional<Json> params_;
};

namespace detail {

// Turns run() into a noexcept C function: exceptions become codes + messages.
template <typename Task>
int run_trampoline(const th_host_api* api, th_host* host, th_error* err) noexcept {
  try {
    if (api == nullptr || api->abi_major != TH_ABI_MAJOR) {
      write_error(err, "host ABI major version differs from the plugin's");
      return TH_ERR_PERMANENT;
    }
    Context ctx(api, host);
    Task task;
    task.run(ctx);
    return TH_OK;
  } catch (const Error& e) {
    write_error(err, e.what());
    return e.code() == TH_OK ? TH_ERR_INTERNAL : e.code();
  } catch (const std::exception& e) {
    write_error(err, e.what());
    return TH_ERR_RETRYABLE;
  } catch (...) {
    write_error(err, "unknown exception");
    return TH_ERR_INTERNAL;
  }
}

}  // namespace detail
}  // namespace taskhost

// Generates the plugin's one exported symbol. Task needs static constexpr
// name, version and description, a default constructor and run(Context&).
#define TASKHOST_PLUGIN(Task)                                              \
  extern "C" TH_EXPORT const th_plugin* taskhost_plugin_descriptor(void) { \
    static const th_plugin descriptor = {                                  \
        sizeof(th_plugin), TH_PLUGIN_MAGIC,                                \
        TH_ABI_MAJOR,      TH_ABI_MINOR,                                   \
        Task::name,        Task::version,                                  \
        Task::description, &::taskhost::detail::run_trampoline<Task>};     \
    return &descriptor;                                                    \
  }
