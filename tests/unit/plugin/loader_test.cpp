#include "plugin/loader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
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
                "ABI 1.3 (major versions must match): rebuild it against SDK 1.x");
}

TEST(Loader, RefusesNewerMinorAbi) {
  auto path = fixtures + "/abi_minor.so";
  EXPECT_EQ(
      refusal(path, digest_of(path)),
      "plugin " + path +
          " refused: it needs plugin ABI 1.4 but this host provides ABI 1.3 "
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

// Each load runs the code of the file it verified: loading one plugin after
// another (the first one dropped or kept) never hands back an earlier one.
TEST(Loader, EachLoadIsTheFileItVerified) {
  const std::string noop = fixtures + "/noop.so";
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(load_plugin(hello, digest_of(hello), false).info().name, "hello");
    EXPECT_EQ(load_plugin(noop, digest_of(noop), false).info().name, "noop");
  }
  auto kept = load_plugin(hello, digest_of(hello), false);
  EXPECT_EQ(load_plugin(noop, digest_of(noop), false).info().name, "noop");
  EXPECT_EQ(kept.info().name, "hello");
}

// A new reviewed build written over the same file (same inode) is the code
// that runs next, while the old build stays loaded and intact.
TEST(Loader, ANewBuildOverTheSameFileIsLoadedAfresh) {
  auto file = std::filesystem::temp_directory_path() / "taskhost_rebuilt.so";
  std::filesystem::copy_file(fixtures + "/noop.so", file,
                             std::filesystem::copy_options::overwrite_existing);
  auto old_build = load_plugin(file, digest_of(file), false);
  {
    // Overwrite in place, as `cp` does: the inode stays the same.
    std::ifstream in(fixtures + "/probe.so", std::ios::binary);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  auto new_build = load_plugin(file, digest_of(file), false);
  EXPECT_EQ(new_build.info().name, "probe");
  EXPECT_EQ(old_build.info().name, "noop");
  std::filesystem::remove(file);
}

TEST(Loader, RefusesFilesThatAreNotLibraries) {
  EXPECT_NE(refusal("/nonexistent.so", std::string(64, '0')).find("cannot open it"),
            std::string::npos);
  auto text = std::filesystem::temp_directory_path() / "not_a_library.so";
  std::ofstream(text) << "hello";
  EXPECT_EQ(refusal(text, digest_of(text)),
            "plugin " + text.string() +
                " refused: it is not an ELF file (a plugin is a shared library, .so)");
  std::filesystem::remove(text);
  EXPECT_EQ(refusal("/etc", "any", true), "plugin /etc refused: it is not a regular file");
  auto truncated = std::filesystem::temp_directory_path() / "truncated.so";
  {
    std::ifstream in(hello, std::ios::binary);
    std::string head(200, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(truncated, std::ios::binary) << head;
  }
  EXPECT_NE(refusal(truncated, "any", true).find("refused: it is truncated"), std::string::npos);
  std::filesystem::remove(truncated);
}

// Checking a file reads it and runs none of its code; loading it does.
TEST(Loader, CheckingAFileRunsNoneOfItsCode) {
  const std::string so = fixtures + "/ctor_writes.so";
  const auto mark =
      std::filesystem::temp_directory_path() / ("taskhost_ctor_mark_" + std::to_string(::getpid()));
  std::filesystem::remove(mark);
  ::setenv("TASKHOST_TEST_CTOR_MARK", mark.c_str(), 1);
  auto info = check_plugin_file(so, nullptr, false);
  EXPECT_EQ(info.sha256, digest_of(so));
  EXPECT_EQ(info.elf.machine, "x86-64");
  EXPECT_TRUE(info.elf.exports_entry);
  EXPECT_NE(std::find(info.elf.needed.begin(), info.elf.needed.end(), "libc.so.6"),
            info.elf.needed.end());
  EXPECT_FALSE(std::filesystem::exists(mark));
  EXPECT_EQ(load_plugin(so, "any", true).info().name, "ctor_writes");
  EXPECT_TRUE(std::filesystem::exists(mark));
  ::unsetenv("TASKHOST_TEST_CTOR_MARK");
  std::filesystem::remove(mark);
}

TEST(Loader, LoadingReadsTheDescriptor) {
  auto p = load_plugin(fixtures + "/probe.so", "any", true);
  EXPECT_EQ(p.info().name, "probe");
  EXPECT_EQ(p.info().version, "0.1.0");
  EXPECT_EQ(p.info().description, "exercises the host API");
}

}  // namespace
}  // namespace taskhost
