-- One append-only, hash-chained audit log for the whole platform.
--
-- Each entry is chained inside the transaction of the change it records:
-- appending locks the single chain head row until commit, so the chain never
-- forks and an entry exists exactly when its change committed. Writers of
-- audited changes serialize on that lock for the rest of their transaction;
-- the engine appends a whole batch (a claim, a completion) at once.
--
--   hash = SHA-256("taskhost.audit.v1\n" || seq || "\n" || prev_hash || "\n" ||
--                  field(at as epoch microseconds) || field(actor) || field(action) ||
--                  field(run_id) || field(subject) || field(detail as jsonb text))
--   field(x) = octet_length(x) || ':' || x || ','   (NULL: '-,')
--
-- core/store/audit.cpp recomputes exactly this to verify the chain.

CREATE TABLE taskhost.audit_log (
  seq       bigint PRIMARY KEY,            -- 1, 2, 3, ... without gaps
  at        timestamptz NOT NULL,
  actor     text NOT NULL,                 -- cli:<user>, worker:<id>, scheduler, api key name
  action    text NOT NULL,                 -- run.started, schema.installed, ...
  run_id    uuid,
  subject   text,                          -- what it acted on: schema@version, bucket/key, ...
  detail    jsonb NOT NULL DEFAULT '{}',
  prev_hash text NOT NULL,
  hash      text NOT NULL
);
CREATE INDEX audit_log_run_idx ON taskhost.audit_log (run_id, seq) WHERE run_id IS NOT NULL;
-- at grows with seq, so a block-range index serves time ranges at little cost.
CREATE INDEX audit_log_at_idx ON taskhost.audit_log USING brin (at);

CREATE TABLE taskhost.audit_head (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq  bigint NOT NULL,
  hash text NOT NULL
);
INSERT INTO taskhost.audit_head VALUES (true, 0, repeat('0', 64));

CREATE TYPE taskhost.audit_entry AS (
  actor text, action text, run_id uuid, subject text, detail jsonb);

-- STABLE, not IMMUTABLE: convert_to() is only stable, and a SQL function
-- declared stricter than its body is not inlined (x40 slower per entry).
CREATE FUNCTION taskhost.audit_field(x text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN x IS NULL THEN '-,' ELSE octet_length(x) || ':' || x || ',' END
$$;

CREATE FUNCTION taskhost.audit_hash(seq bigint, prev_hash text, at timestamptz, actor text,
                                    action text, run_id uuid, subject text, detail jsonb)
RETURNS text LANGUAGE sql STABLE AS $$
  SELECT encode(sha256(convert_to(
    'taskhost.audit.v1' || E'\n' || seq || E'\n' || prev_hash || E'\n' ||
    taskhost.audit_field((extract(epoch FROM at) * 1000000)::bigint::text) ||
    taskhost.audit_field(actor) || taskhost.audit_field(action) ||
    taskhost.audit_field(run_id::text) || taskhost.audit_field(subject) ||
    taskhost.audit_field(detail::text), 'UTF8')), 'hex')
$$;

-- Appends entries in order; returns the last sequence number.
CREATE FUNCTION taskhost.audit_append(entries taskhost.audit_entry[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  e taskhost.audit_entry;
  s bigint;
  prev text;
  cur text;
  t timestamptz;
BEGIN
  SELECT h.seq, h.hash INTO s, prev FROM taskhost.audit_head h FOR UPDATE;
  t := clock_timestamp();  -- after the lock: time never goes backwards along the chain
  FOREACH e IN ARRAY entries LOOP
    s := s + 1;
    cur := taskhost.audit_hash(s, prev, t, e.actor, e.action, e.run_id, e.subject,
                               coalesce(e.detail, '{}'));
    INSERT INTO taskhost.audit_log VALUES
      (s, t, e.actor, e.action, e.run_id, e.subject, coalesce(e.detail, '{}'), prev, cur);
    prev := cur;
  END LOOP;
  UPDATE taskhost.audit_head SET seq = s, hash = prev;
  RETURN s;
END $$;

-- Append-only: no role may change or remove entries (a superuser can still
-- disable triggers; `taskhost audit verify` catches what it then does).
CREATE FUNCTION taskhost.audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'taskhost.audit_log is append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON taskhost.audit_log
  FOR EACH ROW EXECUTE FUNCTION taskhost.audit_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON taskhost.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION taskhost.audit_refuse();
REVOKE UPDATE, DELETE, TRUNCATE ON taskhost.audit_log FROM PUBLIC, CURRENT_USER;

-- Run state changes: every run_transitions row is audited in its statement,
-- so a transition without its entry (or the reverse) cannot commit.
CREATE FUNCTION taskhost.audit_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM taskhost.audit_append(array_agg(ROW(
      n.actor,
      CASE
        WHEN n.from_state IS NULL THEN 'run.submitted'
        WHEN n.to_state = 'running' THEN 'run.started'
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
CREATE TRIGGER run_transitions_audit AFTER INSERT ON taskhost.run_transitions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.audit_transitions();

-- Schema install and removal.
CREATE FUNCTION taskhost.audit_schemas() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM taskhost.audit_append(ARRAY[ROW(NEW.installed_by, 'schema.installed', NULL,
      NEW.name || '@' || NEW.version,
      jsonb_build_object('digest', NEW.digest, 'plugin_sha256', NEW.plugin_sha256)
    )::taskhost.audit_entry]);
  ELSIF NEW.removed_at IS NOT NULL AND OLD.removed_at IS NULL THEN
    PERFORM taskhost.audit_append(ARRAY[ROW(NEW.removed_by, 'schema.removed', NULL,
      NEW.name || '@' || NEW.version, '{}')::taskhost.audit_entry]);
  END IF;  -- a restore (removed_at cleared) is audited by the installer, who knows its actor
  RETURN NULL;
END $$;
CREATE TRIGGER task_schemas_audit AFTER INSERT OR UPDATE OF removed_at ON taskhost.task_schemas
  FOR EACH ROW EXECUTE FUNCTION taskhost.audit_schemas();
