-- Plugins' own tables (a schema's capabilities.db.migrations, applied at
-- `schema install`) are made by a fourth role:
--
--   taskhost_data  NOLOGIN, owns the tables plugins' migrations create in
--                  schema public, holds nothing of the platform's but the
--                  right to record a migration it applied
--
-- The runtime reaches it only through taskhost.apply_data_migration, which
-- applies one reviewed file once and offers what it made to the provisioning
-- role, so schemas may be granted those tables and nothing else.

-- The role exists before this migration, a member of the owner (the
-- embedded cluster makes it; on a shared server the DBA does, README "A
-- shared PostgreSQL"): roles are the cluster's, not this database's.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost_data')
     OR NOT pg_has_role(current_user, 'taskhost_data', 'USAGE') THEN
    RAISE EXCEPTION 'the role taskhost_data must exist and be granted to %: CREATE ROLE '
                    'taskhost_data NOLOGIN; GRANT taskhost_data TO % (README: A shared PostgreSQL)',
                    current_user, current_user USING ERRCODE = 'undefined_object';
  END IF;
END $$;

GRANT CREATE, USAGE ON SCHEMA public TO taskhost_data;
GRANT USAGE ON SCHEMA taskhost TO taskhost_data;

CREATE TABLE taskhost.data_migrations (
  path text PRIMARY KEY,
  sha256 text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  applied_by text NOT NULL
);
GRANT SELECT, INSERT ON taskhost.data_migrations TO taskhost_data;
GRANT SELECT ON taskhost.data_migrations TO taskhost;

-- Applies one migration file unless it was applied before: true when it ran.
-- A file applied with another digest is refused (an applied migration never
-- changes). As a SECURITY DEFINER function the file cannot SET ROLE nor end
-- the transaction; what it creates belongs to taskhost_data.
CREATE FUNCTION taskhost.apply_data_migration(file text, digest text, body text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  applied text;
  rel record;
BEGIN
  IF file !~ '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$' OR digest !~ '^[0-9a-f]{64}$' THEN
    RAISE EXCEPTION 'a data migration is a relative path and its SHA-256, got "%" "%"', file, digest
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('taskhost.data_migration'));
  SELECT m.sha256 INTO applied FROM taskhost.data_migrations m WHERE m.path = file;
  IF FOUND THEN
    IF applied <> digest THEN
      RAISE EXCEPTION 'it was applied with SHA-256 % and now has %', applied,
        digest USING ERRCODE = 'invalid_parameter_value',
        HINT = 'an applied migration never changes: add a new file';
    END IF;
    RETURN false;
  END IF;
  EXECUTE body;
  INSERT INTO taskhost.data_migrations (path, sha256, applied_by) VALUES (file, digest, session_user);
  -- Everything it owns becomes grantable to schemas (migration 0007's list).
  FOR rel IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
             WHERE c.relowner = 'taskhost_data'::regrole AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  LOOP
    EXECUTE format(CASE rel.relkind
                     WHEN 'S' THEN 'GRANT USAGE, SELECT, UPDATE ON SEQUENCE %s'
                     WHEN 'v' THEN 'GRANT SELECT ON TABLE %s'
                     WHEN 'm' THEN 'GRANT SELECT ON TABLE %s'
                     ELSE 'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s' END
                   || ' TO taskhost_provisioner WITH GRANT OPTION', rel.name);
  END LOOP;
  RETURN true;
END $$;
REVOKE EXECUTE ON FUNCTION taskhost.apply_data_migration(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.apply_data_migration(text, text, text) TO taskhost;
GRANT CREATE ON SCHEMA taskhost TO taskhost_data;
ALTER FUNCTION taskhost.apply_data_migration(text, text, text) OWNER TO taskhost_data;
REVOKE CREATE ON SCHEMA taskhost FROM taskhost_data;
