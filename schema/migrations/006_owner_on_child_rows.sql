-- 006_owner_on_child_rows: row-level security of the tables hanging off documents checks
-- an owner column of their own, served by an index, instead of a sub-query on documents.
--
-- Before: document_versions, document_analysis, extracted_entities, quality_checks,
-- processing_jobs and processing_metrics were visible when
-- EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id) - itself filtered by the
-- documents policy. The planner cannot turn that into an index range: "my latest 50
-- entities" read every entity of every user and probed documents for each (78 ms p50 at
-- 100k documents, growing with the table, not with the user's share).
-- After: each of these tables carries user_id, the owner of its document:
--   * set by a BEFORE INSERT/UPDATE trigger from documents (whatever the application
--     sends), so the application never supplies it;
--   * kept right by a foreign key (document_id, user_id) -> documents (id, user_id)
--     ON UPDATE CASCADE ON DELETE CASCADE: a document given to another user takes its
--     rows along, and no row can name an owner its document does not have;
--   * indexed (user_id, created_at DESC), which the policy user_id = mdus_app_user_id()
--     uses directly.
-- The existing single-column foreign keys stay (their ON DELETE CASCADE is unchanged).
-- The backfill rewrites every row of these tables once, in this transaction, with their
-- user triggers off (no audit row or updated_at change for it); on a large database run
-- it in a maintenance window.

-- migrate:up
SET LOCAL ROLE mdus_owner;

ALTER TABLE documents ADD CONSTRAINT documents_id_user_key UNIQUE (id, user_id);

-- The owner of NEW's document (NULL without a document), looked up as owner: a row under
-- a document the application cannot see gets that document's real owner, and the
-- policy's WITH CHECK refuses it.
CREATE FUNCTION set_document_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.document_id IS NULL THEN
        NEW.user_id := NULL;
    ELSE
        SELECT d.user_id INTO NEW.user_id FROM public.documents d WHERE d.id = NEW.document_id;
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION set_document_owner() FROM PUBLIC;

DO $owner$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT * FROM (VALUES
            ('document_versions', 'created_at'),
            ('document_analysis', 'created_at'),
            ('extracted_entities', 'created_at'),
            ('quality_checks', 'checked_at'),
            ('processing_jobs', 'created_at')
        ) AS x (name, time_column)
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN user_id uuid', t.name);
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER USER', t.name);
        EXECUTE format('UPDATE %I c SET user_id = d.user_id FROM documents d'
                       ' WHERE d.id = c.document_id', t.name);
        EXECUTE format('ALTER TABLE %I ENABLE TRIGGER USER', t.name);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN user_id SET NOT NULL', t.name);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (document_id, user_id)'
                       ' REFERENCES documents (id, user_id) ON UPDATE CASCADE ON DELETE CASCADE',
                       t.name, t.name || '_document_owner_fkey');
        EXECUTE format('CREATE INDEX %I ON %I (user_id, %I DESC)',
                       'idx_' || t.name || '_user_' || replace(t.time_column, '_at', ''),
                       t.name, t.time_column);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF document_id, user_id ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION set_document_owner()',
                       'trg_' || t.name || '_document_owner', t.name);
        EXECUTE format('DROP POLICY %I ON %I', t.name || '_owner', t.name);
        EXECUTE format('CREATE POLICY %I ON %I TO mdus_app, mdus_readonly'
                       ' USING (user_id = mdus_app_user_id())'
                       ' WITH CHECK (user_id = mdus_app_user_id())', t.name || '_owner', t.name);
    END LOOP;
END
$owner$;

-- Metrics: system-wide rows (no document) have no owner either.
ALTER TABLE processing_metrics ADD COLUMN user_id uuid;
UPDATE processing_metrics m SET user_id = d.user_id FROM documents d WHERE d.id = m.document_id;
ALTER TABLE processing_metrics
    ADD CONSTRAINT processing_metrics_owner_check CHECK ((document_id IS NULL) = (user_id IS NULL)),
    ADD CONSTRAINT processing_metrics_document_owner_fkey FOREIGN KEY (document_id, user_id)
        REFERENCES documents (id, user_id) ON UPDATE CASCADE ON DELETE CASCADE;
CREATE INDEX idx_processing_metrics_user_created ON processing_metrics (user_id, created_at DESC);
CREATE TRIGGER trg_processing_metrics_document_owner
    BEFORE INSERT OR UPDATE OF document_id, user_id ON processing_metrics
    FOR EACH ROW EXECUTE FUNCTION set_document_owner();
DROP POLICY processing_metrics_owner ON processing_metrics;
CREATE POLICY processing_metrics_owner ON processing_metrics TO mdus_app, mdus_readonly
    USING (document_id IS NULL OR user_id = mdus_app_user_id())
    WITH CHECK (document_id IS NULL OR user_id = mdus_app_user_id());

-- migrate:down
SET LOCAL ROLE mdus_owner;

DROP POLICY processing_metrics_owner ON processing_metrics;
CREATE POLICY processing_metrics_owner ON processing_metrics TO mdus_app, mdus_readonly
    USING (document_id IS NULL OR EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))
    WITH CHECK (document_id IS NULL
                OR EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id));
DROP TRIGGER trg_processing_metrics_document_owner ON processing_metrics;
DROP INDEX idx_processing_metrics_user_created;
ALTER TABLE processing_metrics
    DROP CONSTRAINT processing_metrics_document_owner_fkey,
    DROP CONSTRAINT processing_metrics_owner_check,
    DROP COLUMN user_id;

DO $owner$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['document_versions', 'document_analysis', 'extracted_entities',
                             'quality_checks', 'processing_jobs']
    LOOP
        EXECUTE format('DROP POLICY %I ON %I', t || '_owner', t);
        EXECUTE format('CREATE POLICY %I ON %I TO mdus_app, mdus_readonly'
                       ' USING (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))'
                       ' WITH CHECK (EXISTS (SELECT 1 FROM documents d WHERE d.id = document_id))',
                       t || '_owner', t);
        EXECUTE format('DROP TRIGGER %I ON %I', 'trg_' || t || '_document_owner', t);
        -- the index and the foreign key go with the column
        EXECUTE format('ALTER TABLE %I DROP COLUMN user_id', t);
    END LOOP;
END
$owner$;

DROP FUNCTION set_document_owner();
ALTER TABLE documents DROP CONSTRAINT documents_id_user_key;
