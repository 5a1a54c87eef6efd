-- doc-poller's tables: the plugin's data migration, applied once by `schema
-- install` into the connection's database (after form526.sql, which makes
-- the submissions these documents belong to).

-- One row per document uploaded to Lighthouse Benefits Documents for a Form
-- 526 submission, as the claims application records the upload. The poller
-- advances status from the API's answers.
CREATE TABLE lighthouse_document_uploads (
  id bigserial PRIMARY KEY,
  form526_submission_id bigint NOT NULL REFERENCES form526_submissions (id),
  document_type text NOT NULL
    CHECK (document_type IN ('bdd_instructions', 'form_0781', 'form_0781a', 'veteran_upload')),
  lighthouse_document_request_id bigint NOT NULL UNIQUE,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'failed')),
  error_step text,
  error_detail text,
  uploaded_at timestamptz NOT NULL,
  status_last_polled_at timestamptz,
  processing_started_at timestamptz,
  processing_ended_at timestamptz,
  last_status_response jsonb,
  -- when the poller flagged it stuck (pending too long): flagged once
  stale_flagged_at timestamptz
);
-- The poller's keyset walk over pending rows, and the stale check.
CREATE INDEX lighthouse_document_uploads_pending ON lighthouse_document_uploads (id)
  WHERE status = 'pending';
CREATE INDEX lighthouse_document_uploads_pending_uploaded
  ON lighthouse_document_uploads (uploaded_at) WHERE status = 'pending';
CREATE INDEX lighthouse_document_uploads_submission
  ON lighthouse_document_uploads (form526_submission_id);
CREATE INDEX lighthouse_document_uploads_failed ON lighthouse_document_uploads (form526_submission_id)
  WHERE status = 'failed';

-- Submissions the poller has reported with a document problem: an event goes
-- out for a submission the first time it appears here.
CREATE TABLE doc_poller_reported_claims (
  form526_submission_id bigint PRIMARY KEY REFERENCES form526_submissions (id),
  first_reported_at timestamptz NOT NULL DEFAULT now()
);
