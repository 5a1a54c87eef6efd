#include "engine/scheduler.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <optional>

#include "common/pattern.hpp"
#include "schema/params.hpp"
#include "store/queue.hpp"

namespace taskhost {
namespace {

template <size_t N>
std::string int_array(const std::bitset<N>& bits) {
  std::string out = "{";
  for (size_t i = 0; i < N; ++i)
    if (bits.test(i)) out += (out.size() > 1 ? "," : "") + std::to_string(i);
  return out + "}";
}

// The value at a dotted path ("output.key") in ctx, or null.
Json lookup(const Json& ctx, const std::string& path) {
  const Json* at = &ctx;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string key = path.substr(start, dot - start);
    if (!at->is_object() || !at->contains(key)) return Json();
    at = &(*at)[key];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return *at;
}

// "{{ output.key }}" alone keeps the value's JSON type; templates inside
// other text are replaced by their text. A missing value is an error.
Json render(const std::string& text, const Json& ctx) {
  // A dotted path, or a for_each step's element or its index alone.
  static const Pattern name_re("[a-z_]+(\\.[A-Za-z0-9_-]+)+|item|index");
  auto value = [&](const std::string& name) {
    Json v = lookup(ctx, name);
    if (v.is_null()) throw Error(ErrorKind::invalid, "'" + name + "' has no value");
    return v;
  };
  // The name inside the placeholder at text[open] ("{{", spaces, name,
  // spaces, "}}"), and where it ends; nullopt when there is none there.
  auto placeholder = [&](size_t open) -> std::optional<std::pair<std::string, size_t>> {
    size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) return std::nullopt;
    std::string inner = text.substr(open + 2, close - open - 2);
    const char* space = " \t\n\r\f\v";
    inner.erase(0, inner.find_first_not_of(space));
    inner.erase(inner.find_last_not_of(space) + 1);
    if (!name_re.matches(inner)) return std::nullopt;
    return std::pair{inner, close + 2};
  };
  if (auto whole = text.rfind("{{", 0) == 0 ? placeholder(0) : std::nullopt;
      whole && whole->second == text.size())
    return value(whole->first);
  std::string out;
  size_t at = 0;
  for (size_t open; (open = text.find("{{", at)) != std::string::npos;) {
    out.append(text, at, open - at);
    if (auto p = placeholder(open)) {
      Json v = value(p->first);
      out += v.is_string() ? v.get<std::string>() : v.dump();
      at = p->second;
    } else {
      out += "{{";
      at = open + 2;
    }
  }
  out.append(text, at);
  return out;
}

// The highest installed version of each schema that has a schedule.
std::vector<InstalledSchema> scheduled(pg::Connection& conn) {
  auto ids = conn.exec(
      "SELECT id FROM taskhost.task_schemas WHERE removed_at IS NULL AND name IN ("
      "  SELECT name FROM taskhost.task_schemas WHERE removed_at IS NULL "
      "  AND spec->>'schedule' IS NOT NULL)");
  std::map<std::string, std::vector<InstalledSchema>> by_name;
  for (int i = 0; i < ids.rows(); ++i) {
    auto s = schema_by_id(conn, ids.integer(i, 0));
    by_name[s.schema.name].push_back(std::move(s));
  }
  std::vector<InstalledSchema> out;
  for (auto& [name, versions] : by_name)
    if (const auto& s = latest(versions); s.schema.schedule) out.push_back(s);
  return out;
}

}  // namespace

int fire_schedules(pg::Connection& conn, const std::string& actor) {
  int fired = 0;
  for (const auto& s : scheduled(conn)) {
    std::string why;
    auto spec = CronSpec::parse(*s.schema.schedule, &why);
    if (!spec) continue;  // validated at install
    auto due = conn.exec(
        "SELECT m::text FROM generate_series(date_trunc('minute', now()) - interval '1 day', "
        "  date_trunc('minute', now()), interval '1 minute') AS m, "
        "  LATERAL (SELECT m AT TIME ZONE $1 AS l) local "
        "WHERE m >= $2::timestamptz "
        "  AND extract(minute FROM l)::int = ANY($3::int[]) "
        "  AND extract(hour FROM l)::int = ANY($4::int[]) "
        "  AND extract(month FROM l)::int = ANY($5::int[]) "
        "  AND CASE WHEN $8 AND $9 THEN extract(day FROM l)::int = ANY($6::int[]) "
        "                OR extract(dow FROM l)::int = ANY($7::int[]) "
        "           WHEN $8 THEN extract(day FROM l)::int = ANY($6::int[]) "
        "           WHEN $9 THEN extract(dow FROM l)::int = ANY($7::int[]) "
        "           ELSE true END "
        "ORDER BY m DESC LIMIT 1",
        {s.schema.timezone, s.installed_at, int_array(spec->minutes), int_array(spec->hours),
         int_array(spec->months), int_array(spec->days_of_month), int_array(spec->days_of_week),
         spec->dom_restricted, spec->dow_restricted});
    if (due.rows() == 0) continue;
    const std::string tick = due.text(0, 0);

    pg::Transaction tx(conn);
    auto claimed = tx.exec(
        "INSERT INTO taskhost.schedule_ticks (schema_name, scheduled_for, fired_by) "
        "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING scheduled_for",
        {s.schema.name, tick, actor});
    if (claimed.rows() == 0) continue;  // fired already, here or elsewhere
    std::vector<Diagnostic> errors;
    Json params = validate_params(s.schema, Json::object(), &errors);
    if (!errors.empty()) {
      // Recorded on the tick, so that the tick is not tried again and again.
      tx.exec(
          "UPDATE taskhost.schedule_ticks SET error = $3 WHERE schema_name = $1 AND "
          "scheduled_for = $2",
          {s.schema.name, tick, format_diagnostics(errors)});
      tx.commit();
      spdlog::error("schedule of {} cannot fire tick {}: {}", s.schema.ref(), tick,
                    format_diagnostics(errors));
      continue;
    }
    SubmitRequest req;
    req.schema = &s;
    req.params = std::move(params);
    req.actor = actor;
    req.reason = "schedule '" + *s.schema.schedule + "' tick " + tick;
    auto run = enqueue_in(tx, req);
    tx.exec(
        "UPDATE taskhost.schedule_ticks SET run_id = $3 WHERE schema_name = $1 AND "
        "scheduled_for = $2",
        {s.schema.name, tick, run.run_id});
    tx.commit();
    spdlog::info("schedule of {} fired tick {}: run {}", s.schema.ref(), tick, run.run_id);
    ++fired;
  }
  return fired;
}

