-- 002_add_enhanced_features: monthly partitioning (pg_partman 4.7 or 5.x) of audit_logs and
-- processing_metrics, the generic audit trigger, row-level security, sensitive-data flags
-- and retention, masked views for analysts.
--
-- Settings read while this file runs (PGOPTIONS='-c mdus.audit_retention=7 years', or
-- ALTER DATABASE ... SET): mdus.partition_premake (default 4), mdus.audit_retention
-- (default '6 years', HIPAA), mdus.metrics_retention (default '13 months').
-- Later changes: UPDATE partman.part_config SET retention = ... WHERE parent_table = ...

-- migrate:up
-- pg_partman lives in schema partman. Ansible creates it as superuser; a superuser runner
-- creates it here (CREATE SCHEMA checks privileges even with IF NOT EXISTS, hence the DO).
DO $ext$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_partman') THEN
        CREATE SCHEMA IF NOT EXISTS partman;
        CREATE EXTENSION pg_partman SCHEMA partman;
    END IF;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        -- What the owner needs to run create_parent / run_maintenance (see docs/schema.md).
        GRANT USAGE, CREATE ON SCHEMA partman TO mdus_owner;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA partman TO mdus_owner;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO mdus_owner;
        GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO mdus_owner;
    END IF;
END
$ext$;

SET LOCAL ROLE mdus_owner;

-- ---------------------------------------------------------------------------------------
-- Partitioning: swap each plain table for a partitioned one with the same definition.
-- ---------------------------------------------------------------------------------------
ALTER TABLE audit_logs RENAME TO audit_logs_unpartitioned;
ALTER TABLE audit_logs_unpartitioned RENAME CONSTRAINT audit_logs_pkey TO audit_logs_unpartitioned_pkey;
ALTER SEQUENCE audit_logs_id_seq RENAME TO audit_logs_unpartitioned_id_seq;
DROP INDEX idx_audit_logs_resource, idx_audit_logs_user;

CREATE TABLE audit_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    action           text NOT NULL,
    table_name       text NOT NULL,
    record_id        text,
    user_id          uuid,
    changed_by       text NOT NULL DEFAULT current_user,
    db_user          text NOT NULL DEFAULT current_user,
    old_values       jsonb,
    new_values       jsonb,
    changed_fields   text[],
    client_addr      inet DEFAULT inet_client_addr(),
    application_name text DEFAULT current_setting('application_name', true),
    transaction_id   bigint DEFAULT txid_current(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_logs_action_check
        CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'ACCESS', 'EXPORT', 'LOGIN'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_audit_logs_resource ON audit_logs (table_name, record_id, created_at DESC);
CREATE INDEX idx_audit_logs_user ON audit_logs (user_id, created_at DESC);

ALTER TABLE processing_metrics RENAME TO processing_metrics_unpartitioned;
ALTER TABLE processing_metrics_unpartitioned
    RENAME CONSTRAINT processing_metrics_pkey TO processing_metrics_unpartitioned_pkey;
ALTER SEQUENCE processing_metrics_id_seq RENAME TO processing_metrics_unpartitioned_id_seq;
DROP INDEX idx_processing_metrics_document, idx_processing_metrics_type;

CREATE TABLE processing_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    document_id uuid REFERENCES documents (id) ON DELETE CASCADE,
    metric_type text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    labels      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processing_metrics_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT processing_metrics_type_check CHECK (metric_type ~ '^[a-z][a-z0-9_]*$')
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_processing_metrics_document ON processing_metrics (document_id, created_at);
CREATE INDEX idx_processing_metrics_type ON processing_metrics (metric_type, created_at);

GRANT SELECT, INSERT ON audit_logs, processing_metrics TO mdus_app, mdus_admin;
GRANT SELECT ON audit_logs, processing_metrics TO mdus_readonly;

DO $partman$
DECLARE
    v_schema   text;
    v_version  text;
    v_type     text;
    v_premake  integer := coalesce(
        nullif(current_setting('mdus.partition_premake', true), '')::integer, 4);
    v_first    timestamptz;
    v_start    timestamptz;
    t          record;
BEGIN
    SELECT n.nspname, e.extversion INTO v_schema, v_version
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_partman';
    -- pg_partman 4.x: type 'native' (declarative); 5.x: type 'range'. Named arguments
    -- keep the call valid for both signatures.
    v_type := CASE WHEN split_part(v_version, '.', 1)::integer >= 5 THEN 'range' ELSE 'native' END;
    RAISE NOTICE 'pg_partman % in schema %: p_type %', v_version, v_schema, v_type;

    FOR t IN
        SELECT * FROM (VALUES
            ('audit_logs', coalesce(nullif(current_setting('mdus.audit_retention', true), ''),
                                    '6 years')),
            ('processing_metrics', coalesce(nullif(current_setting('mdus.metrics_retention', true), ''),
                                            '13 months'))
        ) AS x (name, retention)
    LOOP
        -- Start early enough that every existing row lands in a real partition.
        EXECUTE format('SELECT min(created_at) FROM %I', t.name || '_unpartitioned') INTO v_first;
        v_start := date_trunc('month', now()) - make_interval(months => v_premake);
        IF v_first IS NOT NULL AND v_first < v_start THEN
            v_start := date_trunc('month', v_first);
        END IF;
        EXECUTE format(
            'SELECT %I.create_parent(p_parent_table := %L, p_control := %L, p_type := %L,'
            ' p_interval := %L, p_premake := %s, p_start_partition := %L)',
            v_schema, 'public.' || t.name, 'created_at', v_type, '1 month', v_premake,
            to_char(v_start, 'YYYY-MM-DD HH24:MI:SSOF'));
        -- Old partitions are dropped by maintenance; new ones keep being made even when no
        -- rows arrive. Partitions get no grants of their own: access goes through the
        -- parent, where row-level security applies.
        EXECUTE format(
            'UPDATE %I.part_config SET retention = %L, retention_keep_table = false,'
            ' infinite_time_partitions = true, inherit_privileges = false'
            ' WHERE parent_table = %L',
            v_schema, t.retention, 'public.' || t.name);
        EXECUTE format('INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT * FROM %I',
                       t.name, t.name || '_unpartitioned');
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), greatest(max(id), 1), max(id) IS NOT NULL) FROM %I',
                       t.name, 'id', t.name);
        EXECUTE format('DROP TABLE %I', t.name || '_unpartitioned');
    END LOOP;
