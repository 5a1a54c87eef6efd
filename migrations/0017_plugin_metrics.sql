-- Plugins' own metrics (a schema's `metrics:`), exposed on `/metrics` with
-- the schema's name as a label.
--
-- Every sample is a row here, written in the call that records it: a
-- counter survives a worker's restart (and another worker continues it),
-- and every serve process reports the same values, as the platform's own
-- counters (0013) do. One row per schema name (not version: a new version
-- continues its counters), metric and label values; the labels are those
-- the schema declares, each with a declared value, checked by the host
-- before it records, so the rows stay few.
CREATE TABLE taskhost.plugin_metrics (
  schema_name text NOT NULL,
  metric      text NOT NULL,
  labels      jsonb NOT NULL,  -- {label: value}
  kind        text NOT NULL CHECK (kind IN ('counter', 'gauge')),
  help        text NOT NULL,
  value       double precision NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, metric, labels)
);

-- The runtime records through this function alone, which adds to a
-- counter (never takes from one) or sets a gauge: it may not rewrite or
-- remove a sample, so a counter only ever grows, as Prometheus expects.
CREATE FUNCTION taskhost.record_plugin_metric(p_schema text, p_metric text, p_labels jsonb,
                                              p_kind text, p_help text, p_value double precision)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, taskhost AS $$
DECLARE
  stored text;
BEGIN
  IF p_kind = 'counter' AND NOT (p_value >= 0) THEN
    RAISE EXCEPTION 'a counter only grows: % is not an increment', p_value
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_value IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8) THEN
    RAISE EXCEPTION 'a metric value is a finite number, not %', p_value
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO taskhost.plugin_metrics AS m (schema_name, metric, labels, kind, help, value)
  VALUES (p_schema, p_metric, p_labels, p_kind, p_help, p_value)
  ON CONFLICT (schema_name, metric, labels) DO UPDATE
    SET value = CASE WHEN m.kind = 'counter' THEN m.value + EXCLUDED.value ELSE EXCLUDED.value END,
        help = EXCLUDED.help, updated_at = now()
    WHERE m.kind = EXCLUDED.kind
  RETURNING kind INTO stored;
  IF stored IS NULL THEN
    RAISE EXCEPTION 'metric % of schema % is stored as another kind than %', p_metric, p_schema,
      p_kind USING ERRCODE = 'invalid_parameter_value';
  END IF;
END $$;
REVOKE EXECUTE ON FUNCTION taskhost.record_plugin_metric(text, text, jsonb, text, text,
  double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.record_plugin_metric(text, text, jsonb, text, text,
  double precision) TO taskhost;
GRANT SELECT ON taskhost.plugin_metrics TO taskhost;
