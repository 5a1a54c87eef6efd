-- Webhook signing secrets, one current per schema name (all its versions).
-- A rotation keeps the previous secret signing beside the new one until it
-- retires, so consumers can switch without losing a delivery.
CREATE TABLE taskhost.webhook_secrets (
  id          bigserial PRIMARY KEY,
  schema_name text NOT NULL,
  secret      text NOT NULL,          -- whsec_<base64>
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL,
  retires_at  timestamptz             -- NULL while current
);
CREATE UNIQUE INDEX webhook_secrets_current_idx ON taskhost.webhook_secrets (schema_name)
  WHERE retires_at IS NULL;
