-- Platform metrics (`/metrics`): counters folded from the audit log.
--
-- Every run transition and every service call is an audit entry, so the
-- counters of finished runs, retries, rescues, run durations and service
-- calls are counts over the log. Counting the whole log at each scrape would
-- read a table that only grows; instead a scrape folds the entries appended
-- since the last fold (a range of the primary key, at most a bounded number
-- per scrape) into these rows, under the fold row's lock so that concurrent
-- scrapers (several serve processes) never count an entry twice. The
-- counters persist, so every scraper reports the same monotonic values.
-- Webhook delivery attempts are not audited: the dispatcher adds them here in
-- the transaction that records their outcomes.
CREATE TABLE taskhost.metric_counts (
  metric text NOT NULL,
  labels text[] NOT NULL,  -- label values, in the metric's own order
  value  double precision NOT NULL,
  PRIMARY KEY (metric, labels)
);
CREATE TABLE taskhost.metric_fold (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq bigint NOT NULL  -- audit entries up to this seq are counted
);
INSERT INTO taskhost.metric_fold VALUES (true, 0);
GRANT SELECT, INSERT, UPDATE ON taskhost.metric_counts TO taskhost;
GRANT SELECT, UPDATE ON taskhost.metric_fold TO taskhost;
