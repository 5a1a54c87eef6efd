#include "sandbox/client.hpp"

#include <dlfcn.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "sandbox/walls.hpp"

namespace taskhost::sandbox {
namespace {

// The broker is this process's only link to the host: when it breaks there
// is no one to report to.
[[noreturn]] void broker_lost() { ::_exit(broker_lost_exit); }

void send(int fd, const std::string& frame) {
  try {
    write_all(fd, frame);
  } catch (const FrameError&) {
    broker_lost();
  }
}

// spin: look for the frame a moment before sleeping (the answer to a call
// usually comes at once; the chunks of a body need no such haste).
void receive(int fd, Frame& f, bool spin = false, int* passed = nullptr) {
  try {
    if (spin) readable_soon(fd);
    if (read_frame(fd, f, passed)) return;
  } catch (const FrameError&) {
  }
  broker_lost();
}

void write_error(th_error* err, std::string_view message) {
  if (err == nullptr || err->message == nullptr || err->capacity == 0) return;
  size_t n = std::min(message.size(), err->capacity - 1);
  std::memcpy(err->message, message.data(), n);
  err->message[n] = '\0';
}

Client& client(th_host* h) { return *reinterpret_cast<Client*>(h); }
std::string_view view(th_str s) { return {s.data, s.size}; }

int simple(th_host* h, Method m, th_error* err, std::string_view s1 = {}, std::string_view s2 = {},
           uint64_t n1 = 0, uint64_t n2 = 0) {
  Call c;
  c.method = m;
  c.s1 = s1;
  c.s2 = s2;
  c.n1 = n1;
  c.n2 = n2;
  return client(h).call(c, nullptr, nullptr, nullptr, err);
}

int streamed(th_host* h, Method m, th_sink* out, th_error* err) {
  Call c;
  c.method = m;
  c.bodies = body_out;
  return client(h).call(c, nullptr, out, nullptr, err);
}

template <Method M>
int service(th_host* h, th_str op, th_str request, th_source* in, th_sink* out, th_sink* reply,
            th_error* err) {
  Call c;
  c.method = M;
  c.s1 = view(op);
  c.s2 = view(request);
  c.bodies =
      static_cast<uint8_t>((in ? body_in : 0) | (out ? body_out : 0) | (reply ? body_reply : 0));
  return client(h).call(c, in, out, reply, err);
}

constexpr uint32_t bit(Method m) { return 1u << static_cast<uint8_t>(m); }

}  // namespace

void Client::take_unsolicited(const Frame& f) {
  if (f.kind != Kind::stop) broker_lost();
  stop_ = true;
}

bool Client::should_stop() {
  std::lock_guard lock(mutex_);
  pollfd p{fd_, POLLIN, 0};
  while (!stop_ && ::poll(&p, 1, 0) > 0) {
    receive(fd_, frame_);
    take_unsolicited(frame_);
  }
  return stop_;
}

constexpr auto progress_every = std::chrono::milliseconds(100);

int Client::progress(uint64_t done, uint64_t total, th_error* err) {
  {
    std::lock_guard lock(mutex_);
    pending_progress_ = {done, total};
    if (done != total && std::chrono::steady_clock::now() - progress_sent_ < progress_every)
      return TH_OK;
  }
  return flush_progress(err);
}

int Client::flush_progress(th_error* err) {
  Call c;
  c.method = Method::progress;
  {
    std::lock_guard lock(mutex_);
    if (!pending_progress_) return TH_OK;
    std::tie(c.n1, c.n2) = *std::exchange(pending_progress_, std::nullopt);
    progress_sent_ = std::chrono::steady_clock::now();
  }
  return exchange(c, nullptr, nullptr, nullptr, err);
}

int Client::call(const Call& c, th_source* in, th_sink* out, th_sink* reply, th_error* err) {
  // The host sees progress in the order the plugin reported it.
  if (int rc = flush_progress(err); rc != TH_OK) return rc;
  return exchange(c, in, out, reply, err);
}

// Feeds the file fd to sink in the pieces the host's own get reads. Returns
// why the transfer failed, as the host would have said it, or nullptr.
const char* Client::read_file(int fd, th_sink* sink) {
  if (sink == nullptr || sink->write == nullptr) return nullptr;  // the body is discarded
  file_buf_.resize(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, file_buf_.data(), file_buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return "reading the object's file failed";
    if (n == 0) return nullptr;
    if (sink->write(sink->user, file_buf_.data(), static_cast<size_t>(n)) != 0)
      return "the plugin's sink aborted the transfer";
  }
}

int Client::exchange(const Call& c, th_source* in, th_sink* out, th_sink* reply, th_error* err) {
  std::lock_guard lock(mutex_);
  std::string frame;
  try {
    frame = encode(c);
  } catch (const FrameError&) {
    // The words the host uses for an argument over its cap.
    const char* what = c.method == Method::checkpoint_set ? "checkpoint"
                       : c.method == Method::set_output   ? "output"
                       : c.method == Method::emit         ? "event payload"
                                                          : "request";
    write_error(err, std::string(what) + " is " + std::to_string(c.s1.size() + c.s2.size()) +
                         " bytes, over the limit of " + std::to_string(max_argument) + " bytes");
    return TH_ERR_INVALID;
  }
  send(fd_, frame);
  bool aborted[2] = {false, false};
  const char* file_failure = nullptr;
  for (bool first = true;; first = false) {
    int passed = -1;
    receive(fd_, frame_, first, &passed);
    const Frame& f = frame_;
    // Only a file frame carries a descriptor; any other is closed unread.
    if (passed >= 0 && f.kind != Kind::file) ::close(passed);
    try {
      switch (f.kind) {
        case Kind::file: {
          if (passed < 0) broker_lost();
          // The host's result follows; a failure here is the call's instead.
          file_failure = read_file(passed, out);
          ::close(passed);
          break;
        }
        case Kind::stop:
          stop_ = true;
          break;
        case Kind::read: {
          // The host asks only for a body the call said it has.
          if (in == nullptr || in->read == nullptr) {
            send(fd_, FrameWriter(Kind::source_failed).finish());
            break;
          }
          buf_.resize(std::min<uint64_t>(parse_read(f.body), max_chunk));
          int64_t n = in->read(in->user, buf_.data(), buf_.size());
          if (n < 0 || static_cast<uint64_t>(n) > buf_.size()) {
            send(fd_, FrameWriter(Kind::source_failed).finish());
          } else {
            try {
              write_frame(fd_, data_head(static_cast<size_t>(n)),
                          {buf_.data(), static_cast<size_t>(n)});
            } catch (const FrameError&) {
              broker_lost();
            }
          }
          break;
        }
        case Kind::chunk: {
          Chunk ch = parse_chunk(f.body);
          th_sink* sink = ch.stream == Stream::out ? out : reply;
          const auto s = static_cast<size_t>(ch.stream);
          if (aborted[s] || sink == nullptr || sink->write == nullptr) break;
          if (sink->write(sink->user, ch.data.data(), ch.data.size()) != 0) {
            aborted[s] = true;
            send(fd_, FrameWriter(Kind::abort).u8(static_cast<uint8_t>(ch.stream)).finish());
          }
          break;
        }
        case Kind::result: {
          Result r = parse_result(f.body);
          if (r.code == TH_OK && file_failure) {
            write_error(err, file_failure);
            return TH_ERR_IO;
          }
          write_error(err, r.message);
          return r.code;
        }
        default:
          broker_lost();
      }
    } catch (const FrameError&) {
      broker_lost();
    }
  }
}

th_host_api Client::api() const {
  th_host_api api{};
  api.struct_size = sizeof(th_host_api);
  api.abi_major = TH_ABI_MAJOR;
  api.abi_minor = TH_ABI_MINOR;
  api.log = [](th_host* h, th_log_level level, th_str message) {
    // The host keeps the first few KiB of a message anyway.
    simple(h, Method::log, nullptr, view(message).substr(0, max_argument), {},
           static_cast<uint64_t>(level));
  };
  api.progress = [](th_host* h, uint64_t done, uint64_t total, th_error* err) {
    return client(h).progress(done, total, err);
  };
  api.checkpoint_get = [](th_host* h, th_sink* out, th_error* err) {
    return streamed(h, Method::checkpoint_get, out, err);
  };
  api.checkpoint_set = [](th_host* h, th_str json, th_error* err) {
    return simple(h, Method::checkpoint_set, err, view(json));
  };
  api.emit = [](th_host* h, th_str event, th_str json, th_error* err) {
    return simple(h, Method::emit, err, view(event), view(json));
  };
  api.should_stop = [](th_host* h) { return client(h).should_stop() ? 1 : 0; };
  api.params = [](th_host* h, th_sink* out, th_error* err) {
    return streamed(h, Method::params, out, err);
  };
  api.run_info = [](th_host* h, th_sink* out, th_error* err) {
    return streamed(h, Method::run_info, out, err);
  };
  api.set_output = [](th_host* h, th_str json, th_error* err) {
    return simple(h, Method::set_output, err, view(json));
  };
  api.dry_run = [](th_host* h) {
    // The host streams "1" or "0"; a call that fails cannot say, and a dry
    // run is the safe answer.
    std::string answer;
    th_sink out{&answer, [](void* u, const char* d, size_t n) {
                  static_cast<std::string*>(u)->append(d, n);
                  return 0;
                }};
    return streamed(h, Method::dry_run, &out, nullptr) != TH_OK || answer != "0" ? 1 : 0;
  };
  api.metric = [](th_host* h, th_str name, th_str labels, double value, th_error* err) {
    uint64_t bits = 0;
    static_assert(sizeof bits == sizeof value);
    std::memcpy(&bits, &value, sizeof bits);
    return simple(h, Method::metric, err, view(name), view(labels), bits);
  };
  api.attach_file = [](th_host* h, th_str name, th_str content_type, th_source* body,
                       th_error* err) {
    Call c;
    c.method = Method::attach_file;
    c.s1 = view(name);
    c.s2 = view(content_type);
    c.bodies = body ? body_in : 0;
    return client(h).call(c, body, nullptr, nullptr, err);
  };
  if (granted_ & bit(Method::object_storage)) api.object_storage = service<Method::object_storage>;
  if (granted_ & bit(Method::sftp)) api.sftp = service<Method::sftp>;
  if (granted_ & bit(Method::db)) api.db = service<Method::db>;
  if (granted_ & bit(Method::http)) api.http = service<Method::http>;
  if (granted_ & bit(Method::pgp)) api.pgp = service<Method::pgp>;
  return api;
}

void plugin_process(Steps& steps, const Prepare& prepare) {
  const SeccompFilter filter = SeccompFilter::compile();
  Frame f;
  Go go;
  int image = -1;
  try {
    if (!read_frame(broker_fd, f, &image)) ::_exit(0);  // the host ended this warm sandbox
    if (f.kind != Kind::go || image < 0) throw FrameError("expected go with the plugin's image");
    go = parse_go(f.body);
  } catch (const FrameError& e) {
    throw std::runtime_error(std::string("sandbox protocol: ") + e.what());
  }
  finish_root(steps, go, image);
  ::close(image);
  set_limits(steps, go);
  drop_privileges(steps, prepare.drop_uid);
  steps.next("load the plugin");
  // RTLD_NOW: every symbol is bound before seccomp forbids new executable
  // mappings. The library's static initialisers run here, inside the walls.
  void* lib = ::dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) throw std::runtime_error(std::string("cannot load it: ") + ::dlerror());
  auto entry = reinterpret_cast<th_plugin_entry_fn>(::dlsym(lib, TH_PLUGIN_ENTRY_SYMBOL));
  Hello hello;
  const th_plugin* d = entry ? entry() : nullptr;
  hello.has_entry = entry != nullptr;
  hello.has_descriptor = d != nullptr;
  // The host judges the descriptor; only fields it is known to cover are read.
  constexpr size_t size_1_0 = offsetof(th_plugin, run) + sizeof(th_plugin::run);
  if (d) {
    hello.struct_size = d->struct_size;
    hello.magic = d->magic;
    hello.abi_major = d->abi_major;
    hello.abi_minor = d->abi_minor;
    if (d->magic == TH_PLUGIN_MAGIC && d->struct_size >= size_1_0) {
      hello.has_run = d->run != nullptr;
      if (d->name) hello.name = d->name;
      if (d->version) hello.version = d->version;
      if (d->description) hello.description = d->description;
    }
  }
  send(broker_fd, encode(hello));
  receive(broker_fd, f);
  if (f.kind != Kind::start || !hello.has_run) ::_exit(0);  // refused: the host says why

  Client client(broker_fd, go.granted);
  const th_host_api api = client.api();
  filter.install(steps);
  char message[4096] = {0};
  th_error err{message, sizeof message};
  int rc = d->run(&api, client.host(), &err);
  client.flush_progress(nullptr);
  const std::string_view text(message, ::strnlen(message, sizeof message));
  send(broker_fd, encode(Kind::done, Result{rc, rc == TH_OK ? "" : text}));
  ::_exit(0);
}

}  // namespace taskhost::sandbox
