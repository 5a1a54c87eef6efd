-- A default webhook endpoint from the host config (webhooks.default_url):
-- schemas without hooks of their own announce their run state changes
-- there. The host that makes a change names it in its session setting
-- taskhost.webhook_default_url, so the triggers apply that host's config.

CREATE FUNCTION taskhost.webhook_default_url() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('taskhost.webhook_default_url', true), '')
$$;

CREATE OR REPLACE FUNCTION taskhost.webhook_enqueue(run uuid, event text, data jsonb,
                                                   at timestamptz)
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

-- Run state changes, set-based: a batch of transitions (a worker's claim or
-- completion) becomes its delivery rows and stream updates in two
-- statements, not a function call per run.
CREATE OR REPLACE FUNCTION taskhost.webhook_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
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
