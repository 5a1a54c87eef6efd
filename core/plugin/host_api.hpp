#pragma once

#include <taskhost/plugin.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "services/object_store.hpp"  // ByteSink, ByteSource

namespace taskhost {

// What the host does for one run, in C++ terms. The ABI table built by
// make_host_api() forwards each C call here; an exception thrown by an
// implementation becomes an error code and message for the plugin (an
// Error(invalid) becomes TH_ERR_INVALID, Error(conflict) TH_ERR_CANCELLED,
// Error(refused) TH_ERR_PERMISSION, Error(not_found) TH_ERR_NOT_FOUND,
// anything else TH_ERR_IO), so no C++ exception crosses the ABI.
class HostServices {
 public:
  virtual ~HostServices() = default;
  virtual void log(th_log_level level, std::string_view message) = 0;
  virtual void progress(uint64_t done, uint64_t total) = 0;
  virtual std::string checkpoint_get() = 0;
  virtual void checkpoint_set(std::string_view json) = 0;
  virtual void emit(std::string_view event, std::string_view json) = 0;
  virtual bool should_stop() = 0;
  virtual std::string params() = 0;
  virtual std::string run_info() = 0;
  virtual void set_output(std::string_view json) = 0;
  virtual void attach_file(std::string_view name, std::string_view content_type,
                           std::string content) = 0;
  // A granted service's operation: JSON request in, JSON reply out, with
  // an optional body either way (services/object_storage.hpp).
  virtual nlohmann::json object_storage(const std::string& op, const nlohmann::json& request,
                                        const ByteSource& in, const ByteSink& out) = 0;
  // A get from object storage whose object the store keeps as a file
  // (ObjectStorageService::get_file): the sandbox hands the plugin process
  // that file instead of streaming its bytes. nullptr: serve the get as
  // object_storage does. Hosts need not implement it.
  virtual std::unique_ptr<ObjectFile> object_file(const nlohmann::json& request);
  virtual nlohmann::json http(const std::string& op, const nlohmann::json& request,
                              const ByteSource& in, const ByteSink& out) = 0;
  virtual nlohmann::json sftp(const std::string& op, const nlohmann::json& request,
                              const ByteSource& in, const ByteSink& out) = 0;
  virtual nlohmann::json db(const std::string& op, const nlohmann::json& request,
                            const ByteSource& in, const ByteSink& out) = 0;
  // OpenPGP (services/pgp_service.hpp). Hosts that serve no schema granting
  // it (benchmarks, tests of other services) need not implement it.
  virtual nlohmann::json pgp(const std::string& op, const nlohmann::json& request,
                             const ByteSource& in, const ByteSink& out);
  // Whether the run is a dry run (its services refuse every write). Hosts
  // that serve no runs (benchmarks, tests of one service) need not say.
  virtual bool dry_run() { return false; }
  // Records a sample of a metric the schema declares (services/plugin_metrics.hpp).
  // Hosts that serve no runs need not implement it.
  virtual void metric(std::string_view name, std::string_view labels, double value);
};

// Which service entry points a run gets: those its schema grants. The rest
// stay NULL, so a plugin can tell what it may use.
struct GrantedServices {
  bool object_storage = false;
  bool http = false;
  bool sftp = false;
  bool db = false;
  bool pgp = false;
};

// The ABI table; pass as_host(services) as the th_host*.
th_host_api make_host_api(const GrantedServices& granted = {});
inline th_host* as_host(HostServices& s) { return reinterpret_cast<th_host*>(&s); }

}  // namespace taskhost
