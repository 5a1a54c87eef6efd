-- esi-parser's tables, applied at `schema install` into the database its
-- capabilities.db connection names (a plugin data migration). Columns follow
-- plugins/esi_parser/columns.hpp: every DT field of
-- schemas/layouts/esi_rxaccum_v10.yaml but reserved_* and the record type;
-- amounts as signed integer cents (NAME_cents, the +/- action applied); the
-- accumulator blocks in use as arrays (element 1 is block 1).

-- One row per detail record, keyed by its transmission id: a re-parse is
-- idempotent and a fixup overwrites.
CREATE TABLE esi_accumulators (
  transmission_id text PRIMARY KEY,
  source_key text NOT NULL,
  source_sha256 text NOT NULL,
  source_line bigint NOT NULL,
  run_id text NOT NULL,
  loaded_at timestamptz NOT NULL DEFAULT now(),
  processor_routing text,
  transmission_file_type text,
  version_release text,
  sender_id text,
  receiver_id text,
  submission_number bigint,
  transaction_response_status text,
  reject_code text,
  record_length bigint,
  transmission_date date,
  transmission_time text,
  date_of_service date,
  service_provider_id_qualifier text,
  service_provider_id text,
  document_reference_qualifier text,
  document_reference_id text,
  benefit_type text,
  in_network_indicator text,
  formulary_status text,
  accumulator_action_code text,
  sender_reference_number text,
  benefit_effective_date date,
  benefit_termination_date date,
  transaction_id text,
  transaction_id_cross_reference text,
  cardholder_id text,
  group_id text,
  patient_first_name text,
  patient_middle_initial text,
  patient_last_name text,
  patient_relationship_code text,
  date_of_birth date,
  patient_gender_code text,
  patient_state text,
  cardholder_last_name text,
  carrier_number text,
  contract_number text,
  client_pass_through text,
  family_id text,
  cardholder_id_alternate text,
  group_id_alternate text,
  person_code text,
  accumulator_balance_count bigint,
  accumulator_specific_category_type text,
  accumulator_qualifier text[],
  accumulator_network_indicator text[],
  accumulator_applied_amount_cents bigint[],
  accumulator_benefit_period_amount_cents bigint[],
  accumulator_remaining_balance_cents bigint[],
  total_amount_paid_cents bigint,
  copay_amount_cents bigint,
  patient_pay_amount_cents bigint,
  product_service_id text,
  days_supply bigint,
  quantity_dispensed numeric(18,3),
  drug_name text
);

-- Where a load's rows wait for the upsert, within its transaction (load_id:
-- the run). Unlogged: it never holds anything past a commit.
CREATE UNLOGGED TABLE esi_accumulators_staging (
  load_id text NOT NULL,
  source_line bigint NOT NULL,
  processor_routing text,
  transmission_file_type text,
  version_release text,
  sender_id text,
  receiver_id text,
  submission_number bigint,
  transaction_response_status text,
  reject_code text,
  record_length bigint,
  transmission_date date,
  transmission_time text,
  date_of_service date,
  service_provider_id_qualifier text,
  service_provider_id text,
  document_reference_qualifier text,
  document_reference_id text,
  transmission_id text,
  benefit_type text,
  in_network_indicator text,
  formulary_status text,
  accumulator_action_code text,
  sender_reference_number text,
  benefit_effective_date date,
  benefit_termination_date date,
  transaction_id text,
  transaction_id_cross_reference text,
  cardholder_id text,
  group_id text,
  patient_first_name text,
  patient_middle_initial text,
  patient_last_name text,
  patient_relationship_code text,
  date_of_birth date,
  patient_gender_code text,
  patient_state text,
  cardholder_last_name text,
  carrier_number text,
  contract_number text,
  client_pass_through text,
  family_id text,
  cardholder_id_alternate text,
  group_id_alternate text,
  person_code text,
  accumulator_balance_count bigint,
  accumulator_specific_category_type text,
  accumulator_qualifier text[],
  accumulator_network_indicator text[],
  accumulator_applied_amount_cents bigint[],
  accumulator_benefit_period_amount_cents bigint[],
  accumulator_remaining_balance_cents bigint[],
  total_amount_paid_cents bigint,
  copay_amount_cents bigint,
  patient_pay_amount_cents bigint,
  product_service_id text,
  days_supply bigint,
  quantity_dispensed numeric(18,3),
  drug_name text
);

-- Field problems of parsed files, with their lines.
CREATE TABLE esi_rejects (
  id bigserial PRIMARY KEY,
  run_id text NOT NULL,
  source_key text NOT NULL,
  line bigint NOT NULL,
  record text NOT NULL,
  field text NOT NULL,
  value text NOT NULL,
  reason text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);

-- What each stage last handled (the seed's ingestion meta): one row per run.
CREATE TABLE esi_ingestion_meta (
  task_id text PRIMARY KEY,
  job_type text NOT NULL CHECK (job_type IN ('ingestion', 'parser')),
  task_type text NOT NULL CHECK (task_type IN ('incremental', 'fixup')),
  status text NOT NULL,
  most_recent_raw text,
  most_recent_parsed text,
  source_sha256 text,
  target_files text[] NOT NULL DEFAULT '{}',
  tries integer NOT NULL DEFAULT 1,
  started_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  duration interval,
  counts jsonb
);
CREATE INDEX esi_ingestion_meta_parsed ON esi_ingestion_meta (source_sha256)
  WHERE job_type = 'parser' AND status = 'succeeded';

-- Per member policy: deductible (qualifier 04) and out-of-pocket (05)
-- applied amounts, signed, over DQ records and DR records ESI accepted.
CREATE VIEW esi_policy_totals AS
SELECT a.cardholder_id_alternate AS policy_id,
       coalesce(sum(b.applied) FILTER (WHERE b.qualifier = '04'), 0)::bigint AS deductible_cents,
       coalesce(sum(b.applied) FILTER (WHERE b.qualifier = '05'), 0)::bigint AS oop_cents
FROM esi_accumulators a
LEFT JOIN LATERAL unnest(a.accumulator_qualifier, a.accumulator_applied_amount_cents)
       AS b(qualifier, applied)
  ON a.transmission_file_type = 'DQ' OR
     (a.transmission_file_type = 'DR' AND a.transaction_response_status = 'A')
GROUP BY a.cardholder_id_alternate;
