// form526-resubmit: failed Form 526 submissions to paper-submission bundles.
//
// For each submission id in an input CSV: the claim's PDF, metadata.json,
// mappings.json and uploaded documents, zipped into the hand-off bucket with
// a presigned link, and a result row. Resumable: every batch of rows is
// written to S3 before the checkpoint that moves past it, so a retried
// attempt redoes at most the batch in flight, whose bundles it then finds
// already uploaded with the same digest.
#include <taskhost/sdk.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <future>
#include <optional>
#include <thread>
#include <unordered_map>

#include "bundle.hpp"
#include "claim.hpp"
#include "input_csv.hpp"
#include "render_pdf.hpp"

namespace form526 {
namespace {

using taskhost::Json;

// The buckets the schema grants, by the names the host config gives them.
constexpr const char* input_bucket = "form526-input";
constexpr const char* uploads_bucket = "form526-uploads";
constexpr const char* handoff_bucket = "form526-handoff";

constexpr size_t ids_per_checkpoint = 50;
constexpr int64_t presign_seconds = 7 * 24 * 3600;
constexpr const char* intake_source = "va.gov form526 remediation";
constexpr const char* result_header =
    "submission_id,status,object_key,sha256,presigned_url,error\n";

struct Row {
  int64_t id = 0;
  std::string status, object_key, sha256, url, error;
  std::string csv() const {
    return std::to_string(id) + "," + status + "," + csv_field(object_key) + "," + sha256 + "," +
           csv_field(url) + "," + csv_field(error) + "\n";
  }
};

struct Counts {
  uint64_t uploaded = 0, skipped_existing = 0, not_found = 0, failed = 0, would_upload = 0;
  void add(const std::string& status) {
    if (status == "uploaded") ++uploaded;
    if (status == "skipped_existing") ++skipped_existing;
    if (status == "not_found") ++not_found;
    if (status == "failed") ++failed;
    if (status == "would_upload") ++would_upload;
  }
  uint64_t failures() const { return not_found + failed; }
  Json json() const {
    return {{"uploaded", uploaded},
            {"skipped_existing", skipped_existing},
            {"not_found", not_found},
            {"failed", failed},
            {"would_upload", would_upload}};
  }
  static Counts from(const Json& j) {
    Counts c;
    c.uploaded = j.value("uploaded", uint64_t{0});
    c.skipped_existing = j.value("skipped_existing", uint64_t{0});
    c.not_found = j.value("not_found", uint64_t{0});
    c.failed = j.value("failed", uint64_t{0});
    c.would_upload = j.value("would_upload", uint64_t{0});
    return c;
  }
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Where a run's time goes, in seconds: what the run's thread waited for
// (database, fetching documents, uploading, recording), and the builds'
// own time on their threads (render, zip, hash), which overlaps it.
struct Timing {
  double db = 0, fetch = 0, render = 0, zip = 0, hash = 0, upload = 0, record = 0;
  Json json() const {
    auto r = [](double s) { return std::round(s * 1000) / 1000; };
    return {{"db", r(db)},     {"fetch", r(fetch)},   {"render", r(render)}, {"zip", r(zip)},
            {"hash", r(hash)}, {"upload", r(upload)}, {"record", r(record)}};
  }
};

// Adds the time from its making to its end to a total.
class Timed {
 public:
  explicit Timed(double& total) : total_(total) {}
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;
  ~Timed() { total_ += seconds_since(start_); }

 private:
  double& total_;
  Clock::time_point start_ = Clock::now();
};

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char out[11];
  std::strftime(out, sizeof out, "%Y-%m-%d", &tm);
  return out;
}

// 2026-12-02 -> 12.02.26, as the hand-off's folder and file names have it.
std::string mm_dd_yy(const std::string& date) {
  return date.substr(5, 2) + "." + date.substr(8, 2) + "." + date.substr(2, 2);
}

// The input's file name without directory or extension, for the names of the
// batch's manifest and result.
std::string stem(const std::string& key) {
  std::string s = key.substr(key.find_last_of('/') + 1);
  if (const auto dot = s.find_last_of('.'); dot != std::string::npos && dot > 0) s.erase(dot);
  return s;
}

// A bundle built off the run's thread: render, zip and hash are CPU work;
// every host call stays on the run's thread, as the ABI requires.
struct Built {
  std::string zip, sha256, error;
  double render_s = 0, zip_s = 0, hash_s = 0;
};

Built build(const Claim& claim, std::vector<std::string> documents, const std::string& date,
            const std::string& id_name, const Fonts& fonts) {
  Built b;
  try {
    std::vector<BundleFile> files;
    auto start = Clock::now();
    // libharu has deflated the PDF's streams already.
    files.push_back({id_name + ".pdf", render_pdf(claim, date, fonts), false});
    b.render_s = seconds_since(start);
    files.push_back({"metadata.json", intake_metadata(claim, intake_source).dump(2) + "\n", true});
    Json mappings = Json::array();
    for (size_t i = 0; i < claim.attachments.size(); ++i) {
      const auto& a = claim.attachments[i];
      const std::string entry = attachment_entry_name(i, a);
      mappings.push_back({{"file", entry},
                          {"document_type", a.document_type},
                          {"file_name", a.file_name},
                          {"object_key", a.object_key}});
      files.push_back({entry, std::move(documents[i]), !already_compressed(a.file_name)});
    }
    files.insert(files.begin() + 2, BundleFile{"mappings.json", mappings.dump(2) + "\n", true});
    start = Clock::now();
    b.zip = zip_bundle(files, date);
    b.zip_s = seconds_since(start);
    start = Clock::now();
    b.sha256 = sha256_hex(b.zip);
    b.hash_s = seconds_since(start);
  } catch (const std::exception& e) {
    b.error = e.what();
  }
  return b;
}

class Resubmit {
 public:
  explicit Resubmit(taskhost::Context& ctx)
      : ctx_(ctx),
        input_(ctx.s3(input_bucket)),
        uploads_(ctx.s3(uploads_bucket)),
        handoff_(ctx.s3(handoff_bucket)),
        db_(ctx.db()) {}

