-- The webhook outbox. Triggers write a delivery row in the same transaction
-- as the state change it announces, so no change commits unannounced and no
-- announcement outlives a rolled-back change. Dispatchers (in the workers)
-- deliver the rows; a delivery keeps its message id across retries.

CREATE FUNCTION taskhost.iso_utc(t timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE TABLE taskhost.webhook_deliveries (
  id               bigserial PRIMARY KEY,
  message_id       text NOT NULL UNIQUE
                     DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
  schema_name      text NOT NULL,       -- whose secrets sign it
  run_id           uuid NOT NULL REFERENCES taskhost.runs (id),
  url              text NOT NULL,
  event            text NOT NULL,
  body             text NOT NULL,       -- the exact bytes signed and sent
  state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts         integer NOT NULL DEFAULT 0,  -- recorded attempts
  next_attempt_at  timestamptz,         -- after a failed attempt, for operators
  last_status      integer,             -- HTTP status of the last attempt
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz          -- delivered, or given up (dead letter)
);
CREATE INDEX webhook_deliveries_stream_idx ON taskhost.webhook_deliveries (run_id, url, id)
  WHERE state = 'pending';
CREATE INDEX webhook_deliveries_dead_idx ON taskhost.webhook_deliveries (id)
  WHERE state = 'dead';
CREATE INDEX webhook_deliveries_run_idx ON taskhost.webhook_deliveries (run_id);

-- A run's events reach an endpoint in order: the pending deliveries of one
-- (run, url) form a stream, sent one after another by one dispatcher at a
-- time. Dispatchers claim streams by due_at (NULL: nothing pending), so a
-- claim costs the same whatever the backlog; a failure pushes the whole
-- stream back to its retry time. version counts enqueues, so a dispatcher
-- never idles a stream that gained a delivery after it looked.
CREATE TABLE taskhost.webhook_streams (
  run_id           uuid NOT NULL REFERENCES taskhost.runs (id),
  url              text NOT NULL,
  due_at           timestamptz,
  lease_expires_at timestamptz,         -- while a dispatcher sends it
  version          bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, url)
);
CREATE INDEX webhook_streams_due_idx ON taskhost.webhook_streams (due_at)
  WHERE due_at IS NOT NULL;

-- Endpoints that answered 410 Gone: their deliveries go straight to the dead
-- letters until an operator redelivers one of them.
CREATE TABLE taskhost.webhook_disabled_endpoints (
  url         text PRIMARY KEY,
  disabled_at timestamptz NOT NULL DEFAULT now(),
  reason      text NOT NULL
);

-- Makes a stream due (unless it waits for a retry) and wakes dispatchers.
CREATE FUNCTION taskhost.webhook_stream_due(run uuid, target text) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO taskhost.webhook_streams (run_id, url, due_at) VALUES (run, target, now())
  ON CONFLICT (run_id, url) DO UPDATE
    SET due_at = coalesce(webhook_streams.due_at, now()), version = webhook_streams.version + 1;
  SELECT pg_notify('taskhost_webhooks', '');
$$;

-- The host config's webhooks.default_url, which the host puts in its
-- session setting: schemas without hooks announce their run state changes
-- there, when the host making the change has one.
CREATE FUNCTION taskhost.webhook_default_url() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('taskhost.webhook_default_url', true), '')
$$;

