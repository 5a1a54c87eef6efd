#include "services/sftp_client.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>

#include <algorithm>
#include <deque>

#include "common/error.hpp"

namespace taskhost {

namespace {

constexpr uint32_t chunk = 32 * 1024;  // what every SFTP server accepts
constexpr int in_flight = 32;

}  // namespace

struct SftpClient::Impl {
  SftpEndpoint e;
  ssh_session ssh = nullptr;
  sftp_session sftp = nullptr;

  explicit Impl(SftpEndpoint endpoint) : e(std::move(endpoint)) {}
  ~Impl() { disconnect(); }

  std::string where() const { return e.user + "@" + e.address + ":" + std::to_string(e.port); }

  [[noreturn]] void fail_ssh(const std::string& what) {
    std::string message = "sftp " + where() + ": " + what + ": " + ssh_get_error(ssh);
    disconnect();
    throw Error(ErrorKind::environment, message);
  }
  [[noreturn]] void fail_sftp(const std::string& what, const std::string& path) {
    int code = sftp ? sftp_get_error(sftp) : 0;
    std::string message = "sftp " + what + " " + path + ": " +
                          (code == SSH_FX_NO_SUCH_FILE          ? "no such file"
                           : code == SSH_FX_PERMISSION_DENIED   ? "permission denied by the server"
                           : code == SSH_FX_FILE_ALREADY_EXISTS ? "already exists"
                                                                : ssh_get_error(ssh));
    throw Error(code == SSH_FX_NO_SUCH_FILE ? ErrorKind::not_found : ErrorKind::environment,
                message);
  }

  void disconnect() {
    if (sftp) sftp_free(sftp);
    sftp = nullptr;
    if (ssh) {
      if (ssh_is_connected(ssh)) ssh_disconnect(ssh);
      ssh_free(ssh);
    }
    ssh = nullptr;
  }

  void connect() {
    if (sftp && ssh && ssh_is_connected(ssh)) return;
    disconnect();
    ssh = ssh_new();
    if (!ssh) throw Error(ErrorKind::environment, "libssh: out of memory");
    long timeout = e.timeout.count();
    int process_config = 0;  // no ~/.ssh/config: the host config says everything
    ssh_options_set(ssh, SSH_OPTIONS_PROCESS_CONFIG, &process_config);
    ssh_options_set(ssh, SSH_OPTIONS_HOST, e.address.c_str());
    ssh_options_set(ssh, SSH_OPTIONS_PORT, &e.port);
    ssh_options_set(ssh, SSH_OPTIONS_USER, e.user.c_str());
    ssh_options_set(ssh, SSH_OPTIONS_TIMEOUT, &timeout);
    ssh_options_set(ssh, SSH_OPTIONS_KNOWNHOSTS, e.known_hosts.c_str());
    ssh_options_set(ssh, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
    if (ssh_connect(ssh) != SSH_OK) fail_ssh("cannot connect");
    switch (ssh_session_is_known_server(ssh)) {
      case SSH_KNOWN_HOSTS_OK:
        break;
      case SSH_KNOWN_HOSTS_CHANGED:
      case SSH_KNOWN_HOSTS_OTHER:
        disconnect();
        throw Error(ErrorKind::refused, "sftp " + where() + ": the host key does not match " +
                                            e.known_hosts.string() + ": refused");
      default:
        disconnect();
        throw Error(ErrorKind::refused, "sftp " + where() + ": the host key is not in " +
                                            e.known_hosts.string() +
                                            " (no trust on first use): refused");
    }
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(e.private_key.c_str(), nullptr, nullptr, nullptr, &key) !=
        SSH_OK) {
      disconnect();
      throw Error(ErrorKind::environment,
                  "sftp " + where() + ": cannot read the private key " + e.private_key.string());
    }
    int auth = ssh_userauth_publickey(ssh, nullptr, key);
    ssh_key_free(key);
    if (auth != SSH_AUTH_SUCCESS) fail_ssh("key authentication failed");
    sftp = sftp_new(ssh);
    if (!sftp || sftp_init(sftp) != SSH_OK) fail_ssh("cannot start the SFTP subsystem");
  }