  void run() {
    const std::string input = ctx_.param<std::string>("input");
    const bool dry_run = ctx_.param<bool>("dry_run");
    const auto max_failures = ctx_.optional_param<int64_t>("max_failures");
    const Json saved = dry_run ? Json() : ctx_.checkpoint();
    const bool resumed = saved.is_object();
    date_ = ctx_.optional_param<std::string>("batch_label")
                .value_or(resumed ? saved.at("date").get<std::string>() : today_utc());
    folder_ = ctx_.param<std::string>("handoff_parent") + "/remediation/" + mm_dd_yy(date_) +
              "-Form21-526EZ/";
    dry_run_ = dry_run;

    std::string csv;
    try {
      csv = input_.get(input);
    } catch (const taskhost::Error& e) {
      if (e.code() == TH_ERR_NOT_FOUND)
        throw taskhost::PermanentError("input " + std::string(input_bucket) + "/" + input +
                                       ": no such object");
      throw;
    }
    const std::string input_sha256 = sha256_hex(csv);
    if (resumed && saved.at("input_sha256") != input_sha256)
      throw taskhost::PermanentError("input " + std::string(input_bucket) + "/" + input +
                                     " changed since this run's first attempt; start a new run");
    InputIds in;
    try {
      in = parse_input(csv);
    } catch (const std::invalid_argument& e) {
      throw taskhost::PermanentError("input " + std::string(input_bucket) + "/" + input + ": " +
                                     e.what());
    }
    for (const auto& m : in.malformed)
      ctx_.warn("input " + input + " line " + std::to_string(m.line) + ": " + m.error);

    const std::string work =
        folder_ + "_parts/" + ctx_.run_info().at("run_id").get<std::string>() + "/";
    size_t next = resumed ? saved.at("next").get<size_t>() : 0;
    uint64_t parts = resumed ? saved.at("parts").get<uint64_t>() : 0;
    counts_ = resumed ? Counts::from(saved.at("counts")) : Counts();
    if (resumed) {
      ctx_.info("resuming at id " + std::to_string(next + 1) + " of " +
                std::to_string(in.ids.size()));
    } else {
      // Recorded once, before the first checkpoint: a retried attempt keeps them.
      for (const auto& m : in.malformed)
        ctx_.emit("input.malformed", {{"line", m.line}, {"error", m.error}});
    }
    auto checkpoint = [&] {
      if (!dry_run)
        ctx_.checkpoint({{"date", date_},
                         {"input_sha256", input_sha256},
                         {"next", next},
                         {"parts", parts},
                         {"counts", counts_.json()}});
    };
    if (!resumed) checkpoint();

    const std::string base = mm_dd_yy(date_) + "_";
    const std::string result_key = folder_ + base + "result_" + stem(input) + ".csv";
    const std::string manifest_key = folder_ + base + "manifest_" + stem(input) + ".csv";
    auto summary = [&](const char* state) {
      Json out = counts_.json();
      out["state"] = state;
      out["input"] = input;
      out["batch_date"] = date_;
      out["folder"] = folder_;
      out["total"] = in.ids.size();
      out["done"] = next;
      out["remaining"] = in.ids.size() - next;
      out["duplicates"] = in.duplicates;
      out["dry_run"] = dry_run;
      out["seconds"] = timing_.json();  // this attempt's
      Json malformed = Json::array();
      for (size_t i = 0; i < in.malformed.size() && i < 100; ++i)
        malformed.push_back({{"line", in.malformed[i].line}, {"error", in.malformed[i].error}});
      out["malformed"] = malformed;
      out["malformed_count"] = in.malformed.size();
      if (!dry_run) {
        out["result"] = std::string(handoff_bucket) + "/" + result_key;
        out["manifest"] = std::string(handoff_bucket) + "/" + manifest_key;
      }
      return out;
    };

    Fonts fonts;
    std::string dry_rows;
    bool over_limit = false;
    ctx_.progress(next, in.ids.size());
    while (next < in.ids.size()) {
      if (ctx_.should_stop()) {
        ctx_.set_output(summary("stopped"));
        throw taskhost::Error(TH_ERR_CANCELLED, "stop requested after " + std::to_string(next) +
                                                    " of " + std::to_string(in.ids.size()) +
                                                    " ids");
      }
      const size_t end = std::min(in.ids.size(), next + ids_per_checkpoint);
      std::string rows;
      for (const Row& r : process({in.ids.begin() + next, in.ids.begin() + end}, fonts)) {
        rows += r.csv();
        counts_.add(r.status);
      }
      const auto recording = Clock::now();
      if (dry_run) {
        dry_rows += rows;
      } else {
        char name[32];
        std::snprintf(name, sizeof name, "part-%06llu.csv",
                      static_cast<unsigned long long>(parts + 1));
        handoff_.put(work + name, rows, "text/csv");
        ++parts;
      }
      next = end;
      checkpoint();
      ctx_.progress(next, in.ids.size());
      ctx_.set_output(summary("running"));
      timing_.record += seconds_since(recording);
      if (max_failures && counts_.failures() > static_cast<uint64_t>(*max_failures)) {
        over_limit = true;
        break;
      }
    }

    std::string result = result_header;
    if (dry_run) {
      result += dry_rows;
    } else {
      for (uint64_t i = 1; i <= parts; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "part-%06llu.csv", static_cast<unsigned long long>(i));
        result += handoff_.get(work + name);
      }
      handoff_.put(result_key, result, "text/csv");
      handoff_.put(manifest_key, manifest(result), "text/csv");
    }
    ctx_.attach_file("result.csv", "text/csv", result);
    if (over_limit) {
      ctx_.set_output(summary("stopped_at_max_failures"));
      throw taskhost::PermanentError(
          "max_failures " + std::to_string(*max_failures) +
          " exceeded: " + std::to_string(counts_.failures()) + " ids failed or not found, " +
          std::to_string(in.ids.size() - next) + " not attempted (the result lists the others)");
    }
    if (!dry_run)
      for (uint64_t i = 1; i <= parts; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "part-%06llu.csv", static_cast<unsigned long long>(i));
        handoff_.remove(work + name);
      }
    ctx_.set_output(summary("done"));
  }

