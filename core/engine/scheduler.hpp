#pragma once

#include <string>

#include "store/pg.hpp"

namespace taskhost {

// Fires the cron schedules of installed schemas (their highest version).
// For each schedule it finds the latest tick at or before now, in the
// schedule's time zone, and fires it unless it fired already: a tick is a
// unique (schema, minute) row written in the same transaction as its run, so
// each tick fires exactly once however many schedulers race for it, and a
// scheduler dying mid-tick leaves either both or neither. Ticks missed while
// no scheduler ran are not replayed: only the latest one fires, once (and
// never one from before the schema was installed). Returns runs fired.
int fire_schedules(pg::Connection& conn, const std::string& actor);

// Starts the follow-up runs (on_success / on_failure) of finished runs whose
// chains have not fired, each in one transaction with flipping its flag, so a
// chain fires once. Params are templated from the parent: "{{ output.key }}",
// "{{ params.name }}", "{{ run.id }}". Returns runs started.
int fire_chains(pg::Connection& conn, const std::string& actor);

}  // namespace taskhost
