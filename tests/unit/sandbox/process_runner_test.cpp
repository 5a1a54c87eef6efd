// The same fixture plugins under both runners: in this process, and in the
// sandboxed child whose every host call is brokered. The host side is a
// recording HostServices; the engine tests cover the real one.
#include "sandbox/process_runner.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <seccomp.h>
#include <sys/prctl.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "plugin/loader.hpp"

namespace taskhost::sandbox {
namespace {

using Json = nlohmann::json;
const std::string fixtures = FIXTURE_PLUGIN_DIR;

class RecordingHost : public HostServices {
 public:
  explicit RecordingHost(Json params) : params_(std::move(params)) {}

  void log(th_log_level, std::string_view m) override { logs.emplace_back(m); }
  void progress(uint64_t done, uint64_t total) override { last_progress = {done, total}; }
  std::string checkpoint_get() override { return checkpoint; }
  void checkpoint_set(std::string_view json) override { checkpoint = json; }
  void emit(std::string_view event, std::string_view) override { events.emplace_back(event); }
  bool should_stop() override { return stop.load(); }
  std::string params() override { return params_.dump(); }
  std::string run_info() override {
    return Json{{"run_id", "r1"}, {"attempt", 1}, {"schema", "s"}, {"schema_version", "1.0.0"}}
        .dump();
  }
  void set_output(std::string_view json) override { output = Json::parse(json); }
  void attach_file(std::string_view name, std::string_view, std::string content) override {
    files[std::string(name)] = std::move(content);
  }
  // get streams as many bytes as its key says; put counts what it reads.
  Json object_storage(const std::string& op, const Json& request, const ByteSource& in,
                      const ByteSink& out) override {
    if (op == "get") {
      uint64_t n = std::stoull(request.at("key").get<std::string>());
      std::string chunk(64u << 10, 'z');
      for (uint64_t sent = 0; sent < n; sent += chunk.size())
        out(chunk.data(), static_cast<size_t>(std::min<uint64_t>(chunk.size(), n - sent)));
      return {{"size", n}};
    }
    uint64_t n = 0;
    char buf[1 << 16];
    for (size_t k; (k = in(buf, sizeof buf)) > 0;) n += k;
    return {{"size", n}};
  }
  Json http(const std::string&, const Json&, const ByteSource&, const ByteSink&) override {
    return {};
  }
  Json sftp(const std::string&, const Json&, const ByteSource&, const ByteSink&) override {
    return {};
  }
  Json db(const std::string&, const Json&, const ByteSource&, const ByteSink&) override {
    return {};
  }

  std::vector<std::string> logs, events;
  std::pair<uint64_t, uint64_t> last_progress;
  std::string checkpoint = "null";
  Json output;
  std::map<std::string, std::string> files;
  std::atomic<bool> stop{false};