 private:
  struct Pending {
    Row row;  // complete when there is nothing to build
    std::optional<std::future<Built>> built;
  };

  // The rows of these ids, in order. Builds run on worker threads while the
  // run's thread fetches the next submission's documents and uploads
  // finished bundles.
  std::vector<Row> process(const std::vector<int64_t>& ids, const Fonts& fonts) {
    std::unordered_map<int64_t, Claim> claims;
    std::unordered_map<int64_t, std::string> bad;
    std::optional<Timed> querying(timing_.db);
    const auto found = db_.query(
        "SELECT s.id::text, s.user_uuid::text, "
        "  to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), s.status, s.form::text, "
        "  coalesce((SELECT json_agg(json_build_object('document_type', a.document_type, "
        "     'file_name', a.file_name, 'object_key', a.object_key) ORDER BY a.id) "
        "   FROM form526_attachments a WHERE a.submission_id = s.id), '[]')::text "
        "FROM form526_submissions s WHERE s.id = ANY($1::bigint[])",
        {ids});
    querying.reset();
    for (const auto& r : found.rows) {
      const int64_t id = std::stoll(*r[0]);
      try {
        claims.emplace(id, claim_from_row(id, *r[1], *r[2], *r[3], *r[4], *r[5]));
      } catch (const std::exception& e) {
        bad[id] = std::string("the stored form cannot be read: ") + e.what();
      }
    }

    // Builds in flight: two per core keep the cores busy while the run's
    // thread waits for storage.
    const size_t window = std::clamp<size_t>(2 * std::thread::hardware_concurrency(), 2, 8);
    std::deque<Pending> pending;
    std::vector<Row> out;
    auto finish_front = [&] {
      Pending p = std::move(pending.front());
      pending.pop_front();
      if (p.built) finish(p.row, p.built->get());
      record(p.row);
      out.push_back(std::move(p.row));
    };
    for (const int64_t id : ids) {
      Pending p;
      p.row.id = id;
      const std::string id_name = mm_dd_yy(date_) + "_form_21-526EZ_vagov_" + std::to_string(id);
      p.row.object_key = folder_ + id_name + ".zip";
      auto c = claims.find(id);
      if (c == claims.end()) {
        p.row.status = bad.count(id) ? "failed" : "not_found";
        p.row.error = bad.count(id) ? bad[id] : "no submission with this id";
        p.row.object_key.clear();
      } else if (auto docs = fetch(c->second, &p.row.error)) {
        p.built = std::async(std::launch::async, build, std::cref(c->second), std::move(*docs),
                             std::cref(date_), id_name, std::cref(fonts));
      } else {
        p.row.status = "failed";
      }
      pending.push_back(std::move(p));
      while (pending.size() >= window) finish_front();
    }
    while (!pending.empty()) finish_front();
    return out;
  }

