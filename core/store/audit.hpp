#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/host_config.hpp"
#include "config/host_keys.hpp"
#include "schema/schema.hpp"  // Json
#include "store/pg.hpp"

namespace taskhost {

// One entry of the audit log (migrations/0003_audit.sql has the chain rule).
struct AuditEntry {
  int64_t seq = 0;
  std::string at;  // ISO 8601, UTC
  std::string actor, action;
  std::optional<std::string> run_id, subject;
  Json detail = Json::object();
  std::string prev_hash, hash;
};

// Appends one entry in the caller's transaction (or its own, in autocommit).
// Run transitions and schema install/removal are appended by the database
// itself; this is for everything else (service calls, keys).
void append_audit(pg::Connection& conn, const std::string& actor, const std::string& action,
                  const std::optional<std::string>& run_id,
                  const std::optional<std::string>& subject, const Json& detail = Json::object());

struct AuditFilter {
  // action: exact, or every action under it at a dot (run matches run.failed)
  std::optional<std::string> run_id, actor, action;
  std::optional<std::string> since, until;  // timestamps PostgreSQL understands
  int64_t after_seq = 0;                    // keyset paging
  std::optional<int> limit;
};

// Entries in chain order.
std::vector<AuditEntry> list_audit(pg::Connection& conn, const AuditFilter& filter);

// Calls each(entry) for every matching entry in chain order, a page at a time.
void each_audit(pg::Connection& conn, AuditFilter filter,
                const std::function<void(const AuditEntry&)>& each);

struct AuditVerdict {
  int64_t entries = 0;                // entries (or checkpoints) checked
  std::optional<int64_t> broken_seq;  // the first entry that fails, if any
  std::string why;
  bool ok() const { return !broken_seq; }
};

// Walks the whole chain: contiguous seq from 1, each prev_hash the previous
// entry's hash, each hash recomputed from the entry, the head at the last
// entry. Stops at the first break.
AuditVerdict verify_audit(pg::Connection& conn);

// Sealers (migrations/0018_audit_sealers.sql): who appended an entry. Makes
// conn's session a sealer: a fresh random token kept in the session, its
// hash registered with a MAC under the current host key. Every entry the
// session appends from then on carries the sealer. Every connection of the
// platform's own roles is opened as one (pg::set_session_setup).
void open_audit_sealer(pg::Connection& conn, const HostKeys& keys);

// Every entry after sealing began was appended by a session whose sealer
// has a MAC that holds under one of keys. Reports the first entry that was
// not (someone with the database role appended it directly, whatever actor
// it names) and how many such entries there are.
AuditVerdict verify_audit_sealers(pg::Connection& conn, const HostKeys& keys);

// For a host key rotation: adds a MAC under keys' current key to every
// sealer whose MAC holds under one of keys. Returns how many.
int sign_audit_sealers(pg::Connection& conn, const HostKeys& keys);

// Signed checkpoints: an anchor outside the database. A checkpoint is one
// JSON line {"seq", "hash", "at", "signature"} appended to `out`, the
// Ed25519 signature (private key `key`, created with key + ".pub" on first
// use) of the chain head. A superuser can rewrite the log and its head
// consistently; he cannot rewrite the signed checkpoints. Returns the seq.
int64_t write_audit_checkpoint(pg::Connection& conn, const std::filesystem::path& key,
                               const std::filesystem::path& out);

// The workers' automatic checkpoints (host config audit.checkpoint_every):
// writes one with write_audit_checkpoint unless any worker wrote one within
// `every` (a row lock makes one worker at a time decide, across hosts).
// Returns whether it wrote one; throws Error(environment) if the file or key
// fails, leaving the checkpoint due for the next worker.
bool write_audit_checkpoint_if_due(pg::Connection& conn, const AuditCheckpointConfig& config,
                                   const std::string& actor);

// Each checkpoint's signature must verify with public_key, and the log must
// still hold its entry with its hash. Reports the first checkpoint that fails.
AuditVerdict verify_audit_checkpoints(pg::Connection& conn, const std::filesystem::path& public_key,
                                      const std::filesystem::path& checkpoints);

Json audit_json(const AuditEntry& e);

}  // namespace taskhost
