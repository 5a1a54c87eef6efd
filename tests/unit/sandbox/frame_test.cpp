#include "sandbox/frame.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace taskhost::sandbox {
namespace {

std::string body_of(const std::string& frame) { return frame.substr(header_size); }

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const FrameError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Frame, ACallRoundTrips) {
  Call c;
  c.method = Method::object_storage;
  c.s1 = "get";
  c.s2 = R"({"key":"a"})";
  c.bodies = body_out | body_reply;
  const std::string frame = encode(c);
  Header h = parse_header(frame);
  EXPECT_EQ(h.kind, Kind::call);
  EXPECT_EQ(h.body_size, frame.size() - header_size);
  const std::string body = body_of(frame);  // the views point into it
  Call d = parse_call(body);
  EXPECT_EQ(d.method, Method::object_storage);
  EXPECT_EQ(d.s1, "get");
  EXPECT_EQ(d.s2, R"({"key":"a"})");
  EXPECT_EQ(d.bodies, body_out | body_reply);
}

TEST(Frame, AMetricCallCarriesItsValueExactly) {
  Call c;
  c.method = Method::metric;
  c.s1 = "items_total";
  c.s2 = R"({"kind":"a"})";
  c.n1 = 0x3FF8000000000000ull;  // 1.5 as an IEEE 754 double's bits
  const std::string body = body_of(encode(c));
  Call d = parse_call(body);
  EXPECT_EQ(d.method, Method::metric);
  EXPECT_EQ(d.n1, 0x3FF8000000000000ull);
  EXPECT_EQ(d.s1, "items_total");
  EXPECT_EQ(d.s2, R"({"kind":"a"})");
  // The method after it is unknown; a metric call carries no body.
  EXPECT_EQ(error_of([&] { parse_call(std::string(1, static_cast<char>(Method::metric) + 1)); }),
            "unknown host call " + std::to_string(static_cast<int>(Method::metric) + 1));
  c.bodies = body_out;
  EXPECT_EQ(
      error_of([&] { parse_call(body_of(encode(c))); }),
      "host call " + std::to_string(static_cast<int>(Method::metric)) + " cannot have bodies 2");
}

TEST(Frame, AHelloRoundTrips) {
  Hello h;
  h.has_entry = h.has_descriptor = h.has_run = true;
  h.struct_size = 48;
  h.magic = 0x54534b48;
  h.abi_major = 1;
  h.name = "probe";
  h.version = "0.1.0";
  const std::string body = body_of(encode(h));
  Hello d = parse_hello(body);
  EXPECT_TRUE(d.has_run);
  EXPECT_EQ(d.magic, 0x54534b48u);
  EXPECT_EQ(d.name, "probe");
  EXPECT_EQ(d.version, "0.1.0");
  EXPECT_EQ(d.description, "");
}

TEST(Frame, TheHeaderIsCheckedBeforeTheBodyIsRead) {
  std::string frame = encode(Kind::done, Result{0, ""});
  std::string v = frame;
  v[4] = 1;
  EXPECT_EQ(error_of([&] { parse_header(v); }), "protocol version 1, expected 3");
  v = frame;
  v[5] = 99;
  EXPECT_EQ(error_of([&] { parse_header(v); }), "unknown frame kind 99");
  v = frame;
  v[7] = 1;
  EXPECT_EQ(error_of([&] { parse_header(v); }), "reserved header bits are set");
  v = frame;
  v[0] = v[1] = v[2] = v[3] = '\xff';
  EXPECT_EQ(error_of([&] { parse_header(v); }),
            "a frame body of 4294967295 bytes exceeds the 1052672 byte maximum");
}

TEST(Frame, ABodyIsReadWithinItsBounds) {
  // A string field claiming more bytes than the body holds.
  std::string body = body_of(FrameWriter(Kind::data).bytes("abc").finish());
  body[0] = 100;
  EXPECT_EQ(error_of([&] { parse_data(body); }),
            "a field needs 100 bytes but the frame has 3 left");
  // Bytes after the last field.
  EXPECT_EQ(
      error_of([&] { parse_data(body_of(FrameWriter(Kind::data).bytes("").u8(0).finish())); }),
      "1 bytes left over after the last field");
  // A call with a body its method cannot have.
  Call c;
  c.method = Method::log;
  c.bodies = body_in;
  EXPECT_EQ(error_of([&] { parse_call(body_of(encode(c))); }), "host call 1 cannot have bodies 1");
  EXPECT_EQ(error_of([&] { parse_call(std::string(1, '\x77')); }), "unknown host call 119");
}

TEST(Frame, AFrameLargerThanTheMaximumIsNotWritten) {
  EXPECT_EQ(error_of([&] { FrameWriter(Kind::data).bytes(std::string(max_body, 'x')).finish(); }),
            "a frame body of 1052676 bytes exceeds the 1052672 byte maximum");
  // Head and bytes apart (chunks, data): the same bound.
  EXPECT_EQ(error_of([&] { chunk_head(Stream::out, max_body); }),
            "a frame body of 1052677 bytes exceeds the 1052672 byte maximum");
}

TEST(Frame, TheSignalSafeEncodingMatchesTheWriter) {
  char buf[syscall_denied_size];
  size_t n = encode_syscall_denied(42, 0xc000003e, buf);
  EXPECT_EQ(std::string(buf, n),
            FrameWriter(Kind::syscall_denied).u32(42).u32(0xc000003e).finish());
}

TEST(Frame, StreamsEndCleanlyOnlyBetweenFrames) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const std::string frame = FrameWriter(Kind::stop).finish();
  write_all(sv[0], frame + frame.substr(0, 5));
  ::close(sv[0]);
  Frame f;
  EXPECT_TRUE(read_frame(sv[1], f));
  EXPECT_EQ(f.kind, Kind::stop);
  EXPECT_EQ(error_of([&] { read_frame(sv[1], f); }), "the stream ended inside a frame header");
  EXPECT_FALSE(read_frame(sv[1], f));
  ::close(sv[1]);
}

}  // namespace
}  // namespace taskhost::sandbox
