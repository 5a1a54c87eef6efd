// bench/sandbox: what the sandbox costs per attempt and per host call, a
// body streamed through the broker beside the same body in-process, and
// no-op attempts per second with isolation process beside none.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include "plugin/loader.hpp"
#include "sandbox/process_runner.hpp"
#include "services/object_store.hpp"

namespace {

using namespace taskhost;
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The host side with nothing behind it but a local object store (files in
// the page cache): the figures are the runner's own. It notes when the
// first call and the last emit arrive (emit: never coalesced, unlike
// progress), and how long a get took: from its call to the output the
// plugin sets after it.
class BenchHost : public HostServices {
 public:
  BenchHost(nlohmann::json params, ObjectStore* store, bool hand_files)
      : params_(std::move(params)), store_(store), hand_files_(hand_files) {}
  void log(th_log_level, std::string_view) override { seen(); }
  void progress(uint64_t, uint64_t) override { seen(); }
  std::string checkpoint_get() override { return seen(), "null"; }
  void checkpoint_set(std::string_view) override { seen(); }
  void emit(std::string_view, std::string_view) override {
    seen();
    last_emit = Clock::now();
  }
  bool should_stop() override { return false; }
  std::string params() override { return seen(), params_.dump(); }
  std::string run_info() override { return seen(), "{}"; }
  void set_output(std::string_view) override {
    seen();
    if (get_started) get_took = seconds(Clock::now() - *get_started);
  }
  void attach_file(std::string_view, std::string_view, std::string) override { seen(); }
  nlohmann::json object_storage(const std::string&, const nlohmann::json& request,
                                const ByteSource&, const ByteSink& out) override {
    seen();
    if (!get_started) get_started = Clock::now();
    return {{"size", store_->get(request.at("key").get<std::string>(), out).size}};
  }
  // As the engine's ObjectStorageService::get_file: a local object is handed over as its file.
  std::unique_ptr<ObjectFile> object_file(const nlohmann::json& request) override {
    seen();
    if (!hand_files_) return nullptr;
    get_started = Clock::now();
    return store_->open_file(request.at("key").get<std::string>());
  }
  nlohmann::json http(const std::string&, const nlohmann::json&, const ByteSource&,
                      const ByteSink&) override {
    return {};
  }
  nlohmann::json sftp(const std::string&, const nlohmann::json&, const ByteSource&,
                      const ByteSink&) override {
    return {};
  }
  nlohmann::json db(const std::string&, const nlohmann::json&, const ByteSource&,
                    const ByteSink&) override {
    return {};
  }

  std::optional<Clock::time_point> first_call, get_started;
  Clock::time_point last_emit;
  double get_took = 0;

 private:
  void seen() {
    if (!first_call) first_call = Clock::now();
  }
  nlohmann::json params_;
  ObjectStore* store_;
  bool hand_files_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Bench {
  std::string dir;
  std::unique_ptr<ObjectStore> store;
  bool hand_files = true;  // false: even a local object streams through the broker
  GrantedServices granted{.object_storage = true};
  sandbox::Limits limits{.memory = 2ull << 30, .open_files = 256, .tmp = 1ull << 30};

  struct Attempt {
    double total = 0, to_first_call = 0, per_call = 0, get = 0;
  };
  Attempt process(sandbox::Sandbox& sandbox, const VerifiedPlugin& plugin,
                  const nlohmann::json& params, uint64_t calls = 0) {
    BenchHost host(params, store.get(), hand_files);
    std::string message;
    auto start = Clock::now();
    int rc = sandbox.run(limits, plugin.image, plugin.info.path, host, granted, &message);
    Attempt a;
    a.total = seconds(Clock::now() - start);
    if (host.first_call) a.to_first_call = seconds(*host.first_call - start);
    if (calls > 1) a.per_call = seconds(host.last_emit - *host.first_call) / calls;
    a.get = host.get_took;
    if (rc != TH_OK) std::fprintf(stderr, "attempt failed: %s\n", message.c_str());
    return a;
  }
  Attempt in_process(const LoadedPlugin& p, const nlohmann::json& params) {
    BenchHost host(params, store.get(), hand_files);
    th_host_api api = make_host_api(granted);
    std::string message;
    auto start = Clock::now();
    int rc = p.run(&api, as_host(host), &message);
    Attempt a;
    a.total = seconds(Clock::now() - start);
    a.get = host.get_took;
    if (rc != TH_OK) std::fprintf(stderr, "in-process run failed: %s\n", message.c_str());
    return a;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: sandbox_bench HELPER PLUGIN_DIR [S3RVER_ENDPOINT]\n");
    return 2;
  }
  Bench b;
  b.dir = argv[2];
  const auto store_dir = std::filesystem::temp_directory_path() / "taskhost-sandbox-bench";
  b.store = local_object_store(store_dir);
  sandbox::SandboxOptions options;
  options.helper = argv[1];
  const VerifiedPlugin escape = verify_plugin(b.dir + "/escape.so", nullptr, false);
  const VerifiedPlugin noop = verify_plugin(b.dir + "/noop.so", nullptr, false);
  const nlohmann::json one_call = {{"mode", "calls"}, {"arg", "1"}};

  // A sandbox started for the attempt, and one kept ready (the default): the
  // pause between attempts lets the next one get ready, as it does between
  // the runs of a worker that is not saturated.
  for (bool warm : {false, true}) {
    options.warm = warm;
    sandbox::Sandbox sandbox(options);
    std::vector<double> first, total;
    for (int i = 0; i < 30; ++i) {
      if (warm) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      auto a = b.process(sandbox, escape, one_call);
      first.push_back(a.to_first_call);
      total.push_back(a.total);
    }
    std::printf("%s sandbox: spawn to first call median %.2f ms, whole attempt %.2f ms\n",
                warm ? "ready" : "fresh", median(first) * 1e3, median(total) * 1e3);
  }

  options.warm = true;
  sandbox::Sandbox sandbox(options);
  const uint64_t calls = 20000;
  std::vector<double> rt;
  for (int i = 0; i < 5; ++i)
    rt.push_back(
        b.process(sandbox, escape, {{"mode", "calls"}, {"arg", std::to_string(calls)}}, calls)
            .per_call);
  std::printf("brokered host call round trip (emit): median %.2f us\n", median(rt) * 1e6);

  // The same object from a local store (files in the page cache: the
  // broker's own speed is what counts) and, given its endpoint, from s3rver.
  const uint64_t size = 256ull << 20;
  LoadedPlugin in_host = load_plugin(b.dir + "/escape.so", "any", true);
  auto get_256 = [&](const char* where) {
    uint64_t left = size;
    b.store->put(
        "big",
        [&](char* buf, size_t cap) {
          const size_t k = static_cast<size_t>(std::min<uint64_t>(cap, left));
          std::memset(buf, 'z', k);
          left -= k;
          return k;
        },
        "application/octet-stream");
    const nlohmann::json get = {{"mode", "get"}, {"arg", "big"}};
    std::vector<double> brokered, direct;
    for (int i = 0; i < 3; ++i) {
      brokered.push_back(b.process(sandbox, escape, get).get);
      direct.push_back(b.in_process(in_host, get).get);
    }
    const double mib = static_cast<double>(size) / (1 << 20);
    std::printf("256 MiB object get (%s): brokered %.0f MiB/s, in-process %.0f MiB/s, ratio %.2f\n",
                where, mib / median(brokered), mib / median(direct),
                median(direct) / median(brokered));
  };
  get_256("local store");
  b.hand_files = false;
  get_256("local store, streamed");
  b.hand_files = true;
  std::filesystem::remove_all(store_dir);
  if (argc == 4) {
    S3Endpoint e;
    e.bucket = "taskhost-test";
    e.endpoint = argv[3];
    e.path_style = true;
    e.credentials = {"S3RVER", "S3RVER", ""};
    b.store = s3_object_store(e);
    get_256("s3rver");
  }

  // Back to back, as a saturated worker runs them: each attempt takes a
  // ready sandbox while the next is still starting.
  const auto window = std::chrono::seconds(5);
  LoadedPlugin noop_in_host = load_plugin(b.dir + "/noop.so", "any", true);
  auto rate = [&](auto&& attempt) {
    int n = 0;
    auto start = Clock::now();
    while (Clock::now() - start < window) attempt(), ++n;
    return n / seconds(Clock::now() - start);
  };
  const double process_rate = rate([&] { b.process(sandbox, noop, nlohmann::json::object()); });
  const double none_rate = rate([&] { b.in_process(noop_in_host, nlohmann::json::object()); });
  // In-process a no-op attempt is a function call; bench/queue gives the
  // ratio with a queue around both.
  std::printf(
      "no-op attempts one after another: isolation process %.0f/s (%.2f ms each), none "
      "%.3g/s (%.2f us each)\n",
      process_rate, 1e3 / process_rate, none_rate, 1e6 / none_rate);
}
