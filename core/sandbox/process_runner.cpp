#include "sandbox/process_runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/json_input.hpp"
#include "sandbox/frame.hpp"
#include "sandbox/walls.hpp"
#include "schema/limits.hpp"
#include "services/object_storage.hpp"

namespace taskhost::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

// How often the host's stop flag is looked at while the plugin computes.
constexpr auto stop_poll = std::chrono::milliseconds(100);

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

[[noreturn]] void environment(const std::string& what) {
  throw Error(ErrorKind::environment,
              "cannot start the plugin's sandbox: " + what + ": " + std::strerror(errno));
}

// A copy of fd numbered above the two the helper is given, so that placing
// one at 3 or 4 cannot overwrite the other.
Fd above_helper_fds(int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (d < 0) environment("dup");
  return Fd(d);
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string syscall_text(const SyscallDenied& d) {
  constexpr uint32_t x32_bit = 0x40000000;
  std::string arch = d.arch == SCMP_ARCH_X86_64 && (d.nr & x32_bit) ? "x32 "
                     : d.arch == SCMP_ARCH_X86_64                   ? ""
                     : d.arch == SCMP_ARCH_X86                      ? "i386 "
                                                                    : "foreign ";
  uint32_t arch_token = arch == "x32 " ? SCMP_ARCH_X32 : d.arch;
  std::string name = "number " + std::to_string(d.nr);
  if (char* n = seccomp_syscall_resolve_num_arch(arch_token, static_cast<int>(d.nr))) {
    name = n;
    std::free(n);
  }
  return "sandbox: " + arch + "syscall " + name + " not allowed";
}

// The attempt's control group, where the machine lets this process make one:
// cgroup v2 when its memory controller is here, else v1's memory and pids
// hierarchies. Without one, the rlimits set in the child are the only floor.
// Made as the helper starts (before it forks), limited when an attempt
// takes it.
class Cgroup {
 public:
  explicit Cgroup(pid_t pid) {
    const std::string name = "taskhost-sandbox-" + std::to_string(pid);
    if (contains("/sys/fs/cgroup/cgroup.controllers", "memory")) {
      const std::string dir = "/sys/fs/cgroup" + own_path("") + "/" + name;
      if (!make(dir)) return;
      v2_ = true;
      put(dir + "/cgroup.procs", static_cast<uint64_t>(pid));
      return;
    }
    for (const char* controller : {"memory", "pids"}) {
      const std::string dir =
          std::string("/sys/fs/cgroup/") + controller + own_path(controller) + "/" + name;
      if (make(dir)) put(dir + "/cgroup.procs", static_cast<uint64_t>(pid));
    }
  }
  ~Cgroup() {
    // Its processes are gone (or going: the pid namespace ends with its
    // first process); an rmdir that races the last exit is tried again.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
      for (int i = 0; i < 50 && ::rmdir(it->c_str()) < 0 && errno == EBUSY; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  // The helper and the namespace's first process are in the group too: the
  // pids limit counts the plugin's threads above those two.
  void limit(const Limits& limits) {
    for (const auto& dir : dirs_) {
      const bool pids = v2_ || dir.find("/sys/fs/cgroup/pids/") == 0;
      const bool memory = v2_ || !pids;
      if (memory && limits.memory) {
        if (v2_) {
          put(dir + "/memory.max", limits.memory);
          put(dir + "/memory.swap.max", 0);
        } else {
          put(dir + "/memory.limit_in_bytes", limits.memory);
          if (::access((dir + "/memory.memsw.limit_in_bytes").c_str(), F_OK) == 0)
            put(dir + "/memory.memsw.limit_in_bytes", limits.memory);
        }
      }
      if (pids && limits.processes) put(dir + "/pids.max", limits.processes + 2);
    }
  }

  // Whether the kernel killed a process of the group for memory.
  bool oom_killed() const {
    for (const auto& d : dirs_) {
      std::string text = slurp(d + (v2_ ? "/memory.events" : "/memory.oom_control"));
      auto at = text.find("oom_kill ");
      if (at != std::string::npos && std::strtoull(text.c_str() + at + 9, nullptr, 10) > 0)
        return true;
    }
    return false;
  }

 private:
  static std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
  }
  static bool contains(const std::string& path, const std::string& word) {
    std::istringstream s(slurp(path));
    for (std::string w; s >> w;)
      if (w == word) return true;
    return false;
  }
  // This process's cgroup in the hierarchy of controller (v2: "").
  static std::string own_path(const std::string& controller) {
    std::istringstream s(slurp("/proc/self/cgroup"));
    for (std::string line; std::getline(s, line);) {
      auto a = line.find(':'), b = line.find(':', a + 1);
      if (b == std::string::npos) continue;
      bool match = controller.empty() && line.compare(0, a, "0") == 0;
      std::istringstream list(line.substr(a + 1, b - a - 1));
      for (std::string c; !controller.empty() && std::getline(list, c, ',');)
        match |= c == controller;
      if (match) return line.substr(b + 1) == "/" ? "" : line.substr(b + 1);
    }
    return "";
  }
  bool make(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) < 0) return false;
    dirs_.push_back(dir);
    return true;
  }
  static void put(const std::string& path, uint64_t v) {
    std::ofstream f(path);
    f << v;
    f.flush();
    if (!f)
      throw Error(ErrorKind::environment, "cannot write " + path + ": " + std::strerror(errno));
  }

  bool v2_ = false;
  std::vector<std::string> dirs_;
};

