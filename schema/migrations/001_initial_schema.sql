-- 001_initial_schema: types, core tables, keys, constraints, indexes, business functions.
--
-- Contract (docs/schema.md): the platform roles exist before migrations run (Ansible
-- creates them); this file creates a missing one as NOLOGIN so a bare cluster works too.
-- Every object is owned by mdus_owner (SET LOCAL ROLE below), whoever runs the file.
-- The runner records the version in schema_migrations; this file must not.

-- migrate:up
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['mdus_owner', 'mdus_migrator', 'mdus_app', 'mdus_readonly',
                             'mdus_analyst', 'mdus_admin', 'mdus_monitor']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            RAISE NOTICE 'created missing role % (NOLOGIN)', r;
        END IF;
    END LOOP;
    -- PostgreSQL 15 lets only the database owner create in schema public. Ansible makes
    -- mdus_owner the database owner; on a bare cluster the superuser grants it instead.
    IF NOT has_schema_privilege('mdus_owner', 'public', 'CREATE') THEN
        GRANT CREATE ON SCHEMA public TO mdus_owner;
    END IF;
END
$roles$;

-- Platform extensions: created here when the runner may, a no-op when Ansible already did.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS pgaudit;

SET LOCAL ROLE mdus_owner;

CREATE TYPE document_type_enum AS ENUM (
    'medical_report', 'laboratory_result', 'prescription',
    'insurance_claim', 'patient_form', 'discharge_summary',
    'pathology_report', 'radiology_report', 'invoice',
    'contract', 'form', 'receipt', 'statement', 'other'
);

CREATE TYPE processing_status_enum AS ENUM (
    'uploaded', 'queued', 'processing',
    'completed', 'failed', 'archived'
);

-- updated_at is owned by the database, not by the application.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username       text NOT NULL,
    email          text NOT NULL,
    password_hash  text NOT NULL,
    full_name      text,
    role           text NOT NULL DEFAULT 'user',
    is_active      boolean NOT NULL DEFAULT true,
    last_login_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9_.@-]{3,64}$'),
    CONSTRAINT users_email_check CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT users_role_check CHECK (role IN ('user', 'reviewer', 'analyst', 'admin'))
);

-- Users are deactivated, never deleted while they own documents (ON DELETE RESTRICT).
CREATE TABLE model_configurations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_name    text NOT NULL,
    model_version text NOT NULL,
    model_type    text NOT NULL,
    parameters    jsonb NOT NULL DEFAULT '{}',
    is_active     boolean NOT NULL DEFAULT false,
    description   text,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_configurations_name_version_key UNIQUE (model_name, model_version),
    CONSTRAINT model_configurations_parameters_check CHECK (jsonb_typeof(parameters) = 'object')
);
-- At most one active configuration per model.
CREATE UNIQUE INDEX idx_model_configurations_active
    ON model_configurations (model_name) WHERE is_active;

CREATE TABLE documents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    filename          text NOT NULL,
    original_filename text NOT NULL,
    file_path         text NOT NULL,
    file_size         bigint NOT NULL,
    mime_type         text NOT NULL,
    file_hash         text,
    document_type     document_type_enum NOT NULL DEFAULT 'other',
    status            processing_status_enum NOT NULL DEFAULT 'uploaded',
    content_text      text,
    search_vector     tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, coalesce(original_filename, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(content_text, '')), 'B')
    ) STORED,
    metadata          jsonb NOT NULL DEFAULT '{}',
    quality_score     numeric(4, 3),
    error_message     text,
    processed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT documents_file_size_check CHECK (file_size > 0),
    CONSTRAINT documents_filename_check CHECK (length(filename) BETWEEN 1 AND 255),
    CONSTRAINT documents_mime_type_check CHECK (mime_type ~ '^[a-z]+/[A-Za-z0-9.+_-]+$'),
    CONSTRAINT documents_file_hash_check CHECK (file_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT documents_quality_score_check CHECK (quality_score BETWEEN 0 AND 1),
    CONSTRAINT documents_metadata_check CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT documents_completed_check
        CHECK (status <> 'completed' OR processed_at IS NOT NULL)
);
CREATE INDEX idx_documents_user_created ON documents (user_id, created_at DESC);
CREATE INDEX idx_documents_status_created ON documents (status, created_at DESC);
CREATE INDEX idx_documents_type_created ON documents (document_type, created_at DESC);
CREATE INDEX idx_documents_metadata ON documents USING gin (metadata jsonb_path_ops);
CREATE INDEX idx_documents_search ON documents USING gin (search_vector);
CREATE INDEX idx_documents_file_hash ON documents (file_hash) WHERE file_hash IS NOT NULL;
-- Hot subset: documents still in the pipeline (small, constantly polled).
CREATE INDEX idx_documents_pending ON documents (status, created_at)
    WHERE status IN ('uploaded', 'queued', 'processing', 'failed');

