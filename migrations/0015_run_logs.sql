-- A run's log: what its plugin logged (shipped in batches by the worker) and
-- what the host did about each attempt (one line per transition, written by
-- the trigger below in the transition's own transaction), numbered per run.
CREATE TABLE taskhost.run_logs (
  run_id  uuid NOT NULL REFERENCES taskhost.runs (id),
  seq     bigint NOT NULL,               -- 1, 2, ... per run, across attempts
  attempt integer NOT NULL,
  at      timestamptz NOT NULL,
  level   text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
  source  text NOT NULL CHECK (source IN ('plugin', 'host')),
  message text NOT NULL,
  PRIMARY KEY (run_id, seq)
);

-- Per run: the last seq given, the plugin's lines stored and what the bound
-- dropped. Its row lock orders concurrent appends of one run.
CREATE TABLE taskhost.run_log_totals (
  run_id        uuid PRIMARY KEY REFERENCES taskhost.runs (id),
  last_seq      bigint NOT NULL DEFAULT 0,
  lines         bigint NOT NULL DEFAULT 0,  -- plugin lines stored
  bytes         bigint NOT NULL DEFAULT 0,
  dropped_lines bigint NOT NULL DEFAULT 0,
  dropped_bytes bigint NOT NULL DEFAULT 0,
  note_seq      bigint                      -- the line saying what was dropped
);

-- Appends one attempt's plugin lines, fenced (only while that attempt owns
-- the run: a worker that lost the run adds nothing) and bounded (max_lines,
-- max_bytes per run; past the bound lines are counted, with dropped_lines/
-- dropped_bytes more that the caller counted itself, and one note line says
-- how many). Returns whether the run's log is full (the caller may then only
-- count), or NULL when fenced out. The host's lines (below) are not bounded:
-- an operator must see why an attempt ended.
CREATE FUNCTION taskhost.append_run_logs(p_run uuid, p_attempt integer, p_ats timestamptz[],
    p_levels text[], p_messages text[], p_max_lines bigint, p_max_bytes bigint,
    p_dropped_lines bigint, p_dropped_bytes bigint)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, taskhost AS $$
DECLARE
  t taskhost.run_log_totals;
  kept integer;
  kept_bytes bigint;
  n integer := coalesce(array_length(p_messages, 1), 0);
BEGIN
  IF NOT EXISTS (SELECT 1 FROM taskhost.runs WHERE id = p_run AND attempt = p_attempt
                   AND state IN ('running', 'pausing', 'cancelling')) THEN
    RETURN NULL;
  END IF;
  INSERT INTO taskhost.run_log_totals AS r (run_id) VALUES (p_run)
    ON CONFLICT (run_id) DO UPDATE SET last_seq = r.last_seq
    RETURNING * INTO t;
  -- Lines stay in order and the kept ones are a prefix: the first one past
  -- either bound ends the stored part for good.
  SELECT count(*), coalesce(sum(b), 0) INTO kept, kept_bytes FROM (
    SELECT o, octet_length(m) AS b, sum(octet_length(m)) OVER (ORDER BY o) AS cum
    FROM unnest(p_messages) WITH ORDINALITY AS x(m, o)) x
  WHERE t.dropped_lines = 0 AND p_dropped_lines = 0
    AND t.lines + o <= p_max_lines AND t.bytes + cum <= p_max_bytes;
  INSERT INTO taskhost.run_logs (run_id, seq, attempt, at, level, source, message)
    SELECT p_run, t.last_seq + o, p_attempt, p_ats[o], p_levels[o], 'plugin', p_messages[o]
    FROM generate_series(1, kept) AS o;
  t.last_seq := t.last_seq + kept;
  t.lines := t.lines + kept;
  t.bytes := t.bytes + kept_bytes;
  IF kept < n OR p_dropped_lines > 0 THEN
    t.dropped_lines := t.dropped_lines + (n - kept) + p_dropped_lines;
    t.dropped_bytes := t.dropped_bytes + p_dropped_bytes
      + (SELECT coalesce(sum(octet_length(m)), 0) FROM unnest(p_messages[kept + 1:]) AS m);
    IF t.note_seq IS NULL THEN
      t.last_seq := t.last_seq + 1;
      t.note_seq := t.last_seq;
      INSERT INTO taskhost.run_logs (run_id, seq, attempt, at, level, source, message)
        VALUES (p_run, t.note_seq, p_attempt, now(), 'warn', 'host', '');
    END IF;
    UPDATE taskhost.run_logs SET message = format(
        'this run''s log is full (%s lines, %s bytes at most): %s later line(s), %s bytes, '
        'were dropped', p_max_lines, p_max_bytes, t.dropped_lines, t.dropped_bytes)
      WHERE run_id = p_run AND seq = t.note_seq;
  END IF;
  UPDATE taskhost.run_log_totals SET last_seq = t.last_seq, lines = t.lines, bytes = t.bytes,
      dropped_lines = t.dropped_lines, dropped_bytes = t.dropped_bytes, note_seq = t.note_seq
    WHERE run_id = p_run;
  RETURN t.note_seq IS NOT NULL;