 private:
  Json params_;
};

struct Outcome {
  int code = TH_OK;
  std::string message;
};

// One attempt in a sandbox of its own; the tests' default limits are none.
int sandbox_run(const std::string& path, HostServices& host, const GrantedServices& granted,
                SandboxOptions options, const Limits& limits, std::string* message) {
  options.helper = SANDBOX_HELPER;
  if (options.grace == std::chrono::milliseconds(30'000)) options.grace = std::chrono::seconds(2);
  options.warm = false;
  const VerifiedPlugin plugin = verify_plugin(path, nullptr, false);
  taskhost::sandbox::Sandbox sandbox(options);
  return sandbox.run(limits, plugin.image, path, host, granted, message);
}

enum class Isolation { none, process };

class Runners : public ::testing::TestWithParam<Isolation> {
 protected:
  Outcome run(const std::string& plugin, RecordingHost& host, GrantedServices granted = {},
              SandboxOptions options = {}) {
    const std::string path = fixtures + "/" + plugin + ".so";
    Outcome o;
    if (GetParam() == Isolation::none) {
      LoadedPlugin p = load_plugin(path, "any", true);
      th_host_api api = make_host_api(granted);
      o.code = p.run(&api, as_host(host), &o.message);
      return o;
    }
    o.code = sandbox_run(path, host, granted, options, {}, &o.message);
    return o;
  }
  bool sandboxed() const { return GetParam() == Isolation::process; }
};

TEST_P(Runners, EveryHostCallReachesTheHost) {
  RecordingHost host(Json{{"mode", "all"}});
  Outcome o = run("probe", host);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.events, (std::vector<std::string>{"item.done", "item.failed"}));
  EXPECT_EQ(host.last_progress, (std::pair<uint64_t, uint64_t>{2, 2}));
  EXPECT_EQ(host.output["checkpoint_before"], nullptr);
  EXPECT_EQ(host.output["checkpoint_after"], (Json{{"step", 1}}));
  EXPECT_EQ(host.output["run"]["run_id"], "r1");
  EXPECT_EQ(host.output["stop"], false);
  EXPECT_EQ(host.output["granted"]["object_storage"], false);
  EXPECT_EQ(host.logs.size(), 2u);
}

TEST_P(Runners, APluginErrorKeepsItsCodeAndMessage) {
  RecordingHost host(Json{{"mode", "bad_event"}});
  host.stop = false;
  Outcome o = run("returns_error", host);
  EXPECT_NE(o.code, TH_OK);
  EXPECT_FALSE(o.message.empty());
}

TEST_P(Runners, BodiesStreamBothWays) {
  RecordingHost host(Json{{"mode", "get"}, {"arg", std::to_string(9u << 20)}});
  GrantedServices granted;
  granted.object_storage = true;
  Outcome o = run("escape", host, granted);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.output["received"], 9u << 20);
  EXPECT_GT(host.output["pieces"], 1);

  RecordingHost put(Json{{"mode", "put"}, {"arg", std::to_string(5u << 20)}});
  o = run("escape", put, granted);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(put.output["stored"], 5u << 20);
}

// A get whose object the host keeps as a file: sandboxed, the plugin
// process is handed the file and reads it itself; in-process, the bytes
// come through the sink. The same bytes either way.
TEST_P(Runners, AnObjectKeptAsAFileArrivesWhole) {
  struct FileHost : RecordingHost {
    FileHost(Json params, const std::filesystem::path& dir)
        : RecordingHost(std::move(params)), store(local_object_store(dir)) {}
    std::unique_ptr<ObjectFile> object_file(const Json& request) override {
      ++handed;
      return store->open_file(request.at("key").get<std::string>());
    }
    Json object_storage(const std::string&, const Json& request, const ByteSource&,
                        const ByteSink& out) override {
      return {{"size", store->get(request.at("key").get<std::string>(), out).size}};
    }
    std::unique_ptr<ObjectStore> store;
    int handed = 0;
  };
  const auto dir =
      std::filesystem::temp_directory_path() / ("taskhost-file-get-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  FileHost host(Json{{"mode", "get"}, {"arg", "f"}}, dir);
  const uint64_t size = (3u << 20) + 12345;
  uint64_t left = size, checksum = 0;
  host.store->put(
      "f",
      [&](char* buf, size_t cap) {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(cap, left));
        for (size_t i = 0; i < k; ++i) {
          buf[i] = static_cast<char>((size - left + i) * 7 % 251);
          checksum = checksum * 31 + static_cast<unsigned char>(buf[i]);
        }
        left -= k;
        return k;
      },
      "application/octet-stream");
  GrantedServices granted;
  granted.object_storage = true;
  Outcome o = run("escape", host, granted);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.output["received"], size);
  EXPECT_EQ(host.output["checksum"], checksum);
  EXPECT_EQ(host.handed, sandboxed() ? 1 : 0);

