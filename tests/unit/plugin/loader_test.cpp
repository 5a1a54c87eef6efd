#include "plugin/loader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost {
namespace {

const std::string fixtures = FIXTURE_PLUGIN_DIR;
const std::string hello = BUNDLED_PLUGIN_DIR "/hello.so";

std::string digest_of(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  std::string d = sha256_hex_fd(fd);
  ::close(fd);
  return d;
}

// The message of the Error(refused) that loading path with pin throws.
std::string refusal(const std::string& path, const std::string& pin, bool dev = false) {
  try {
    load_plugin(path, pin, dev);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::refused);
    return e.what();
  }
  ADD_FAILURE() << path << " was loaded";
  return "";
}

TEST(Loader, LoadsThePinnedBuild) {
  auto p = load_plugin(hello, digest_of(hello), false);
  EXPECT_EQ(p.info().name, "hello");
  EXPECT_EQ(p.info().version, "1.0.0");
  EXPECT_EQ(p.info().abi_major, TH_ABI_MAJOR);
  EXPECT_EQ(p.info().abi_minor, TH_ABI_MINOR);
  EXPECT_EQ(p.info().sha256, digest_of(hello));
}

TEST(Loader, RefusesADigestMismatchNamingBothDigests) {
  const std::string pin(64, '0');
  EXPECT_EQ(refusal(hello, pin),
            "plugin " + hello + " refused: its SHA-256 is " + digest_of(hello) +
                " but the schema pins " + pin +
                ": this is not the reviewed build; review it and pin the new digest");
}

TEST(Loader, AnyDigestOnlyInDevMode) {
  EXPECT_EQ(refusal(hello, "any"),
            "plugin " + hello +
                " refused: its schema pins sha256: any, which only a host started with --dev "
                "accepts");
  EXPECT_EQ(load_plugin(hello, "any", true).info().name, "hello");
}

TEST(Loader, RefusesWrongMajorAbi) {
  auto path = fixtures + "/abi_major.so";
  EXPECT_EQ(refusal(path, digest_of(path)),
            "plugin " + path +
                " refused: it was built for plugin ABI 2.0 but this host speaks "
                "ABI 1.0 (major versions must match): rebuild it against SDK 1.x");
}

TEST(Loader, RefusesNewerMinorAbi) {
  auto path = fixtures + "/abi_minor.so";
  EXPECT_EQ(
      refusal(path, digest_of(path)),
      "plugin " + path +
          " refused: it needs plugin ABI 1.1 but this host provides ABI 1.0 "
          "(a plugin may not be newer than its host): upgrade taskhost or rebuild it against an "
          "older SDK");
}

TEST(Loader, RefusesAMissingEntrySymbol) {
  auto path = fixtures + "/no_entry.so";
  EXPECT_EQ(refusal(path, digest_of(path)),
            "plugin " + path +
                " refused: it does not export taskhost_plugin_descriptor(): not a "
                "taskhost plugin, or built without TASKHOST_PLUGIN()");
}

TEST(Loader, RefusesBadMagic) {
  auto path = fixtures + "/bad_magic.so";
  EXPECT_EQ(refusal(path, digest_of(path)),
            "plugin " + path +
                " refused: descriptor magic is 0xdeadbeef, expected 0x54534b48: "
                "not a taskhost plugin descriptor");
}

TEST(Loader, RefusesFilesThatAreNotLibraries) {
  EXPECT_NE(refusal("/nonexistent.so", std::string(64, '0')).find("cannot open it"),
            std::string::npos);
  auto text = std::filesystem::temp_directory_path() / "not_a_library.so";
  std::ofstream(text) << "hello";
  EXPECT_NE(refusal(text, digest_of(text)).find("cannot load it"), std::string::npos);
  std::filesystem::remove(text);
}

TEST(Loader, InspectReportsWithoutAPin) {
  auto p = inspect_plugin(fixtures + "/probe.so");
  EXPECT_EQ(p.info().name, "probe");
  EXPECT_EQ(p.info().version, "0.1.0");
  EXPECT_EQ(p.info().description, "exercises the host API");
}

}  // namespace
}  // namespace taskhost
