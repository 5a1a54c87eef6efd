-- Three roles, so that the platform's own credentials cannot rewrite its record:
--
--   taskhost_owner        owns every object here; only `taskhost migrate` uses it
--   taskhost              the runtime (worker, run, serve): rows, never objects;
--                         the audit log only through taskhost.audit_append
--   taskhost_provisioner  NOLOGIN CREATEROLE, holding nothing else: owns the
--                         one function that makes a schema version's roles
--
-- The roles exist before this migration (the embedded cluster makes them; on a
-- shared server the DBA does, README "A shared PostgreSQL"). Applied by the
-- runtime role, it would leave the runtime owning everything: refused.
DO $$
BEGIN
  IF current_user = 'taskhost' THEN
    RAISE EXCEPTION 'migrations are applied by the owner role (taskhost_owner), not by the '
                    'runtime role taskhost: as a superuser, REASSIGN OWNED BY taskhost TO '
                    'taskhost_owner in this database, then run `taskhost migrate` as taskhost_owner'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost')
     OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'taskhost_provisioner') THEN
    RAISE EXCEPTION 'the roles taskhost and taskhost_provisioner must exist (README: A shared '
                    'PostgreSQL)' USING ERRCODE = 'undefined_object';
  END IF;
END $$;

REVOKE ALL ON SCHEMA taskhost FROM PUBLIC;
GRANT USAGE ON SCHEMA taskhost TO taskhost;

-- Rows the runtime writes, with the least it needs for each table.
GRANT SELECT, INSERT, UPDATE ON taskhost.task_schemas, taskhost.runs, taskhost.run_events,
  taskhost.run_files, taskhost.schedule_ticks, taskhost.webhook_secrets,
  taskhost.webhook_deliveries, taskhost.webhook_streams TO taskhost;
GRANT SELECT, INSERT ON taskhost.run_transitions TO taskhost;
GRANT SELECT, INSERT, UPDATE, DELETE ON taskhost.webhook_disabled_endpoints TO taskhost;
GRANT SELECT ON taskhost.audit_log, taskhost.schema_migrations TO taskhost;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA taskhost TO taskhost;
-- audit_head: nothing. Entries reach the log through audit_append alone.

-- The only way in: appends entries, runs as the owner. search_path pinned, as
-- every SECURITY DEFINER function must.
ALTER FUNCTION taskhost.audit_append(taskhost.audit_entry[])
  SECURITY DEFINER SET search_path = pg_catalog, taskhost;
