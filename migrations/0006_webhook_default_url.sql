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

CREATE OR REPLACE FUNCTION taskhost.webhook_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM taskhost.webhook_enqueue(n.run_id, e.event,
    jsonb_strip_nulls(jsonb_build_object('state', n.to_state, 'attempt', n.attempt,
      'actor', n.actor, 'reason', nullif(n.reason, ''),
      'output', CASE WHEN n.to_state = 'succeeded' THEN r.output END,
      'error_code', CASE WHEN n.to_state = 'failed' THEN r.error_code END,
      'error', CASE WHEN n.to_state = 'failed' THEN r.error END)), n.at)
  FROM new_rows n
  JOIN taskhost.runs r ON r.id = n.run_id
  JOIN taskhost.task_schemas s ON s.id = r.schema_id
    AND (s.spec->'hooks' ? 'url' OR taskhost.webhook_default_url() IS NOT NULL)
  CROSS JOIN LATERAL (SELECT CASE
      WHEN n.to_state = 'queued' AND n.from_state = 'paused' THEN 'run.resumed'
      WHEN n.to_state IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')
        THEN 'run.' || CASE n.to_state WHEN 'running' THEN 'started' ELSE n.to_state END
    END AS event) e
  WHERE e.event IS NOT NULL
  ORDER BY n.id;
  RETURN NULL;
END $$;
