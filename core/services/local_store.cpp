// The embedded default object store: objects are files under a root
// directory, written to a temporary name and renamed, so a reader never
// sees half an object.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <fstream>

#include "common/error.hpp"
#include "services/object_store.hpp"

namespace taskhost {

ObjectFile::~ObjectFile() { ::close(fd); }

namespace {

namespace fs = std::filesystem;

class LocalStore : public ObjectStore {
 public:
  explicit LocalStore(fs::path root) : root_(std::move(root)) { fs::create_directories(root_); }

  std::optional<ObjectInfo> head(const std::string& key) override {
    std::error_code ec;
    auto p = root_ / key;
    if (!fs::is_regular_file(p, ec)) return std::nullopt;
    return info(key, p);
  }

  ObjectInfo get(const std::string& key, const ByteSink& out) override {
    auto i = head(key);
    if (!i) throw Error(ErrorKind::not_found, "no object '" + key + "'");
    std::ifstream in(root_ / key, std::ios::binary);
    std::string buf(1 << 20, '\0');
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() > 0) out(buf.data(), static_cast<size_t>(in.gcount()));
    }
    return *i;
  }

  std::unique_ptr<ObjectFile> open_file(const std::string& key) override {
    auto i = head(key);
    if (!i) throw Error(ErrorKind::not_found, "no object '" + key + "'");
    int fd = ::open((root_ / key).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      throw Error(ErrorKind::environment, "cannot open object '" + key + "'");
    }
    i->size = static_cast<uint64_t>(st.st_size);
    return std::make_unique<ObjectFile>(fd, *i);
  }

  ObjectInfo put(const std::string& key, const ByteSource& in,
                 const std::string& content_type) override {
    auto p = root_ / key;
    fs::create_directories(p.parent_path());
    auto tmp = p;
    tmp += ".taskhost-partial";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      std::string buf(1 << 20, '\0');
      for (size_t n; (n = in(buf.data(), buf.size())) > 0;)
        out.write(buf.data(), static_cast<std::streamsize>(n));
      if (!out.flush()) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw Error(ErrorKind::environment, "cannot write object '" + key + "'");
      }
    }
    fs::rename(tmp, p);
    auto i = info(key, p);
    i.content_type = content_type;
    return i;
  }

  ObjectPage list(const std::string& prefix, const std::optional<std::string>& after,
                  int max) override {
    std::vector<std::string> keys;
    for (auto it = fs::recursive_directory_iterator(root_);
         it != fs::recursive_directory_iterator(); ++it) {
      if (!it->is_regular_file()) continue;
      std::string key = fs::relative(it->path(), root_).generic_string();
      if (key.size() >= 17 && key.compare(key.size() - 17, 17, ".taskhost-partial") == 0) continue;
      if (key.rfind(prefix, 0) == 0 && (!after || key > *after)) keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    ObjectPage page;
    for (const auto& k : keys) {
      if (static_cast<int>(page.objects.size()) == max) {
        page.next = page.objects.back().key;
        break;
      }
      page.objects.push_back(info(k, root_ / k));
    }
    return page;
  }

  void remove(const std::string& key) override {
    std::error_code ec;
    fs::remove(root_ / key, ec);
  }

  void copy(const std::string& from, const std::string& to) override {
    if (!head(from)) throw Error(ErrorKind::not_found, "no object '" + from + "'");
    fs::create_directories((root_ / to).parent_path());
    fs::copy_file(root_ / from, root_ / to, fs::copy_options::overwrite_existing);
  }

  std::string presign_get(const std::string& key, std::chrono::seconds) override {
    return "file://" + (root_ / key).string();
  }

 private:
  static ObjectInfo info(const std::string& key, const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    char when[32];
    std::tm tm{};
    gmtime_r(&st.st_mtime, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return {key, static_cast<uint64_t>(st.st_size), "", when, ""};
  }

  fs::path root_;
};

}  // namespace

std::unique_ptr<ObjectStore> local_object_store(const std::filesystem::path& root) {
  return std::make_unique<LocalStore>(root);
}

}  // namespace taskhost