END
$partman$;

-- ---------------------------------------------------------------------------------------
-- Sensitive-data flags and retention.
-- ---------------------------------------------------------------------------------------
ALTER TABLE documents
    ADD COLUMN contains_phi boolean NOT NULL DEFAULT true,
    ADD COLUMN retention_until timestamptz,
    ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
CREATE INDEX idx_documents_retention ON documents (retention_until)
    WHERE retention_until IS NOT NULL AND NOT legal_hold;

ALTER TABLE extracted_entities
    ADD COLUMN is_pii boolean NOT NULL DEFAULT false,
    ADD COLUMN pii_category text,
    ADD CONSTRAINT extracted_entities_pii_category_check CHECK (pii_category IN (
        'name', 'date_of_birth', 'ssn', 'mrn', 'address', 'phone', 'email', 'insurance_id',
        'other')),
    ADD CONSTRAINT extracted_entities_pii_flag_check CHECK (pii_category IS NULL OR is_pii);

-- Deletes documents whose retention date has passed and that are not on legal hold, with
-- everything hanging off them (ON DELETE CASCADE); the audit trigger records each row.
CREATE FUNCTION purge_expired_documents(p_as_of timestamptz DEFAULT now(),
                                        p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    purged integer;
BEGIN
    WITH doomed AS (
        SELECT id FROM documents
         WHERE retention_until < p_as_of AND NOT legal_hold
         ORDER BY retention_until
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    )
    DELETE FROM documents d USING doomed WHERE d.id = doomed.id;
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$$;
REVOKE EXECUTE ON FUNCTION purge_expired_documents(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_expired_documents(timestamptz, integer) TO mdus_admin;

-- ---------------------------------------------------------------------------------------
-- Generic audit trigger. Who: the application user (session setting mdus.app_user, set by
-- the application per transaction) else the database role in effect. Trigger arguments
-- name columns to redact ('password_hash') or, prefixed with '-', to leave out.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION mdus_app_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN s::uuid END
      FROM (SELECT current_setting('mdus.app_user', true) AS s) AS setting
$$;

CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_old     jsonb;
    v_new     jsonb;
    v_id      text;
    v_fields  text[];
    v_arg     text;
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
    VALUES (TG_OP, TG_TABLE_NAME, v_id, public.mdus_app_user_id(),
            coalesce(nullif(current_setting('mdus.app_user', true), ''), v_db_user), v_db_user,
            v_old, v_new, v_fields);
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION audit_row_change() FROM PUBLIC;

CREATE TRIGGER trg_users_audit AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('password_hash');
CREATE TRIGGER trg_documents_audit AFTER INSERT OR UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('-search_vector');
CREATE TRIGGER trg_document_versions_audit AFTER INSERT OR UPDATE OR DELETE ON document_versions
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_document_relationships_audit
    AFTER INSERT OR UPDATE OR DELETE ON document_relationships
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_document_analysis_audit AFTER INSERT OR UPDATE OR DELETE ON document_analysis
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_extracted_entities_audit
    AFTER INSERT OR UPDATE OR DELETE ON extracted_entities
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_quality_checks_audit AFTER INSERT OR UPDATE OR DELETE ON quality_checks
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_processing_jobs_audit AFTER INSERT OR UPDATE OR DELETE ON processing_jobs
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();
CREATE TRIGGER trg_model_configurations_audit
    AFTER INSERT OR UPDATE OR DELETE ON model_configurations
    FOR EACH ROW EXECUTE FUNCTION audit_row_change();

-- ---------------------------------------------------------------------------------------
-- Row-level security. mdus_app / mdus_readonly see the rows of the application user named
-- in mdus.app_user (none when unset); members of mdus_admin see all rows. The owner
-- (mdus_owner) is not subject to RLS: maintenance, triggers and the analyst views run as
-- owner. Nobody gets BYPASSRLS.
-- ---------------------------------------------------------------------------------------
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_self ON users TO mdus_app, mdus_readonly
    USING (id = mdus_app_user_id()) WITH CHECK (id = mdus_app_user_id());
CREATE POLICY users_admin ON users TO mdus_admin USING (true) WITH CHECK (true);

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_owner ON documents TO mdus_app, mdus_readonly
    USING (user_id = mdus_app_user_id()) WITH CHECK (user_id = mdus_app_user_id());
CREATE POLICY documents_admin ON documents TO mdus_admin USING (true) WITH CHECK (true);

-- Rows hanging off a document are visible exactly when the document is: the sub-query on
-- documents is itself filtered by the documents policies.
ALTER TABLE document_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY document_versions_owner ON document_versions TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY document_versions_admin ON document_versions TO mdus_admin
    USING (true) WITH CHECK (true);

ALTER TABLE document_relationships ENABLE ROW LEVEL SECURITY;
CREATE POLICY document_relationships_owner ON document_relationships TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = source_document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = source_document_id)
                AND EXISTS (SELECT 1 FROM documents d WHERE d.id = target_document_id));
