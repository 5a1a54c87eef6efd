// bench/sandbox: what the sandbox costs per attempt and per host call, and
// a streamed body through the broker beside the same body in-process.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "plugin/loader.hpp"
#include "sandbox/process_runner.hpp"

namespace {

using namespace taskhost;
using Clock = std::chrono::steady_clock;

// The host side with nothing behind it: the figures are the runner's own.
class NullHost : public HostServices {
 public:
  explicit NullHost(nlohmann::json params) : params_(std::move(params)) {}
  void log(th_log_level, std::string_view) override {}
  void progress(uint64_t, uint64_t) override {}
  std::string checkpoint_get() override { return "null"; }
  void checkpoint_set(std::string_view) override {}
  void emit(std::string_view, std::string_view) override {}
  bool should_stop() override { return false; }
  std::string params() override { return params_.dump(); }
  std::string run_info() override { return "{}"; }
  void set_output(std::string_view) override {}
  void attach_file(std::string_view, std::string_view, std::string) override {}
  nlohmann::json object_storage(const std::string&, const nlohmann::json& request,
                                const ByteSource&, const ByteSink& out) override {
    uint64_t n = std::stoull(request.at("key").get<std::string>());
    std::string chunk(256u << 10, 'z');
    for (uint64_t sent = 0; sent < n; sent += chunk.size())
      out(chunk.data(), static_cast<size_t>(std::min<uint64_t>(chunk.size(), n - sent)));
    return {{"size", n}};
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

 private:
  nlohmann::json params_;
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Bench {
  sandbox::SandboxOptions options;
  std::string dir;
  GrantedServices granted{.object_storage = true};

  double process(const std::string& plugin, const nlohmann::json& params) {
    const std::string path = dir + "/" + plugin + ".so";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    NullHost host(params);
    std::string message;
    auto start = Clock::now();
    int rc = sandbox::run_in_process(options, fd, path, host, granted, &message);
    double s = seconds(Clock::now() - start);
    ::close(fd);
    if (rc != TH_OK) std::fprintf(stderr, "%s failed: %s\n", plugin.c_str(), message.c_str());
    return s;
  }
  double in_process(const LoadedPlugin& p, const nlohmann::json& params) {
    NullHost host(params);
    th_host_api api = make_host_api(granted);
    std::string message;
    auto start = Clock::now();
    int rc = p.run(&api, as_host(host), &message);
    double s = seconds(Clock::now() - start);
    if (rc != TH_OK) std::fprintf(stderr, "in-process run failed: %s\n", message.c_str());
    return s;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: sandbox_bench HELPER PLUGIN_DIR\n");
    return 2;
  }
  Bench b;
  b.options.helper = argv[1];
  b.dir = argv[2];
  std::vector<double> spawn;
  for (int i = 0; i < 50; ++i) spawn.push_back(b.process("noop", nlohmann::json::object()));
  std::printf("attempt of a no-op plugin (spawn, walls, handshake, run, exit): median %.2f ms\n",
              median(spawn) * 1e3);

  const uint64_t calls = 20000;
  std::vector<double> rt;
  for (int i = 0; i < 5; ++i)
    rt.push_back(
        (b.process("escape", {{"mode", "calls"}, {"arg", std::to_string(calls)}}) - median(spawn)) /
        calls);
  std::printf("brokered host call round trip (progress): median %.2f us\n", median(rt) * 1e6);

  const uint64_t size = 256ull << 20;
  const nlohmann::json get = {{"mode", "get"}, {"arg", std::to_string(size)}};
  LoadedPlugin escape = load_plugin(b.dir + "/escape.so", "any", true);
  std::vector<double> brokered, direct;
  for (int i = 0; i < 5; ++i) {
    brokered.push_back(b.process("escape", get));
    direct.push_back(b.in_process(escape, get));
  }
  const double mib = static_cast<double>(size) / (1 << 20);
  std::printf("256 MiB object get: brokered %.0f MiB/s, in-process %.0f MiB/s, ratio %.2f\n",
              mib / median(brokered), mib / median(direct), median(direct) / median(brokered));
}
