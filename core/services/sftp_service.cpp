#include "services/sftp_service.hpp"

#include "common/error.hpp"
#include "services/object_storage.hpp"
#include "services/transfer.hpp"

namespace taskhost {

namespace {

// path lies at or under dir.
bool under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  std::string d = dir.back() == '/' ? dir.substr(0, dir.size() - 1) : dir;
  return path == d || path.rfind(d + "/", 0) == 0;
}

std::string parent(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

const std::string& text(const Json& request, const char* field) {
  return string_field(request, "sftp", field);
}

}  // namespace

void check_remote_path(const std::string& path) {
  if (path.empty() || path[0] != '/')
    throw Error(ErrorKind::invalid, "remote path '" + path + "' is not absolute");
  if (path.size() > 4096) throw Error(ErrorKind::invalid, "remote path is longer than 4096 bytes");
  for (unsigned char c : path)
    if (c < 0x20 || c == 0x7f)
      throw Error(ErrorKind::invalid, "remote path contains a control character");
  if (path == "/") return;
  for (size_t start = 1; start <= path.size();) {
    size_t end = std::min(path.find('/', start), path.size());
    std::string segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..")
      throw Error(ErrorKind::invalid,
                  "remote path '" + path + "' has an empty, '.' or '..' segment");
    start = end + 1;
  }
}

SftpService::SftpService(std::string schema, std::vector<SftpGrant> grants,
                         const HostConfig& config, ServiceAudit audit, bool dry_run,
                         std::vector<S3Grant> s3)
    : schema_(std::move(schema)),
      grants_(std::move(grants)),
      config_(config),
      audit_(std::move(audit)),
      dry_run_(dry_run),
      s3_(std::move(s3)) {}

SftpClient& SftpService::client(const std::string& host) {
  auto it = clients_.find(host);
  if (it != clients_.end()) return *it->second;
  auto c = config_.sftp.find(host);
  if (c == config_.sftp.end())
    throw Error(ErrorKind::environment, "sftp host " + host + " is not in the host config (sftp)");
  SftpEndpoint e;
  e.address = c->second.address;
  e.port = c->second.port;
  e.user = c->second.user;
  e.private_key = c->second.private_key;
  e.known_hosts = c->second.known_hosts;
  return *clients_.emplace(host, std::make_unique<SftpClient>(e)).first->second;
}

void SftpService::authorize(const std::string& host, const std::string& path, Access need,
                            bool exists) {
  check_remote_path(path);
  std::string granted;
  const SftpGrant* match = nullptr;
  for (const auto& g : grants_) {
    if (g.host != host) continue;
    if (under(path, g.path) && allows(g.access, need)) {
      match = &g;
      break;
    }
    granted += (granted.empty() ? "" : ", ") + std::string(access_name(g.access)) + " " + g.path;
  }
  if (!match)
    throw not_granted(schema_, std::string("sftp ") + access_name(need), host + ":" + path, granted,
                      "nothing granted on that host");
  // Symlinks are resolved by the server and the result checked again.
  SftpClient& c = client(host);
  const std::string root = c.realpath(match->path);
  const std::string real = exists ? c.realpath(path) : c.realpath(parent(path));
  if (!under(real, root))
    throw Error(ErrorKind::refused, "permission denied: " + host + ":" + path + " resolves to " +
                                        real + ", outside " + match->path);
  if (need == Access::write && dry_run_)
    throw dry_run_refusal("sftp write of " + host + ":" + path);
}

Json SftpService::call(const std::string& op, const Json& request, const ByteSource& in,
                       const ByteSink& out) {
  ServiceCall record{"sftp", op, "", 0, "ok"};
  return audited(audit_, record, [&] {
    if (!request.is_object()) throw Error(ErrorKind::invalid, "sftp: request must be an object");
    const std::string& host = text(request, "host");
    Json reply = Json::object();
    if (op == "rename") {
      const std::string& from = text(request, "from");
      const std::string& to = text(request, "to");
      record.resource = host + ":" + from + " -> " + to;
      authorize(host, from, Access::write, true);
      authorize(host, to, Access::write, false);
      client(host).rename(from, to);
    } else {
      const std::string& path = text(request, "path");
      record.resource = host + ":" + path;
      if (op == "list") {
        authorize(host, path, Access::read, true);
        Json files = Json::array();
        for (const auto& f : client(host).list(path, request.value("glob", "*")))
          files.push_back(
              {{"name", f.name}, {"size", f.size}, {"mtime", f.mtime}, {"directory", f.directory}});
        reply["files"] = files;
      } else if (op == "get") {
        authorize(host, path, Access::read, true);
        record.bytes = client(host).get(path, out);
        reply["size"] = record.bytes;
      } else if (op == "put") {
        authorize(host, path, Access::write, false);
        record.bytes = client(host).put(path, in);
        reply["size"] = record.bytes;
      } else if (op == "remove") {
        authorize(host, path, Access::write, true);
        client(host).remove(path);
      } else if (op == "mkdir") {
        authorize(host, path, Access::write, false);
        client(host).mkdir(path);
      } else if (op == "put_from") {
        reply = put_from(host, path, request, record);
      } else {
        throw Error(ErrorKind::invalid, "sftp has no operation '" + op +
                                            "' (list, get, put, rename, remove, mkdir, put_from)");
      }
    }
    return reply;
  });
}

Json SftpService::put_from(const std::string& host, const std::string& path, const Json& request,
                           ServiceCall& record) {
  auto from = request.find("from");
  if (from == request.end() || !from->is_object() || from->size() != 2 ||
      !from->contains("object_storage"))
    throw Error(ErrorKind::invalid,
                "sftp: put_from needs 'from': {\"object_storage\": BUCKET, \"key\": KEY}");
  const std::string& bucket = string_field(*from, "sftp: from", "object_storage");
  const std::string& key = string_field(*from, "sftp: from", "key");
  record.resource = bucket + "/" + key + " -> " + record.resource;
  authorize(host, path, Access::write, false);
  // The source's grant through a service of its own, whose get (on the
  // transfer's thread) is checked again and audited.
  auto source = std::make_shared<ObjectStorageService>(schema_, s3_, config_, audit_, dry_run_);
  const ByteSource nothing = [](char*, size_t) { return size_t{0}; };
  if (!source->call("head", {{"bucket", bucket}, {"key", key}}, nothing, [](const char*, size_t) {})
           .value("exists", false))
    throw Error(ErrorKind::not_found, "sftp: put_from: no object " + bucket + "/" + key);
  SftpClient& destination = client(host);
  Transferred t = transfer(
      [&](const ByteSink& out) {
        source->call("get", {{"bucket", bucket}, {"key", key}}, nothing, out);
      },
      [&](const ByteSource& in) { destination.put(path, in); });
  record.bytes = t.size;
  record.sha256 = t.sha256;
  return {{"size", t.size}, {"sha256", t.sha256}};
}

}  // namespace taskhost
