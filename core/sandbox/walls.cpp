#include "sandbox/walls.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace taskhost::sandbox {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

void check(int rc, const std::string& what) {
  if (rc < 0) fail(what);
}

void write_file(const char* path, const std::string& text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("open ") + path);
  ssize_t n = ::write(fd, text.data(), text.size());
  int saved = errno;
  ::close(fd);
  errno = saved;
  if (n != static_cast<ssize_t>(text.size())) fail(std::string("write ") + path);
}

// Where the new root is assembled. Mounting over /tmp in the private mount
// namespace hides the host's /tmp from this process only.
constexpr const char* new_root = "/tmp";

// The directories the dynamic loader searches (Debian 12, merged /usr).
// A symlink is recreated as such; a directory is bound read-only.
constexpr const char* library_dirs[] = {"/lib", "/lib64", "/usr/lib", "/usr/lib64",
                                        "/usr/local/lib"};

std::string inside(const std::string& path) { return std::string(new_root) + path; }

void make_dirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i)
    if (i == path.size() || path[i] == '/') {
      std::string p = path.substr(0, i);
      if (::mkdir(p.c_str(), 0755) < 0 && errno != EEXIST) fail("mkdir " + p);
    }
}

void bind(const std::string& source, const std::string& target, unsigned long flags) {
  check(::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr),
        "bind " + source);
  check(::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | flags, nullptr),
        "remount " + source);
}

void bind_file(const std::string& source, unsigned long flags) {
  std::string target = inside(source);
  make_dirs(target.substr(0, target.rfind('/')));
  int fd = ::open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail("create " + target);
  ::close(fd);
  bind(source, target, flags);
}

void copy_plugin(int image) {
  struct stat st {};
  check(::fstat(image, &st), "fstat the plugin");
  int out = ::open(plugin_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0555);
  if (out < 0) fail(std::string("create ") + plugin_path);
  off_t off = 0;
  while (off < st.st_size) {
    ssize_t n = ::sendfile(out, image, &off, static_cast<size_t>(st.st_size - off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(out);
      fail("copy the plugin");
    }
  }
  ::close(out);
}

// Seccomp's view of a denied syscall, written from the SIGSYS handler:
// only async-signal-safe calls, and all of them on the allowlist.
void on_sigsys(int, siginfo_t* info, void*) {
  char frame[syscall_denied_size];
  size_t n = encode_syscall_denied(static_cast<uint32_t>(info->si_syscall), info->si_arch, frame);
  [[maybe_unused]] ssize_t w = ::write(report_fd, frame, n);
  ::signal(SIGSYS, SIG_DFL);
  ::raise(SIGSYS);
}

}  // namespace

void Steps::next(const char* name) {
  if (++count_ == fail_at_)
    throw std::runtime_error(std::string("step ") + std::to_string(count_) + " (" + name +
                             "): injected failure");
}

// A syscall that only fails where the kernel (or a container's policy)
// withholds a feature.
void need(int rc, const std::string& call, const std::string& feature, const std::string& how) {
  if (rc < 0)
    throw Unavailable(feature + " not available (" + call + ": " + std::strerror(errno) +
                      "): " + how);
}

constexpr const char* container_hint =
    "; in a container, allow unshare and mount in its seccomp profile (Docker's default "
    "profile forbids them)";

void enter_namespaces(Steps& steps) {
  if (::geteuid() != 0) {
    // Unprivileged: a user namespace gives the capabilities the mounts need,
    // mapping only our own ids.
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    steps.next("user namespace");
    need(::unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)", "user namespaces are",
         std::string("enable them with sysctl user.max_user_namespaces=10000 (and "
                     "kernel.unprivileged_userns_clone=1 where the kernel has it), or run "
                     "taskhost as root") +
             container_hint);
    steps.next("id maps");
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1\n");
    write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
  }
  steps.next("namespaces");
  need(::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                 CLONE_NEWCGROUP),
       "unshare", "mount, pid, network, ipc, uts and cgroup namespaces are",
       std::string("the kernel needs CONFIG_NAMESPACES with each of them") + container_hint);
}

