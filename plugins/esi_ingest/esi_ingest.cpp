// esi-ingest: mirrors the vendor's new raw accumulator files from its SFTP
// server into object storage, host to host, records what it took in the
// meta table, and names each file in its output for the chained esi-parser
// (README.md).
#include <taskhost/sdk.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

namespace {

using taskhost::Context;
using taskhost::Db;
using taskhost::Json;
using taskhost::PermanentError;

// MAVN_RxAccum_YYYYMMDD_HHMMSS.pgp: the timestamp makes name order time order.
bool vendor_file(std::string_view name) {
  constexpr std::string_view head = "MAVN_RxAccum_", tail = ".pgp";
  if (name.size() != head.size() + 15 + tail.size() || name.substr(0, head.size()) != head ||
      name.substr(name.size() - tail.size()) != tail)
    return false;
  const std::string_view stamp = name.substr(head.size(), 15);
  for (size_t i = 0; i < stamp.size(); ++i)
    if (i == 8 ? stamp[i] != '_' : (stamp[i] < '0' || stamp[i] > '9')) return false;
  return true;
}

// A name a fixup may give: one path segment, no control characters.
void check_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      std::any_of(name.begin(), name.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    throw PermanentError("files: '" + name + "' is not a file name in the vendor's directory");
}

struct Listed {
  uint64_t size = 0;
  int64_t mtime = 0;
  bool operator==(const Listed&) const = default;
};

std::map<std::string, Listed> vendor_files(const taskhost::Sftp& sftp, const std::string& dir) {
  std::map<std::string, Listed> out;
  for (const auto& f : sftp.list(dir, "MAVN_RxAccum_*.pgp"))
    if (!f.directory && vendor_file(f.name)) out[f.name] = {f.size, f.mtime};
  return out;
}

struct EsiIngest {
  static constexpr const char* name = "esi-ingest";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description =
      "Mirror new ESI accumulator files from the vendor's SFTP server to object storage";

  void run(Context& ctx) {
    const auto started = std::chrono::steady_clock::now();
    const std::string host = ctx.param<std::string>("host");
    const std::string dir = ctx.param<std::string>("path");
    const std::string bucket_name = ctx.param<std::string>("bucket");
    const std::string prefix = ctx.param<std::string>("prefix");
    const std::string mode = ctx.param<std::string>("mode");
    const std::string run_id = ctx.run_info()["run_id"];
    const auto attempt = ctx.run_info()["attempt"].get<int64_t>();
    const taskhost::Sftp sftp = ctx.sftp(host);
    const taskhost::Bucket bucket = ctx.s3(bucket_name);
    const Db db = ctx.db();

    std::vector<std::string> names, unsettled;
    std::string newest;  // the incremental watermark
    if (mode == "fixup") {
      names = ctx.param<std::vector<std::string>>("files");
      if (names.empty()) throw PermanentError("mode fixup needs the file names in 'files'");
      for (const auto& n : names) check_file_name(n);
    } else {
      newest = watermark(db, bucket, prefix);
      const auto first = vendor_files(sftp, dir);
      for (const auto& [n, listed] : first)
        if (n > newest) names.push_back(n);
      // A file still being written changes between two listings: it and
      // every later one wait for the next run, so that the watermark never
      // passes a file not yet taken.
      if (!names.empty()) {
        pause(ctx, std::chrono::seconds(ctx.param<int64_t>("settle_seconds")));
        const auto second = vendor_files(sftp, dir);
        auto moving = std::find_if(names.begin(), names.end(), [&](const std::string& n) {
          auto again = second.find(n);
          return again == second.end() || !(again->second == first.at(n));
        });
        unsettled.assign(moving, names.end());
        names.erase(moving, names.end());
        if (!unsettled.empty())
          ctx.info(unsettled.front() + " is still being written: it and " +
                   std::to_string(unsettled.size() - 1) + " later files wait for the next run");
      }
    }

    Json files = Json::array();
    try {
      for (size_t i = 0; i < names.size(); ++i) {
        if (ctx.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stopped on request");
        const std::string key = prefix + names[i];
        const auto t = bucket.put_from_sftp(key, host, dir + "/" + names[i]);
        files.push_back({{"name", names[i]}, {"key", key}, {"size", t.size}, {"sha256", t.sha256}});
        ctx.progress(i + 1, names.size());
      }
    } catch (...) {
      try {
        meta(db, run_id, mode, "failed", newest, files, attempt, started);
      } catch (...) {
        // the failure being reported matters more than its meta row
      }
      throw;
    }
    if (!names.empty()) newest = names.back();
    meta(db, run_id, mode, "succeeded", newest, files, attempt, started);
    ctx.set_output({{"files", files}, {"mode", mode}, {"waiting", unsettled}});
  }

  // The newest file an incremental run took: from the meta table, else the
  // newest already in the bucket, else "" (take everything).
  static std::string watermark(const Db& db, const taskhost::Bucket& bucket,
                               const std::string& prefix) {
    const auto r = db.query(
        "SELECT max(most_recent_raw COLLATE \"C\") FROM esi_ingestion_meta "
        "WHERE job_type = 'ingestion' AND task_type = 'incremental' AND status = 'succeeded'");
    if (!r.rows.empty() && r.rows[0][0]) return *r.rows[0][0];
    std::string newest;
    for (const auto& o : bucket.list(prefix)) {
      const std::string n = o.key.substr(prefix.size());
      if (vendor_file(n) && n > newest) newest = n;
    }
    return newest;
  }

  static void pause(const Context& ctx, std::chrono::seconds settle) {
    const auto until = std::chrono::steady_clock::now() + settle;
    while (std::chrono::steady_clock::now() < until) {
      if (ctx.should_stop()) throw taskhost::Error(TH_ERR_CANCELLED, "stopped on request");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  static void meta(const Db& db, const std::string& run_id, const std::string& mode,
                   const std::string& status, const std::string& newest, const Json& files,
                   int64_t attempt, std::chrono::steady_clock::time_point started) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f["name"]);
    db.execute(
        "INSERT INTO esi_ingestion_meta (task_id, job_type, task_type, status, most_recent_raw, "
        "target_files, tries, started_at, duration, files) VALUES ($1, 'ingestion', $2, $3, "
        "nullif($4, ''), $5::text[], $6, now() - make_interval(secs => $7), "
        "make_interval(secs => $7), $8::jsonb) "
        "ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, "
        "most_recent_raw = excluded.most_recent_raw, target_files = excluded.target_files, "
        "tries = excluded.tries, updated_at = now(), duration = excluded.duration, "
        "files = excluded.files",
        {run_id, mode, status, newest, names, attempt, seconds, files.dump()});
  }
};

}  // namespace

TASKHOST_PLUGIN(EsiIngest)
