-- Task schemas and runs: the platform's first tables, in their own namespace.

CREATE TABLE taskhost.task_schemas (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL,
  version       text NOT NULL,
  description   text NOT NULL DEFAULT '',
  yaml          text NOT NULL,                 -- the exact file installed
  digest        text NOT NULL,                 -- SHA-256 of yaml
  plugin_path   text NOT NULL,
  plugin_sha256 text NOT NULL,
  spec          jsonb NOT NULL,                -- normalised form, for readers
  installed_at  timestamptz NOT NULL DEFAULT now(),
  installed_by  text NOT NULL,
  removed_at    timestamptz,                   -- removal hides, never deletes
  removed_by    text,
  -- (name, version) names one file forever, even after removal.
  UNIQUE (name, version)
);

CREATE TABLE taskhost.runs (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  schema_id      bigint NOT NULL REFERENCES taskhost.task_schemas (id),
  params         jsonb NOT NULL,
  state          text NOT NULL CHECK (state IN ('queued', 'running', 'pausing', 'paused',
                   'cancelling', 'cancelled', 'succeeded', 'failed')),
  attempt        integer NOT NULL DEFAULT 0,   -- 0 until first started
  actor          text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  started_at     timestamptz,
  finished_at    timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  progress_done  bigint,
  progress_total bigint,
  checkpoint     jsonb,
  output         jsonb,
  error_code     text,
  error          text
);
CREATE INDEX runs_schema_idx ON taskhost.runs (schema_id, created_at DESC);
CREATE INDEX runs_state_idx ON taskhost.runs (state, created_at);
CREATE INDEX runs_created_idx ON taskhost.runs (created_at DESC);

-- Every state change with who made it and why.
CREATE TABLE taskhost.run_transitions (
  id         bigserial PRIMARY KEY,
  run_id     uuid NOT NULL REFERENCES taskhost.runs (id),
  attempt    integer NOT NULL,
  from_state text,
  to_state   text NOT NULL,
  actor      text NOT NULL,
  reason     text NOT NULL DEFAULT '',
  at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_transitions_run_idx ON taskhost.run_transitions (run_id, id);

-- Events a plugin emits (per-item results), stored as they happen.
CREATE TABLE taskhost.run_events (
  id      bigserial PRIMARY KEY,
  run_id  uuid NOT NULL REFERENCES taskhost.runs (id),
  attempt integer NOT NULL,
  name    text NOT NULL,
  payload jsonb NOT NULL,
  at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run_idx ON taskhost.run_events (run_id, id);
