-- API keys for `taskhost serve`: th_<id>_<secret>, shown once. Only an
-- HMAC-SHA256 of the secret under the server's pepper (host config
-- api.pepper) is kept, so a copy of this table opens nothing.
CREATE TABLE taskhost.api_keys (
  id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  actor text NOT NULL,
  roles text[] NOT NULL,
  secret_hmac text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL,
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz,
  revoked_by text
);
GRANT SELECT, INSERT, UPDATE ON taskhost.api_keys TO taskhost;
