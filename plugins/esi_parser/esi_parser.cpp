// esi-parser: decrypts one raw ESI accumulator file through the host,
// parses it against the layout and loads it in one transaction (README.md).
#include <taskhost/fixedwidth.hpp>
#include <taskhost/sdk.hpp>

#include <algorithm>
#include <chrono>

#include "columns.hpp"
#include "esi_layout.hpp"  // esi::layout_yaml, generated from the layout file

namespace {

namespace fw = taskhost::fixedwidth;
using taskhost::Context;
using taskhost::Db;
using taskhost::Json;
using taskhost::PermanentError;

constexpr size_t chunk_bytes = 4 << 20;  // plaintext pulled per read, and COPY text per flush

// Whether a file with this digest was parsed before.
bool parsed_before(const Db& db, const std::string& sha256) {
  return !db.query(
                "SELECT 1 FROM esi_ingestion_meta WHERE job_type = 'parser' AND "
                "status = 'succeeded' AND source_sha256 = $1 LIMIT 1",
                {sha256})
              .rows.empty();
}

struct Counts {
  uint64_t dt = 0, dq = 0, dr_accepted = 0, dr_rejected = 0;
  Json json(uint64_t rejects) const {
    return {{"dt_records", dt},
            {"dq", dq},
            {"dr_accepted", dr_accepted},
            {"dr_rejected", dr_rejected},
            {"rejects", rejects}};
  }
};

struct EsiParser {
  static constexpr const char* name = "esi-parser";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description =
      "Decrypt, parse and load one ESI accumulator file in one transaction";