  // The submission's uploaded documents, or nullopt and *error naming the
  // first one missing. Storage failures other than a refusal end the
  // attempt: a retry may well find the bucket again.
  std::optional<std::vector<std::string>> fetch(const Claim& c, std::string* error) {
    Timed timed(timing_.fetch);
    std::vector<std::string> out;
    for (size_t i = 0; i < c.attachments.size(); ++i) {
      const auto& a = c.attachments[i];
      try {
        out.push_back(uploads_.get(a.object_key));
      } catch (const taskhost::Error& e) {
        if (e.code() != TH_ERR_NOT_FOUND && e.code() != TH_ERR_PERMISSION &&
            e.code() != TH_ERR_INVALID)
          throw;
        *error = "attachment " + std::to_string(i + 1) + " (" + a.document_type + " " +
                 a.file_name + "): " +
                 (e.code() == TH_ERR_NOT_FOUND
                      ? std::string(uploads_bucket) + "/" + a.object_key + " is missing"
                      : e.what());
        return std::nullopt;
      }
    }
    return out;
  }

  // Uploads a built bundle unless the same bytes are already there.
  void finish(Row& row, Built b) {
    timing_.render += b.render_s;
    timing_.zip += b.zip_s;
    timing_.hash += b.hash_s;
    if (!b.error.empty()) {
      row.status = "failed";
      row.error = b.error;
      return;
    }
    row.sha256 = b.sha256;
    Timed timed(timing_.upload);
    const auto existing = handoff_.head(row.object_key);
    if (existing && existing->size == b.zip.size() &&
        sha256_hex(handoff_.get(row.object_key)) == b.sha256) {
      row.status = "skipped_existing";
    } else if (dry_run_) {
      row.status = "would_upload";
      return;
    } else {
      handoff_.put(row.object_key, b.zip, "application/zip");
      row.status = "uploaded";
    }
    if (!dry_run_) row.url = handoff_.presign(row.object_key, presign_seconds);
  }

  void record(const Row& row) {
    Timed timed(timing_.record);
    Json event = {{"submission_id", row.id}, {"status", row.status}};
    if (!row.object_key.empty()) event["object_key"] = row.object_key;
    if (!row.sha256.empty()) event["sha256"] = row.sha256;
    if (!row.error.empty()) event["error"] = row.error;
    if (dry_run_) event["dry_run"] = true;
    ctx_.emit("item." + row.status, event);
  }

  // The batch's manifest: the bundles handed off, from the result rows.
  static std::string manifest(const std::string& result) {
    std::string out = "submission_id,file_name,object_key,sha256\n";
    size_t pos = result.find('\n') + 1;
    while (pos < result.size()) {
      const size_t end = result.find('\n', pos);
      const std::string line = result.substr(pos, end - pos);
      pos = end + 1;
      const size_t a = line.find(','), b = line.find(',', a + 1), c = line.find(',', b + 1),
                   d = line.find(',', c + 1);
      const std::string status = line.substr(a + 1, b - a - 1);
      if (status != "uploaded" && status != "skipped_existing") continue;
      const std::string key = line.substr(b + 1, c - b - 1);
      out += line.substr(0, a) + "," + key.substr(key.find_last_of('/') + 1) + "," + key + "," +
             line.substr(c + 1, d - c - 1) + "\n";
    }
    return out;
  }

  taskhost::Context& ctx_;
  taskhost::Bucket input_, uploads_, handoff_;
  taskhost::Db db_;
  std::string date_, folder_;
  bool dry_run_ = false;
  Counts counts_;
  Timing timing_;
};

struct Form526Resubmit {
  static constexpr const char* name = "form526-resubmit";
  static constexpr const char* version = "1.0.0";
  static constexpr const char* description =
      "Failed Form 526 submissions to zipped paper-submission bundles in the hand-off bucket";
  void run(taskhost::Context& ctx) { Resubmit(ctx).run(); }
};

}  // namespace
}  // namespace form526

TASKHOST_PLUGIN(form526::Form526Resubmit)
