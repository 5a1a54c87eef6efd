-- Dry runs and four-eyes approvals.
--
-- A dry run (runs.dry_run) is served by the host with every write of its
-- services refused; it needs no approval, since it cannot change anything.
-- A run of a schema saying approval: { required: true } starts in
-- awaiting_approval, which no worker claims, until an actor other than its
-- submitter approves it (-> queued) or rejects it (-> rejected, final).
-- The application layer checks who may decide; the triggers below make the
-- database refuse what would skip the decision, whoever writes the rows.

ALTER TABLE taskhost.runs
  ADD COLUMN dry_run boolean NOT NULL DEFAULT false,
  ADD COLUMN approval_required boolean NOT NULL DEFAULT false;

ALTER TABLE taskhost.runs DROP CONSTRAINT runs_state_check;
ALTER TABLE taskhost.runs ADD CONSTRAINT runs_state_check CHECK (state IN ('awaiting_approval',
  'queued', 'running', 'pausing', 'paused', 'cancelling', 'cancelled', 'succeeded', 'failed',
  'rejected'));
CREATE INDEX runs_awaiting_approval_idx ON taskhost.runs (created_at)
  WHERE state = 'awaiting_approval';

-- One decision per run, never changed: the runtime may only add it.
CREATE TABLE taskhost.run_approvals (
  run_id   uuid PRIMARY KEY REFERENCES taskhost.runs (id),
  decision text NOT NULL CHECK (decision IN ('approved', 'rejected')),
  actor    text NOT NULL,
  reason   text NOT NULL DEFAULT '',
  at       timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON taskhost.run_approvals TO taskhost;

-- The person behind an actor: "cli:alice" and "api:alice" are both alice,
-- so a submitter cannot approve through the other front door.
CREATE FUNCTION taskhost.actor_person(actor text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT regexp_replace(actor, '^(cli|api):', '') $$;

-- A new run needs approval exactly when its schema version says so and it
-- is no dry run; such a run starts awaiting it.
CREATE FUNCTION taskhost.runs_approval_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT coalesce((s.spec->'approval'->>'required')::boolean, false) AND NOT NEW.dry_run
  INTO NEW.approval_required FROM taskhost.task_schemas s WHERE s.id = NEW.schema_id;
  IF NEW.approval_required AND NEW.state <> 'awaiting_approval' THEN
    RAISE EXCEPTION 'run % of % needs an approval: it must start awaiting_approval, not %',
      NEW.id, NEW.schema_name, NEW.state USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER runs_approval_insert BEFORE INSERT ON taskhost.runs
  FOR EACH ROW EXECUTE FUNCTION taskhost.runs_approval_insert();

-- Who submitted a run, whether it is a dry run and whether it needs an
-- approval never change; a run that needs one leaves awaiting_approval for
-- nothing but rejected or cancelled without an approval on record.
CREATE FUNCTION taskhost.runs_approval_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.actor, NEW.dry_run, NEW.approval_required)
       IS DISTINCT FROM (OLD.actor, OLD.dry_run, OLD.approval_required) THEN
    RAISE EXCEPTION 'run %: its submitter, dry_run and approval_required never change', OLD.id
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.approval_required AND NEW.state IS DISTINCT FROM OLD.state
     AND NEW.state NOT IN ('awaiting_approval', 'rejected', 'cancelled')
     AND NOT EXISTS (SELECT 1 FROM taskhost.run_approvals a
                     WHERE a.run_id = NEW.id AND a.decision = 'approved') THEN
    RAISE EXCEPTION 'run % needs an approval before it may be %', OLD.id, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
-- (Heartbeats and progress, which leave these columns alone, skip it.)
CREATE TRIGGER runs_approval_update BEFORE UPDATE ON taskhost.runs
  FOR EACH ROW WHEN ((NEW.approval_required AND OLD.state IS DISTINCT FROM NEW.state)
                     OR OLD.approval_required <> NEW.approval_required
                     OR OLD.actor IS DISTINCT FROM NEW.actor OR OLD.dry_run <> NEW.dry_run)
  EXECUTE FUNCTION taskhost.runs_approval_update();

-- A decision is about a run awaiting one, and never by its submitter.
CREATE FUNCTION taskhost.run_approvals_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  SELECT state, actor INTO r FROM taskhost.runs WHERE id = NEW.run_id FOR UPDATE;
  IF r.state IS DISTINCT FROM 'awaiting_approval' THEN
    RAISE EXCEPTION 'run % is not awaiting approval (it is %)', NEW.run_id, r.state
      USING ERRCODE = 'check_violation';
  END IF;
  IF taskhost.actor_person(NEW.actor) = taskhost.actor_person(r.actor) THEN
    RAISE EXCEPTION 'run % was submitted by %: its submitter may not decide on it',
      NEW.run_id, r.actor USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER run_approvals_check BEFORE INSERT ON taskhost.run_approvals
  FOR EACH ROW EXECUTE FUNCTION taskhost.run_approvals_check();

-- Audit: an approval is run.approved, a rejection run.rejected (the rest as
-- in 0003).
CREATE OR REPLACE FUNCTION taskhost.audit_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM taskhost.audit_append(array_agg(ROW(
      n.actor,
      CASE
        WHEN n.from_state IS NULL THEN 'run.submitted'
        WHEN n.to_state = 'running' THEN 'run.started'
        WHEN n.to_state = 'queued' AND n.from_state = 'awaiting_approval' THEN 'run.approved'
        WHEN n.to_state = 'queued' AND n.from_state = 'paused' THEN 'run.resumed'
        WHEN n.to_state = 'queued' AND n.from_state IN ('failed', 'cancelled') THEN 'run.retried'
        WHEN n.to_state = 'queued' THEN 'run.requeued'
        WHEN n.to_state = 'pausing' THEN 'run.pause_requested'
        WHEN n.to_state = 'cancelling' THEN 'run.cancel_requested'
        ELSE 'run.' || n.to_state
      END,
      n.run_id, NULL,
      jsonb_build_object('from', n.from_state, 'to', n.to_state, 'attempt', n.attempt,
                         'reason', n.reason))::taskhost.audit_entry ORDER BY n.id))
  FROM new_rows n HAVING count(*) > 0;
  RETURN NULL;
END $$;

-- Webhooks: run.awaiting_approval, run.approved and run.rejected join the
-- run events (the rest as in 0005).
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
             'dry_run', CASE WHEN r.dry_run THEN true END,
             'output', CASE WHEN n.to_state = 'succeeded' THEN r.output END,
             'error_code', CASE WHEN n.to_state = 'failed' THEN r.error_code END,
             'error', CASE WHEN n.to_state = 'failed' THEN r.error END)) AS data
    FROM new_rows n
    JOIN taskhost.runs r ON r.id = n.run_id
    JOIN taskhost.task_schemas s ON s.id = r.schema_id
    CROSS JOIN LATERAL (SELECT CASE
        WHEN n.to_state = 'queued' AND n.from_state = 'paused' THEN 'run.resumed'
        WHEN n.to_state = 'queued' AND n.from_state = 'awaiting_approval' THEN 'run.approved'
        WHEN n.to_state IN ('awaiting_approval', 'queued', 'running', 'paused', 'succeeded',
                            'failed', 'cancelled', 'rejected')
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
