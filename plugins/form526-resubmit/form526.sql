-- The claims the form526-resubmit plugin reads: the plugin's data migration,
-- applied once by `schema install` into the connection's database. The shape
-- follows the claims application's own tables: a submission keeps the form as
-- submitted (JSON), its uploaded documents are rows naming objects in the
-- uploads bucket.
CREATE TABLE form526_submissions (
  id bigint PRIMARY KEY,
  user_uuid uuid NOT NULL,
  created_at timestamptz NOT NULL,
  -- where the submission stands in the claims pipeline (failed, exhausted ...)
  status text NOT NULL,
  -- the form as submitted: veteran (first_name, middle_name, last_name,
  -- file_number, date_of_birth, email, phone, address {line1, line2, city,
  -- state, zip, country}), service_periods [{branch, from, to}],
  -- disabilities [{name, classification, service_relevance}], bdd (boolean)
  form jsonb NOT NULL CHECK (jsonb_typeof(form) = 'object')
);

CREATE TABLE form526_attachments (
  id bigserial PRIMARY KEY,
  submission_id bigint NOT NULL REFERENCES form526_submissions (id),
  document_type text NOT NULL,   -- e.g. L023 (correspondence), L107 (VA 21-4142)
  file_name text NOT NULL,       -- as the veteran uploaded it
  object_key text NOT NULL       -- in the uploads bucket
);
CREATE INDEX form526_attachments_submission ON form526_attachments (submission_id);
