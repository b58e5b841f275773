-- 005_audit_privacy_hardening: the audit trail, patient data and retention (issue 15).
--
-- Before -> after:
-- * mdus_app / mdus_admin could INSERT any audit row (any action, db_user, changed_by,
--   record_id, client address, back- or future-dated created_at). Now they have no INSERT
--   on audit_logs: log_access_event(action, table, record_id) (SECURITY DEFINER, owner
--   mdus_owner, search_path pinned) records ACCESS/EXPORT events of the bound application
--   user only, with the database role, time and client address filled in by the server.
--   The audit trigger keeps writing (SECURITY DEFINER, owned by mdus_owner).
-- * A row the application dates into the future (or far into the past) landed in the
--   DEFAULT partition; once pg_partman wants to create that month, maintenance fails
--   ("updated partition constraint for default partition would be violated") and no
--   partition is made or dropped any more. Application roles can no longer name
--   created_at on audit_logs or processing_metrics (column privileges: it is always
--   now()). run_partition_maintenance() maintains each partition set on its own,
--   records the outcome in partition_maintenance_log and ends with an error naming every
--   parent whose default partition holds rows or whose maintenance failed.
-- * Reads of patient data are audited by pgaudit object auditing: role mdus_auditor
--   (NOLOGIN, created by Ansible) holds SELECT on documents, document_versions,
--   document_analysis, extracted_entities, and pgaudit.role = 'mdus_auditor' is set for
--   this database (ALTER DATABASE ... SET when the runner may, see docs/schema.md).
-- * The audit trigger copied whole rows (document text, file names, metadata, entity
--   values) into audit_logs, kept 6 years and readable by the application: a purged
--   document's text survived in its DELETE audit row. Audit rows now keep in clear only
--   the columns listed in audit_clear_columns (keys, status, sizes, timestamps...); every
--   other value is replaced by a keyed SHA-256 ("keyed-sha256:<hex>", key in the
--   owner-only table audit_hash_key). Existing audit rows are scrubbed the same way by
--   this migration (irreversible on purpose: the rollback does not bring the PHI back).
-- * Analyst masking failed open (an entity not flagged is_pii was shown verbatim) and
--   processing_metrics.labels was readable by mdus_analyst. Now an entity value is shown
--   only when positively cleared (pii_cleared: its entity_type matches a non-sensitive
--   rule of pii_rules and no sensitive rule matched); analysts read metrics through
--   analyst_processing_metrics (no labels).
-- * is_pii depended on the application. A BEFORE trigger flags entities whose type or
--   value matches a sensitive rule of pii_rules (names, dates, SSN/MRN-like numbers,
--   addresses, phone numbers, e-mail addresses; the DBA can add rules).
-- * mdus_app could UPDATE its own users.role (to 'admin') and is_active. Column
--   privileges now leave role and is_active to mdus_admin.
-- * can_access_document() ran with the caller's rights, so for mdus_app (RLS: own
--   documents only, own user row only) it answered false for an application admin and a
--   document of someone else, against the documented "owner or admin". It now reads as
--   owner and answers for the bound user (or, for an active app admin or a member of
--   mdus_admin, for anyone).