CREATE TABLE document_versions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id    uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version_number integer NOT NULL,
    file_path      text NOT NULL,
    file_size      bigint NOT NULL,
    file_hash      text,
    change_summary text,
    created_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT document_versions_document_version_key UNIQUE (document_id, version_number),
    CONSTRAINT document_versions_version_check CHECK (version_number > 0),
    CONSTRAINT document_versions_file_size_check CHECK (file_size > 0),
    CONSTRAINT document_versions_file_hash_check CHECK (file_hash ~ '^[0-9a-f]{64}$')
);

CREATE TABLE document_relationships (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    target_document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    relationship_type  text NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}',
    created_by         uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT document_relationships_key
        UNIQUE (source_document_id, target_document_id, relationship_type),
    CONSTRAINT document_relationships_not_self CHECK (source_document_id <> target_document_id),
    CONSTRAINT document_relationships_type_check CHECK (relationship_type IN (
        'supersedes', 'duplicate_of', 'attachment_of', 'follow_up_of', 'related_to'))
);
CREATE INDEX idx_document_relationships_target ON document_relationships (target_document_id);

CREATE TABLE document_analysis (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id            uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    model_configuration_id uuid REFERENCES model_configurations (id) ON DELETE RESTRICT,
    analysis_type          text NOT NULL,
    model_name             text NOT NULL,
    model_version          text NOT NULL,
    structured_data        jsonb NOT NULL DEFAULT '{}',
    confidence_scores      jsonb NOT NULL DEFAULT '{}',
    overall_confidence     numeric(5, 4),
    processing_time_ms     integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    -- Lets extracted_entities prove its document_id matches its analysis.
    CONSTRAINT document_analysis_id_document_key UNIQUE (id, document_id),
    CONSTRAINT document_analysis_confidence_check CHECK (overall_confidence BETWEEN 0 AND 1),
    CONSTRAINT document_analysis_time_check CHECK (processing_time_ms >= 0),
    CONSTRAINT document_analysis_structured_check CHECK (jsonb_typeof(structured_data) = 'object'),
    CONSTRAINT document_analysis_scores_check CHECK (jsonb_typeof(confidence_scores) = 'object')
);
CREATE INDEX idx_document_analysis_document_created
    ON document_analysis (document_id, created_at DESC);
CREATE INDEX idx_document_analysis_structured
    ON document_analysis USING gin (structured_data jsonb_path_ops);
CREATE INDEX idx_document_analysis_model ON document_analysis (model_configuration_id)
    WHERE model_configuration_id IS NOT NULL;

CREATE TABLE extracted_entities (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    analysis_id      uuid NOT NULL,
    document_id      uuid NOT NULL,
    entity_type      text NOT NULL,
    entity_value     text NOT NULL,
    normalized_value text,
    confidence       numeric(5, 4) NOT NULL,
    start_offset     integer,
    end_offset       integer,
    page_number      integer,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT extracted_entities_analysis_fkey FOREIGN KEY (analysis_id, document_id)
        REFERENCES document_analysis (id, document_id) ON DELETE CASCADE,
    CONSTRAINT extracted_entities_confidence_check CHECK (confidence BETWEEN 0 AND 1),
    CONSTRAINT extracted_entities_offsets_check
        CHECK (start_offset >= 0 AND end_offset >= start_offset),
    CONSTRAINT extracted_entities_page_check CHECK (page_number > 0)
);
CREATE INDEX idx_extracted_entities_analysis ON extracted_entities (analysis_id);
CREATE INDEX idx_extracted_entities_document ON extracted_entities (document_id);
CREATE INDEX idx_extracted_entities_confidence ON extracted_entities (confidence DESC);
CREATE INDEX idx_extracted_entities_type_confidence
    ON extracted_entities (entity_type, confidence DESC);

CREATE TABLE quality_checks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    check_type  text NOT NULL,
    passed      boolean NOT NULL,
    score       numeric(4, 3),
    details     jsonb NOT NULL DEFAULT '{}',
    checked_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quality_checks_score_check CHECK (score BETWEEN 0 AND 1)
);
CREATE INDEX idx_quality_checks_document ON quality_checks (document_id, checked_at DESC);

CREATE TABLE processing_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id   uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    job_type      text NOT NULL,
    status        text NOT NULL DEFAULT 'queued',
    priority      smallint NOT NULL DEFAULT 5,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 3,
    payload       jsonb NOT NULL DEFAULT '{}',
    result        jsonb,
    error_message text,
    locked_by     text,
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processing_jobs_status_check
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    CONSTRAINT processing_jobs_priority_check CHECK (priority BETWEEN 0 AND 9),
    CONSTRAINT processing_jobs_attempts_check
        CHECK (attempts >= 0 AND max_attempts > 0 AND attempts <= max_attempts)
);
-- Serves the SKIP LOCKED dequeue (higher priority first, then oldest); only queued rows.
CREATE INDEX idx_processing_jobs_dequeue
    ON processing_jobs (priority DESC, scheduled_at, id) WHERE status = 'queued';
-- Stuck-job detection: running rows by last touch.
CREATE INDEX idx_processing_jobs_running ON processing_jobs (updated_at)
    WHERE status = 'running';
CREATE INDEX idx_processing_jobs_document ON processing_jobs (document_id);