REVOKE EXECUTE ON FUNCTION taskhost.audit_append(taskhost.audit_entry[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.audit_append(taskhost.audit_entry[]) TO taskhost;

-- The chain head, read-only, for `audit verify` and checkpoints.
CREATE FUNCTION taskhost.audit_chain_head(OUT seq bigint, OUT hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, taskhost AS $$
  SELECT h.seq, h.hash FROM taskhost.audit_head h
$$;
REVOKE EXECUTE ON FUNCTION taskhost.audit_chain_head() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.audit_chain_head() TO taskhost;

-- Every change of a run's state, attempt, params or outcome is audited by
-- the database. A change the transition recorded in the same transaction
-- explains (to that state at that attempt, params and output untouched) is
-- audited already by that transition; anything else (an output the plugin
-- set, an UPDATE by hand) becomes a run.changed entry naming the database
-- role. AFTER triggers fire at the end of the whole statement, so a claim or
-- completion that updates runs and inserts its transitions in one statement
-- finds them here. Set-based: a batch costs one append.
CREATE FUNCTION taskhost.audit_run_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM taskhost.audit_append(array_agg(ROW('db:' || current_user, 'run.changed', n.id, NULL,
        jsonb_build_object('state', jsonb_build_object('from', NULL, 'to', n.state),
                           'attempt', n.attempt,
                           'params_sha256', encode(sha256(convert_to(n.params::text, 'UTF8')),
                                                   'hex')))::taskhost.audit_entry ORDER BY n.id))
    FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM taskhost.run_transitions t
                      WHERE t.run_id = n.id AND t.from_state IS NULL AND t.to_state = n.state
                        AND t.attempt = n.attempt AND t.xmin = xid(pg_current_xact_id()))
    HAVING count(*) > 0;
    RETURN NULL;
  END IF;
  PERFORM taskhost.audit_append(array_agg(ROW('db:' || current_user, 'run.changed', n.id, NULL,
      jsonb_strip_nulls(jsonb_build_object(
        'state', CASE WHEN o.state <> n.state
                      THEN jsonb_build_object('from', o.state, 'to', n.state) END,
        'attempt', CASE WHEN o.attempt <> n.attempt
                        THEN jsonb_build_object('from', o.attempt, 'to', n.attempt) END,
        'params_sha256', CASE WHEN o.params IS DISTINCT FROM n.params
                              THEN encode(sha256(convert_to(n.params::text, 'UTF8')), 'hex') END,
        'output_sha256', CASE WHEN o.output IS DISTINCT FROM n.output
                              THEN coalesce(encode(sha256(convert_to(n.output::text, 'UTF8')),
                                                   'hex'), 'none') END,
        'error', CASE WHEN (o.error_code, o.error) IS DISTINCT FROM (n.error_code, n.error)
                      THEN jsonb_build_object('code', n.error_code, 'sha256',
                             encode(sha256(convert_to(n.error, 'UTF8')), 'hex')) END))
    )::taskhost.audit_entry ORDER BY n.id))
  FROM new_rows n JOIN old_rows o ON o.id = n.id
  WHERE (o.state, o.attempt, o.params, o.output, o.error_code, o.error)
          IS DISTINCT FROM (n.state, n.attempt, n.params, n.output, n.error_code, n.error)
    AND NOT (o.state <> n.state AND o.params IS NOT DISTINCT FROM n.params
             AND o.output IS NOT DISTINCT FROM n.output
             AND EXISTS (SELECT 1 FROM taskhost.run_transitions t
                         WHERE t.run_id = n.id AND t.to_state = n.state
                           AND t.attempt = n.attempt AND t.xmin = xid(pg_current_xact_id())))
  HAVING count(*) > 0;
  RETURN NULL;
END $$;
CREATE TRIGGER runs_audit_insert AFTER INSERT ON taskhost.runs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.audit_run_changes();
-- (No column list: PostgreSQL allows none beside transition tables. A
-- heartbeat's statement finds nothing to audit in its few rows.)
CREATE TRIGGER runs_audit_update AFTER UPDATE ON taskhost.runs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION taskhost.audit_run_changes();

-- A schema version's database roles in the platform's database (the
-- "default" connection), made by the provisioning role, never by the runtime:
-- "taskhost:NAME@VERSION" (NOLOGIN, exactly the grant) and its login role
-- (LOGIN NOINHERIT, member of it alone). password: a SCRAM verifier or NULL.
-- tables: {"table" or "schema.table": "read" | "write"}, the schema's
-- capabilities.db.tables. Refused: the platform's schema, the system
-- catalogs, and any table whose privileges the provisioning role may not
-- grant: the operator's allow-list is what taskhost_provisioner holds WITH
-- GRANT OPTION.
CREATE FUNCTION taskhost.provision_schema_roles(run_role text, tables jsonb, password text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  login_role text := run_role || ':login';
  t record;
  rel regclass;
  ns text;
  tbl text;
  p text;
  privs text[];
  other record;
  seq record;
  acl record;
BEGIN
  IF run_role !~ '^taskhost:[a-z][a-z0-9-]*@[0-9A-Za-z.+-]+$' OR octet_length(login_role) > 63 THEN
    RAISE EXCEPTION '"%" is not a schema version''s role', run_role
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('taskhost.role:' || run_role));
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = run_role) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN', run_role);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login_role) THEN
    EXECUTE format('CREATE ROLE %I LOGIN NOINHERIT', login_role);
  END IF;
  EXECUTE format('ALTER ROLE %I NOLOGIN', run_role);
  EXECUTE format('ALTER ROLE %I LOGIN NOINHERIT PASSWORD %L', login_role, password);
  -- Exactly the grant: what the roles hold here goes. The provisioning role
  -- revokes what it granted (at an earlier install); a privilege someone
  -- else gave them it cannot revoke, so it names it and stops.
  FOR acl IN
    SELECT format('%s ON %s %s', a.privilege_type,
                  CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass)
             AS what, a.grantor, a.grantee
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
    WHERE a.grantee IN (to_regrole(quote_ident(run_role)), to_regrole(quote_ident(login_role)))
    UNION ALL
    SELECT format('%s ON SCHEMA %I', a.privilege_type, n.nspname), a.grantor, a.grantee
    FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
    WHERE a.grantee IN (to_regrole(quote_ident(run_role)), to_regrole(quote_ident(login_role)))
  LOOP
    IF acl.grantor <> to_regrole(quote_ident(current_user)) THEN
      RAISE EXCEPTION '% holds % granted by %, not by the provisioning role: % revokes it',
        pg_get_userbyid(acl.grantee), acl.what, pg_get_userbyid(acl.grantor),
        pg_get_userbyid(acl.grantor)
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('REVOKE %s FROM %I', acl.what, pg_get_userbyid(acl.grantee));
  END LOOP;
  FOR other IN SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
               WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = login_role)
                 AND r.rolname <> run_role LOOP
    EXECUTE format('REVOKE %I FROM %I', other.rolname, login_role);
  END LOOP;
  EXECUTE format('GRANT %I TO %I', run_role, login_role);

  FOR t IN SELECT key, value FROM jsonb_each_text(tables) LOOP
    -- By name in the catalog (no USAGE on the schema needed to refuse it).
    ns := CASE WHEN strpos(t.key, '.') > 0 THEN split_part(t.key, '.', 1) ELSE 'public' END;
    tbl := CASE WHEN strpos(t.key, '.') > 0 THEN split_part(t.key, '.', 2) ELSE t.key END;
    SELECT c.oid INTO rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ns AND c.relname = tbl AND c.relkind IN ('r', 'p', 'v', 'm', 'f');
    IF rel IS NULL THEN
      RAISE EXCEPTION 'capabilities.db.tables.%: no such table', t.key
        USING ERRCODE = 'undefined_table';
    END IF;
    IF ns IN ('taskhost', 'information_schema') OR ns LIKE 'pg\_%' THEN
      RAISE EXCEPTION 'capabilities.db.tables.%: %.% is %, which no schema is ever granted',
        t.key, ns, tbl,
        CASE WHEN ns = 'taskhost' THEN 'one of the platform''s own tables' ELSE 'a system catalog' END
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    privs := CASE t.value WHEN 'read' THEN ARRAY['SELECT']
                          WHEN 'write' THEN ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END;
    IF privs IS NULL THEN
      RAISE EXCEPTION 'capabilities.db.tables.%: access must be read or write', t.key
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH p IN ARRAY privs LOOP
      IF NOT has_table_privilege(current_user, rel, p || ' WITH GRANT OPTION') THEN
        RAISE EXCEPTION 'capabilities.db.tables.%: %.% is not on the list of tables schemas may be '
                        'granted (taskhost_provisioner may not grant % on it)', t.key, ns, tbl, p
          USING ERRCODE = 'insufficient_privilege',
                HINT = format('its owner allows it: GRANT %s ON %I.%I TO taskhost_provisioner '
                              'WITH GRANT OPTION', array_to_string(privs, ', '), ns, tbl);
      END IF;
    END LOOP;
    IF NOT has_schema_privilege(run_role, ns, 'USAGE') THEN
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', ns, run_role);
    END IF;
    EXECUTE format('GRANT %s ON %s TO %I', array_to_string(privs, ', '), rel, run_role);
    IF t.value = 'write' THEN
      FOR seq IN SELECT s.oid::regclass AS name FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                 WHERE d.refobjid = rel AND d.deptype = 'a' AND s.relkind = 'S' LOOP
        IF NOT has_sequence_privilege(current_user, seq.name, 'USAGE WITH GRANT OPTION') THEN
          RAISE EXCEPTION 'capabilities.db.tables.%: taskhost_provisioner may not grant USAGE on '
                          'its sequence %', t.key, seq.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('its owner allows it: GRANT USAGE ON SEQUENCE %s TO '
                                'taskhost_provisioner WITH GRANT OPTION', seq.name);
        END IF;
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq.name, run_role);
      END LOOP;
    END IF;
  END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION taskhost.provision_schema_roles(text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION taskhost.provision_schema_roles(text, jsonb, text) TO taskhost;
-- Owned by the provisioning role, which needs CREATE on the schema to take it.
GRANT CREATE ON SCHEMA taskhost TO taskhost_provisioner;
ALTER FUNCTION taskhost.provision_schema_roles(text, jsonb, text) OWNER TO taskhost_provisioner;
REVOKE CREATE ON SCHEMA taskhost FROM taskhost_provisioner;
