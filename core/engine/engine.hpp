#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "schema/schema.hpp"
#include "store/pg.hpp"
#include "store/runs.hpp"
#include "store/schemas.hpp"

namespace taskhost {

struct EngineOptions {
  std::filesystem::path plugin_dir;  // schema plugin paths are relative to it
  bool dev_mode = false;             // accept schemas pinning sha256: any
  std::string actor;                 // recorded on every transition
};

// Called as a run reports progress (at most a few times a second).
using ProgressObserver = std::function<void(uint64_t done, uint64_t total)>;

// Submits runs and executes them. Submission and execution are separate
// steps so that a queue of workers can take over execution unchanged.
class Engine {
 public:
  Engine(pg::Connection& conn, EngineOptions options) : conn_(conn), options_(std::move(options)) {}

  // Validates params against the schema and records a queued run bound to
  // that exact version. Returns the run id. Throws Error(invalid) listing
  // every parameter problem, Error(not_found) for an unknown schema.
  std::string submit(const InstalledSchema& schema, const Json& params);

  // Executes a queued run in this process until its attempt ends (the
  // plugin returned, or was refused before it started) and returns the run
  // as stored. A plugin failure is an outcome, not an exception.
  Run execute(const std::string& run_id, const ProgressObserver& observer = {});

 private:
  pg::Connection& conn_;
  EngineOptions options_;
};

}  // namespace taskhost