-- migrate:up
-- Platform side first, as the runner's own role (not the owner): the auditor role and the
-- database-level pgaudit.role setting.
DO $auditor$
DECLARE
    v_super  boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
    -- pgaudit's settings exist once the library is loaded (shared_preload_libraries
    -- itself is readable by superusers only).
    v_loaded boolean := EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'pgaudit.role');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'mdus_auditor') THEN
        IF v_super THEN
            CREATE ROLE mdus_auditor NOLOGIN;
            RAISE NOTICE 'created missing role mdus_auditor (NOLOGIN)';
        ELSE
            RAISE EXCEPTION 'role mdus_auditor does not exist'
                USING HINT = 'Ansible creates the platform roles: add {name: mdus_auditor, login: false}'
                             ' to mdus_schema_roles, then run the migration again.';
        END IF;
    END IF;
    IF NOT v_loaded THEN
        RAISE WARNING 'pgaudit is not in shared_preload_libraries: reads of patient data are'
                      ' not audited on this server';
    END IF;
    IF coalesce(current_setting('pgaudit.role', true), '') <> 'mdus_auditor' THEN
        IF v_super OR (v_loaded AND has_parameter_privilege('pgaudit.role', 'SET')) THEN
            EXECUTE format('ALTER DATABASE %I SET pgaudit.role = %L',
                           current_database(), 'mdus_auditor');
        ELSIF v_loaded THEN
            RAISE EXCEPTION 'pgaudit.role is %, not mdus_auditor, and % may not set it',
                coalesce(nullif(current_setting('pgaudit.role', true), ''), 'empty'), current_user
                USING HINT = 'As a superuser: ALTER DATABASE ' || quote_ident(current_database())
                             || ' SET pgaudit.role = ''mdus_auditor'' (or pgaudit.role in'
                             ' postgresql.conf, or GRANT SET ON PARAMETER pgaudit.role TO'
                             ' mdus_owner so that the migration sets it).';
        END IF;
    END IF;
END
$auditor$;

SET LOCAL ROLE mdus_owner;

-- ---------------------------------------------------------------------------------------
-- Audit rows without PHI.
-- ---------------------------------------------------------------------------------------
-- The key of the audit hashes: one random row, readable by the owner only. Who holds the
-- key can test a guess ("was this value X?"); nobody can read a value back.
CREATE TABLE audit_hash_key (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    key bytea NOT NULL CHECK (length(key) = 32)
);
INSERT INTO audit_hash_key (key)
SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                         || clock_timestamp()::text, 'UTF8'));

-- Columns whose values audit rows keep in clear: identifiers, states, sizes, times. Any
-- column not listed (including one added later) is hashed. The DBA may add rows.
CREATE TABLE audit_clear_columns (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    CONSTRAINT audit_clear_columns_pkey PRIMARY KEY (table_name, column_name)
);
INSERT INTO audit_clear_columns (table_name, column_name)
SELECT t.table_name, unnest(t.columns)
  FROM (VALUES
    ('users', ARRAY['id', 'role', 'is_active', 'last_login_at', 'created_at', 'updated_at']),
    ('documents', ARRAY['id', 'user_id', 'file_size', 'mime_type', 'file_hash',
                        'document_type', 'status', 'quality_score', 'processed_at',
                        'created_at', 'updated_at', 'contains_phi', 'retention_until',
                        'legal_hold']),
    ('document_versions', ARRAY['id', 'document_id', 'user_id', 'version_number',
                                'file_size', 'file_hash', 'created_by', 'created_at']),
    ('document_relationships', ARRAY['id', 'source_document_id', 'target_document_id',
                                     'relationship_type', 'created_by', 'created_at']),
    ('document_analysis', ARRAY['id', 'document_id', 'user_id', 'model_configuration_id',
                                'analysis_type', 'model_name', 'model_version',
                                'overall_confidence', 'processing_time_ms', 'created_at',
                                'updated_at']),
    ('extracted_entities', ARRAY['id', 'analysis_id', 'document_id', 'user_id',
                                 'entity_type', 'confidence', 'start_offset', 'end_offset',
                                 'page_number', 'is_pii', 'pii_category', 'pii_cleared',
                                 'created_at']),
    ('quality_checks', ARRAY['id', 'document_id', 'user_id', 'check_type', 'passed',
                             'score', 'checked_at']),
    ('processing_jobs', ARRAY['id', 'document_id', 'user_id', 'job_type', 'status',
                              'priority', 'attempts', 'max_attempts', 'locked_by',
                              'scheduled_at', 'started_at', 'completed_at', 'created_at',
                              'updated_at']),
    ('model_configurations', ARRAY['id', 'model_name', 'model_version', 'model_type',
                                   'parameters', 'is_active', 'description', 'created_by',
                                   'created_at', 'updated_at'])
  ) AS t (table_name, columns);