  // No such object: no file to hand, and the get says so as ever.
  FileHost missing(Json{{"mode", "get"}, {"arg", "nothing"}}, dir);
  o = run("escape", missing, granted);
  EXPECT_EQ(o.code, TH_ERR_NOT_FOUND) << o.message;
  EXPECT_NE(o.message.find("no object 'nothing'"), std::string::npos) << o.message;
  std::filesystem::remove_all(dir);
}

TEST_P(Runners, ProgressArrivesCoalescedAndItsLastValueAlways) {
  struct Counting : RecordingHost {
    using RecordingHost::RecordingHost;
    void progress(uint64_t done, uint64_t total) override {
      ++calls;
      RecordingHost::progress(done, total);
    }
    int calls = 0;
  } host(Json{{"mode", "progress"}, {"arg", "5000"}});
  Outcome o = run("escape", host);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.last_progress, (std::pair<uint64_t, uint64_t>{5000, 5001}));
  if (sandboxed()) {
    EXPECT_LT(host.calls, 100);  // not a round trip per call
  }
}

TEST_P(Runners, AServiceNotGrantedIsAbsent) {
  RecordingHost host(Json{{"mode", "get"}, {"arg", "1"}});
  Outcome o = run("escape", host);
  EXPECT_NE(o.code, TH_OK);
}

TEST_P(Runners, ThreadsWork) {
  RecordingHost host(Json{{"mode", "threads"}});
  Outcome o = run("escape", host);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.output["threads"], 4);
}

TEST_P(Runners, StopIsSeenWithoutARoundTrip) {
  RecordingHost host(Json{{"mode", "wait_stop"}});
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    host.stop = true;
  });
  Outcome o = run("probe", host);
  stopper.join();
  EXPECT_EQ(o.code, TH_ERR_CANCELLED);
  EXPECT_EQ(o.message, "stopped as asked");
}

INSTANTIATE_TEST_SUITE_P(Isolation, Runners, ::testing::Values(Isolation::none, Isolation::process),
                         [](const auto& info) {
                           return info.param == Isolation::none ? "none" : "process";
                         });

// What only the sandbox can do: each way out is refused or killed, with a
// message that says which.
class Walls : public ::testing::Test {
 protected:
  Outcome run(const std::string& plugin, RecordingHost& host, SandboxOptions options = {},
              const Limits& limits = {}) {
    Outcome o;
    o.code = sandbox_run(fixtures + "/" + plugin + ".so", host, {}, options, limits, &o.message);
    return o;
  }
  Outcome escape(const std::string& mode, const std::string& arg = "", const Limits& limits = {}) {
    RecordingHost host(Json{{"mode", mode}, {"arg", arg}});
    Outcome o = run("escape", host, {}, limits);
    if (o.code == TH_OK) o.message = "succeeded: " + host.output.dump();
    return o;
  }
};

TEST_F(Walls, NoSocketReachesALoopbackListener) {
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  Outcome o = escape("tcp", std::to_string(ntohs(a.sin_port)));
  EXPECT_EQ(o.message, "sandbox: syscall socket not allowed");
  EXPECT_LT(::accept(l, nullptr, nullptr), 0);  // nobody connected
  ::close(l);
}

TEST_F(Walls, EachForbiddenSyscallIsNamed) {
  EXPECT_EQ(escape("exec").message, "sandbox: syscall execve not allowed");
  EXPECT_EQ(escape("fork").message, "sandbox: syscall clone not allowed");
  EXPECT_EQ(escape("tiocsti").message, "sandbox: syscall ioctl not allowed");
  EXPECT_EQ(escape("mprotect_exec").message, "sandbox: syscall mprotect not allowed");
  EXPECT_EQ(escape("kill_parent").message, "sandbox: syscall kill not allowed");
  EXPECT_EQ(escape("ptrace_parent").message, "sandbox: syscall ptrace not allowed");
  EXPECT_EQ(escape("x32").message, "sandbox: x32 syscall getpid not allowed");
  // A kernel without i386 emulation answers int 0x80 with SIGSEGV itself.
  const std::string int80 = escape("int80").message;
  EXPECT_TRUE(int80 == "sandbox: i386 syscall getpid not allowed" ||
              int80 == "plugin process died: SIGSEGV")
      << int80;
}

