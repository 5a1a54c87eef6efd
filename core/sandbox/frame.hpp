#pragma once

// The broker protocol between the host and a sandboxed plugin process.
//
// A frame is an 8-byte header and a body:
//   u32 body size (little endian, at most max_body)
//   u8  protocol version (protocol_version)
//   u8  kind (Kind)
//   u16 reserved, zero
// The body is a sequence of fields: u8/u32/u64 little endian, and byte
// strings as u32 size + bytes. Each kind has one fixed field layout; a
// body with a field missing, a size past its end, or bytes left over is
// refused. The host reads frames from a process that runs untrusted code:
// every decoder here treats its input as hostile and throws FrameError
// instead of reading past what it was given.
//
// A frame body is at most max_body bytes.
//
// One attempt, in frames (P = plugin process, H = host):
//   H->P prepare   as the helper starts: it builds the sandbox and its
//                  plugin process waits, warm, for go
//   H->P go        limits and grants, with the plugin's sealed image as
//                  an SCM_RIGHTS descriptor; the plugin process loads it
//   P->H hello     the loaded plugin's descriptor
//   H->P start     the descriptor was accepted: call run
//   P->H call      one host call; while it lasts H may send
//                  read (P answers data or source_failed), chunk (P may
//                  answer abort), file (an object storage get's body as a
//                  read-only SCM_RIGHTS descriptor, which P reads itself),
//                  then result
//   H->P stop      at any time: should_stop() turns true
//   P->H done      run returned
// and on the separate report pipe, why the process could not go on:
//   setup_failed, syscall_denied, unavailable.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace taskhost::sandbox {

inline constexpr uint8_t protocol_version = 3;
inline constexpr size_t header_size = 8;
// The largest argument (a string) a host call carries: the host's own caps
// (checkpoint, output) are no larger, so a frame never refuses what the host
// would accept.
inline constexpr size_t max_argument = 1u << 20;
inline constexpr size_t max_body = max_argument + (4u << 10);
// Streamed bodies travel in chunks of at most this many bytes.
inline constexpr size_t max_chunk = 256u << 10;

// Exit codes of the helper's processes that are not the plugin's own.
inline constexpr int broker_lost_exit = 124;   // the broker socket broke
inline constexpr int setup_failed_exit = 125;  // a sandbox step failed (reported)

enum class Kind : uint8_t {
  // host -> plugin process
  go = 1,
  start = 2,
  read = 3,
  chunk = 4,
  result = 5,
  stop = 6,
  prepare = 7,
  file = 8,
  // plugin process -> host
  hello = 16,
  call = 17,
  data = 18,
  source_failed = 19,
  abort = 20,
  done = 21,
  // plugin process -> host, on the report pipe
  setup_failed = 32,
  syscall_denied = 33,
  unavailable = 34,  // a kernel feature the sandbox needs is missing
};

// The host calls a plugin process may make, one per th_host_api entry
// (should_stop is answered locally).
enum class Method : uint8_t {
  log = 1,
  progress,
  checkpoint_get,
  checkpoint_set,
  emit,
  params,
  run_info,
  set_output,
  attach_file,
  object_storage,
  sftp,
  db,
  http,
  pgp,
  dry_run,
  metric,  // ABI 1.3
};

// Which of a call's sinks a chunk belongs to.
enum class Stream : uint8_t { out = 0, reply = 1 };

class FrameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds one frame.
class FrameWriter {
 public:
  explicit FrameWriter(Kind kind);
  FrameWriter& u8(uint8_t v);
  FrameWriter& u32(uint32_t v);
  FrameWriter& u64(uint64_t v);
  FrameWriter& bytes(std::string_view v);
  // The encoded frame. Throws FrameError when the body exceeds max_body.
  std::string finish();

 private:
  std::string buf_;
};

// Reads the fields of one body in order; every read is bounds-checked.
class FieldReader {
 public:
  explicit FieldReader(std::string_view body) : rest_(body) {}
  uint8_t u8();
  uint32_t u32();
  uint64_t u64();
  // A view into the body: valid while the body is.
  std::string_view bytes();
  // Throws when bytes are left over.
  void end() const;

 private:
  std::string_view take(size_t n);
  std::string_view rest_;
};

struct Header {
  Kind kind;
  uint32_t body_size;
};

// Checks the header at the start of bytes (at least header_size of them):
// version, a known kind, reserved bits zero, the size within max_body.
Header parse_header(std::string_view bytes);

struct Frame {
  Kind kind;
  std::string body;
};