-- keyed-sha256:<hex> of a value (strings hashed as their text, other JSON as JSON text).
CREATE FUNCTION audit_hash(p_value jsonb) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT 'keyed-sha256:' || encode(sha256(k.key || convert_to(p_value #>> '{}', 'UTF8')), 'hex')
      FROM public.audit_hash_key k
$$;
REVOKE EXECUTE ON FUNCTION audit_hash(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_hash(jsonb) TO mdus_admin;

-- The audit form of a row image: clear columns as they are, NULL and the "[redacted]"
-- marker as they are, values already hashed as they are, everything else hashed.
CREATE FUNCTION audit_scrub(p_table text, p_values jsonb) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT CASE
        WHEN p_values IS NULL THEN NULL
        WHEN jsonb_typeof(p_values) <> 'object' THEN to_jsonb(public.audit_hash(p_values))
        ELSE coalesce((
            SELECT jsonb_object_agg(v.key, CASE
                       WHEN c.column_name IS NOT NULL
                            OR v.value IN ('null'::jsonb, '"[redacted]"'::jsonb)
                            OR (jsonb_typeof(v.value) = 'string'
                                AND v.value #>> '{}' ~ '^keyed-sha256:[0-9a-f]{64}$')
                       THEN v.value
                       ELSE to_jsonb(public.audit_hash(v.value)) END)
              FROM jsonb_each(p_values) AS v
              LEFT JOIN public.audit_clear_columns c
                     ON c.table_name = p_table AND c.column_name = v.key), '{}'::jsonb)
    END
$$;
REVOKE EXECUTE ON FUNCTION audit_scrub(text, jsonb) FROM PUBLIC;

-- 004's trigger, with the row images scrubbed before they are written.
CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_old     jsonb;
    v_new     jsonb;
    v_id      text;
    v_fields  text[];
    v_arg     text;
    v_app     uuid := public.mdus_app_user_id();
    -- SECURITY DEFINER changes current_user; the "role" setting still shows SET ROLE.
    v_db_user text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                           ELSE current_setting('role') END;
BEGIN
    IF TG_OP <> 'INSERT' THEN v_old := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN v_new := to_jsonb(NEW); END IF;
    v_id := coalesce(v_new ->> 'id', v_old ->> 'id');
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(n.key ORDER BY n.key),
               jsonb_object_agg(n.key, v_old -> n.key),
               jsonb_object_agg(n.key, n.value)
          INTO v_fields, v_old, v_new
          FROM jsonb_each(v_new) AS n
         WHERE n.value IS DISTINCT FROM v_old -> n.key;
        IF v_fields IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_NARGS > 0 THEN
        FOREACH v_arg IN ARRAY TG_ARGV LOOP
            IF left(v_arg, 1) = '-' THEN
                v_old := v_old - substr(v_arg, 2);
                v_new := v_new - substr(v_arg, 2);
                v_fields := array_remove(v_fields, substr(v_arg, 2));
            ELSE
                IF v_old ? v_arg THEN v_old := jsonb_set(v_old, ARRAY[v_arg], '"[redacted]"'); END IF;
                IF v_new ? v_arg THEN v_new := jsonb_set(v_new, ARRAY[v_arg], '"[redacted]"'); END IF;
            END IF;
        END LOOP;
    END IF;
    INSERT INTO public.audit_logs (action, table_name, record_id, user_id, changed_by, db_user,
                                   old_values, new_values, changed_fields)
    VALUES (TG_OP, TG_TABLE_NAME, v_id, v_app, coalesce(v_app::text, v_db_user), v_db_user,
            public.audit_scrub(TG_TABLE_NAME, v_old), public.audit_scrub(TG_TABLE_NAME, v_new),
            v_fields);
    RETURN NULL;
END
$$;

-- Audit rows already written (001-004, and whatever the application inserted) lose their
-- PHI the same way. Not undone by the rollback.
UPDATE audit_logs
   SET old_values = audit_scrub(table_name, old_values),
       new_values = audit_scrub(table_name, new_values)
 WHERE old_values IS NOT NULL OR new_values IS NOT NULL;

-- ---------------------------------------------------------------------------------------
-- Access/export events: a function instead of INSERT on audit_logs.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION log_access_event(p_action text, p_table_name text, p_record_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_app     uuid := public.mdus_app_user_id();
    v_db_user text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                           ELSE current_setting('role') END;
    v_id      bigint;
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('ACCESS', 'EXPORT') THEN
        RAISE EXCEPTION 'action must be ACCESS or EXPORT, not %', coalesce(p_action, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_table_name IS NULL OR p_table_name NOT IN (
            'users', 'documents', 'document_versions', 'document_relationships',
            'document_analysis', 'extracted_entities', 'quality_checks', 'processing_jobs',
            'processing_metrics', 'model_configurations') THEN
        RAISE EXCEPTION 'unknown table %', coalesce(p_table_name, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_record_id IS NOT NULL AND p_record_id !~ '^[A-Za-z0-9-]{1,64}$' THEN
        RAISE EXCEPTION 'record id must be a key (letters, digits, dashes), not free text'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_app IS NULL THEN
        RAISE EXCEPTION 'no application user bound to this transaction'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'SELECT mdus_set_app_user(...) first, in the same transaction.';
    END IF;
    INSERT INTO public.audit_logs (action, table_name, record_id, user_id, changed_by, db_user,
                                   client_addr, application_name, created_at)
    VALUES (p_action, p_table_name, p_record_id, v_app, v_app::text, v_db_user,
            inet_client_addr(), current_setting('application_name', true), now())
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
REVOKE EXECUTE ON FUNCTION log_access_event(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION log_access_event(text, text, text) TO mdus_app, mdus_admin;
REVOKE INSERT ON audit_logs FROM mdus_app, mdus_admin;

-- Metrics: the application names everything but created_at (always now(), so never a
-- row for the DEFAULT partition) and the owner column that 006 adds.
REVOKE INSERT ON processing_metrics FROM mdus_app, mdus_admin;
GRANT INSERT (document_id, metric_type, value, unit, labels) ON processing_metrics
    TO mdus_app, mdus_admin;

-- ---------------------------------------------------------------------------------------
-- Partition maintenance that reports.
-- ---------------------------------------------------------------------------------------
-- Exact row counts of the DEFAULT partitions of the schema's partitioned tables.
CREATE FUNCTION partition_default_rows()
RETURNS TABLE (parent_table text, default_table text, row_count bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT p.relname::text AS parent, c.relname::text AS def
          FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
          JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
         WHERE p.relnamespace = 'public'::regnamespace AND c.relispartition
           AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
         ORDER BY 1
    LOOP
        parent_table := t.parent;
        default_table := t.def;
        EXECUTE format('SELECT count(*) FROM public.%I', t.def) INTO row_count;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION partition_default_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION partition_default_rows() TO mdus_monitor, mdus_admin;

CREATE TABLE partition_maintenance_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_at       timestamptz NOT NULL DEFAULT now(),
    parent_table text NOT NULL,
    default_rows bigint NOT NULL,
    succeeded    boolean NOT NULL,
    error        text
);
CREATE INDEX idx_partition_maintenance_log_parent
    ON partition_maintenance_log (parent_table, run_at DESC);
GRANT SELECT ON partition_maintenance_log TO mdus_monitor, mdus_admin;

-- One partition set's maintenance in a subtransaction: NULL, or the error.
CREATE FUNCTION partition_maintain_one(p_parent_table text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    v_schema text;
    v_error  text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_partman';
    EXECUTE format('SELECT %I.run_maintenance(p_parent_table := %L, p_analyze := false)',
                   v_schema, p_parent_table);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
    RETURN split_part(v_error, E'\n', 1);  -- pg_partman appends its context lines
END
$$;
REVOKE EXECUTE ON FUNCTION partition_maintain_one(text) FROM PUBLIC;

-- Maintains each partition set on its own (one failing set does not stop the others),
-- commits after each, logs the outcome, and fails at the end naming every set whose
-- DEFAULT partition holds rows or whose maintenance failed. CALL it outside a
-- transaction block, as the owner (or a member: mdus_migrator).
CREATE PROCEDURE run_partition_maintenance()
LANGUAGE plpgsql AS $$
DECLARE
    v_schema   text;
    v_parent   text;
    v_rows     bigint;
    v_error    text;
    v_problems text[] := '{}';
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_partman';
    FOR v_parent IN EXECUTE format(
            'SELECT parent_table FROM %I.part_config WHERE parent_table LIKE %L ORDER BY 1',
            v_schema, 'public.%')
    LOOP
        v_error := public.partition_maintain_one(v_parent);
        SELECT coalesce(sum(d.row_count), 0) INTO v_rows
          FROM public.partition_default_rows() AS d
         WHERE 'public.' || d.parent_table = v_parent;
        INSERT INTO public.partition_maintenance_log (parent_table, default_rows, succeeded, error)
        VALUES (v_parent, v_rows, v_error IS NULL, v_error);
        DELETE FROM public.partition_maintenance_log
         WHERE parent_table = v_parent AND run_at < now() - interval '90 days';
        IF v_rows > 0 THEN
            v_problems := v_problems || format(
                '%s: %s row(s) in its DEFAULT partition (no partition can be created for'
                ' their months; move or delete them as the owner)', v_parent, v_rows);
        END IF;
        IF v_error IS NOT NULL THEN
            v_problems := v_problems || format('%s: maintenance failed: %s', v_parent, v_error);
        END IF;
        COMMIT;
    END LOOP;
    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'partition maintenance: %', array_to_string(v_problems, '; ')
            USING HINT = 'See SELECT * FROM partition_default_rows() and docs/schema.md.';
    END IF;
END
$$;
REVOKE EXECUTE ON PROCEDURE run_partition_maintenance() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Reads of patient data: pgaudit object auditing.
-- ---------------------------------------------------------------------------------------
GRANT SELECT ON documents, document_versions, document_analysis, extracted_entities
    TO mdus_auditor;

-- ---------------------------------------------------------------------------------------
-- PII detection on write, masking that fails closed.
-- ---------------------------------------------------------------------------------------
-- Rules matched case-insensitively (POSIX regular expressions) against entity_type
-- ('entity_type') or entity_value / normalized_value ('value'). sensitive: a match flags
-- the entity is_pii with pii_category. Not sensitive (entity_type rules only): a match
-- clears the type for analysts, unless a sensitive rule matched. The DBA may add rules
-- (then SELECT pii_reclassify() to apply them to existing rows).
CREATE TABLE pii_rules (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    applies_to   text NOT NULL,
    pattern      text NOT NULL,
    sensitive    boolean NOT NULL DEFAULT true,
    pii_category text,
    description  text,
    CONSTRAINT pii_rules_applies_to_check CHECK (applies_to IN ('entity_type', 'value')),
    CONSTRAINT pii_rules_category_check CHECK (pii_category IN (
        'name', 'date_of_birth', 'ssn', 'mrn', 'address', 'phone', 'email', 'insurance_id',
        'other')),
    CONSTRAINT pii_rules_sensitive_category_check CHECK (sensitive = (pii_category IS NOT NULL)),
    CONSTRAINT pii_rules_clear_type_only_check CHECK (sensitive OR applies_to = 'entity_type'),
    -- A pattern must compile and must not match everything (not even the empty string).
    CONSTRAINT pii_rules_pattern_check CHECK ('' !~* pattern)
);
GRANT SELECT ON pii_rules TO mdus_admin;
INSERT INTO pii_rules (applies_to, pattern, sensitive, pii_category, description) VALUES
    ('entity_type', '^(ssn|social_security(_number)?)$', true, 'ssn', 'social security number'),
    ('entity_type', '^(mrn|medical_record(_number)?|patient_id|patient_number)$', true, 'mrn',
     'medical record number'),
    ('entity_type', '^(insurance_id|insurance_number|policy_number|member_id|health_plan_id)$',
     true, 'insurance_id', 'health plan / insurance number'),
    ('entity_type', '^(dob|date_of_birth|birth_?date|birthday)$', true, 'date_of_birth',
     'date of birth'),
    ('entity_type', '^(address|street|street_address|postal_address|city|zip|zip_code|postal_code)$',
     true, 'address', 'address'),
    ('entity_type', '^(phone|phone_number|telephone|mobile|fax)$', true, 'phone',
     'phone or fax number'),
    ('entity_type', '^(e_?mail|email_address)$', true, 'email', 'e-mail address'),
    ('entity_type', '^(person|patient|name|patient_name|full_name|first_name|last_name|surname|given_name|next_of_kin)$',
     true, 'name', 'name of a person'),
    ('value', '\m\d{3}-\d{2}-\d{4}\M', true, 'ssn', 'SSN-shaped number 123-45-6789'),
    ('value', '[^@[:space:]]+@[^@[:space:]]+\.[a-z]{2,}', true, 'email', 'e-mail address'),
    ('value', '(\+\d{1,3}[ .-]?)?\(?\m\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\M', true, 'phone',
     'phone number'),
    ('value', '\m(mrn|mr#|med(ical)? ?rec(ord)?)\W*[a-z0-9-]{4,}', true, 'mrn',
     'labelled medical record number'),
    ('value', '\m[a-z]{0,3}\d{6,12}\M', true, 'mrn', 'long identifier-like number'),
    ('value', '\m\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\M', true, 'date_of_birth',
     'a date (any date tied to a person is an identifier)'),
    ('value', '\m\d{1,6}\s+(\w+\s+){1,4}(street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl)\M',
     true, 'address', 'street address'),
    ('entity_type', '^(medication|drug|dosage|diagnosis|condition|symptom|procedure|lab_test|test_name|lab_value|unit|body_part|allergy)$',
     false, NULL, 'clinical terms, not identifying');

ALTER TABLE extracted_entities
    ADD COLUMN pii_cleared boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT extracted_entities_pii_cleared_check CHECK (NOT (pii_cleared AND is_pii));

-- Category of the first sensitive rule that matches, or NULL.
CREATE FUNCTION pii_detect(p_type text, p_value text, p_normalized text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT r.pii_category FROM public.pii_rules r
     WHERE r.sensitive
       AND CASE r.applies_to
               WHEN 'entity_type' THEN p_type ~* r.pattern
               ELSE coalesce(p_value ~* r.pattern, false)
                    OR coalesce(p_normalized ~* r.pattern, false) END
     ORDER BY r.id
     LIMIT 1
$$;

-- True when a non-sensitive rule positively clears the entity type.
CREATE FUNCTION pii_type_cleared(p_type text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT EXISTS (SELECT 1 FROM public.pii_rules r
                    WHERE NOT r.sensitive AND r.applies_to = 'entity_type'
                      AND p_type ~* r.pattern)
$$;

-- Whatever the application sends: is_pii can only be raised by it, pii_cleared is ours.
CREATE FUNCTION extracted_entities_classify() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_category text := public.pii_detect(NEW.entity_type, NEW.entity_value, NEW.normalized_value);
BEGIN
    IF v_category IS NOT NULL THEN
        NEW.is_pii := true;
        NEW.pii_category := coalesce(NEW.pii_category, v_category);
    END IF;
    NEW.pii_cleared := NOT NEW.is_pii AND public.pii_type_cleared(NEW.entity_type);
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION extracted_entities_classify() FROM PUBLIC;
CREATE TRIGGER trg_extracted_entities_classify
    BEFORE INSERT OR UPDATE OF entity_type, entity_value, normalized_value, is_pii,
                               pii_category, pii_cleared
    ON extracted_entities FOR EACH ROW EXECUTE FUNCTION extracted_entities_classify();

-- Apply the rules to existing rows (after adding rules); the changes are audited.
CREATE FUNCTION pii_reclassify() RETURNS bigint
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE public.extracted_entities e SET entity_type = e.entity_type
         WHERE e.pii_cleared <> (NOT e.is_pii AND public.pii_type_cleared(e.entity_type))
            OR (NOT e.is_pii AND public.pii_detect(e.entity_type, e.entity_value,
                                                   e.normalized_value) IS NOT NULL)
        RETURNING 1)
    SELECT count(*) FROM changed
$$;
REVOKE EXECUTE ON FUNCTION pii_reclassify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pii_reclassify() TO mdus_admin;

-- Existing entities, classified once here (a migration step, not audited row by row).
ALTER TABLE extracted_entities DISABLE TRIGGER trg_extracted_entities_audit;
UPDATE extracted_entities SET entity_type = entity_type;
ALTER TABLE extracted_entities ENABLE TRIGGER trg_extracted_entities_audit;

CREATE OR REPLACE VIEW analyst_extracted_entities WITH (security_barrier) AS
SELECT e.id, e.document_id, e.analysis_id, e.entity_type,
       CASE WHEN e.pii_cleared AND NOT e.is_pii THEN e.entity_value
            ELSE mask_pii(e.entity_value, e.pii_category) END AS entity_value,
       CASE WHEN e.pii_cleared AND NOT e.is_pii THEN e.normalized_value END AS normalized_value,
       e.confidence, e.is_pii, e.pii_category, e.page_number, e.created_at
  FROM extracted_entities e;

-- Metrics for analysts without their labels (free-form, may name a patient).
ALTER POLICY processing_metrics_all ON processing_metrics TO mdus_admin;
REVOKE SELECT ON processing_metrics FROM mdus_analyst;
CREATE VIEW analyst_processing_metrics WITH (security_barrier) AS
SELECT m.id, m.document_id, m.metric_type, m.value, m.unit, m.created_at
  FROM processing_metrics m;
GRANT SELECT ON analyst_processing_metrics TO mdus_analyst, mdus_admin;

-- ---------------------------------------------------------------------------------------
-- Users cannot promote or reactivate themselves; can_access_document as documented.
-- ---------------------------------------------------------------------------------------
REVOKE INSERT, UPDATE ON users FROM mdus_app;
GRANT INSERT (id, username, email, password_hash, full_name, last_login_at, created_at,
              updated_at, preferences),
      UPDATE (username, email, password_hash, full_name, last_login_at, updated_at,
              preferences)
    ON users TO mdus_app;

-- User.can_access_document: the document's owner or an active application admin. Read
-- as owner (RLS would hide the document and the user row from mdus_app). Answers about
-- the bound user only, unless that user is an active admin or the caller a member of
-- mdus_admin (or the owner): no probing of other users' documents.
CREATE OR REPLACE FUNCTION can_access_document(p_user_id uuid, p_document_id uuid)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_app     uuid := public.mdus_app_user_id();
    v_db_user text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                           ELSE current_setting('role') END;
BEGIN
    IF p_user_id IS DISTINCT FROM v_app
       AND NOT pg_has_role(v_db_user, 'mdus_admin', 'USAGE')
       AND NOT pg_has_role(v_db_user, 'mdus_owner', 'USAGE')
       AND NOT EXISTS (SELECT 1 FROM public.users a
                        WHERE a.id = v_app AND a.is_active AND a.role = 'admin') THEN
        RETURN false;
    END IF;
    RETURN EXISTS (
        SELECT 1
          FROM public.documents d
          JOIN public.users u ON u.id = p_user_id AND u.is_active
         WHERE d.id = p_document_id
           AND (d.user_id = u.id OR u.role = 'admin'));
END
$$;

-- migrate:down
SET LOCAL ROLE mdus_owner;

CREATE OR REPLACE FUNCTION can_access_document(p_user_id uuid, p_document_id uuid)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1
          FROM documents d
          JOIN users u ON u.id = p_user_id AND u.is_active
         WHERE d.id = p_document_id
           AND (d.user_id = u.id OR u.role = 'admin')
    )
$$;
REVOKE INSERT, UPDATE ON users FROM mdus_app;
GRANT INSERT, UPDATE ON users TO mdus_app;

DROP VIEW analyst_processing_metrics;
GRANT SELECT ON processing_metrics TO mdus_analyst;
ALTER POLICY processing_metrics_all ON processing_metrics TO mdus_admin, mdus_analyst;

CREATE OR REPLACE VIEW analyst_extracted_entities WITH (security_barrier) AS
SELECT e.id, e.document_id, e.analysis_id, e.entity_type,
       CASE WHEN e.is_pii THEN mask_pii(e.entity_value, e.pii_category)
            ELSE e.entity_value END AS entity_value,
       CASE WHEN e.is_pii THEN NULL ELSE e.normalized_value END AS normalized_value,
       e.confidence, e.is_pii, e.pii_category, e.page_number, e.created_at
  FROM extracted_entities e;
DROP FUNCTION pii_reclassify();
DROP TRIGGER trg_extracted_entities_classify ON extracted_entities;
DROP FUNCTION extracted_entities_classify();
DROP FUNCTION pii_type_cleared(text);
DROP FUNCTION pii_detect(text, text, text);
-- is_pii / pii_category values set by the rules stay (a stronger flag is harmless).
ALTER TABLE extracted_entities
    DROP CONSTRAINT extracted_entities_pii_cleared_check,
    DROP COLUMN pii_cleared;
DROP TABLE pii_rules;

REVOKE SELECT ON documents, document_versions, document_analysis, extracted_entities
    FROM mdus_auditor;

DROP PROCEDURE run_partition_maintenance();
DROP FUNCTION partition_maintain_one(text);
DROP TABLE partition_maintenance_log;
DROP FUNCTION partition_default_rows();

REVOKE INSERT ON processing_metrics FROM mdus_app, mdus_admin;
GRANT INSERT ON processing_metrics TO mdus_app, mdus_admin;
GRANT INSERT ON audit_logs TO mdus_app, mdus_admin;
DROP FUNCTION log_access_event(text, text, text);

-- 004's trigger. Audit rows scrubbed by the up section stay scrubbed.
CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_old     jsonb;
    v_new     jsonb;
    v_id      text;
    v_fields  text[];
    v_arg     text;
    v_app     uuid := public.mdus_app_user_id();
    -- SECURITY DEFINER changes current_user; the "role" setting still shows SET ROLE.
    v_db_user text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                           ELSE current_setting('role') END;
BEGIN
    IF TG_OP <> 'INSERT' THEN v_old := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN v_new := to_jsonb(NEW); END IF;
    v_id := coalesce(v_new ->> 'id', v_old ->> 'id');
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(n.key ORDER BY n.key),
               jsonb_object_agg(n.key, v_old -> n.key),
               jsonb_object_agg(n.key, n.value)
          INTO v_fields, v_old, v_new
          FROM jsonb_each(v_new) AS n
         WHERE n.value IS DISTINCT FROM v_old -> n.key;
        IF v_fields IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_NARGS > 0 THEN
        FOREACH v_arg IN ARRAY TG_ARGV LOOP
            IF left(v_arg, 1) = '-' THEN
                v_old := v_old - substr(v_arg, 2);
                v_new := v_new - substr(v_arg, 2);
                v_fields := array_remove(v_fields, substr(v_arg, 2));
            ELSE
                IF v_old ? v_arg THEN v_old := jsonb_set(v_old, ARRAY[v_arg], '"[redacted]"'); END IF;
                IF v_new ? v_arg THEN v_new := jsonb_set(v_new, ARRAY[v_arg], '"[redacted]"'); END IF;
            END IF;
        END LOOP;
    END IF;
    INSERT INTO public.audit_logs (action, table_name, record_id, user_id, changed_by, db_user,
                                   old_values, new_values, changed_fields)
    VALUES (TG_OP, TG_TABLE_NAME, v_id, v_app, coalesce(v_app::text, v_db_user), v_db_user,
            v_old, v_new, v_fields);
    RETURN NULL;
END
$$;
DROP FUNCTION audit_scrub(text, jsonb);
DROP FUNCTION audit_hash(jsonb);
DROP TABLE audit_clear_columns;
DROP TABLE audit_hash_key;

-- Back as the runner's role: the database setting (when this role may change it). The
-- role mdus_auditor is a platform object and stays.
RESET ROLE;
DO $auditor$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       OR (EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'pgaudit.role')
           AND has_parameter_privilege('pgaudit.role', 'SET')) THEN
        EXECUTE format('ALTER DATABASE %I RESET pgaudit.role', current_database());
    ELSE
        RAISE NOTICE 'pgaudit.role of this database left as it is (set by the platform)';
    END IF;
END
$auditor$;
