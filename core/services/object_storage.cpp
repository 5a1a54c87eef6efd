#include "services/object_storage.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "services/sftp_service.hpp"
#include "services/transfer.hpp"

namespace taskhost {

namespace {

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80             ? 0
               : (c & 0xE0) == 0xC0 ? 1
               : (c & 0xF0) == 0xE0 ? 2
               : (c & 0xF8) == 0xF0 ? 3
                                    : 4;
    if (n == 4) return false;
    for (size_t k = 1; k <= n; ++k)
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

void check_segments(const std::string& text, const char* what, bool trailing_slash) {
  if (text.size() > 1024)
    throw Error(ErrorKind::invalid, std::string(what) + " is longer than 1024 bytes");
  if (!valid_utf8(text)) throw Error(ErrorKind::invalid, std::string(what) + " is not UTF-8");
  for (unsigned char c : text)
    if (c < 0x20 || c == 0x7f)
      throw Error(ErrorKind::invalid, std::string(what) + " contains a control character");
  if (!text.empty() && text[0] == '/')
    throw Error(ErrorKind::invalid, std::string(what) + " '" + text + "' starts with '/'");
  std::string body = trailing_slash && !text.empty() && text.back() == '/'
                         ? text.substr(0, text.size() - 1)
                         : text;
  size_t start = 0;
  while (!body.empty() && start <= body.size()) {
    size_t end = std::min(body.find('/', start), body.size());
    std::string segment = body.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..")
      throw Error(ErrorKind::invalid,
                  std::string(what) + " '" + text + "' has an empty, '.' or '..' segment");
    start = end + 1;
  }
}

const std::string& text(const Json& request, const char* field) {
  return string_field(request, "object storage", field);
}

}  // namespace

Json info_json(const ObjectInfo& i) {
  return {{"size", i.size},
          {"etag", i.etag},
          {"last_modified", i.last_modified},
          {"content_type", i.content_type}};
}

void check_object_key(const std::string& key) {
  if (key.empty()) throw Error(ErrorKind::invalid, "an object key may not be empty");
  check_segments(key, "object key", false);
}

void check_object_prefix(const std::string& prefix) { check_segments(prefix, "prefix", true); }

ObjectStorageService::ObjectStorageService(std::string schema, std::vector<S3Grant> grants,
                                           const HostConfig& config, ServiceAudit audit,
                                           bool dry_run, std::vector<SftpGrant> sftp)
    : schema_(std::move(schema)),
      grants_(std::move(grants)),
      config_(config),
      audit_(std::move(audit)),
      dry_run_(dry_run),
      sftp_(std::move(sftp)) {}

void ObjectStorageService::authorize(const std::string& bucket, const std::string& key,
                                     Access need) const {
  std::string granted;
  for (const auto& g : grants_) {
    if (g.bucket != bucket) continue;
    if (key.rfind(g.prefix, 0) == 0 && allows(g.access, need)) {
      if (need == Access::write && dry_run_)
        throw dry_run_refusal("s3 write of " + bucket + "/" + key);
      return;
    }
    granted += (granted.empty() ? "" : ", ") + std::string(access_name(g.access)) + " " + g.bucket +
               "/" + g.prefix + "*";
  }
  throw not_granted(schema_, std::string("s3 ") + access_name(need), bucket + "/" + key, granted,
                    "nothing granted in that bucket");
}

std::unique_ptr<ObjectStore> open_bucket(const HostConfig& config, const std::string& bucket) {
  if (config.s3.empty()) return local_object_store(config.object_store_dir / bucket);
  auto c = config.s3.find(bucket);
  if (c == config.s3.end())
    throw Error(ErrorKind::environment, "bucket " + bucket + " is not in the host config (s3)");
  S3Endpoint e;
  e.bucket = bucket;
  e.endpoint = c->second.endpoint;
  e.region = c->second.region;
  e.path_style = c->second.path_style;
  e.credentials = {c->second.access_key_id.resolve(), c->second.secret_access_key.resolve(),
                   c->second.session_token ? c->second.session_token->resolve() : ""};
  return s3_object_store(e);
}

ObjectStore& ObjectStorageService::store(const std::string& bucket) {
  auto it = stores_.find(bucket);
  if (it != stores_.end()) return *it->second;
  return *stores_.emplace(bucket, open_bucket(config_, bucket)).first->second;
}

std::unique_ptr<ObjectFile> ObjectStorageService::get_file(const Json& request) {
  std::unique_ptr<ObjectFile> file;
  std::string resource;
  try {
    if (!request.is_object()) return nullptr;
    const std::string& bucket = text(request, "bucket");
    const std::string& key = text(request, "key");
    check_object_key(key);
    authorize(bucket, key, Access::read);
    file = store(bucket).open_file(key);
    resource = bucket + "/" + key;
  } catch (const Error&) {
    return nullptr;  // call() says why, and audits it
  }
  if (file) audit_({"s3", "get", resource, file->info.size, "ok"});
  return file;
}

Json ObjectStorageService::call(const std::string& op, const Json& request, const ByteSource& in,
                                const ByteSink& out) {
  if (!request.is_object())
    throw Error(ErrorKind::invalid, "object storage: request must be an object");
  const std::string& bucket = text(request, "bucket");
  ServiceCall record{"s3", op, bucket, 0, "ok"};
  auto counting_in = [&](char* buf, size_t cap) {
    size_t n = in(buf, cap);
    record.bytes += n;
    return n;
  };
  auto counting_out = [&](const char* d, size_t n) {
    record.bytes += n;
    out(d, n);
  };
  return audited(audit_, record, [&] {
    Json reply = Json::object();
    if (op == "head" || op == "get" || op == "put" || op == "delete" || op == "presign") {
      const std::string& key = text(request, "key");
      record.resource = bucket + "/" + key;
      check_object_key(key);
      authorize(bucket, key, op == "put" || op == "delete" ? Access::write : Access::read);
      ObjectStore& s = store(bucket);
      if (op == "head") {
        auto i = s.head(key);
        reply = i ? info_json(*i) : Json::object();
        reply["exists"] = i.has_value();
      } else if (op == "get") {
        reply = info_json(s.get(key, counting_out));
      } else if (op == "put") {
        auto i = s.put(key, counting_in, request.value("content_type", "application/octet-stream"));
        reply = {{"size", i.size}, {"etag", i.etag}};
      } else if (op == "delete") {
        s.remove(key);
      } else {
        int64_t seconds = request.value("expires", int64_t{3600});
        reply["url"] = s.presign_get(key, std::chrono::seconds(seconds));
      }
    } else if (op == "list") {
      const std::string prefix = request.value("prefix", "");
      record.resource = bucket + "/" + prefix + "*";
      check_object_prefix(prefix);
      authorize(bucket, prefix, Access::read);
      std::optional<std::string> after;
      if (request.contains("after") && request["after"].is_string()) after = request["after"];
      int max = std::clamp(request.value("max", 1000), 1, 1000);
      auto page = store(bucket).list(prefix, after, max);
      Json objects = Json::array();
      for (const auto& o : page.objects)
        objects.push_back({{"key", o.key},
                           {"size", o.size},
                           {"etag", o.etag},
                           {"last_modified", o.last_modified}});
      reply["objects"] = objects;
      if (page.next) reply["next"] = *page.next;
    } else if (op == "copy") {
      const std::string& from = text(request, "from");
      const std::string& to = text(request, "to");
      record.resource = bucket + "/" + from + " -> " + bucket + "/" + to;
      check_object_key(from);
      check_object_key(to);
      authorize(bucket, from, Access::read);
      authorize(bucket, to, Access::write);
      store(bucket).copy(from, to);
    } else if (op == "put_from") {
      reply = put_from(bucket, request, record);
    } else {
      throw Error(ErrorKind::invalid,
                  "object storage has no operation '" + op +
                      "' (head, get, put, list, delete, copy, presign, put_from)");
    }
    return reply;
  });
}

Json ObjectStorageService::put_from(const std::string& bucket, const Json& request,
                                    ServiceCall& record) {
  const std::string& key = text(request, "key");
  auto from = request.find("from");
  const bool sftp = from != request.end() && from->is_object() && from->contains("sftp");
  if (from == request.end() || !from->is_object() || from->size() != 2 ||
      !(sftp || from->contains("object_storage")))
    throw Error(ErrorKind::invalid,
                "object storage: put_from needs 'from': {\"sftp\": HOST, \"path\": PATH} or "
                "{\"object_storage\": BUCKET, \"key\": KEY}");
  const std::string& source =
      string_field(*from, "object storage: from", sftp ? "sftp" : "object_storage");
  const std::string& where = string_field(*from, "object storage: from", sftp ? "path" : "key");
  record.resource =
      (sftp ? "sftp:" + source + ":" : source + "/") + where + " -> " + bucket + "/" + key;
  check_object_key(key);
  authorize(bucket, key, Access::write);
  // The source is read by a service of its own (its read audited there) on
  // the transfer's thread, never sharing a connection with the plugin's calls.
  std::function<void(const ByteSink&)> read;
  const ByteSource nothing = [](char*, size_t) { return size_t{0}; };
  if (sftp) {
    auto service = std::make_shared<SftpService>(schema_, sftp_, config_, audit_, dry_run_);
    service->authorize(source, where, Access::read, true);
    read = [service, source, where, nothing](const ByteSink& out) {
      service->call("get", {{"host", source}, {"path", where}}, nothing, out);
    };
  } else {
    check_object_key(where);
    authorize(source, where, Access::read);
    read = [this, source, where, nothing](const ByteSink& out) {
      ObjectStorageService service(schema_, grants_, config_, audit_, dry_run_);
      service.call("get", {{"bucket", source}, {"key", where}}, nothing, out);
    };
  }
  ObjectStore& destination = store(bucket);
  ObjectInfo info;
  const std::string content_type = request.value("content_type", "application/octet-stream");
  Transferred t =
      transfer(read, [&](const ByteSource& in) { info = destination.put(key, in, content_type); });
  record.bytes = t.size;
  record.sha256 = t.sha256;
  return {{"size", t.size}, {"sha256", t.sha256}, {"etag", info.etag}};
}

}  // namespace taskhost
