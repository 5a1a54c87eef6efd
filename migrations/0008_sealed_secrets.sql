-- Webhook signing secrets sealed with the host key (AES-256-GCM, the key's id
-- beside each ciphertext): the database never holds one in clear. Rows from
-- before this migration are sealed by the host right after it (`taskhost
-- migrate`), which then clears `secret`; `taskhost keys rotate-host-key`
-- re-seals every row with the current key.
ALTER TABLE taskhost.webhook_secrets
  ALTER COLUMN secret DROP NOT NULL,
  ADD COLUMN key_id text,
  ADD COLUMN sealed bytea,
  ADD CONSTRAINT webhook_secrets_sealed
    CHECK ((secret IS NULL) = (sealed IS NOT NULL AND key_id IS NOT NULL));
COMMENT ON COLUMN taskhost.webhook_secrets.secret IS
  'only rows from before 0007, until the host seals them; always NULL after';