// One attempt's conversation with the plugin process.
class Session {
 public:
  // Without host, only the handshake: the process is ended once it said hello.
  Session(const SandboxOptions& o, int sock, HostServices* host, const GrantedServices& granted)
      : options_(o), sock_(sock), host_(host), api_(make_host_api(granted)) {}

  // Sends go with the plugin's image.
  void go(const std::string& frame, int image) {
    try {
      write_with_fd(sock_, frame, image);
    } catch (const FrameError& e) {
      fail(std::string("broker: ") + e.what());  // a sandbox that ended while ready
    }
  }
  // Serves frames until the process ends; returns its wait status.
  int serve(int pidfd, pid_t pid, const std::string& file, Descriptor* descriptor, rusage* usage);

  bool done() const { return done_; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  bool killed_after_stop() const { return killed_after_stop_; }
  const std::string& broken() const { return broken_; }

 private:
  void handle(const Frame& f, const std::string& file, Descriptor* descriptor);
  void serve_call(const Call& c);
  bool hand_file(const Call& c, bool reply);
  int64_t read_body(char* buf, size_t capacity);
  int write_body(Stream s, const char* data, size_t n);
  void send(const std::string& frame);
  void fail(const std::string& why) {
    if (broken_.empty()) broken_ = why;
  }

  const SandboxOptions& options_;
  int sock_;
  HostServices* host_;
  th_host_api api_;
  bool hello_ = false, done_ = false, killed_after_stop_ = false;
  bool asked_ = false;  // to stop: by the host, or (inspecting) once it said hello
  bool aborted_[2] = {false, false};
  int code_ = TH_OK;
  std::string message_, broken_;
  // Buffers reused frame after frame: the call being served (its fields
  // point into it), and each frame read while it streams a body.
  Frame call_frame_, frame_;
};

void Session::send(const std::string& frame) {
  try {
    write_all(sock_, frame);
  } catch (const FrameError& e) {
    fail(std::string("broker: ") + e.what());
  }
}

int64_t Session::read_body(char* buf, size_t capacity) {
  if (!broken_.empty()) return -1;
  send(FrameWriter(Kind::read).u64(capacity).finish());
  Frame& f = frame_;
  try {
    while (broken_.empty()) {
      if (!read_frame(sock_, f))
        fail("broker: the plugin process closed the socket");
      else if (f.kind == Kind::abort)
        aborted_[static_cast<int>(parse_abort(f.body))] = true;
      else if (f.kind == Kind::source_failed)
        return -1;
      else if (f.kind != Kind::data)
        fail("broker: expected a body chunk");
      else {
        std::string_view d = parse_data(f.body);
        if (d.size() > capacity)
          fail("broker: a body chunk larger than asked for");
        else {
          std::memcpy(buf, d.data(), d.size());
          return static_cast<int64_t>(d.size());
        }
      }
    }
  } catch (const FrameError& e) {
    fail(std::string("broker: ") + e.what());
  }
  return -1;
}

int Session::write_body(Stream s, const char* data, size_t n) {
  // An abort the plugin sent since the last chunk ends this stream.
  pollfd p{sock_, POLLIN, 0};
  while (broken_.empty() && ::poll(&p, 1, 0) > 0) {
    Frame& f = frame_;
    try {
      if (!read_frame(sock_, f))
        fail("broker: the plugin process closed the socket");
      else if (f.kind != Kind::abort)
        fail("broker: expected nothing or an abort during a body");
      else
        aborted_[static_cast<int>(parse_abort(f.body))] = true;
    } catch (const FrameError& e) {
      fail(std::string("broker: ") + e.what());
    }
  }
  if (!broken_.empty() || aborted_[static_cast<int>(s)]) return 1;
  try {
    for (size_t at = 0; at < n || (n == 0 && at == 0); at += max_chunk) {
      const size_t k = std::min(max_chunk, n - at);
      write_frame(sock_, chunk_head(s, k), {data + at, k});
      if (n == 0) break;
    }
  } catch (const FrameError& e) {
    fail(std::string("broker: ") + e.what());
  }
  return broken_.empty() ? 0 : 1;
}

// An object storage get from a store that keeps objects as files: the
// plugin process gets the file, open read-only, and reads it itself, so its
// bytes do not cross the broker (in chunks, a 256 MiB get from the local
// store ran at a fifth of its in-process speed). Anything else (an S3 get, a
// refusal, a missing object) is served as usual, which says why.
bool Session::hand_file(const Call& c, bool reply) {
  std::unique_ptr<ObjectFile> file;
  try {
    file = host_->object_file(parse_json_input(c.s2, "the request"));
  } catch (const Error&) {
    return false;
  }
  if (!file) return false;
  try {
    write_with_fd(sock_, FrameWriter(Kind::file).finish(), file->fd);
  } catch (const FrameError& e) {
    fail(std::string("broker: ") + e.what());
    return true;
  }
  const std::string text = info_json(file->info).dump();
  if (reply) write_body(Stream::reply, text.data(), text.size());
  if (broken_.empty()) send(encode(Kind::result, Result{TH_OK, ""}));
  return true;
}

void Session::serve_call(const Call& c) {
  th_host* h = as_host(*host_);
  char buf[4096] = {0};
  th_error err{buf, sizeof buf};
  aborted_[0] = aborted_[1] = false;
  th_source in{this, [](void* u, char* b, size_t cap) {
                 return static_cast<Session*>(u)->read_body(b, cap);
               }};
  th_sink out{this, [](void* u, const char* d, size_t n) {
                return static_cast<Session*>(u)->write_body(Stream::out, d, n);
              }};
  th_sink reply{this, [](void* u, const char* d, size_t n) {
                  return static_cast<Session*>(u)->write_body(Stream::reply, d, n);
                }};
  th_source* in_p = c.bodies & body_in ? &in : nullptr;
  th_sink* out_p = c.bodies & body_out ? &out : nullptr;
  th_sink* reply_p = c.bodies & body_reply ? &reply : nullptr;
  if (c.method == Method::object_storage && c.s1 == "get" && out_p && api_.object_storage &&
      hand_file(c, reply_p != nullptr))
    return;
  auto str = [](std::string_view s) { return th_str{s.data(), s.size()}; };
  int rc = TH_OK;
  th_service_fn service = nullptr;
  switch (c.method) {
    case Method::log:
      api_.log(h, static_cast<th_log_level>(std::min<uint64_t>(c.n1, TH_LOG_ERROR)), str(c.s1));
      break;
    case Method::progress:
      rc = api_.progress(h, c.n1, c.n2, &err);
      break;
    case Method::checkpoint_get:
      rc = api_.checkpoint_get(h, out_p, &err);
      break;
    case Method::checkpoint_set:
      rc = api_.checkpoint_set(h, str(c.s1), &err);
      break;
    case Method::emit:
      rc = api_.emit(h, str(c.s1), str(c.s2), &err);
      break;
    case Method::params:
      rc = api_.params(h, out_p, &err);
      break;
    case Method::run_info:
      rc = api_.run_info(h, out_p, &err);
      break;
    case Method::set_output:
      rc = api_.set_output(h, str(c.s1), &err);
      break;
    case Method::attach_file:
      rc = api_.attach_file(h, str(c.s1), str(c.s2), in_p, &err);
      break;
    case Method::object_storage:
      service = api_.object_storage;
      break;
    case Method::sftp:
      service = api_.sftp;
      break;
    case Method::db:
      service = api_.db;
      break;
    case Method::http:
      service = api_.http;
      break;
    case Method::pgp:
      service = api_.pgp;
      break;
    case Method::metric: {
      double value = 0;
      std::memcpy(&value, &c.n1, sizeof value);
      rc = api_.metric(h, str(c.s1), str(c.s2), value, &err);
      break;
    }
    case Method::dry_run:
      rc = out_p
               ? (write_body(Stream::out, api_.dry_run(h) ? "1" : "0", 1) == 0 ? TH_OK : TH_ERR_IO)
               : TH_ERR_INVALID;
      break;
  }
  if (c.method >= Method::object_storage && c.method <= Method::pgp) {
    if (service == nullptr) {
      rc = TH_ERR_NOT_SUPPORTED;
      std::snprintf(buf, sizeof buf, "the schema does not grant this service");
    } else {
      rc = service(h, str(c.s1), str(c.s2), in_p, out_p, reply_p, &err);
    }
  }
  if (broken_.empty())
    send(encode(Kind::result, Result{rc, rc == TH_OK ? "" : std::string_view(buf)}));
}

void Session::handle(const Frame& f, const std::string& file, Descriptor* descriptor) {
  if (!hello_) {
    if (f.kind != Kind::hello) return fail("broker: the first frame is not hello");
    hello_ = true;
    Hello h = parse_hello(f.body);
    check_descriptor(file, {.has_entry = h.has_entry,
                            .has_descriptor = h.has_descriptor,
                            .struct_size = h.struct_size,
                            .magic = h.magic,
                            .abi_major = h.abi_major,
                            .abi_minor = h.abi_minor,
                            .has_run = h.has_run,
                            .name = h.name,
                            .version = h.version});
    if (descriptor)
      *descriptor = {std::string(h.name), std::string(h.version), std::string(h.description),
                     h.abi_major, h.abi_minor};
    if (!host_) return;
    send(FrameWriter(Kind::start).finish());
    if (asked_) send(FrameWriter(Kind::stop).finish());  // asked before it could listen
    return;
  }
  switch (f.kind) {
    case Kind::call:
      if (done_) return fail("broker: a host call after run returned");
      return serve_call(parse_call(f.body));
    case Kind::abort:
      return;  // for a body already sent in full
    case Kind::done: {
      if (done_) return fail("broker: run returned twice");
      Result r = parse_result(f.body);
      done_ = true;
      code_ = r.code;
      message_ = r.message;
      return;
    }
    default:
      return fail("broker: unexpected frame kind " + std::to_string(static_cast<int>(f.kind)));
  }
}

int Session::serve(int pidfd, pid_t pid, const std::string& file, Descriptor* descriptor,
                   rusage* usage) {
  bool socket_open = true, killed = false;
  // Only the handshake: the process has the grace period to say hello.
  auto deadline = host_ ? Clock::time_point::max() : Clock::now() + options_.grace;
  for (;;) {
    pollfd p[2] = {{pidfd, POLLIN, 0}, {socket_open ? sock_ : -1, POLLIN, 0}};
    const auto wait =
        std::clamp<Clock::duration>(deadline - Clock::now(), Clock::duration::zero(), stop_poll);
    // The plugin's next call usually follows its last answer at once.
    if (socket_open && readable_soon(sock_))
      p[1].revents = POLLIN;
    else if (::poll(p, 2,
                    static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count())) <
                 0 &&
             errno != EINTR)
      environment("poll");
    if (p[0].revents & POLLIN) {
      int status = 0;
      while (::wait4(pid, &status, 0, usage) < 0 && errno == EINTR) {
      }
      // What it wrote before it ended (its done frame) is still to be read;
      // with every process of the attempt gone, the socket ends after it.
      Frame f;
      try {
        // Only its done frame: a call it can no longer wait for is not served.
        while (socket_open && broken_.empty() && read_frame(sock_, f))
          if (f.kind == Kind::done) handle(f, file, descriptor);
      } catch (const FrameError& e) {
        fail(std::string("broker: ") + e.what());
      }
      return status;
    }
    if (socket_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      Frame& f = call_frame_;
      try {
        if (!read_frame(sock_, f))
          socket_open = false;
        else
          handle(f, file, descriptor);
      } catch (const FrameError& e) {
        fail(std::string("broker: ") + e.what());
      }
    }
    if (killed) continue;
    const auto now = Clock::now();
    // Inspecting, hello is all: stop instead of start ends the process.
    if (!asked_ && !done_ && (host_ ? host_->should_stop() : hello_)) {
      // Told at once (or right after start), killed after the grace period.
      asked_ = true;
      if (hello_) send(FrameWriter(Kind::stop).finish());
      deadline = std::min(deadline, now + options_.grace);
    }
    // A closed socket (run returned, or the process is dying): the
    // process has the grace period to exit.
    if (!socket_open) deadline = std::min(deadline, now + options_.grace);
    if (!broken_.empty() || now >= deadline) {
      killed_after_stop_ = broken_.empty() && asked_ && host_ != nullptr;
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
}

// Everything the helper's processes reported before they ended.
struct Report {
  std::string setup_failed, unavailable;
  std::optional<SyscallDenied> denied;
};

Report read_report(int fd) {
  Report report;
  std::string bytes;
  char buf[4096];
  for (ssize_t n; bytes.size() < (64u << 10) && (n = ::read(fd, buf, sizeof buf)) > 0;)
    bytes.append(buf, static_cast<size_t>(n));
  std::string_view rest = bytes;
  try {
    while (rest.size() >= header_size) {
      Header h = parse_header(rest);
      if (rest.size() - header_size < h.body_size) break;
      std::string_view body = rest.substr(header_size, h.body_size);
      rest.remove_prefix(header_size + h.body_size);
      if (h.kind == Kind::setup_failed && report.setup_failed.empty())
        report.setup_failed = std::string(parse_setup_failed(body));
      else if (h.kind == Kind::unavailable && report.unavailable.empty())
        report.unavailable = std::string(parse_setup_failed(body));
      else if (h.kind == Kind::syscall_denied && !report.denied)
        report.denied = parse_syscall_denied(body);
    }
  } catch (const FrameError&) {
    // What was read before the garbage stands.
  }
  return report;
}

}  // namespace

Limits limits_of(const ResourceLimits& l) {
  return {.memory = l.memory.value_or(0),
          .cpu_time = l.cpu_time.value_or(0),
          .open_files = l.open_files.value_or(0),
          .tmp = l.tmp.value_or(0),
          .processes = l.processes.value_or(0)};
}

std::filesystem::path default_helper() {
  if (const char* path = std::getenv("TASKHOST_SANDBOX_HELPER"); path && *path) return path;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "taskhost-sandbox";
  return self.parent_path() / "taskhost-sandbox";
}

// A started taskhost-sandbox: once prepared, it builds the walls and its
// plugin process waits for go.
struct Helper {
  pid_t pid = -1;
  bool reaped = false;
  Fd pidfd, sock, report;
  std::unique_ptr<Cgroup> cgroup;

