-- When a worker last wrote a signed checkpoint of the audit chain head (the
-- host config's audit.checkpoint_every): one row, whose lock makes one worker
-- at a time write, across hosts.
CREATE TABLE taskhost.audit_checkpoint_state (
  one        boolean PRIMARY KEY DEFAULT true CHECK (one),
  written_at timestamptz NOT NULL,
  seq        bigint NOT NULL,
  written_by text NOT NULL
);
INSERT INTO taskhost.audit_checkpoint_state VALUES (true, '-infinity', 0, 'nobody');
GRANT SELECT, UPDATE ON taskhost.audit_checkpoint_state TO taskhost;