END $$;

-- The host's line for each transition: who moved the run where, why, and for
-- an attempt that failed, the error (a limit exceeded, a signal, a refusal).
-- Set-based, as submits, claims and completions come in batches; totals rows
-- are taken in run id order, so concurrent batches cannot deadlock on them.
CREATE FUNCTION taskhost.log_run_transitions() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, taskhost AS $$
BEGIN
  WITH lines AS (
    SELECT n.run_id, n.attempt,
           row_number() OVER (PARTITION BY n.run_id ORDER BY n.id) AS k,
           count(*) OVER (PARTITION BY n.run_id) AS per_run,
           CASE WHEN n.to_state = 'failed' THEN 'error'
                WHEN n.to_state = 'queued' AND n.from_state IS NOT NULL AND r.error IS NOT NULL
                  THEN 'warn'
                ELSE 'info' END AS level,
           format('%s%s by %s: %s%s%s', coalesce(n.from_state || ' -> ', ''), n.to_state,
                  n.actor, n.reason,
                  CASE WHEN n.to_state IN ('queued', 'failed') AND n.from_state IS NOT NULL
                            AND r.error IS NOT NULL
                       THEN format(' (%s: %s)', r.error_code, r.error) ELSE '' END,
                  CASE WHEN n.to_state = 'queued' AND n.from_state IS NOT NULL
                            AND r.run_after > now()
                       THEN format('; next attempt at %s', r.run_after) ELSE '' END) AS message
    FROM new_rows n JOIN taskhost.runs r ON r.id = n.run_id),
  counts AS (SELECT run_id, max(per_run) AS c FROM lines GROUP BY run_id),
  totals AS (
    INSERT INTO taskhost.run_log_totals AS t (run_id, last_seq)
    SELECT run_id, c FROM counts ORDER BY run_id
    ON CONFLICT (run_id) DO UPDATE SET last_seq = t.last_seq + excluded.last_seq
    RETURNING t.run_id, t.last_seq)
  INSERT INTO taskhost.run_logs (run_id, seq, attempt, at, level, source, message)
  SELECT l.run_id, t.last_seq - l.per_run + l.k, l.attempt, now(), l.level, 'host', l.message
  FROM lines l JOIN totals t USING (run_id);
  RETURN NULL;
END $$;
CREATE TRIGGER run_transitions_log AFTER INSERT ON taskhost.run_transitions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.log_run_transitions();

-- Live streams (`taskhost serve`, `runs logs -f`) hear of a run's changes on
-- one channel, the run id as payload: its state or progress, a new event, new
-- log lines. PostgreSQL folds the same notification within a transaction.
CREATE FUNCTION taskhost.notify_run_activity() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, taskhost AS $$
BEGIN
  IF TG_LEVEL = 'ROW' THEN
    PERFORM pg_notify('taskhost_run_activity', NEW.id::text);
  ELSE
    PERFORM pg_notify('taskhost_run_activity', d.run_id::text)
      FROM (SELECT DISTINCT run_id FROM new_rows) d;
  END IF;
  RETURN NULL;
END $$;
-- Not on a heartbeat (lease columns only).
CREATE TRIGGER runs_activity AFTER UPDATE OF state, attempt, progress_done, progress_total, output
  ON taskhost.runs FOR EACH ROW
  WHEN ((OLD.state, OLD.attempt, OLD.progress_done, OLD.progress_total, OLD.output)
        IS DISTINCT FROM (NEW.state, NEW.attempt, NEW.progress_done, NEW.progress_total,
                          NEW.output))
  EXECUTE FUNCTION taskhost.notify_run_activity();
CREATE TRIGGER run_events_activity AFTER INSERT ON taskhost.run_events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.notify_run_activity();
CREATE TRIGGER run_logs_activity AFTER INSERT ON taskhost.run_logs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.notify_run_activity();

GRANT SELECT, INSERT, UPDATE ON taskhost.run_logs, taskhost.run_log_totals TO taskhost;
GRANT EXECUTE ON FUNCTION taskhost.append_run_logs(uuid, integer, timestamptz[], text[], text[],
  bigint, bigint, bigint, bigint) TO taskhost;