void build_root(Steps& steps) {
  steps.next("private mounts");
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / private");
  steps.next("root tmpfs");
  // Written by this helper only (the plugin's copy), then read-only.
  check(::mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
        "mount the root tmpfs");
  steps.next("library binds");
  for (const char* dir : library_dirs) {
    struct stat ls {};
    if (::lstat(dir, &ls) < 0) continue;  // this system has no such directory
    std::string target = inside(dir);
    make_dirs(target.substr(0, target.rfind('/')));
    if (S_ISLNK(ls.st_mode)) {
      char link[4096];
      ssize_t n = ::readlink(dir, link, sizeof link - 1);
      if (n < 0) fail(std::string("readlink ") + dir);
      link[n] = '\0';
      check(::symlink(link, target.c_str()), "symlink " + target);
    } else if (S_ISDIR(ls.st_mode)) {
      make_dirs(target);
      bind(dir, target, MS_RDONLY | MS_NOSUID | MS_NODEV);
    }
  }
  bind_file("/etc/ld.so.cache", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  steps.next("device nodes");
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/urandom"})
    bind_file(dev, MS_NOSUID | MS_NOEXEC);
  make_dirs(inside("/tmp"));
  steps.next("pivot_root");
  check(::chdir(new_root), "chdir to the new root");
  check(static_cast<int>(::syscall(SYS_pivot_root, ".", ".")), "pivot_root");
  check(::umount2(".", MNT_DETACH), "detach the old root");
  check(::chdir("/"), "chdir /");
  check(::sethostname("sandbox", 7), "sethostname");
}

void finish_root(Steps& steps, const Go& go, int image) {
  steps.next("tmp");
  const std::string tmp_opts = "mode=1777,size=" + std::to_string(go.tmp);
  check(::mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                go.tmp ? tmp_opts.c_str() : "mode=1777"),
        "mount /tmp");
  steps.next("plugin copy");
  copy_plugin(image);
  steps.next("read-only root");
  check(::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                nullptr),
        "remount / read-only");
}