-- High volume, append-only: partitioned by month in 002.
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

-- Audit rows survive the rows they describe: no foreign keys here on purpose.
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

CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER trg_model_configurations_updated_at BEFORE UPDATE ON model_configurations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER trg_documents_updated_at BEFORE UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER trg_document_analysis_updated_at BEFORE UPDATE ON document_analysis
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER trg_processing_jobs_updated_at BEFORE UPDATE ON processing_jobs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Business methods of the seed's data access layer. SECURITY INVOKER: row-level
-- security (002) applies to them exactly as to plain queries.

-- Document.mark_as_processed(quality_score)
CREATE FUNCTION mark_document_processed(p_document_id uuid, p_quality_score numeric)
RETURNS documents
LANGUAGE plpgsql AS $$
DECLARE
    result documents;
BEGIN
    UPDATE documents
       SET status = 'completed', quality_score = p_quality_score,
           processed_at = now(), error_message = NULL
     WHERE id = p_document_id
    RETURNING * INTO result;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'document % not found', p_document_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN result;
END
$$;

-- User.can_access_document(document_id): owner of the document, or an admin user.
CREATE FUNCTION can_access_document(p_user_id uuid, p_document_id uuid)
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

-- Document.get_latest_analysis()
CREATE FUNCTION get_latest_analysis(p_document_id uuid)
RETURNS SETOF document_analysis
LANGUAGE sql STABLE AS $$
    SELECT * FROM document_analysis
     WHERE document_id = p_document_id
     ORDER BY created_at DESC
     LIMIT 1
$$;

-- ExtractedEntity.get_high_confidence_entities(min_confidence)
CREATE FUNCTION get_high_confidence_entities(p_min_confidence numeric DEFAULT 0.9,
                                             p_limit integer DEFAULT 100)
RETURNS SETOF extracted_entities
LANGUAGE sql STABLE AS $$
    SELECT * FROM extracted_entities
     WHERE confidence >= p_min_confidence
     ORDER BY confidence DESC
     LIMIT p_limit
$$;

-- ProcessingMetrics.record_metric(document_id, metric_type, value, unit)
CREATE FUNCTION record_metric(p_document_id uuid, p_metric_type text,
                              p_value double precision, p_unit text DEFAULT NULL,
                              p_labels jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO processing_metrics (document_id, metric_type, value, unit, labels)
    VALUES (p_document_id, p_metric_type, p_value, p_unit, p_labels)
    RETURNING id
$$;

-- Job queue: claim the next queued job without blocking other workers.
CREATE FUNCTION dequeue_processing_job(p_worker text, p_job_types text[] DEFAULT NULL)
RETURNS SETOF processing_jobs
LANGUAGE sql AS $$
    UPDATE processing_jobs j
       SET status = 'running', locked_by = p_worker, started_at = now(),
           attempts = j.attempts + 1
     WHERE j.id = (
        SELECT q.id FROM processing_jobs q
         WHERE q.status = 'queued' AND q.scheduled_at <= now()
           AND (p_job_types IS NULL OR q.job_type = ANY (p_job_types))
         ORDER BY q.priority DESC, q.scheduled_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED)
    RETURNING j.*
$$;

-- Privileges (schema public keeps PostgreSQL 15's USAGE for PUBLIC). Analysts get
-- nothing on base tables: they read the masked views of 002.
GRANT SELECT, INSERT, UPDATE, DELETE ON users, documents, document_versions,
    document_relationships, document_analysis, extracted_entities, quality_checks,
    processing_jobs TO mdus_app, mdus_admin;
GRANT SELECT, INSERT ON processing_metrics, audit_logs TO mdus_app, mdus_admin;
GRANT SELECT ON model_configurations TO mdus_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON model_configurations TO mdus_admin;
GRANT SELECT ON users, documents, document_versions, document_relationships,
    document_analysis, extracted_entities, quality_checks, processing_jobs,
    processing_metrics, model_configurations, audit_logs TO mdus_readonly;

-- migrate:down
SET LOCAL ROLE mdus_owner;
DROP FUNCTION dequeue_processing_job(text, text[]);
DROP FUNCTION record_metric(uuid, text, double precision, text, jsonb);
DROP FUNCTION get_high_confidence_entities(numeric, integer);
DROP FUNCTION get_latest_analysis(uuid);
DROP FUNCTION can_access_document(uuid, uuid);
DROP FUNCTION mark_document_processed(uuid, numeric);
DROP TABLE audit_logs;
DROP TABLE processing_metrics;
DROP TABLE processing_jobs;
DROP TABLE quality_checks;
DROP TABLE extracted_entities;
DROP TABLE document_analysis;
DROP TABLE document_relationships;
DROP TABLE document_versions;
DROP TABLE documents;
DROP TABLE model_configurations;
DROP TABLE users;
DROP FUNCTION set_updated_at();
DROP TYPE processing_status_enum;
DROP TYPE document_type_enum;
-- Roles and extensions are platform objects (Ansible's); a schema rollback keeps them.
