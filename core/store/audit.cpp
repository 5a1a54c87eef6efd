#include "store/audit.hpp"

#include <openssl/rand.h>

#include <fstream>
#include <map>

#include "common/ed25519.hpp"
#include "common/error.hpp"
#include "common/sha256.hpp"

namespace taskhost {
namespace {

constexpr int page_size = 5000;

const char* columns =
    "SELECT seq, taskhost.iso_utc(at), actor, "
    "action, run_id::text, subject, detail::text, prev_hash, hash, "
    "(extract(epoch FROM at) * 1000000)::bigint FROM taskhost.audit_log ";

AuditEntry read_entry(const pg::Result& r, int i) {
  AuditEntry e;
  e.seq = r.integer(i, 0);
  e.at = r.text(i, 1);
  e.actor = r.text(i, 2);
  e.action = r.text(i, 3);
  e.run_id = r.optional(i, 4);
  e.subject = r.optional(i, 5);
  e.detail = Json::parse(r.text(i, 6));
  e.prev_hash = r.text(i, 7);
  e.hash = r.text(i, 8);
  return e;
}

std::string checkpoint_message(int64_t seq, const std::string& hash, const std::string& at) {
  return "taskhost.audit.checkpoint.v1\n" + std::to_string(seq) + "\n" + hash + "\n" + at;
}

constexpr std::string_view sealer_context = "audit sealer";

// The sealers whose MAC holds under one of keys: token hash by id.
std::map<int64_t, std::string> verified_sealers(pg::Connection& conn, const HostKeys& keys) {
  std::map<int64_t, std::string> ok;
  auto r = conn.exec(
      "SELECT s.id, encode(s.token_sha256, 'hex'), m.key_id, m.mac FROM taskhost.audit_sealers s "
      "JOIN taskhost.audit_sealer_macs m ON m.sealer_id = s.id");
  for (int i = 0; i < r.rows(); ++i)
    if (keys.mac_holds(r.text(i, 2), r.text(i, 1), sealer_context, r.text(i, 3)))
      ok[r.integer(i, 0)] = r.text(i, 1);
  return ok;
}

std::string field(const std::optional<std::string>& x) {
  return x ? std::to_string(x->size()) + ":" + *x + "," : "-,";
}

// The hash the chain rule gives row i of a `columns` result (detail as the
// stored jsonb's text, exactly as the database hashed it).
std::string expected_hash(const pg::Result& r, int i, const std::string& prev_hash) {
  return sha256_hex("taskhost.audit.v1\n" + r.text(i, 0) + "\n" + prev_hash + "\n" +
                    field(r.text(i, 9)) + field(r.text(i, 2)) + field(r.text(i, 3)) +
                    field(r.optional(i, 4)) + field(r.optional(i, 5)) + field(r.text(i, 6)));
}

pg::Result query_page(pg::Connection& conn, const AuditFilter& f, int limit) {
  return conn.exec(std::string(columns) +
                       "WHERE seq > $1 AND ($2::uuid IS NULL OR run_id = $2) "
                       "AND ($3::text IS NULL OR actor = $3) "
                       "AND ($4::text IS NULL OR action = $4 OR starts_with(action, "
                       "  CASE WHEN right($4, 1) = '.' THEN $4 ELSE $4 || '.' END)) "
                       "AND ($5::timestamptz IS NULL OR at >= $5) "
                       "AND ($6::timestamptz IS NULL OR at < $6) "
                       "ORDER BY seq LIMIT $7",
                   {f.after_seq, f.run_id, f.actor, f.action, f.since, f.until, limit});
}

}  // namespace

void append_audit(pg::Connection& conn, const std::string& actor, const std::string& action,
                  const std::optional<std::string>& run_id,
                  const std::optional<std::string>& subject, const Json& detail) {
  conn.exec(
      "SELECT taskhost.audit_append(ARRAY[ROW($1, $2, $3::uuid, $4, $5::jsonb)"
      "::taskhost.audit_entry])",
      {actor, action, run_id, subject, detail.dump()});
}

std::vector<AuditEntry> list_audit(pg::Connection& conn, const AuditFilter& filter) {
  std::vector<AuditEntry> out;
  each_audit(conn, filter, [&](const AuditEntry& e) { out.push_back(e); });
  return out;
}

void each_audit(pg::Connection& conn, AuditFilter filter,
                const std::function<void(const AuditEntry&)>& each) {
  int64_t left = filter.limit ? *filter.limit : INT64_MAX;
  while (left > 0) {
    auto r = query_page(conn, filter, static_cast<int>(std::min<int64_t>(left, page_size)));
    for (int i = 0; i < r.rows(); ++i) each(read_entry(r, i));
    if (r.rows() == 0) break;
    left -= r.rows();
    filter.after_seq = r.integer(r.rows() - 1, 0);
  }
}

AuditVerdict verify_audit(pg::Connection& conn) {
  AuditVerdict v;
  std::string prev(64, '0');
  int64_t seq = 0;
  auto broken = [&](int64_t at, std::string why) {
    v.broken_seq = at;
    v.why = std::move(why);
    return v;
  };
  for (;;) {
    auto r =
        conn.exec(std::string(columns) + "WHERE seq > $1 ORDER BY seq LIMIT $2", {seq, page_size});
    for (int i = 0; i < r.rows(); ++i) {
      const int64_t s = r.integer(i, 0);
      if (s != seq + 1)
        return broken(seq + 1, "entry " + std::to_string(seq + 1) +
                                   " is missing (the next entry is " + std::to_string(s) + ")");
      if (r.text(i, 7) != prev)
        return broken(s, "entry " + std::to_string(s) + " does not follow entry " +
                             std::to_string(seq) +
                             " (its prev_hash is not that entry's hash): entries were "
                             "reordered, inserted or removed");
      if (!constant_time_equal(expected_hash(r, i, prev), r.text(i, 8)))
        return broken(
            s, "entry " + std::to_string(s) + " does not match its hash: its content was changed");
      prev = r.text(i, 8);
      seq = s;
      ++v.entries;
    }
    if (r.rows() < page_size) break;
  }
  auto head = conn.exec("SELECT seq, hash FROM taskhost.audit_chain_head()");
  if (head.integer(0, 0) != seq || head.text(0, 1) != prev)
    return broken(seq + 1, "the chain head is at entry " + head.text(0, 0) +
                               " but the log ends at entry " + std::to_string(seq) +
                               ": entries after it were removed or the head was altered");
  return v;
}

void open_audit_sealer(pg::Connection& conn, const HostKeys& keys) {
  unsigned char random[32];
  if (RAND_bytes(random, sizeof random) != 1)
    throw Error(ErrorKind::environment, "no random bytes for an audit sealer");
  const std::string token = hex_lower({reinterpret_cast<const char*>(random), sizeof random});
  const auto mac = keys.mac(sha256_hex(token), sealer_context);
  conn.exec("SELECT taskhost.audit_open_sealer($1, $2, $3)", {token, mac.key_id, mac.hex});
}

AuditVerdict verify_audit_sealers(pg::Connection& conn, const HostKeys& keys) {
  const auto sealers = verified_sealers(conn, keys);
  AuditVerdict v;
  int64_t after = conn.exec("SELECT seq FROM taskhost.audit_sealed_after").integer(0, 0);
  int64_t unsealed = 0;
  std::string first;
  for (;;) {
    auto r = conn.exec(
        "SELECT seq, sealer, actor, action FROM taskhost.audit_log WHERE seq > $1 ORDER BY seq "
        "LIMIT $2",
        {after, page_size});
    for (int i = 0; i < r.rows(); ++i) {
      ++v.entries;
      auto sealer = r.optional(i, 1);
      if (sealer && sealers.count(std::stoll(*sealer)) > 0) continue;
      if (unsealed++ == 0) {
        v.broken_seq = r.integer(i, 0);
        first = "entry " + r.text(i, 0) + " (" + r.text(i, 3) + " by " + r.text(i, 2) + ")";
      }
    }
    if (r.rows() < page_size) break;
    after = r.integer(r.rows() - 1, 0);
  }
  if (unsealed > 0)
    v.why = first +
            (unsealed > 1 ? " and " + std::to_string(unsealed - 1) + " more were" : " was") +
            " not appended by a taskhost process: no session holding a sealer signed with the "
            "host key wrote " +
            (unsealed > 1 ? "them" : "it") +
            " (someone with the database role did, whatever actor an entry names)";
  return v;
}

int sign_audit_sealers(pg::Connection& conn, const HostKeys& keys) {
  std::vector<std::optional<std::string>> ids, macs;
  for (const auto& [id, token_sha256] : verified_sealers(conn, keys)) {
    ids.push_back(std::to_string(id));
    macs.push_back(keys.mac(token_sha256, sealer_context).hex);
  }
  if (!ids.empty())
    conn.exec("SELECT taskhost.audit_sign_sealers($1::bigint[], $2, $3::text[])",
              {pg::array_literal(ids), keys.current_id(), pg::array_literal(macs)});
  return static_cast<int>(ids.size());
}

int64_t write_audit_checkpoint(pg::Connection& conn, const std::filesystem::path& key,
                               const std::filesystem::path& out) {
  if (!std::filesystem::exists(key)) ed25519_generate(key);
  auto head = conn.exec(
      "SELECT seq, hash, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
      "FROM taskhost.audit_chain_head()");
  const int64_t seq = head.integer(0, 0);
  const std::string hash = head.text(0, 1), at = head.text(0, 2);
  Json line = {{"seq", seq},
               {"hash", hash},
               {"at", at},
               {"signature", ed25519_sign(key, checkpoint_message(seq, hash, at))}};
  std::ofstream f(out, std::ios::app);
  f << line.dump() << "\n";
  if (!f.flush()) throw Error(ErrorKind::environment, "cannot append to " + out.string());
  return seq;
}

bool write_audit_checkpoint_if_due(pg::Connection& conn, const AuditCheckpointConfig& config,
                                   const std::string& actor) {
  pg::Transaction tx(conn);
  // A time in the future (written by hand) does not hold checkpoints back.
  auto due = tx.exec(
      "SELECT 1 FROM taskhost.audit_checkpoint_state WHERE written_at <= now() - $1 * interval "
      "'1 millisecond' OR written_at > now() FOR UPDATE SKIP LOCKED",
      {static_cast<int64_t>(config.every.count())});
  if (due.rows() == 0) return false;
  const int64_t seq = write_audit_checkpoint(tx.connection(), config.key, config.file);
  tx.exec(
      "UPDATE taskhost.audit_checkpoint_state SET written_at = now(), seq = $1, written_by = $2",
      {seq, actor});
  tx.commit();
  return true;
}

AuditVerdict verify_audit_checkpoints(pg::Connection& conn, const std::filesystem::path& public_key,
                                      const std::filesystem::path& checkpoints) {
  AuditVerdict v;
  std::ifstream in(checkpoints);
  if (!in) throw Error(ErrorKind::environment, "cannot read " + checkpoints.string());
  const Ed25519PublicKey key(public_key);
  int line_no = 0;
  for (std::string text; std::getline(in, text);) {
    ++line_no;
    const std::string where = checkpoints.string() + ":" + std::to_string(line_no);
    Json c = Json::parse(text, nullptr, false);
    if (c.is_discarded() || !c.contains("seq") || !c["seq"].is_number_integer() ||
        !c.contains("hash") || !c["hash"].is_string() || !c.contains("at") ||
        !c["at"].is_string() || !c.contains("signature") || !c["signature"].is_string())
      throw Error(ErrorKind::invalid, where + ": not a checkpoint line");
    const int64_t seq = c["seq"];
    const std::string hash = c["hash"], at = c["at"];
    if (!key.verify(checkpoint_message(seq, hash, at), c["signature"].get<std::string>())) {
      v.broken_seq = seq;
      v.why = where + ": the checkpoint's signature does not verify";
      return v;
    }
    if (seq == 0) continue;  // signed while the log was empty
    auto r = conn.exec("SELECT hash FROM taskhost.audit_log WHERE seq = $1", {seq});
    if (r.rows() == 0 || !constant_time_equal(r.text(0, 0), hash)) {
      v.broken_seq = seq;
      v.why = "entry " + std::to_string(seq) +
              (r.rows() == 0 ? " is missing" : " differs from the one") + " signed at " + at +
              " (" + where + "): the log was " +
              (r.rows() == 0 ? "truncated" : "rewritten up to it");
      return v;
    }
    ++v.entries;
  }
  return v;
}

Json audit_json(const AuditEntry& e) {
  return {{"seq", e.seq},
          {"at", e.at},
          {"actor", e.actor},
          {"action", e.action},
          {"run_id", e.run_id ? Json(*e.run_id) : Json()},
          {"subject", e.subject ? Json(*e.subject) : Json()},
          {"detail", e.detail},
          {"prev_hash", e.prev_hash},
          {"hash", e.hash}};
}

}  // namespace taskhost