  Helper() = default;
  Helper(const Helper&) = delete;
  Helper& operator=(const Helper&) = delete;
  ~Helper() {
    if (pid <= 0 || reaped) return;
    // By its pidfd: the pid alone may name another process once reaped.
    ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    siginfo_t info;
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED) < 0 &&
           errno == EINTR) {
    }
  }
};

namespace {

// Bodies stream in chunks of max_chunk: a send buffer of several lets the
// writer run ahead of the reader instead of waking it for every piece.
constexpr int socket_buffer = 4 << 20;

std::unique_ptr<Helper> start_helper(const SandboxOptions& options) {
  auto h = std::make_unique<Helper>();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) environment("socketpair");
  h->sock = Fd(sv[0]);
  Fd child_end(sv[1]);
  for (int fd : {sv[0], sv[1]})
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &socket_buffer, sizeof socket_buffer) < 0)
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &socket_buffer, sizeof socket_buffer);
  int pp[2];
  if (::pipe2(pp, O_CLOEXEC) < 0) environment("pipe");
  h->report = Fd(pp[0]);
  Fd report_write(pp[1]);
  Fd broker = above_helper_fds(child_end.get()), report = above_helper_fds(report_write.get());
  child_end.reset();
  report_write.reset();

  // A vfork-style spawn: no C++ runs in a copy of this multithreaded
  // process. The helper starts with an empty environment, default signal
  // dispositions, an empty mask and a session of its own.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Not the worker's terminal or log: standard streams lead nowhere.
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDWR, 0);
  posix_spawn_file_actions_adddup2(&actions, 0, 1);
  posix_spawn_file_actions_adddup2(&actions, 0, 2);
  posix_spawn_file_actions_adddup2(&actions, broker.get(), broker_fd);
  posix_spawn_file_actions_adddup2(&actions, report.get(), report_fd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const std::string helper = options.helper.string();
  char* argv[] = {const_cast<char*>("taskhost-sandbox"), nullptr};
  char* envp[] = {nullptr};
  int rc = ::posix_spawn(&h->pid, helper.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    h->pid = -1;
    errno = rc;
    environment("start " + helper);
  }
  h->pidfd = Fd(static_cast<int>(::syscall(SYS_pidfd_open, h->pid, 0)));
  if (h->pidfd.get() < 0) {
    const int err = errno;
    ::kill(h->pid, SIGKILL);
    ::waitpid(h->pid, nullptr, 0);
    h->pid = -1;
    errno = err;
    environment("pidfd_open");
  }
  h->cgroup = std::make_unique<Cgroup>(h->pid);
  // A peer that stops reading or writing mid-frame must not hold a thread
  // longer than the grace period.
  timeval tv{static_cast<time_t>(options.grace.count() / 1000),
             static_cast<suseconds_t>(options.grace.count() % 1000 * 1000)};
  ::setsockopt(h->sock.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(h->sock.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  write_all(h->sock.get(), encode(Prepare{options.drop_uid, options.fail_at}));
  return h;
}

}  // namespace

Sandbox::Sandbox(SandboxOptions options) : options_(std::move(options)) {
  if (options_.warm) starter_ = std::thread([this] { keep_warm(); });
}

Sandbox::~Sandbox() {
  {
    std::lock_guard lock(mutex_);
    ending_ = true;
  }
  wanted_.notify_all();
  if (starter_.joinable()) starter_.join();
}

// Starts a sandbox in place of each one taken, on this thread of its own:
// the helper dies with the thread that started it (PR_SET_PDEATHSIG), and
// this one lives as long as the Sandbox.
void Sandbox::keep_warm() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wanted_.wait(lock, [&] { return ending_ || wanted_count_ > 0; });
    if (ending_) break;
    --wanted_count_;
    lock.unlock();
    std::unique_ptr<Helper> h;
    try {
      h = start_helper(options_);
    } catch (const std::exception&) {
      // The attempt that finds none ready starts its own and reports why.
    }
    lock.lock();
    if (h) ready_.push_back(std::move(h));
  }
  ready_.clear();  // killed and reaped here, by the thread that started them
}