namespace {
// The parent's record says why a follow-up did not start.
void chain_failed(pg::Transaction& tx, const std::string& id, const std::string& run,
                  const std::string& why) {
  spdlog::error("run {}: chain step {} not started: {}", id, run, why);
  tx.exec(
      "INSERT INTO taskhost.run_events (run_id, attempt, name, payload, checkpoint_seq) "
      "SELECT id, attempt, 'chain.failed', $2::jsonb, checkpoint_seq FROM taskhost.runs "
      "WHERE id = $1",
      {id, Json{{"run", run}, {"error", why}}.dump()});
}
}  // namespace

int fire_chains(pg::Connection& conn, const std::string& actor) {
  auto pending = conn.exec(
      "SELECT id FROM taskhost.runs WHERE NOT chain_fired AND state IN ('succeeded', 'failed') "
      "ORDER BY finished_at LIMIT 100");
  int started = 0;
  for (int i = 0; i < pending.rows(); ++i) {
    const std::string id = pending.text(i, 0);
    pg::Transaction tx(conn);
    auto parent = tx.exec(
        "UPDATE taskhost.runs SET chain_fired = true WHERE id = $1 AND NOT chain_fired "
        "RETURNING state, schema_id, coalesce(output, '{}')::text, params::text, attempt, dry_run",
        {id});
    if (parent.rows() == 0) continue;  // another worker fired it
    auto schema = schema_by_id(conn, parent.integer(0, 1));
    const auto& steps =
        parent.text(0, 0) == "succeeded" ? schema.schema.on_success : schema.schema.on_failure;
    const Json ctx = {{"output", Json::parse(parent.text(0, 2))},
                      {"params", Json::parse(parent.text(0, 3))},
                      {"run", {{"id", id}}}};
    // A dry run's follow-ups are dry runs too: it must not start real work.
    const bool dry_run = parent.boolean(0, 5);
    // One follow-up of step, its params rendered in `context`; one that
    // cannot start leaves the parent a chain.failed event saying why.
    auto start = [&](const ChainStep& step, const Json& context,
                     const std::optional<std::string>& key) {
      try {
        auto target = find_schema(conn, SchemaRef::parse(step.run));
        Json params = Json::object();
        std::vector<std::string> assignments;
        for (const auto& [name, text] : step.params) {
          Json v = render(text, context);
          if (v.is_string())
            assignments.push_back(name + "=" + v.get<std::string>());  // typed by the target
          else
            params[name] = v;
        }
        std::vector<Diagnostic> errors;
        Json typed = params_from_assignments(target.schema, assignments, &errors);
        for (auto& [k, v] : typed.items()) params[k] = v;
        Json valid = validate_params(target.schema, params, &errors);
        if (!errors.empty()) throw Error(ErrorKind::invalid, format_diagnostics(errors));
        auto child = enqueue_in(
            tx, {&target, valid, actor, key, id,
                 std::string(dry_run ? "dry run " : "") + "chained from run " + id, dry_run});
        spdlog::info("run {} chained {} as run {}", id, step.run, child.run_id);
        ++started;
      } catch (const Error& e) {
        chain_failed(tx, id, step.run, e.what());
      }
    };
    for (size_t n = 0; n < steps.size(); ++n) {
      const ChainStep& step = steps[n];
      if (!step.for_each) {
        start(step, ctx, std::nullopt);
        continue;
      }
      // One child per element, queued here in element order (the claim
      // keeps it: runs.queued_seq), each under a key naming its parent,
      // step and element, so no element starts twice.
      const Json items = lookup(ctx, *step.for_each);
      if (!items.is_array()) {
        chain_failed(tx, id, step.run, *step.for_each + " is not an array in the run's output");
        continue;
      }
      for (size_t i = 0; i < items.size(); ++i) {
        Json item_ctx = ctx;
        item_ctx["item"] = items[i];
        item_ctx["index"] = i;
        start(step, item_ctx, "chain:" + id + ":" + std::to_string(n) + ":" + std::to_string(i));
      }
    }
    tx.commit();
  }
  return started;
}

}  // namespace taskhost
