#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "services/object_store.hpp"  // ByteSink, ByteSource

namespace taskhost {

struct SftpEndpoint {
  std::string address;
  int port = 22;
  std::string user;
  std::filesystem::path private_key;  // OpenSSH format
  std::filesystem::path known_hosts;  // the host key must be in it: no trust on first use
  std::chrono::seconds timeout{30};   // connect and each I/O
};

struct RemoteFile {
  std::string name;
  uint64_t size = 0;
  int64_t mtime = 0;  // seconds since the epoch
  bool directory = false;
};

// SFTP over libssh with key authentication and a verified host key. Connects
// on first use and once more if the session dropped. Paths are absolute
// server paths, used as given: callers confine them first.
class SftpClient {
 public:
  explicit SftpClient(SftpEndpoint endpoint);
  ~SftpClient();
  SftpClient(const SftpClient&) = delete;
  SftpClient& operator=(const SftpClient&) = delete;

  // Entries of dir whose names match the glob (fnmatch), without . and ..
  std::vector<RemoteFile> list(const std::string& dir, const std::string& glob);
  // Streams the file into out with several reads in flight.
  uint64_t get(const std::string& path, const ByteSink& out);
  // Writes to a temporary name beside path, then renames it into place, so
  // a reader never sees half a file.
  uint64_t put(const std::string& path, const ByteSource& in);
  void rename(const std::string& from, const std::string& to);
  void remove(const std::string& path);
  void mkdir(const std::string& path);
  // The server's canonical form of path (symlinks resolved).
  std::string realpath(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace taskhost