std::unique_ptr<Helper> Sandbox::take() {
  std::unique_ptr<Helper> h;
  if (options_.warm) {
    std::lock_guard lock(mutex_);
    if (!ready_.empty()) {
      h = std::move(ready_.front());
      ready_.pop_front();
    }
    // One more kept ready for each attempt started: as many as run at once.
    ++wanted_count_;
  }
  if (options_.warm) wanted_.notify_one();
  return h ? std::move(h) : start_helper(options_);
}

Descriptor Sandbox::inspect(const PluginImage& image, const std::string& file) {
  Descriptor d;
  std::string message;
  attempt(limits_of(default_limits), image, file, nullptr, {}, &message, &d);
  if (d.name.empty()) throw Error(ErrorKind::refused, "plugin " + file + " refused: " + message);
  return d;
}

int Sandbox::run(const Limits& limits, const PluginImage& image, const std::string& file,
                 HostServices& host, const GrantedServices& granted, std::string* message) {
  return attempt(limits, image, file, &host, granted, message, nullptr);
}

int Sandbox::attempt(const Limits& limits, const PluginImage& image, const std::string& file,
                     HostServices* host, const GrantedServices& granted, std::string* message,
                     Descriptor* descriptor) {
  std::unique_ptr<Helper> h = take();
  h->cgroup->limit(limits);

  Go go;
  go.memory = limits.memory;
  go.cpu_time = limits.cpu_time;
  go.open_files = limits.open_files;
  go.tmp = limits.tmp;
  go.processes = limits.processes;
  auto bit = [](Method m) { return 1u << static_cast<uint8_t>(m); };
  go.granted = (granted.object_storage ? bit(Method::object_storage) : 0) |
               (granted.sftp ? bit(Method::sftp) : 0) | (granted.db ? bit(Method::db) : 0) |
               (granted.http ? bit(Method::http) : 0) | (granted.pgp ? bit(Method::pgp) : 0);

  // Any way out of here ends the helper's processes (~Helper).
  Session session(options_, h->sock.get(), host, granted);
  rusage usage{};
  session.go(encode(go), image.fd());
  const int status = session.serve(h->pidfd.get(), h->pid, file, descriptor, &usage);
  h->reaped = true;

  const Report report = read_report(h->report.get());
  if (!report.unavailable.empty())
    throw Error(ErrorKind::refused, "plugin " + file + " refused: this kernel cannot sandbox it: " +
                                        report.unavailable);
  const int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (session.done() && exit_code == 0) {
    if (session.code() != TH_OK)
      *message = session.message().empty() ? "plugin failed without a message" : session.message();
    return session.code();
  }
  if (report.denied) {
    *message = syscall_text(*report.denied);
    return TH_ERR_PERMISSION;
  }
  if (!report.setup_failed.empty()) {
    *message = "the plugin's sandbox could not be set up: " + report.setup_failed;
    return TH_ERR_INTERNAL;
  }
  if (!session.broken().empty()) {
    *message = "plugin process stopped: " + session.broken();
    return TH_ERR_RETRYABLE;
  }
  if (h->cgroup->oom_killed()) {
    *message = "memory limit " + format_size(limits.memory) + " exceeded";
    return TH_ERR_RETRYABLE;
  }
  if (session.killed_after_stop()) {
    *message = "plugin process killed: it did not stop within " +
               std::to_string(options_.grace.count()) + " ms of being asked";
    return TH_ERR_CANCELLED;
  }
  if (exit_code > 128) {
    const int sig = exit_code - 128;
    // RLIMIT_CPU sends SIGXCPU at the limit and SIGKILL a second later.
    const auto cpu = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec;
    if (sig == SIGXCPU ||
        (sig == SIGKILL && limits.cpu_time && static_cast<uint64_t>(cpu) >= limits.cpu_time))
      *message = "cpu_time limit " + std::to_string(limits.cpu_time) + "s exceeded";
    else if (sig == SIGXFSZ)
      *message = "tmp limit " + format_size(limits.tmp) + " exceeded";
    else
      *message = "plugin process died: " + signal_name(sig);
    return TH_ERR_RETRYABLE;
  }
  *message =
      "plugin process exited with code " + std::to_string(exit_code) + " before run returned";
  return TH_ERR_RETRYABLE;
}

}  // namespace taskhost::sandbox
