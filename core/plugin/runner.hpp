#pragma once

#include <memory>
#include <string>

#include "plugin/host_api.hpp"
#include "plugin/loader.hpp"

namespace taskhost {

// Runs one attempt of a verified plugin, serving its host calls with host
// (a run's HostServices) and the entries granted. Returns the plugin's
// th_code, with *message set on failure. May throw Error(refused) when the
// plugin turns out not to be acceptable and Error(environment) when it
// cannot be started.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual int run(HostServices& host, const GrantedServices& granted, std::string* message) = 0;
};

// isolation: none. The plugin's code runs on the calling thread, inside the
// host: only for hosts whose config allows it.
class InProcessRunner : public Runner {
 public:
  explicit InProcessRunner(std::shared_ptr<const LoadedPlugin> plugin)
      : plugin_(std::move(plugin)) {}
  int run(HostServices& host, const GrantedServices& granted, std::string* message) override {
    th_host_api api = make_host_api(granted);
    return plugin_->run(&api, as_host(host), message);
  }

 private:
  std::shared_ptr<const LoadedPlugin> plugin_;
};

}  // namespace taskhost