  // Runs op, reconnecting once if the session had dropped.
  template <typename F>
  auto with_session(F&& op) {
    connect();
    try {
      return op();
    } catch (const Error&) {
      if (ssh && ssh_is_connected(ssh)) throw;
      connect();
      return op();
    }
  }
};

SftpClient::SftpClient(SftpEndpoint endpoint)
    : impl_(std::make_unique<Impl>(std::move(endpoint))) {}
SftpClient::~SftpClient() = default;

std::vector<RemoteFile> SftpClient::list(const std::string& dir, const std::string& glob) {
  return impl_->with_session([&] {
    Impl& m = *impl_;
    sftp_dir d = sftp_opendir(m.sftp, dir.c_str());
    if (!d) m.fail_sftp("list", dir);
    std::vector<RemoteFile> out;
    while (sftp_attributes a = sftp_readdir(m.sftp, d)) {
      std::string name = a->name ? a->name : "";
      if (name != "." && name != ".." && fnmatch(glob.c_str(), name.c_str(), FNM_PERIOD) == 0)
        out.push_back({name, a->size, static_cast<int64_t>(a->mtime),
                       a->type == SSH_FILEXFER_TYPE_DIRECTORY});
      sftp_attributes_free(a);
    }
    bool complete = sftp_dir_eof(d);
    sftp_closedir(d);
    if (!complete) m.fail_sftp("list", dir);
    std::sort(out.begin(), out.end(),
              [](const RemoteFile& a, const RemoteFile& b) { return a.name < b.name; });
    return out;
  });
}

uint64_t SftpClient::get(const std::string& path, const ByteSink& out) {
  return impl_->with_session([&] {
    Impl& m = *impl_;
    sftp_file f = sftp_open(m.sftp, path.c_str(), O_RDONLY, 0);
    if (!f) m.fail_sftp("get", path);
    // Reads pipelined: a round trip per 32 KiB would cap a transfer at
    // chunk / RTT.
    std::deque<int> pending;
    std::string buf(chunk, '\0');
    uint64_t total = 0;
    bool eof = false;
    try {
      while (!eof || !pending.empty()) {
        while (!eof && static_cast<int>(pending.size()) < in_flight) {
          int id = sftp_async_read_begin(f, chunk);
          if (id < 0) m.fail_sftp("get", path);
          pending.push_back(id);
        }
        int id = pending.front();
        pending.pop_front();
        int n = sftp_async_read(f, buf.data(), chunk, static_cast<uint32_t>(id));
        if (n < 0) m.fail_sftp("get", path);
        if (n == 0) {
          eof = true;
          continue;
        }
        out(buf.data(), static_cast<size_t>(n));
        total += static_cast<uint64_t>(n);
      }
    } catch (...) {
      sftp_close(f);
      throw;
    }
    sftp_close(f);
    return total;
  });
}

namespace {
// A hidden name beside path: DIR/.NAME.suffix
std::string sibling(const std::string& path, const char* suffix) {
  auto slash = path.rfind('/');
  return path.substr(0, slash + 1) + "." + path.substr(slash + 1) + "." + suffix;
}
}  // namespace

uint64_t SftpClient::put(const std::string& path, const ByteSource& in) {
  Impl& m = *impl_;
  m.connect();
  const std::string temp = sibling(path, "taskhost-partial");
  sftp_file f = sftp_open(m.sftp, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0640);
  if (!f) m.fail_sftp("put", temp);
  std::string buf(chunk * 4, '\0');
  uint64_t total = 0;
  try {
    for (size_t n; (n = in(buf.data(), buf.size())) > 0;) {
      for (size_t at = 0; at < n;) {
        ssize_t w = sftp_write(f, buf.data() + at, n - at);
        if (w <= 0) m.fail_sftp("put", temp);
        at += static_cast<size_t>(w);
      }
      total += n;
    }
  } catch (...) {
    sftp_close(f);
    if (m.sftp) sftp_unlink(m.sftp, temp.c_str());
    throw;
  }
  if (sftp_close(f) != SSH_OK) m.fail_sftp("put", temp);
  // SFTP v3 rename refuses an existing target, and libssh 0.10 cannot ask
  // for posix-rename: move the old file aside, the new one into place, then
  // drop the old one — or move it back if the new one could not go in. The
  // path is missing for a moment, but no failure loses both files.
  if (sftp_rename(m.sftp, temp.c_str(), path.c_str()) != SSH_OK) {
    const std::string aside = sibling(path, "taskhost-replaced");
    sftp_unlink(m.sftp, aside.c_str());  // left by a put that was cut off
    if (sftp_rename(m.sftp, path.c_str(), aside.c_str()) != SSH_OK) m.fail_sftp("put", path);
    if (sftp_rename(m.sftp, temp.c_str(), path.c_str()) != SSH_OK) {
      const int code = sftp_get_error(m.sftp);
      sftp_rename(m.sftp, aside.c_str(), path.c_str());
      throw Error(ErrorKind::environment, "sftp put " + path +
                                              ": cannot move the new file into "
                                              "place (SFTP error " +
                                              std::to_string(code) + "); the old file is kept");
    }
    sftp_unlink(m.sftp, aside.c_str());
  }
  return total;
}

void SftpClient::rename(const std::string& from, const std::string& to) {
  impl_->with_session([&] {
    if (sftp_rename(impl_->sftp, from.c_str(), to.c_str()) != SSH_OK)
      impl_->fail_sftp("rename", from + " -> " + to);
    return 0;
  });
}

void SftpClient::remove(const std::string& path) {
  impl_->with_session([&] {
    if (sftp_unlink(impl_->sftp, path.c_str()) != SSH_OK) impl_->fail_sftp("remove", path);
    return 0;
  });
}

void SftpClient::mkdir(const std::string& path) {
  impl_->with_session([&] {
    if (sftp_mkdir(impl_->sftp, path.c_str(), 0750) != SSH_OK) impl_->fail_sftp("mkdir", path);
    return 0;
  });
}

std::string SftpClient::realpath(const std::string& path) {
  return impl_->with_session([&] {
    char* p = sftp_canonicalize_path(impl_->sftp, path.c_str());
    if (!p) impl_->fail_sftp("realpath", path);
    std::string out = p;
    ssh_string_free_char(p);
    return out;
  });
}

}  // namespace taskhost