// Typed bodies. Views point into the Frame's body.
struct Prepare {
  uint32_t drop_uid = 0;  // the uid and gid a root host runs the plugin as
  uint32_t fail_at = 0;   // tests: fail this setup step (1-based), 0 none
};
struct Go {
  uint64_t memory = 0;    // bytes; 0 = unlimited
  uint64_t cpu_time = 0;  // seconds; 0 = unlimited
  uint64_t open_files = 0;
  uint64_t tmp = 0;        // bytes of the attempt's /tmp
  uint64_t processes = 0;  // threads included
  uint32_t granted = 0;    // bit (1 << Method) per granted service
};
// What the plugin process found in the library; the host judges it.
struct Hello {
  bool has_entry = false;       // the entry symbol exists
  bool has_descriptor = false;  // and returned a descriptor
  bool has_run = false;         // whose run is set (read only when the size covers it)
  uint32_t struct_size = 0, magic = 0, abi_major = 0, abi_minor = 0;
  std::string_view name, version, description;
};
// Which bodies a call has (Call::bodies).
inline constexpr uint8_t body_in = 1;     // the host reads a body from the plugin
inline constexpr uint8_t body_out = 2;    // the host streams a body to the plugin
inline constexpr uint8_t body_reply = 4;  // the host streams a JSON reply to the plugin
struct Call {
  Method method{};
  uint64_t n1 = 0, n2 = 0;  // log: level; progress: done, total; metric: the double's bits
  std::string_view s1,
      s2;              // message | json | event, json | name, type | op, request | name, labels
  uint8_t bodies = 0;  // body_* bits; each method allows only its own
};
struct Chunk {
  Stream stream{};
  std::string_view data;
};
struct Result {
  int32_t code = 0;
  std::string_view message;
};
struct SyscallDenied {
  uint32_t nr = 0, arch = 0;
};

std::string encode(const Prepare& m);
std::string encode(const Go& m);
std::string encode(const Hello& m);
std::string encode(const Call& m);
std::string encode(const Chunk& m);
// result (host -> plugin) and done (plugin -> host) share this layout.
std::string encode(Kind kind, const Result& m);

Prepare parse_prepare(std::string_view body);
Go parse_go(std::string_view body);
Hello parse_hello(std::string_view body);
Call parse_call(std::string_view body);
Chunk parse_chunk(std::string_view body);
Result parse_result(std::string_view body);
uint64_t parse_read(std::string_view body);
std::string_view parse_data(std::string_view body);
Stream parse_abort(std::string_view body);
std::string_view parse_setup_failed(std::string_view body);
SyscallDenied parse_syscall_denied(std::string_view body);

// Writes the syscall_denied frame into out, without allocating: for a
// SIGSYS handler. Returns its size.
inline constexpr size_t syscall_denied_size = header_size + 8;
size_t encode_syscall_denied(uint32_t nr, uint32_t arch, char (&out)[syscall_denied_size]) noexcept;

// Blocking frame I/O on a socket or pipe. read_frame returns false at a
// clean end of stream (no byte of a next frame); it throws FrameError on a
// malformed or truncated frame and on an I/O error. It reuses out's buffer:
// a stream of chunks costs no allocation per frame. With passed, a
// descriptor sent along with the frame (SCM_RIGHTS) lands there (-1: none).
bool read_frame(int fd, Frame& out, int* passed = nullptr);
void write_all(int fd, std::string_view bytes);
// A chunk or data frame as its head (header and fields up to the bytes) and
// the bytes themselves, written together without copying the bytes into a
// frame: bodies stream at the speed of the socket. Throws FrameError when
// data exceeds what a frame may carry.
std::string chunk_head(Stream s, size_t size);
std::string data_head(size_t size);
void write_frame(int fd, std::string_view head, std::string_view data);
// The frame with the descriptor pass travelling with it (SCM_RIGHTS).
void write_with_fd(int fd, std::string_view frame, int pass);

// How long a side of the broker looks for the other's next frame before it
// sleeps: an answer usually comes within microseconds, and a wake-up from a
// sleep costs tens of them (33 us a socket round trip on a 2-core virtual
// machine, 10 us looking instead). Bounded, so a plugin that computes
// between calls costs the host at most this much CPU a call.
inline constexpr int spin_microseconds = 50;
// True when the socket fd has a byte to read within spin_microseconds,
// looked for without sleeping (and false at once for a pipe).
bool readable_soon(int fd);

}  // namespace taskhost::sandbox
