-- The durable queue: leases, retries with backoff, idempotent submits,
-- stop requests, chains, and events that a resumed attempt supersedes.

-- "1h30m" -> 5400000; the schema's durations as written in its YAML.
CREATE FUNCTION taskhost.duration_ms(t text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT coalesce(sum(m[1]::bigint * CASE m[2] WHEN 'd' THEN 86400000 WHEN 'h' THEN 3600000
                                               WHEN 'm' THEN 60000 WHEN 's' THEN 1000 ELSE 1 END), 0)
  FROM regexp_matches(t, '([0-9]+)(ms|d|h|m|s)', 'g') AS m
$$;

-- Execution policy, copied from the schema at submit: a run keeps the policy
-- of the version it was submitted with.
ALTER TABLE taskhost.runs
  ADD COLUMN schema_name      text,
  ADD COLUMN max_attempts     integer NOT NULL DEFAULT 1,
  ADD COLUMN retry_initial_ms bigint NOT NULL DEFAULT 30000,
  ADD COLUMN retry_max_ms     bigint NOT NULL DEFAULT 3600000,
  ADD COLUMN retry_exponential boolean NOT NULL DEFAULT true,
  ADD COLUMN timeout_ms       bigint NOT NULL DEFAULT 3600000,
  ADD COLUMN concurrency      integer,
  ADD COLUMN run_after        timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN lease_owner      text,
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN stop_requested_at timestamptz,
  ADD COLUMN idempotency_key  text,
  ADD COLUMN parent_run_id    uuid REFERENCES taskhost.runs (id),
  ADD COLUMN chain_fired      boolean NOT NULL DEFAULT true,  -- false: chain steps pending
  ADD COLUMN checkpoint_seq   integer NOT NULL DEFAULT 0;

UPDATE taskhost.runs r SET
  schema_name = s.name,
  max_attempts = coalesce((s.spec->'retry'->>'max_attempts')::int, 1),
  retry_initial_ms = taskhost.duration_ms(s.spec->'retry'->>'initial'),
  retry_max_ms = taskhost.duration_ms(s.spec->'retry'->>'max'),
  retry_exponential = (s.spec->'retry'->>'backoff') IS DISTINCT FROM 'fixed',
  timeout_ms = taskhost.duration_ms(s.spec->>'timeout'),
  concurrency = (s.spec->>'concurrency')::int
FROM taskhost.task_schemas s WHERE s.id = r.schema_id;
ALTER TABLE taskhost.runs ALTER COLUMN schema_name SET NOT NULL;

CREATE UNIQUE INDEX runs_idempotency_idx ON taskhost.runs (schema_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_claim_idx ON taskhost.runs (run_after)
  WHERE state = 'queued' AND concurrency IS NULL;
CREATE INDEX runs_claim_limited_idx ON taskhost.runs (schema_name, run_after)
  WHERE state = 'queued' AND concurrency IS NOT NULL;
CREATE INDEX runs_lease_idx ON taskhost.runs (lease_expires_at)
  WHERE state IN ('running', 'pausing', 'cancelling');
CREATE INDEX runs_active_schema_idx ON taskhost.runs (schema_name)
  WHERE state IN ('running', 'pausing', 'cancelling');
CREATE INDEX runs_chain_pending_idx ON taskhost.runs (finished_at) WHERE NOT chain_fired;
CREATE INDEX runs_parent_idx ON taskhost.runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- An event emitted after its attempt's last checkpoint is superseded when a
-- later attempt resumes from that checkpoint (it will emit it again).
ALTER TABLE taskhost.run_events
  ADD COLUMN checkpoint_seq integer NOT NULL DEFAULT 0,
  ADD COLUMN superseded boolean NOT NULL DEFAULT false;

-- Files a run attached to its output (content stored inline for now).
CREATE TABLE taskhost.run_files (
  run_id       uuid NOT NULL REFERENCES taskhost.runs (id),
  name         text NOT NULL,
  content_type text NOT NULL DEFAULT 'application/octet-stream',
  content      bytea NOT NULL,
  sha256       text NOT NULL,
  attempt      integer NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, name)
);

-- Cron ticks: one row per (schema, minute) makes each tick fire once,
-- whichever scheduler gets there first.
CREATE TABLE taskhost.schedule_ticks (
  schema_name   text NOT NULL,
  scheduled_for timestamptz NOT NULL,
  run_id        uuid REFERENCES taskhost.runs (id),
  error         text,  -- why no run started (e.g. a required parameter)
  fired_by      text NOT NULL,
  fired_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, scheduled_for)
);