TEST_F(Walls, Clone3IsAnsweredEnosys) {
  Outcome o = escape("clone3_userns");
  EXPECT_EQ(o.message, R"(succeeded: {"clone3":"Function not implemented"})");
}

TEST_F(Walls, TheHostsFilesAreNotThere) {
  const std::string host = "/proc/" + std::to_string(::getpid());
  for (const std::string& path :
       {std::string("/etc/shadow"), std::string("/etc/passwd"), std::string("/proc/1/environ"),
        std::string("/proc/self/environ"), host + "/environ", host + "/mem", std::string("/work"),
        std::string("/root/.ssh/id_ed25519")})
    EXPECT_EQ(escape("read", path).message,
              R"(succeeded: {"read":"cannot open: No such file or directory"})")
        << path;
}

TEST_F(Walls, AnArgumentOverTheFrameCapFailsTheCallNotTheAttempt) {
  EXPECT_EQ(escape("big_checkpoint", std::to_string(2u << 20)).message,
            R"(succeeded: {"checkpoint":"checkpoint is 2097154 bytes, over the limit of )"
            R"(1048576 bytes"})");
}

TEST_F(Walls, ASymlinkInTmpLeadsNowhere) {
  EXPECT_EQ(escape("symlink", "/etc/shadow").message,
            R"(succeeded: {"through_link":"cannot open: No such file or directory"})");
}

TEST_F(Walls, OnlyTheBrokerAndStandardFdsAreOpen) {
  Outcome o = escape("fds");
  // 0-2 are /dev/null, 3 the broker socket, 4 the report pipe.
  EXPECT_EQ(o.message, R"(succeeded: {"fds":[0,1,2,3,4]})");
}

TEST_F(Walls, ACrashFailsTheAttemptNamingTheSignal) {
  Outcome o = escape("segv");
  EXPECT_EQ(o.code, TH_ERR_RETRYABLE);
  EXPECT_EQ(o.message, "plugin process died: SIGSEGV");
  EXPECT_EQ(escape("abort").message, "plugin process died: SIGABRT");
}

TEST_F(Walls, APluginIgnoringStopIsKilledAfterGrace) {
  RecordingHost host(Json{{"mode", "ignore_stop"}});
  host.stop = true;
  SandboxOptions o;
  o.grace = std::chrono::milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  Outcome r = run("escape", host, o);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(r.code, TH_ERR_CANCELLED);
  EXPECT_EQ(r.message, "plugin process killed: it did not stop within 300 ms of being asked");
}

TEST_F(Walls, LimitsAreNamed) {
  EXPECT_EQ(escape("busy", "", {.cpu_time = 1}).message, "cpu_time limit 1s exceeded");
  EXPECT_EQ(escape("write_tmp", std::to_string(64u << 20), {.tmp = 8u << 20}).message,
            "tmp limit 8MiB exceeded");
}

TEST_F(Walls, TheMemoryLimitIsNamed) {
#if defined(__SANITIZE_ADDRESS__)
  // Only a cgroup limits an ASan build's memory (it cannot take RLIMIT_AS),
  // and an unprivileged host here has no writable cgroup.
  if (::geteuid() != 0) GTEST_SKIP() << "no memory limit for an unprivileged sanitizer build";
#endif
  Outcome r = escape("alloc", std::to_string(4ull << 30), {.memory = 256u << 20});
  // The cgroup's OOM kill, or (without a writable cgroup) RLIMIT_AS making
  // the allocation fail inside the plugin.
  EXPECT_TRUE(r.message == "memory limit 256MiB exceeded" ||
              r.message.starts_with("allocation failed after"))
      << r.message;
}

TEST_F(Walls, StaticInitialisersRunOnlyInTheChild) {
  std::filesystem::remove("/tmp/taskhost-static-init-marker");
  RecordingHost host(Json::object());
  Outcome o = run("static_init", host);
  ASSERT_EQ(o.code, TH_OK) << o.message;
  EXPECT_EQ(host.output["touched"], true);
  EXPECT_FALSE(std::filesystem::exists("/tmp/taskhost-static-init-marker"));
}