  void run(Context& ctx) {
    const auto started = std::chrono::steady_clock::now();
    const std::string bucket = ctx.param<std::string>("bucket");
    const std::string key = ctx.param<std::string>("key");
    const std::string mode = ctx.param<std::string>("mode");
    const auto max_rejects = static_cast<uint64_t>(ctx.param<int64_t>("max_rejects"));
    const std::string run_id = ctx.run_info()["run_id"];
    const Db db = ctx.db();
    const bool fixup = mode == "fixup";
    if (auto digest = ctx.optional_param<std::string>("sha256");
        digest && !fixup && parsed_before(db, *digest)) {
      ctx.set_output({{"skipped", true}, {"reason", "parsed before"}, {"source_sha256", *digest}});
      return;
    }

    static const fw::Layout layout = fw::load_layout(esi::layout_yaml, "esi_rxaccum_v10.yaml");
    const fw::RecordType& dt = *layout.find("DT");
    const std::vector<esi::Column> columns = esi::columns(dt);
    std::vector<std::string> names = {"load_id", "source_line"};
    for (const auto& c : columns) names.push_back(c.name);
    const int kind = dt.index("transmission_file_type");
    const int status = dt.index("transaction_response_status");
    const int blocks = dt.index("accumulator_balance_count");

    Counts counts;
    std::string rows;  // COPY text not yet sent
    fw::FileParser parser(
        layout,
        [&](uint64_t line, const fw::RecordType& type, const std::vector<fw::Value>& v, bool ok) {
          if (&type != &dt || !ok) return;
          ++counts.dt;
          const std::string_view k = v[kind].text;
          const char s = v[status].null ? ' ' : v[status].text[0];
          counts.dq += k == "DQ";
          counts.dr_accepted += k == "DR" && s == 'A';
          counts.dr_rejected += k == "DR" && s == 'R';
          esi::append_row(rows, run_id, line, dt, columns, blocks, v);
        },
        max_rejects + 100);

    auto flush = [&] {
      if (rows.empty()) return;
      db.copy_in_text("esi_accumulators_staging", names, rows);
      rows.clear();
    };

    db.begin();
    try {
      taskhost::Pgp pgp = ctx.pgp("esi");
      pgp.open(bucket, key);
      uint64_t bytes = 0;
      for (std::string chunk; !(chunk = pgp.read(chunk_bytes)).empty();) {
        parser.feed(chunk);
        bytes += chunk.size();
        if (rows.size() >= chunk_bytes) flush();
        if (ctx.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stopped on request");
      }
      parser.finish();
      flush();
      const std::string digest = pgp.result()["source_sha256"];
      if (parser.structural_count() > 0) {
        const auto first = std::find_if(parser.problems().begin(), parser.problems().end(),
                                        [](const fw::Problem& p) { return p.structural; });
        throw PermanentError(key + " is not a valid ESI file, nothing was loaded: " + first->str() +
                             (parser.structural_count() > 1
                                  ? " (and " + std::to_string(parser.structural_count() - 1) +
                                        " more structural problems)"
                                  : ""));
      }
      if (!fixup && parsed_before(db, digest)) {
        db.rollback();
        ctx.set_output({{"skipped", true}, {"reason", "parsed before"}, {"source_sha256", digest}});
        return;
      }
      const uint64_t rejects = parser.field_problem_records();
      record_rejects(db, parser, run_id, key);
      if (rejects > max_rejects) {
        // The rejects and the failure stay on record; the rows do not.
        db.execute("DELETE FROM esi_accumulators_staging WHERE load_id = $1", {run_id});
        meta(db, ctx, run_id, mode, key, digest, "failed", started, counts.json(rejects));
        db.commit();
        throw PermanentError(key + ": " + std::to_string(rejects) +
                             " records have field problems, more than max_rejects (" +
                             std::to_string(max_rejects) +
                             "); the first: " + parser.problems().front().str());
      }
      std::string set;
      for (size_t i = 2; i < names.size(); ++i)
        set += (set.empty() ? "" : ", ") + names[i] + " = excluded." + names[i];
      std::string cols;
      for (size_t i = 2; i < names.size(); ++i) cols += ", " + names[i];
      // A transmission id twice in one file: its last record wins.
      db.execute(
          "INSERT INTO esi_accumulators (source_key, source_sha256, source_line, run_id" + cols +
              ") SELECT DISTINCT ON (transmission_id) $2, $3, source_line, $1" + cols +
              " FROM esi_accumulators_staging WHERE load_id = $1"
              " ORDER BY transmission_id, source_line DESC"
              " ON CONFLICT (transmission_id) DO UPDATE SET source_key = excluded.source_key,"
              " source_sha256 = excluded.source_sha256, source_line = excluded.source_line,"
              " run_id = excluded.run_id, loaded_at = now(), " +
              set,
          {run_id, key, digest});
      db.execute("DELETE FROM esi_accumulators_staging WHERE load_id = $1", {run_id});
      const Json out = counts.json(rejects);
      meta(db, ctx, run_id, mode, key, digest, "succeeded", started, out);
      db.commit();
      Json output = out;
      output["source_sha256"] = digest;
      output["bytes"] = bytes;
      ctx.set_output(output);
    } catch (...) {
      try {
        db.rollback();
      } catch (...) {
        // the transaction may have ended with the failure; report that one
      }
      throw;
    }
  }

  static void record_rejects(const Db& db, const fw::FileParser& parser, const std::string& run_id,
                             const std::string& key) {
    std::vector<int64_t> lines;
    std::vector<std::string> records, fields, values, reasons;
    for (const auto& p : parser.problems()) {
      if (p.structural) continue;
      lines.push_back(static_cast<int64_t>(p.line));
      records.push_back(p.record);
      fields.push_back(p.field);
      values.push_back(p.bytes);
      reasons.push_back(p.message);
    }
    if (lines.empty()) return;
    db.execute(
        "INSERT INTO esi_rejects (run_id, source_key, line, record, field, value, reason) "
        "SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], "
        "$7::text[])",
        {run_id, key, lines, records, fields, values, reasons});
  }

  static void meta(const Db& db, const Context& ctx, const std::string& run_id,
                   const std::string& mode, const std::string& key, const std::string& digest,
                   const std::string& status, std::chrono::steady_clock::time_point started,
                   const Json& counts) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    db.execute(
        "INSERT INTO esi_ingestion_meta (task_id, job_type, task_type, status, "
        "most_recent_parsed, source_sha256, target_files, tries, started_at, duration, counts) "
        "VALUES ($1, 'parser', $2, $3, $4, $5, ARRAY[$4], $6, now() - make_interval(secs => $7), "
        "make_interval(secs => $7), $8::jsonb) "
        "ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, tries = excluded.tries, "
        "updated_at = now(), duration = excluded.duration, counts = excluded.counts, "
        "source_sha256 = excluded.source_sha256",
        {run_id, mode, status, key, digest, ctx.run_info()["attempt"].get<int64_t>(), seconds,
         counts.dump()});
  }
};

}  // namespace

TASKHOST_PLUGIN(EsiParser)
