-- Who appended an entry. The hash chain proves that nothing was changed or
-- removed, but not who wrote an entry: the runtime role may append, so
-- anyone holding its password could append a transition in an operator's
-- name. Every session a taskhost process opens is a sealer: the process
-- draws a random token, registers its SHA-256 here with a MAC under the host
-- key, and keeps the token in the session (never in a table). audit_append
-- stamps each entry with the sealer of the session it runs in, and `audit
-- verify` checks each sealer's MAC with the host key. A session with the
-- database password alone holds no sealer whose MAC verifies, so what it
-- appends is reported, with its actor, whoever it claims to be.
CREATE TABLE taskhost.audit_sealers (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  token_sha256 bytea NOT NULL UNIQUE,
  opened_at    timestamptz NOT NULL DEFAULT now(),
  opened_by    name NOT NULL DEFAULT session_user
);
-- HMAC-SHA256 of the token's hash under a host key; a rotation adds one
-- under the new key. Rows are only added: one that does not verify is
-- ignored, so a bogus one takes nothing away.
CREATE TABLE taskhost.audit_sealer_macs (
  sealer_id bigint NOT NULL REFERENCES taskhost.audit_sealers (id),
  key_id    text NOT NULL,
  mac       text NOT NULL
);
CREATE INDEX audit_sealer_macs_sealer_idx ON taskhost.audit_sealer_macs (sealer_id);

-- Entries after this one must carry a sealer (those before had none).
CREATE TABLE taskhost.audit_sealed_after (seq bigint NOT NULL);
INSERT INTO taskhost.audit_sealed_after SELECT seq FROM taskhost.audit_head;

ALTER TABLE taskhost.audit_log ADD COLUMN sealer bigint;  -- outside the hash

-- Makes the calling session a sealer. The token is kept in a session
-- setting, which no other session can read.
CREATE FUNCTION taskhost.audit_open_sealer(token text, key_id text, mac text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, taskhost AS $$
DECLARE
  id bigint;
BEGIN
  IF length(token) < 32 THEN
    RAISE EXCEPTION 'a sealer token has at least 32 characters' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO taskhost.audit_sealers (token_sha256) VALUES (sha256(convert_to(token, 'UTF8')))
    RETURNING audit_sealers.id INTO id;
  INSERT INTO taskhost.audit_sealer_macs VALUES (id, key_id, mac);
  PERFORM set_config('taskhost.audit_sealer', token, false);
  RETURN id;
END $$;

-- A rotation's MACs under the new key, for the sealers it verified.
CREATE FUNCTION taskhost.audit_sign_sealers(sealers bigint[], key_id text, macs text[])
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, taskhost AS $$
  INSERT INTO taskhost.audit_sealer_macs SELECT s, key_id, m FROM unnest(sealers, macs) AS x(s, m)
$$;

CREATE OR REPLACE FUNCTION taskhost.audit_append(entries taskhost.audit_entry[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, taskhost AS $$
DECLARE
  e taskhost.audit_entry;
  s bigint;
  prev text;
  cur text;
  t timestamptz;
  token text := current_setting('taskhost.audit_sealer', true);
  sealer bigint;
BEGIN
  IF token <> '' THEN
    SELECT a.id INTO sealer FROM taskhost.audit_sealers a
      WHERE a.token_sha256 = sha256(convert_to(token, 'UTF8'));
  END IF;
  SELECT h.seq, h.hash INTO s, prev FROM taskhost.audit_head h FOR UPDATE;
  t := clock_timestamp();  -- after the lock: time never goes backwards along the chain
  FOREACH e IN ARRAY entries LOOP
    s := s + 1;
    cur := taskhost.audit_hash(s, prev, t, e.actor, e.action, e.run_id, e.subject,
                               coalesce(e.detail, '{}'));
    INSERT INTO taskhost.audit_log VALUES
      (s, t, e.actor, e.action, e.run_id, e.subject, coalesce(e.detail, '{}'), prev, cur, sealer);
    prev := cur;
  END LOOP;
  UPDATE taskhost.audit_head SET seq = s, hash = prev;
  RETURN s;
END $$;

REVOKE EXECUTE ON FUNCTION taskhost.audit_open_sealer(text, text, text),
  taskhost.audit_sign_sealers(bigint[], text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.audit_open_sealer(text, text, text),
  taskhost.audit_sign_sealers(bigint[], text, text[]) TO taskhost;
GRANT SELECT ON taskhost.audit_sealers, taskhost.audit_sealer_macs, taskhost.audit_sealed_after
  TO taskhost;