TEST_F(Walls, TheHandshakeRefusesWhatTheLoaderRefuses) {
  for (const char* plugin : {"no_entry", "bad_magic", "abi_major", "abi_minor"}) {
    RecordingHost host(Json::object());
    try {
      run(plugin, host);
      ADD_FAILURE() << plugin << " ran";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::refused);
      // The same words the in-process loader uses.
      try {
        load_plugin(fixtures + "/" + plugin + ".so", "any", true);
      } catch (const Error& l) {
        EXPECT_EQ(std::string(e.what()), std::string(l.what())) << plugin;
      }
    }
  }
}

TEST_F(Walls, EverySetupStepFailsClosed) {
  // The steps as root: namespaces, private mounts, root tmpfs, library
  // binds, device nodes, pivot_root (all before the sandbox is ready), tmp,
  // plugin copy, read-only root, limits, drop privileges, load the plugin,
  // seccomp.
  const uint32_t steps = ::geteuid() == 0 ? 13 : 15;
  for (uint32_t step = 1; step <= steps; ++step) {
    RecordingHost host(Json{{"mode", "all"}});
    SandboxOptions o;
    o.fail_at = step;
    Outcome r = run("probe", host, o);
    EXPECT_EQ(r.code, TH_ERR_INTERNAL) << step;
    EXPECT_NE(r.message.find("injected failure"), std::string::npos) << step << ": " << r.message;
    EXPECT_TRUE(host.output.is_null()) << step;
  }
}

// The processes this test process started, and theirs.
std::vector<pid_t> descendants() {
  std::map<pid_t, pid_t> parent;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;  // self, net, ...
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    char state;
    pid_t ppid;
    if (rest >> state >> ppid) parent[std::stoi(name)] = ppid;
  }
  std::vector<pid_t> out;
  for (auto [pid, ppid] : parent)
    for (pid_t p = ppid; p > 1 && parent.count(p); p = parent[p])
      if (p == ::getpid()) {
        out.push_back(pid);
        break;
      }
  return out;
}

// Whether needle is in any readable mapping of process pid.
bool memory_holds(pid_t pid, const std::string& needle) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream maps(dir + "/maps");
  int mem = ::open((dir + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return false;
  bool found = false;
  std::string window(1u << 20, '\0');
  for (std::string line; !found && std::getline(maps, line);) {
    uint64_t from = 0, to = 0;
    char perms[5] = {};
    // Regions over 1 GiB are reservations (a sanitizer's shadow), not data.
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %4s", &from, &to, perms) != 3 ||
        perms[0] != 'r' || to - from > (1ull << 30))
      continue;
    // Windows overlap by the needle's size, so none is missed at an edge.
    for (uint64_t at = from; !found && at < to; at += window.size() - needle.size()) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(window.size(), to - at));
      ssize_t n = ::pread(mem, window.data(), want, static_cast<off_t>(at));
      if (n <= 0) break;
      found = std::string_view(window.data(), static_cast<size_t>(n)).find(needle) !=
              std::string_view::npos;
    }
  }
  ::close(mem);
  return found;
}