-- Queues `event` for the run's schema version if its hooks subscribe to it
-- (or, without hooks, for a run state change when there is a default URL).
-- data is merged into the event's "data" object.
CREATE FUNCTION taskhost.webhook_enqueue(run uuid, event text, data jsonb, at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  target text;
  schema_name text;
  schema_version text;
  disabled text;
BEGIN
  SELECT CASE WHEN s.spec->'hooks' ? 'url' THEN s.spec->'hooks'->>'url'
              ELSE taskhost.webhook_default_url() END,
         s.name, s.version
  INTO target, schema_name, schema_version
  FROM taskhost.runs r JOIN taskhost.task_schemas s ON s.id = r.schema_id
  WHERE r.id = run
    AND CASE WHEN s.spec->'hooks' ? 'url' THEN s.spec->'hooks'->'events' ? event
             ELSE event IN ('run.queued', 'run.started', 'run.paused', 'run.resumed',
                            'run.succeeded', 'run.failed', 'run.cancelled') END;
  IF target IS NULL THEN
    RETURN false;
  END IF;
  SELECT reason INTO disabled FROM taskhost.webhook_disabled_endpoints WHERE url = target;
  INSERT INTO taskhost.webhook_deliveries (schema_name, run_id, url, event, body,
                                           state, last_error, finished_at)
  VALUES (schema_name, run, target, event,
          jsonb_build_object('type', event, 'timestamp', taskhost.iso_utc(at),
            'data', jsonb_build_object('run_id', run, 'schema', schema_name,
                                       'version', schema_version) || data)::text,
          CASE WHEN disabled IS NULL THEN 'pending' ELSE 'dead' END,
          'endpoint disabled: ' || disabled,
          CASE WHEN disabled IS NOT NULL THEN now() END);
  IF disabled IS NULL THEN
    PERFORM taskhost.webhook_stream_due(run, target);
  END IF;
  RETURN true;
END $$;

-- Run state changes, named as webhook events. A stop request (pausing,
-- cancelling) is not an event: its outcome is. Set-based: a batch of
-- transitions (a worker's claim or completion) becomes its delivery rows and
-- stream updates in two statements, not a function call per run.
CREATE FUNCTION taskhost.webhook_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  streams integer;
BEGIN
  WITH events AS (
    SELECT n.id, n.run_id, n.at, s.name, s.version, e.event,
           CASE WHEN s.spec->'hooks' ? 'url' THEN s.spec->'hooks'->>'url'
                ELSE taskhost.webhook_default_url() END AS url,
           jsonb_strip_nulls(jsonb_build_object('state', n.to_state, 'attempt', n.attempt,
             'actor', n.actor, 'reason', nullif(n.reason, ''),
             'output', CASE WHEN n.to_state = 'succeeded' THEN r.output END,
             'error_code', CASE WHEN n.to_state = 'failed' THEN r.error_code END,
             'error', CASE WHEN n.to_state = 'failed' THEN r.error END)) AS data
    FROM new_rows n
    JOIN taskhost.runs r ON r.id = n.run_id
    JOIN taskhost.task_schemas s ON s.id = r.schema_id
    CROSS JOIN LATERAL (SELECT CASE
        WHEN n.to_state = 'queued' AND n.from_state = 'paused' THEN 'run.resumed'
        WHEN n.to_state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')
          THEN 'run.' || CASE n.to_state WHEN 'running' THEN 'started' ELSE n.to_state END
      END AS event) e
    WHERE e.event IS NOT NULL
      AND CASE WHEN s.spec->'hooks' ? 'url' THEN s.spec->'hooks'->'events' ? e.event
               ELSE taskhost.webhook_default_url() IS NOT NULL END),
  queued AS (
    INSERT INTO taskhost.webhook_deliveries (schema_name, run_id, url, event, body,
                                             state, last_error, finished_at)
    SELECT v.name, v.run_id, v.url, v.event,
           jsonb_build_object('type', v.event, 'timestamp', taskhost.iso_utc(v.at),
             'data', jsonb_build_object('run_id', v.run_id, 'schema', v.name,
                                        'version', v.version) || v.data)::text,
           CASE WHEN d.url IS NULL THEN 'pending' ELSE 'dead' END,
           'endpoint disabled: ' || d.reason,
           CASE WHEN d.url IS NOT NULL THEN now() END
    FROM events v LEFT JOIN taskhost.webhook_disabled_endpoints d ON d.url = v.url
    ORDER BY v.id  -- ids in transition order: a run's events go out in order
    RETURNING run_id, url, state)
  INSERT INTO taskhost.webhook_streams (run_id, url, due_at)
  SELECT DISTINCT run_id, url, now() FROM queued WHERE state = 'pending'
  ON CONFLICT (run_id, url) DO UPDATE
    SET due_at = coalesce(webhook_streams.due_at, now()), version = webhook_streams.version + 1;
  GET DIAGNOSTICS streams = ROW_COUNT;
  IF streams > 0 THEN
    PERFORM pg_notify('taskhost_webhooks', '');
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER run_transitions_webhooks AFTER INSERT ON taskhost.run_transitions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.webhook_transitions();

-- Events a plugin emitted (item.failed, ...).
CREATE FUNCTION taskhost.webhook_run_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM taskhost.webhook_enqueue(NEW.run_id, NEW.name,
    jsonb_build_object('attempt', NEW.attempt, 'payload', NEW.payload), NEW.at);
  RETURN NULL;
END $$;
CREATE TRIGGER run_events_webhooks AFTER INSERT ON taskhost.run_events
  FOR EACH ROW EXECUTE FUNCTION taskhost.webhook_run_events();

-- run.progress, at most one per run every 5 seconds (and the final count).
ALTER TABLE taskhost.runs ADD COLUMN progress_announced_at timestamptz;
CREATE FUNCTION taskhost.webhook_progress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.progress_announced_at IS NULL
      OR NEW.progress_announced_at <= now() - interval '5 seconds'
      OR NEW.progress_done = NEW.progress_total)
     AND taskhost.webhook_enqueue(NEW.id, 'run.progress',
           jsonb_build_object('attempt', NEW.attempt, 'done', NEW.progress_done,
                              'total', NEW.progress_total), now()) THEN
    NEW.progress_announced_at := now();
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER runs_progress_webhooks BEFORE UPDATE OF progress_done ON taskhost.runs
  FOR EACH ROW WHEN (NEW.progress_done IS DISTINCT FROM OLD.progress_done)
  EXECUTE FUNCTION taskhost.webhook_progress();
