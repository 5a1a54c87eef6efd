-- Where progress stood when the current attempt started: a rate is the items
-- this attempt did over this attempt's time, not everything done since the
-- first attempt over the last one's time.
ALTER TABLE taskhost.runs ADD COLUMN attempt_progress_base bigint NOT NULL DEFAULT 0;
