-- 004_bind_app_user_to_transaction: the acting application user (the tenant boundary of
-- row-level security) is honoured only in the transaction that set it.
--
-- Before: mdus_app_user_id() read the mdus.app_user setting however it had been set. A
-- session-level value (set_config(..., false) or a plain SET) outlived the transaction
-- and, on a pooled server connection (PgBouncer in transaction mode, or an application's
-- own pool), reached whichever client used that connection next: that client saw the
-- first one's documents without naming any user at all.
-- After: mdus_set_app_user(uuid) binds the identity to the current transaction (both
-- settings transaction-local, with a token of the transaction's start time); the identity
-- function ignores an identity whose token is not this transaction's. A client that sets
-- no identity, or sets it at session level, sees nothing. The audit trigger records the
-- bound identity only.

-- migrate:up
SET LOCAL ROLE mdus_owner;

-- The token of the current transaction: its start time, which no later transaction on the
-- same server connection repeats (microsecond resolution, taken at transaction start).
CREATE FUNCTION mdus_transaction_token() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT extract(epoch FROM pg_catalog.transaction_timestamp())::text
$$;

CREATE OR REPLACE FUNCTION mdus_app_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                 AND current_setting('mdus.app_user_xact', true) = public.mdus_transaction_token()
                THEN s::uuid END
      FROM (SELECT current_setting('mdus.app_user', true) AS s) AS setting
$$;

-- Sets the acting user for the rest of the current transaction only; NULL clears it.
-- Call it inside the transaction (after BEGIN): in autocommit mode it lasts one statement.
CREATE FUNCTION mdus_set_app_user(p_user_id uuid) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('mdus.app_user_xact', public.mdus_transaction_token(), true);
    SELECT set_config('mdus.app_user', coalesce(p_user_id::text, ''), true);
    SELECT p_user_id;
$$;
REVOKE EXECUTE ON FUNCTION mdus_set_app_user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mdus_set_app_user(uuid) TO mdus_app, mdus_readonly, mdus_admin;

-- The audit trail names the bound identity, never a stale session-level one.
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

-- migrate:down
SET LOCAL ROLE mdus_owner;
DROP FUNCTION mdus_set_app_user(uuid);
CREATE OR REPLACE FUNCTION mdus_app_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN s ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN s::uuid END
      FROM (SELECT current_setting('mdus.app_user', true) AS s) AS setting
$$;
DROP FUNCTION mdus_transaction_token();
CREATE OR REPLACE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_old     jsonb;
    v_new     jsonb;
    v_id      text;
    v_fields  text[];
    v_arg     text;
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
