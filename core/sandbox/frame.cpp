#include "sandbox/frame.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

namespace taskhost::sandbox {
namespace {

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(std::string_view in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  return v;
}

bool known(uint8_t kind) {
  switch (static_cast<Kind>(kind)) {
    case Kind::go:
    case Kind::start:
    case Kind::read:
    case Kind::chunk:
    case Kind::result:
    case Kind::stop:
    case Kind::prepare:
    case Kind::file:
    case Kind::hello:
    case Kind::call:
    case Kind::data:
    case Kind::source_failed:
    case Kind::abort:
    case Kind::done:
    case Kind::setup_failed:
    case Kind::syscall_denied:
    case Kind::unavailable:
      return true;
  }
  return false;
}

Method method_of(uint8_t v) {
  if (v < static_cast<uint8_t>(Method::log) || v > static_cast<uint8_t>(Method::metric))
    throw FrameError("unknown host call " + std::to_string(v));
  return static_cast<Method>(v);
}

// The bodies each call may have.
uint8_t allowed_bodies(Method m) {
  switch (m) {
    case Method::checkpoint_get:
    case Method::params:
    case Method::run_info:
    case Method::dry_run:
      return body_out;
    case Method::attach_file:
      return body_in;
    case Method::object_storage:
    case Method::sftp:
    case Method::db:
    case Method::http:
    case Method::pgp:
      return body_in | body_out | body_reply;
    default:
      return 0;
  }
}

bool flag(FieldReader& r) {
  uint8_t v = r.u8();
  if (v > 1) throw FrameError("a flag is " + std::to_string(v) + ", not 0 or 1");
  return v == 1;
}

}  // namespace

FrameWriter::FrameWriter(Kind kind) {
  buf_.assign(header_size, '\0');
  buf_[4] = static_cast<char>(protocol_version);
  buf_[5] = static_cast<char>(kind);
}

FrameWriter& FrameWriter::u8(uint8_t v) {
  put_le(buf_, v, 1);
  return *this;
}
FrameWriter& FrameWriter::u32(uint32_t v) {
  put_le(buf_, v, 4);
  return *this;
}
FrameWriter& FrameWriter::u64(uint64_t v) {
  put_le(buf_, v, 8);
  return *this;
}
FrameWriter& FrameWriter::bytes(std::string_view v) {
  // Refused before it is copied, in the words of finish().
  if (v.size() > max_body)
    throw FrameError("a frame body of " + std::to_string(buf_.size() - header_size + 4 + v.size()) +
                     " bytes exceeds the " + std::to_string(max_body) + " byte maximum");
  put_le(buf_, v.size(), 4);
  buf_.append(v);
  return *this;
}

std::string FrameWriter::finish() {
  const size_t body = buf_.size() - header_size;
  if (body > max_body)
    throw FrameError("a frame body of " + std::to_string(body) + " bytes exceeds the " +
                     std::to_string(max_body) + " byte maximum");
  std::string size;
  put_le(size, body, 4);
  buf_.replace(0, 4, size);
  return std::move(buf_);
}

std::string_view FieldReader::take(size_t n) {
  if (n > rest_.size())
    throw FrameError("a field needs " + std::to_string(n) + " bytes but the frame has " +
                     std::to_string(rest_.size()) + " left");
  auto v = rest_.substr(0, n);
  rest_.remove_prefix(n);
  return v;
}

uint8_t FieldReader::u8() { return static_cast<uint8_t>(get_le(take(1), 1)); }
uint32_t FieldReader::u32() { return static_cast<uint32_t>(get_le(take(4), 4)); }
uint64_t FieldReader::u64() { return get_le(take(8), 8); }
std::string_view FieldReader::bytes() { return take(u32()); }

void FieldReader::end() const {
  if (!rest_.empty())
    throw FrameError(std::to_string(rest_.size()) + " bytes left over after the last field");
}

Header parse_header(std::string_view bytes) {
  if (bytes.size() < header_size) throw FrameError("a frame header is 8 bytes");
  const auto size = static_cast<uint32_t>(get_le(bytes, 4));
  const auto version = static_cast<uint8_t>(bytes[4]);
  const auto kind = static_cast<uint8_t>(bytes[5]);
  if (version != protocol_version)
    throw FrameError("protocol version " + std::to_string(version) + ", expected " +
                     std::to_string(protocol_version));
  if (!known(kind)) throw FrameError("unknown frame kind " + std::to_string(kind));
  if (bytes[6] != 0 || bytes[7] != 0) throw FrameError("reserved header bits are set");
  if (size > max_body)
    throw FrameError("a frame body of " + std::to_string(size) + " bytes exceeds the " +
                     std::to_string(max_body) + " byte maximum");
  return {static_cast<Kind>(kind), size};
}

std::string encode(const Go& m) {
  return FrameWriter(Kind::go)
      .u64(m.memory)
      .u64(m.cpu_time)
      .u64(m.open_files)
      .u64(m.tmp)
      .u64(m.processes)
      .u32(m.granted)
      .finish();
}

std::string encode(const Prepare& m) {
  return FrameWriter(Kind::prepare).u32(m.drop_uid).u32(m.fail_at).finish();
}

std::string encode(const Hello& m) {
  return FrameWriter(Kind::hello)
      .u8(m.has_entry)
      .u8(m.has_descriptor)
      .u8(m.has_run)
      .u32(m.struct_size)
      .u32(m.magic)
      .u32(m.abi_major)
      .u32(m.abi_minor)
      .bytes(m.name)
      .bytes(m.version)
      .bytes(m.description)
      .finish();
}

std::string encode(const Call& m) {
  FrameWriter w(Kind::call);
  w.u8(static_cast<uint8_t>(m.method));
  switch (m.method) {
    case Method::log:
      w.u64(m.n1).bytes(m.s1);
      break;
    case Method::progress:
      w.u64(m.n1).u64(m.n2);
      break;
    case Method::checkpoint_get:
    case Method::params:
    case Method::run_info:
    case Method::dry_run:
      break;
    case Method::checkpoint_set:
    case Method::set_output:
      w.bytes(m.s1);
      break;
    case Method::emit:
    case Method::attach_file:
      w.bytes(m.s1).bytes(m.s2);
      break;
    case Method::metric:
      w.u64(m.n1).bytes(m.s1).bytes(m.s2);
      break;
    case Method::object_storage:
    case Method::sftp:
    case Method::db:
    case Method::http:
    case Method::pgp:
      w.bytes(m.s1).bytes(m.s2);
      break;
  }
  return w.u8(m.bodies).finish();
}

std::string encode(const Chunk& m) {
  return FrameWriter(Kind::chunk).u8(static_cast<uint8_t>(m.stream)).bytes(m.data).finish();
}

std::string encode(Kind kind, const Result& m) {
  return FrameWriter(kind).u32(static_cast<uint32_t>(m.code)).bytes(m.message).finish();
}

Prepare parse_prepare(std::string_view body) {
  FieldReader r(body);
  Prepare m;
  m.drop_uid = r.u32();
  m.fail_at = r.u32();
  r.end();
  return m;
}

Go parse_go(std::string_view body) {
  FieldReader r(body);
  Go m;
  m.memory = r.u64();
  m.cpu_time = r.u64();
  m.open_files = r.u64();
  m.tmp = r.u64();
  m.processes = r.u64();
  m.granted = r.u32();
  r.end();
  return m;
}

Hello parse_hello(std::string_view body) {
  FieldReader r(body);
  Hello m;
  m.has_entry = flag(r);
  m.has_descriptor = flag(r);
  m.has_run = flag(r);
  m.struct_size = r.u32();
  m.magic = r.u32();
  m.abi_major = r.u32();
  m.abi_minor = r.u32();
  m.name = r.bytes();
  m.version = r.bytes();
  m.description = r.bytes();
  r.end();
  return m;
}

Call parse_call(std::string_view body) {
  FieldReader r(body);
  Call m;
  m.method = method_of(r.u8());
  switch (m.method) {
    case Method::log:
      m.n1 = r.u64();
      m.s1 = r.bytes();
      break;
    case Method::progress:
      m.n1 = r.u64();
      m.n2 = r.u64();
      break;
    case Method::checkpoint_get:
    case Method::params:
    case Method::run_info:
    case Method::dry_run:
      break;
    case Method::checkpoint_set:
    case Method::set_output:
      m.s1 = r.bytes();
      break;
    case Method::emit:
    case Method::attach_file:
      m.s1 = r.bytes();
      m.s2 = r.bytes();
      break;
    case Method::metric:
      m.n1 = r.u64();
      m.s1 = r.bytes();
      m.s2 = r.bytes();
      break;
    case Method::object_storage:
    case Method::sftp:
    case Method::db:
    case Method::http:
    case Method::pgp:
      m.s1 = r.bytes();
      m.s2 = r.bytes();
      break;
  }
  m.bodies = r.u8();
  r.end();
  if ((m.bodies & ~allowed_bodies(m.method)) != 0)
    throw FrameError("host call " + std::to_string(static_cast<int>(m.method)) +
                     " cannot have bodies " + std::to_string(m.bodies));
  return m;
}

Chunk parse_chunk(std::string_view body) {
  FieldReader r(body);
  Chunk m;
  uint8_t s = r.u8();
  if (s > static_cast<uint8_t>(Stream::reply))
    throw FrameError("unknown stream " + std::to_string(s));
  m.stream = static_cast<Stream>(s);
  m.data = r.bytes();
  r.end();
  return m;
}

Result parse_result(std::string_view body) {
  FieldReader r(body);
  Result m;
  m.code = static_cast<int32_t>(r.u32());
  m.message = r.bytes();
  r.end();
  return m;
}

uint64_t parse_read(std::string_view body) {
  FieldReader r(body);
  uint64_t n = r.u64();
  r.end();
  return n;
}

std::string_view parse_data(std::string_view body) {
  FieldReader r(body);
  auto d = r.bytes();
  r.end();
  return d;
}

Stream parse_abort(std::string_view body) {
  FieldReader r(body);
  uint8_t s = r.u8();
  r.end();
  if (s > static_cast<uint8_t>(Stream::reply))
    throw FrameError("unknown stream " + std::to_string(s));
  return static_cast<Stream>(s);
}

std::string_view parse_setup_failed(std::string_view body) { return parse_data(body); }

SyscallDenied parse_syscall_denied(std::string_view body) {
  FieldReader r(body);
  SyscallDenied m;
  m.nr = r.u32();
  m.arch = r.u32();
  r.end();
  return m;
}

size_t encode_syscall_denied(uint32_t nr, uint32_t arch,
                             char (&out)[syscall_denied_size]) noexcept {
  const uint32_t words[] = {8, 0, nr, arch};
  for (size_t w = 0; w < 4; ++w)
    for (size_t i = 0; i < 4; ++i) out[w * 4 + i] = static_cast<char>((words[w] >> (8 * i)) & 0xff);
  out[4] = static_cast<char>(protocol_version);
  out[5] = static_cast<char>(Kind::syscall_denied);
  return syscall_denied_size;
}

namespace {

// Reads exactly n bytes; returns how many were read before end of stream.
// With passed, the first read also takes a descriptor sent with the bytes.
size_t read_full(int fd, char* p, size_t n, int* passed = nullptr) {
  size_t got = 0;
  while (got < n) {
    ssize_t r;
    if (passed) {
      iovec iov{p + got, n - got};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
      if (r > 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
              c->cmsg_len == CMSG_LEN(sizeof(int)) && *passed < 0)
            std::memcpy(passed, CMSG_DATA(c), sizeof(int));
        passed = nullptr;  // a descriptor travels with a frame's first bytes only
      }
    } else {
      r = ::read(fd, p + got, n - got);
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw FrameError(std::string("reading a frame: ") + std::strerror(errno));
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// sendmsg of iov until all of it is written; pass travels with the first byte.
void send_all(int fd, iovec* iov, int count, int pass) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    if (pass >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass, sizeof(int));
    }
    // MSG_NOSIGNAL: a peer gone away is an error here, not a SIGPIPE.
    ssize_t w = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK && pass < 0) w = ::writev(fd, iov, count);  // the report pipe
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw FrameError(std::string("writing a frame: ") + std::strerror(errno));
    pass = -1;
    auto left = static_cast<size_t>(w);
    for (; count > 0 && left >= iov->iov_len; ++iov, --count) left -= iov->iov_len;
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

std::string bytes_head(Kind kind, std::optional<Stream> s, size_t size) {
  const size_t fields = (s ? 1 : 0) + 4;
  if (size > max_body - fields)
    throw FrameError("a frame body of " + std::to_string(size + fields) + " bytes exceeds the " +
                     std::to_string(max_body) + " byte maximum");
  std::string head;
  put_le(head, fields + size, 4);
  head.push_back(static_cast<char>(protocol_version));
  head.push_back(static_cast<char>(kind));
  put_le(head, 0, 2);
  if (s) head.push_back(static_cast<char>(*s));
  put_le(head, size, 4);
  return head;
}

}  // namespace

bool read_frame(int fd, Frame& out, int* passed) {
  if (passed) *passed = -1;
  char header[header_size];
  size_t got = read_full(fd, header, header_size, passed);
  if (got == 0) return false;
  if (got < header_size) throw FrameError("the stream ended inside a frame header");
  Header h = parse_header({header, header_size});
  out.kind = h.kind;
  out.body.resize(h.body_size);
  if (read_full(fd, out.body.data(), h.body_size) < h.body_size)
    throw FrameError("the stream ended inside a frame body");
  return true;
}

bool readable_soon(int fd) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::microseconds(spin_microseconds);
  char byte;
  do {
    if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) return true;  // a byte, or the end
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

void write_all(int fd, std::string_view bytes) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  send_all(fd, &iov, 1, -1);
}

void write_with_fd(int fd, std::string_view frame, int pass) {
  iovec iov{const_cast<char*>(frame.data()), frame.size()};
  send_all(fd, &iov, 1, pass);
}

std::string chunk_head(Stream s, size_t size) { return bytes_head(Kind::chunk, s, size); }
std::string data_head(size_t size) { return bytes_head(Kind::data, std::nullopt, size); }

void write_frame(int fd, std::string_view head, std::string_view data) {
  iovec iov[2] = {{const_cast<char*>(head.data()), head.size()},
                  {const_cast<char*>(data.data()), data.size()}};
  send_all(fd, iov, data.empty() ? 1 : 2, -1);
}

}  // namespace taskhost::sandbox