void set_limits(Steps& steps, const Go& go) {
  steps.next("limits");
  auto limit = [](int resource, uint64_t soft, uint64_t hard, const char* name) {
    rlimit r{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
    check(::setrlimit(resource, &r), std::string("setrlimit ") + name);
  };
  limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
#if !defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of address space: a sanitizer build
  // relies on the memory cgroup alone.
  if (go.memory) limit(RLIMIT_AS, go.memory, go.memory, "RLIMIT_AS");
#endif
  // SIGXCPU at the limit, SIGKILL a second later if it is ignored.
  if (go.cpu_time) limit(RLIMIT_CPU, go.cpu_time, go.cpu_time + 1, "RLIMIT_CPU");
  if (go.open_files) limit(RLIMIT_NOFILE, go.open_files, go.open_files, "RLIMIT_NOFILE");
  if (go.tmp) limit(RLIMIT_FSIZE, go.tmp, go.tmp, "RLIMIT_FSIZE");
}

void drop_privileges(Steps& steps, uint32_t drop_uid) {
  steps.next("drop privileges");
  // Root inside the sandbox must not regain capabilities through execve
  // before seccomp forbids it.
  check(::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                       SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED),
        "set securebits");
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    check(::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop capability " + std::to_string(cap));
  check(::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities");
  if (::geteuid() == 0 && drop_uid != 0) {
    const gid_t none[] = {0};
    check(::setgroups(0, none), "setgroups");
    check(::setresgid(drop_uid, drop_uid, drop_uid), "setresgid");
    check(::setresuid(drop_uid, drop_uid, drop_uid), "setresuid");
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  check(static_cast<int>(::syscall(SYS_capset, &header, data)), "capset");
  check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
}

SeccompFilter SeccompFilter::compile() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) throw std::runtime_error("seccomp_init failed");
  struct Release {
    scmp_filter_ctx c;
    ~Release() { seccomp_release(c); }
  } release{ctx};
  // Another architecture's syscall numbers (i386 by int 0x80, x32) mean
  // other syscalls: trap them too, and the report names the architecture.
  auto rule = [&](int nr, unsigned count = 0, scmp_arg_cmp cmp = {}) {
    int rc = count ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, count, cmp)
                   : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    if (rc < 0) throw std::runtime_error("seccomp rule for syscall " + std::to_string(nr));
  };
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP) < 0)
    throw std::runtime_error("seccomp: cannot trap other architectures");

  // Files: only what the mount namespace shows (libraries read-only, /tmp).
  for (int nr :
       {SCMP_SYS(read),      SCMP_SYS(write),      SCMP_SYS(readv),      SCMP_SYS(writev),
        SCMP_SYS(pread64),   SCMP_SYS(pwrite64),   SCMP_SYS(lseek),      SCMP_SYS(close),
        SCMP_SYS(openat),    SCMP_SYS(open),       SCMP_SYS(newfstatat), SCMP_SYS(fstat),
        SCMP_SYS(stat),      SCMP_SYS(lstat),      SCMP_SYS(statx),      SCMP_SYS(getdents64),
        SCMP_SYS(mkdir),     SCMP_SYS(mkdirat),    SCMP_SYS(unlink),     SCMP_SYS(unlinkat),
        SCMP_SYS(rmdir),     SCMP_SYS(symlink),    SCMP_SYS(symlinkat),  SCMP_SYS(rename),
        SCMP_SYS(renameat),  SCMP_SYS(renameat2),  SCMP_SYS(ftruncate),  SCMP_SYS(fsync),
        SCMP_SYS(fdatasync), SCMP_SYS(fcntl),      SCMP_SYS(dup),        SCMP_SYS(dup2),
        SCMP_SYS(dup3),      SCMP_SYS(access),     SCMP_SYS(faccessat),  SCMP_SYS(faccessat2),
        SCMP_SYS(readlink),  SCMP_SYS(readlinkat), SCMP_SYS(getcwd),     SCMP_SYS(umask),
        SCMP_SYS(fchmod),    SCMP_SYS(poll),       SCMP_SYS(ppoll),      SCMP_SYS(pipe2)})
    rule(nr);
  // Memory, but never a new executable mapping.
  for (int nr : {SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise)}) rule(nr);
  rule(SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  rule(SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  // Threads: clone only with the flags of a thread and none of a namespace
  // (one masked compare: libseccomp 2.5 drops a rule with two compares on
  // one argument). clone3 says ENOSYS, so glibc falls back to clone.
  constexpr uint64_t clone_mask = CLONE_THREAD | CLONE_VM | CLONE_SIGHAND | CLONE_VFORK |
                                  CLONE_PARENT | CLONE_PTRACE | CLONE_NEWNS | CLONE_NEWCGROUP |
                                  CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                  CLONE_NEWNET;
  rule(SCMP_SYS(clone), 1,
       SCMP_A0(SCMP_CMP_MASKED_EQ, clone_mask, CLONE_THREAD | CLONE_VM | CLONE_SIGHAND));
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0)
    throw std::runtime_error("seccomp rule for clone3");
  for (int nr : {SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(get_robust_list),
                 SCMP_SYS(rseq), SCMP_SYS(set_tid_address), SCMP_SYS(exit), SCMP_SYS(exit_group),
                 SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(getppid), SCMP_SYS(sched_yield),
                 SCMP_SYS(sched_getaffinity), SCMP_SYS(membarrier)})
    rule(nr);
  // Signals, to this process only.
  for (int nr : {SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
                 SCMP_SYS(sigaltstack), SCMP_SYS(restart_syscall)})
    rule(nr);
  rule(SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid())));
  // Time, randomness and questions about itself.
  for (int nr : {SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep),
                 SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(getrandom),
                 SCMP_SYS(uname), SCMP_SYS(getrusage), SCMP_SYS(getuid), SCMP_SYS(geteuid),
                 SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(sysinfo)})
    rule(nr);
  rule(SCMP_SYS(prlimit64), 1, SCMP_A2(SCMP_CMP_EQ, 0));   // read a limit, never set one
  rule(SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));  // isatty()
  // The broker socket, and no other.
  for (int nr : {SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg)})
    rule(nr, 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(broker_fd)));

  // libseccomp 2.5 exports BPF only to a descriptor.
  const int out = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
  check(out, "memfd_create for the seccomp filter");
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closing{out};
  if (int rc = seccomp_export_bpf(ctx, out); rc < 0)
    throw std::runtime_error(std::string("seccomp_export_bpf: ") + std::strerror(-rc));
  const off_t size = ::lseek(out, 0, SEEK_END);
  check(static_cast<int>(size), "size the seccomp filter");
  SeccompFilter filter;
  filter.program_.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  const size_t bytes = filter.program_.size() * sizeof(sock_filter);
  if (filter.program_.empty() ||
      ::pread(out, filter.program_.data(), bytes, 0) != static_cast<ssize_t>(bytes))
    throw std::runtime_error("cannot read the compiled seccomp filter back");
  return filter;
}

void SeccompFilter::install(Steps& steps) const {
  steps.next("seccomp");
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  check(::sigaction(SIGSYS, &sa, nullptr), "install the SIGSYS handler");
  sock_fprog program{static_cast<unsigned short>(program_.size()),
                     const_cast<sock_filter*>(program_.data())};
  need(::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0), "prctl(PR_SET_SECCOMP)",
       "seccomp filters are", "the kernel needs CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER");
}

}  // namespace taskhost::sandbox
