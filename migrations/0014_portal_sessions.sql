-- Portal sign-ins: an API key exchanged for a session cookie
-- (taskhost_session=<id>.<secret>). Only an HMAC-SHA256 of the secret under
-- the API pepper is kept. A session acts as its key's actor with its key's
-- roles, and ends with it: revoking or expiring the key ends its sessions.
CREATE TABLE taskhost.portal_sessions (
  id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
  key_id text NOT NULL REFERENCES taskhost.api_keys (id),
  secret_hmac text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  ended_at timestamptz
);
CREATE INDEX portal_sessions_live ON taskhost.portal_sessions (expires_at) WHERE ended_at IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON taskhost.portal_sessions TO taskhost;