CREATE POLICY document_relationships_admin ON document_relationships TO mdus_admin
    USING (true) WITH CHECK (true);

ALTER TABLE document_analysis ENABLE ROW LEVEL SECURITY;
CREATE POLICY document_analysis_owner ON document_analysis TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY document_analysis_admin ON document_analysis TO mdus_admin
    USING (true) WITH CHECK (true);

ALTER TABLE extracted_entities ENABLE ROW LEVEL SECURITY;
CREATE POLICY extracted_entities_owner ON extracted_entities TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY extracted_entities_admin ON extracted_entities TO mdus_admin
    USING (true) WITH CHECK (true);

ALTER TABLE quality_checks ENABLE ROW LEVEL SECURITY;
CREATE POLICY quality_checks_owner ON quality_checks TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY quality_checks_admin ON quality_checks TO mdus_admin USING (true) WITH CHECK (true);

ALTER TABLE processing_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY processing_jobs_owner ON processing_jobs TO mdus_app, mdus_readonly
    USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY processing_jobs_admin ON processing_jobs TO mdus_admin USING (true) WITH CHECK (true);

-- Metrics without a document are system-wide and carry no PHI.
ALTER TABLE processing_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY processing_metrics_owner ON processing_metrics TO mdus_app, mdus_readonly
    USING (document_id IS NULL OR EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (document_id IS NULL
                OR EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
CREATE POLICY processing_metrics_all ON processing_metrics TO mdus_admin, mdus_analyst
    USING (true) WITH CHECK (true);

-- Audit: users read their own trail and may add ACCESS/EXPORT events as themselves; the
-- trigger writes as owner. No UPDATE or DELETE grant exists for anyone but the owner.
ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_logs_owner ON audit_logs TO mdus_app, mdus_readonly
    USING (user_id = mdus_app_user_id()) WITH CHECK (user_id = mdus_app_user_id());
CREATE POLICY audit_logs_admin ON audit_logs TO mdus_admin USING (true) WITH CHECK (true);

GRANT SELECT ON processing_metrics TO mdus_analyst;

-- Login needs the user row before mdus.app_user can be set.
CREATE FUNCTION get_user_for_login(p_username text)
RETURNS TABLE (id uuid, password_hash text, role text, is_active boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT u.id, u.password_hash, u.role, u.is_active FROM public.users u
     WHERE u.username = p_username
$$;
REVOKE EXECUTE ON FUNCTION get_user_for_login(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION get_user_for_login(text) TO mdus_app;

-- ---------------------------------------------------------------------------------------
-- Masked views (owner's rights, so no RLS filter: analysts see all rows, never PII).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION mask_pii(p_value text, p_category text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_value IS NULL THEN NULL
                ELSE '[' || coalesce(p_category, 'pii') || ' redacted]' END
$$;

CREATE VIEW analyst_documents WITH (security_barrier) AS
SELECT d.id,
       encode(sha256(convert_to(d.user_id::text, 'UTF8')), 'hex') AS user_pseudonym,
       d.document_type, d.status, d.mime_type, d.file_size, d.quality_score,
       d.contains_phi, d.created_at, d.processed_at
  FROM documents d;

CREATE VIEW analyst_document_analysis WITH (security_barrier) AS
SELECT a.id, a.document_id, a.analysis_type, a.model_name, a.model_version,
       a.overall_confidence, a.processing_time_ms, a.created_at
  FROM document_analysis a;

CREATE VIEW analyst_extracted_entities WITH (security_barrier) AS
SELECT e.id, e.document_id, e.analysis_id, e.entity_type,
       CASE WHEN e.is_pii THEN mask_pii(e.entity_value, e.pii_category)
            ELSE e.entity_value END AS entity_value,
       CASE WHEN e.is_pii THEN NULL ELSE e.normalized_value END AS normalized_value,
       e.confidence, e.is_pii, e.pii_category, e.page_number, e.created_at
  FROM extracted_entities e;

GRANT SELECT ON analyst_documents, analyst_document_analysis, analyst_extracted_entities
    TO mdus_analyst, mdus_admin;

-- Queue depth for monitoring, without row access.
CREATE VIEW processing_queue_stats AS
SELECT status, job_type, count(*) AS jobs, min(scheduled_at) AS oldest_scheduled_at,
       max(updated_at) AS last_updated_at
  FROM processing_jobs
 GROUP BY status, job_type;
GRANT SELECT ON processing_queue_stats TO mdus_monitor, mdus_admin;

-- migrate:down
SET LOCAL ROLE mdus_owner;

DROP VIEW processing_queue_stats;
DROP VIEW analyst_extracted_entities;
DROP VIEW analyst_document_analysis;
DROP VIEW analyst_documents;
DROP FUNCTION mask_pii(text, text);
DROP FUNCTION get_user_for_login(text);
REVOKE SELECT ON processing_metrics FROM mdus_analyst;

DROP POLICY audit_logs_owner ON audit_logs;
DROP POLICY audit_logs_admin ON audit_logs;
ALTER TABLE audit_logs DISABLE ROW LEVEL SECURITY;
DROP POLICY processing_metrics_owner ON processing_metrics;
DROP POLICY processing_metrics_all ON processing_metrics;
ALTER TABLE processing_metrics DISABLE ROW LEVEL SECURITY;
DROP POLICY processing_jobs_owner ON processing_jobs;
DROP POLICY processing_jobs_admin ON processing_jobs;
ALTER TABLE processing_jobs DISABLE ROW LEVEL SECURITY;
DROP POLICY quality_checks_owner ON quality_checks;
DROP POLICY quality_checks_admin ON quality_checks;
ALTER TABLE quality_checks DISABLE ROW LEVEL SECURITY;
DROP POLICY extracted_entities_owner ON extracted_entities;
DROP POLICY extracted_entities_admin ON extracted_entities;
ALTER TABLE extracted_entities DISABLE ROW LEVEL SECURITY;
DROP POLICY document_analysis_owner ON document_analysis;
DROP POLICY document_analysis_admin ON document_analysis;
ALTER TABLE document_analysis DISABLE ROW LEVEL SECURITY;
DROP POLICY document_relationships_owner ON document_relationships;
DROP POLICY document_relationships_admin ON document_relationships;
ALTER TABLE document_relationships DISABLE ROW LEVEL SECURITY;
DROP POLICY document_versions_owner ON document_versions;
DROP POLICY document_versions_admin ON document_versions;
ALTER TABLE document_versions DISABLE ROW LEVEL SECURITY;
DROP POLICY documents_owner ON documents;
DROP POLICY documents_admin ON documents;
ALTER TABLE documents DISABLE ROW LEVEL SECURITY;
DROP POLICY users_self ON users;
DROP POLICY users_admin ON users;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;

DROP TRIGGER trg_users_audit ON users;
DROP TRIGGER trg_documents_audit ON documents;
DROP TRIGGER trg_document_versions_audit ON document_versions;
DROP TRIGGER trg_document_relationships_audit ON document_relationships;
DROP TRIGGER trg_document_analysis_audit ON document_analysis;
DROP TRIGGER trg_extracted_entities_audit ON extracted_entities;
DROP TRIGGER trg_quality_checks_audit ON quality_checks;
DROP TRIGGER trg_processing_jobs_audit ON processing_jobs;
DROP TRIGGER trg_model_configurations_audit ON model_configurations;
DROP FUNCTION audit_row_change();
DROP FUNCTION mdus_app_user_id();

DROP FUNCTION purge_expired_documents(timestamptz, integer);
ALTER TABLE extracted_entities
    DROP CONSTRAINT extracted_entities_pii_flag_check,
    DROP CONSTRAINT extracted_entities_pii_category_check,
    DROP COLUMN pii_category,
    DROP COLUMN is_pii;
DROP INDEX idx_documents_retention;
ALTER TABLE documents
    DROP COLUMN legal_hold,
    DROP COLUMN retention_until,
    DROP COLUMN contains_phi;

-- Back to plain tables, keeping the rows (partman stops managing them first).
ALTER TABLE audit_logs RENAME TO audit_logs_partitioned;
ALTER TABLE audit_logs_partitioned RENAME CONSTRAINT audit_logs_pkey TO audit_logs_partitioned_pkey;
ALTER SEQUENCE audit_logs_id_seq RENAME TO audit_logs_partitioned_id_seq;
DROP INDEX idx_audit_logs_resource, idx_audit_logs_user;
CREATE TABLE audit_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    action           text NOT NULL,
    table_name       text NOT NULL,
    record_id        text,
    user_id          uuid,
    changed_by       text NOT NULL DEFAULT current_user,
    db_user          text NOT NULL DEFAULT current_user,
    old_values       jsonb,
    new_values       jsonb,
    changed_fields   text[],
    client_addr      inet DEFAULT inet_client_addr(),
    application_name text DEFAULT current_setting('application_name', true),
    transaction_id   bigint DEFAULT txid_current(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_logs_action_check
        CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'ACCESS', 'EXPORT', 'LOGIN'))
);
CREATE INDEX idx_audit_logs_resource ON audit_logs (table_name, record_id, created_at DESC);
CREATE INDEX idx_audit_logs_user ON audit_logs (user_id, created_at DESC);
GRANT SELECT, INSERT ON audit_logs TO mdus_app, mdus_admin;
GRANT SELECT ON audit_logs TO mdus_readonly;

ALTER TABLE processing_metrics RENAME TO processing_metrics_partitioned;
ALTER TABLE processing_metrics_partitioned
    RENAME CONSTRAINT processing_metrics_pkey TO processing_metrics_partitioned_pkey;
ALTER SEQUENCE processing_metrics_id_seq RENAME TO processing_metrics_partitioned_id_seq;
DROP INDEX idx_processing_metrics_document, idx_processing_metrics_type;
CREATE TABLE processing_metrics (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    document_id uuid REFERENCES documents (id) ON DELETE CASCADE,
    metric_type text NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    labels      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processing_metrics_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT processing_metrics_type_check CHECK (metric_type ~ '^[a-z][a-z0-9_]*$')
);
CREATE INDEX idx_processing_metrics_document ON processing_metrics (document_id, created_at);
CREATE INDEX idx_processing_metrics_type ON processing_metrics (metric_type, created_at);
GRANT SELECT, INSERT ON processing_metrics TO mdus_app, mdus_admin;
GRANT SELECT ON processing_metrics TO mdus_readonly;

DO $unpartition$
DECLARE
    v_schema text;
    t        text;
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_partman';
    FOREACH t IN ARRAY ARRAY['audit_logs', 'processing_metrics'] LOOP
        EXECUTE format('DELETE FROM %I.part_config WHERE parent_table = %L', v_schema, 'public.' || t);
        EXECUTE format('INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT * FROM %I',
                       t, t || '_partitioned');
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), greatest(max(id), 1), max(id) IS NOT NULL) FROM %I',
                       t, 'id', t);
        EXECUTE format('DROP TABLE %I', t || '_partitioned');
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', v_schema, 'template_public_' || t);
    END LOOP;
END
$unpartition$;