TEST_F(Walls, TheHostsSecretsAreNotInThePluginsMemory) {
  // A credential as the host holds one: in its environment (a host config's
  // { env: ... }) and in its memory.
  const std::string canary = "canary-" + std::to_string(::getpid()) + "-5b1f0c7e9a";
  ::setenv("TASKHOST_TEST_CANARY", canary.c_str(), 1);
  const std::string held = canary;
  ASSERT_TRUE(memory_holds(::getpid(), canary)) << "the scan finds what is there";

  for (bool warm : {false, true}) {
    SandboxOptions options;
    options.helper = SANDBOX_HELPER;
    options.warm = warm;
    taskhost::sandbox::Sandbox sandbox(options);
    const VerifiedPlugin plugin = verify_plugin(fixtures + "/probe.so", nullptr, false);
    if (warm) {  // this attempt readies the next sandbox, which the scan sees too
      RecordingHost first(Json{{"mode", "all"}});
      std::string message;
      ASSERT_EQ(sandbox.run({}, plugin.image, "probe.so", first, {}, &message), TH_OK) << message;
    }
    RecordingHost host(Json{{"mode", "wait_stop"}});
    std::vector<pid_t> scanned;
    std::thread scanner([&] {
      // Once the plugin runs (it waits for stop), every process of the
      // sandbox, the ready one included, is scanned.
      for (int i = 0; i < 100 && descendants().size() < (warm ? 6u : 3u); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      for (pid_t pid : descendants()) {
        scanned.push_back(pid);
        EXPECT_FALSE(memory_holds(pid, canary)) << "process " << pid;
      }
      host.stop = true;
    });
    std::string message;
    sandbox.run({}, plugin.image, "probe.so", host, {}, &message);
    scanner.join();
    EXPECT_GE(scanned.size(), warm ? 6u : 3u) << "helper, pid 1 and the plugin's process";
  }
  ::unsetenv("TASKHOST_TEST_CANARY");
}

// A ready sandbox serves the next attempt, and ending the Sandbox ends the
// ready ones.
TEST(ReadySandboxes, ServeAttemptsAndEndWithTheirSandbox) {
  {
    SandboxOptions options;
    options.helper = SANDBOX_HELPER;
    taskhost::sandbox::Sandbox sandbox(options);
    const VerifiedPlugin plugin = verify_plugin(fixtures + "/probe.so", nullptr, false);
    for (int i = 0; i < 3; ++i) {
      RecordingHost host(Json{{"mode", "all"}});
      std::string message;
      ASSERT_EQ(sandbox.run({}, plugin.image, "probe.so", host, {}, &message), TH_OK) << message;
      EXPECT_EQ(host.events, (std::vector<std::string>{"item.done", "item.failed"}));
    }
  }
  EXPECT_TRUE(descendants().empty());
}

// Where the kernel (here: a seccomp filter on this test's thread, which the
// helper inherits) withholds a feature, plugins are refused with its name.
TEST(Unavailable, AMissingKernelFeatureRefusesPluginsNamingIt) {
  struct Rule {
    int syscall, error;
    std::optional<scmp_datum_t> arg0;
  };
  const std::vector<std::pair<std::vector<Rule>, std::string>> cases = {
      {{{SCMP_SYS(unshare), EPERM, {}}},
       ::geteuid() == 0 ? "mount, pid, network, ipc, uts and cgroup namespaces are not available "
                          "(unshare: Operation not permitted): the kernel needs CONFIG_NAMESPACES"
                        : "user namespaces are not available (unshare(CLONE_NEWUSER): Operation "
                          "not permitted): enable them with sysctl"},
      {{{SCMP_SYS(seccomp), ENOSYS, {}}, {SCMP_SYS(prctl), EINVAL, PR_SET_SECCOMP}},
       "seccomp filters are not available (prctl(PR_SET_SECCOMP): "},
  };
  for (const auto& [rules, expected] : cases) {
    std::string what;
    std::thread t([&] {
      scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
      for (const Rule& r : rules)
        ASSERT_EQ(r.arg0 ? seccomp_rule_add(f, SCMP_ACT_ERRNO(r.error), r.syscall, 1,
                                            SCMP_A0(SCMP_CMP_EQ, *r.arg0))
                         : seccomp_rule_add(f, SCMP_ACT_ERRNO(r.error), r.syscall, 0),
                  0);
      ASSERT_EQ(seccomp_load(f), 0);
      seccomp_release(f);
      RecordingHost host(Json{{"mode", "all"}});
      std::string message;
      try {
        sandbox_run(fixtures + "/probe.so", host, {}, {}, {}, &message);
        what = "ran: " + message;
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::refused);
        what = e.what();
      }
    });
    t.join();
    EXPECT_NE(what.find("refused: this kernel cannot sandbox it: " + expected), std::string::npos)
        << what;
  }
}

}  // namespace
}  // namespace taskhost::sandbox
