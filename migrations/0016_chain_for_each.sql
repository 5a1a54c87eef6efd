-- A chain step with for_each queues one follow-up per element of an output
-- array, all in the transaction that fires the chain, so all with the same
-- run_after. queued_seq keeps the order they were queued in: the claim takes
-- runs by (run_after, queued_seq), so the children start in element order.
CREATE SEQUENCE taskhost.runs_queued_seq;
ALTER TABLE taskhost.runs
  ADD COLUMN queued_seq bigint NOT NULL DEFAULT nextval('taskhost.runs_queued_seq');
ALTER SEQUENCE taskhost.runs_queued_seq OWNED BY taskhost.runs.queued_seq;
GRANT USAGE ON SEQUENCE taskhost.runs_queued_seq TO taskhost;

DROP INDEX taskhost.runs_claim_idx;
CREATE INDEX runs_claim_idx ON taskhost.runs (run_after, queued_seq)
  WHERE state = 'queued' AND concurrency IS NULL;
DROP INDEX taskhost.runs_claim_limited_idx;
CREATE INDEX runs_claim_limited_idx ON taskhost.runs (schema_name, run_after, queued_seq)
  WHERE state = 'queued' AND concurrency IS NOT NULL;
