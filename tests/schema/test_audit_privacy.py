"""Schema round 2 (issue 15): the audit trail, patient data and retention, owner columns
on child rows. Each test names the gap it closes; every one of them failed on 001-004."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from conftest import run_migrate
from pgcluster import PgCluster
from psycopg import errors
from test_schema import acting_as, count, make_analysis, make_document, make_entity, make_user

Conn = psycopg.Connection[Any]
PHI_TABLES = ("documents", "document_versions", "document_analysis", "extracted_entities")


def scalar(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row
    return row[0]


# --------------------------------------------------------------------------- audit trail


def test_application_cannot_write_audit_rows(db: Conn) -> None:
    alice = make_user(db, "alice")
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", alice) as conn:
        conn.execute(
            "INSERT INTO audit_logs (action, table_name, user_id, db_user, created_at)"
            " VALUES ('ACCESS', 'documents', %s, 'someone', now() + interval '1 year')",
            (alice,),
        )


def test_access_events_are_recorded_as_the_bound_user(db: Conn) -> None:
    alice = make_user(db, "alice")
    doc = make_document(db, alice)
    with acting_as(db, "mdus_app", alice) as conn:
        event = scalar(conn, "SELECT log_access_event('EXPORT', 'documents', %s)", (doc,))
        now = scalar(conn, "SELECT now()")
    row = db.execute(
        "SELECT action, table_name, record_id, user_id::text, changed_by, db_user, created_at,"
        " old_values, new_values FROM audit_logs WHERE id = %s",
        (event,),
    ).fetchone()
    assert row == ("EXPORT", "documents", doc, alice, alice, "mdus_app", now, None, None)
    refused: list[tuple[str, str, type[Exception]]] = [
        ("DELETE", doc, errors.InvalidParameterValue),  # only ACCESS and EXPORT
        ("ACCESS", "patient John Smith, DOB 1970-01-01", errors.InvalidParameterValue),
    ]
    for action, record, error in refused:
        with pytest.raises(error), acting_as(db, "mdus_app", alice) as conn:
            conn.execute("SELECT log_access_event(%s, 'documents', %s)", (action, record))
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app") as conn:
        conn.execute("SELECT log_access_event('ACCESS', 'documents', %s)", (doc,))
    owner = scalar(
        db,
        "SELECT pg_get_userbyid(proowner)::text || ' ' || prosecdef::text || ' '"
        " || array_to_string(proconfig, ',') FROM pg_proc WHERE proname = 'log_access_event'",
    )
    assert owner == "mdus_owner true search_path=pg_catalog, public"
    # The audit trigger still writes: it runs as the owner.
    assert scalar(
        db,
        "SELECT prosecdef AND pg_get_userbyid(proowner) = 'mdus_owner' FROM pg_proc"
        " WHERE proname = 'audit_row_change'",
    )


def test_application_cannot_date_metrics(db: Conn) -> None:
    alice = make_user(db, "alice")
    doc = make_document(db, alice)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", alice) as conn:
        conn.execute(
            "INSERT INTO processing_metrics (document_id, metric_type, value, created_at)"
            " VALUES (%s, 'ocr_seconds', 1, now() + interval '5 years')",
            (doc,),
        )
    with acting_as(db, "mdus_app", alice) as conn:
        conn.execute("SELECT record_metric(%s, 'ocr_seconds', 2.5, 's')", (doc,))
        conn.execute(
            "INSERT INTO processing_metrics (document_id, metric_type, value) VALUES (%s, 'x', 1)",
            (doc,),
        )
    partitions = db.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM processing_metrics"
    ).fetchall()
    assert partitions and all(not p.endswith("_default") for (p,) in partitions)


def test_partition_maintenance_reports_default_rows(db: Conn) -> None:
    """A row in the DEFAULT partition for a month pg_partman must create next: maintenance
    of that set fails; the other set is still maintained, both outcomes are logged and the
    call ends with an error naming the set (it used to stop silently)."""
    newest = scalar(
        db,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'audit_logs'::regclass AND c.relname <> 'audit_logs_default'"
        " ORDER BY 1 DESC LIMIT 1",
    )
    db.execute(f"DROP TABLE {newest}")
    landed = scalar(
        db,
        "INSERT INTO audit_logs (action, table_name, created_at)"
        " VALUES ('LOGIN', 'x', date_trunc('month', now()) + interval '4 months 3 days')"
        " RETURNING tableoid::regclass::text",
    )
    assert landed == "audit_logs_default"
    with pytest.raises(errors.RaiseException) as failure:
        db.execute("CALL run_partition_maintenance()")
    message = str(failure.value)
    assert "public.audit_logs: 1 row(s) in its DEFAULT partition" in message
    assert "would be violated" in message and "processing_metrics" not in message
    log = db.execute(
        "SELECT parent_table, default_rows, succeeded FROM partition_maintenance_log ORDER BY 1"
    ).fetchall()
    assert log == [("public.audit_logs", 1, False), ("public.processing_metrics", 0, True)]
    rows = db.execute("SELECT parent_table, row_count FROM partition_default_rows()").fetchall()
    assert ("audit_logs", 1) in rows
    with acting_as(db, "mdus_monitor") as conn:
        assert count(conn, "SELECT count(*) FROM partition_default_rows() WHERE row_count > 0")
    # Once the row is gone, maintenance succeeds again and re-creates the month.
    db.execute("DELETE FROM audit_logs_default")
    db.execute("CALL run_partition_maintenance()")
    assert scalar(db, "SELECT to_regclass(%s) IS NOT NULL", (newest,))


def _pgaudit_loaded(conn: Conn) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM pg_settings WHERE name = 'pgaudit.role'"))


def test_reads_of_patient_data_are_audited(
    new_db: Callable[..., str], cluster: PgCluster, template_db: str
) -> None:
    """pgaudit object auditing: the auditor role holds SELECT on the PHI tables and the
    database's pgaudit.role names it (a database setting: not copied by CREATE DATABASE
    ... TEMPLATE, hence a database migrated here)."""
    assert template_db
    dsn = new_db()
    assert run_migrate(dsn, "migrate").rc == 2
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not _pgaudit_loaded(conn):
            pytest.skip("pgaudit is not loaded in this cluster")
        assert scalar(conn, "SHOW pgaudit.role") == "mdus_auditor"
        assert (
            scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'mdus_auditor'") is False
        )
        for table in PHI_TABLES:
            assert scalar(conn, f"SELECT has_table_privilege('mdus_auditor', '{table}', 'SELECT')")
        alice = make_user(conn, "alice")
        make_document(conn, alice)
        marker = f"audit-probe-{uuid.uuid4().hex[:8]}"
        with acting_as(conn, "mdus_app", alice) as app:
            app.execute(f"SELECT /* {marker} */ e.entity_value FROM extracted_entities e")
        with acting_as(conn, "mdus_analyst") as analyst:
            analyst.execute(f"SELECT /* {marker}-view */ * FROM analyst_extracted_entities")
    log = cluster.logfile.read_text(errors="replace")
    lines = [line for line in log.splitlines() if marker in line and "AUDIT: OBJECT" in line]
    assert any("public.extracted_entities" in line for line in lines), lines
    assert any(f"{marker}-view" in line for line in lines), lines


# --------------------------------------------------------------------------- PHI


def _rows_containing(conn: Conn, marker: str) -> dict[str, int]:
    """Every table (partitions included) of every schema but the catalogs, each row cast
    to text: how many rows mention the marker."""
    tables = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%'"
    ).fetchall()
    assert len(tables) > 20
    found = {}
    for (table,) in tables:
        hits = count(
            conn, f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s", (f"%{marker}%",)
        )
        if hits:
            found[table] = hits
    return found


def _document_with_phi(conn: Conn, user: str, marker: str, **columns: Any) -> str:
    doc = make_document(
        conn,
        user,
        filename=f"{marker}.pdf",
        original_filename=f"{marker} discharge.pdf",
        content_text=f"Patient {marker}, DOB 1970-01-01",
        metadata=psycopg.types.json.Jsonb({"patient": marker}),
        **columns,
    )
    conn.execute(
        "INSERT INTO document_versions (document_id, version_number, file_path, file_size,"
        " change_summary) VALUES (%s, 1, %s, 10, %s)",
        (doc, f"/uploads/{marker}.pdf", f"renamed for {marker}"),
    )
    analysis = make_analysis(conn, doc)
    conn.execute(
        "UPDATE document_analysis SET structured_data = %s WHERE id = %s",
        (psycopg.types.json.Jsonb({"patient": marker}), analysis),
    )
    make_entity(conn, analysis, doc, f"{marker} Smith", 0.9, entity_type="term")
    conn.execute(
        "INSERT INTO quality_checks (document_id, check_type, passed, details)"
        " VALUES (%s, 'ocr', true, %s)",
        (doc, psycopg.types.json.Jsonb({"note": marker})),
    )
    conn.execute(
        "INSERT INTO processing_jobs (document_id, job_type, payload) VALUES (%s, 'ocr', %s)",
        (doc, psycopg.types.json.Jsonb({"name": marker})),
    )
    conn.execute(
        "SELECT record_metric(%s, 'ocr_seconds', 1, 's', %s)",
        (doc, psycopg.types.json.Jsonb({"patient": marker})),
    )
    conn.execute(
        "UPDATE documents SET content_text = content_text || ' (reviewed)' WHERE id = %s", (doc,)
    )
    return doc


def test_purge_leaves_no_phi_anywhere(db: Conn) -> None:
    alice = make_user(db, "alice")
    purged, kept = f"purged{uuid.uuid4().hex[:8]}", f"kept{uuid.uuid4().hex[:8]}"
    with acting_as(db, "mdus_app", alice) as conn:
        doc = _document_with_phi(conn, alice, purged, retention_until="2001-01-01")
        other = _document_with_phi(conn, alice, kept)
        conn.execute(
            "INSERT INTO document_relationships (source_document_id, target_document_id,"
            " relationship_type, metadata) VALUES (%s, %s, 'related_to', %s)",
            (doc, other, psycopg.types.json.Jsonb({"why": purged})),
        )
        conn.execute("SELECT log_access_event('ACCESS', 'documents', %s)", (doc,))
    assert _rows_containing(db, purged), "the scan must see the document before the purge"
    assert scalar(db, "SELECT purge_expired_documents()") == 1
    assert _rows_containing(db, purged) == {}
    # What changed is still there: who, when, which columns, hashes of the values.
    rows = db.execute(
        "SELECT action, changed_by, old_values FROM audit_logs"
        " WHERE table_name = 'documents' AND record_id = %s ORDER BY id",
        (doc,),
    ).fetchall()
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "ACCESS", "DELETE"]
    deleted = rows[-1][2]
    assert deleted["id"] == doc and deleted["file_size"] == 2048
    assert deleted["content_text"] == scalar(
        db,
        "SELECT audit_hash(to_jsonb(%s::text))",
        (f"Patient {purged}, DOB 1970-01-01 (reviewed)",),
    )
    assert deleted["content_text"].startswith("keyed-sha256:")
    # The kept document's PHI is where it belongs, and not in the audit trail.
    assert set(_rows_containing(db, kept)) <= {
        "public.documents",
        "public.document_versions",
        "public.document_analysis",
        "public.extracted_entities",
        "public.quality_checks",
        "public.processing_jobs",
    } | {t for t in _rows_containing(db, kept) if t.startswith("public.processing_metrics_p")}
    assert not any("audit_logs" in t for t in _rows_containing(db, kept))


def test_existing_audit_rows_are_scrubbed(new_db: Callable[..., str], template_db: str) -> None:
    assert template_db
    dsn = new_db()
    assert run_migrate(dsn, "migrate", "--target", "004").rc == 2
    marker = f"old{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        alice = make_user(conn, "alice")
        doc = make_document(conn, alice, content_text=f"{marker} history")
        conn.execute("DELETE FROM documents WHERE id = %s", (doc,))
        conn.execute(  # what the application could insert before
            "INSERT INTO audit_logs (action, table_name, new_values) VALUES ('EXPORT', 'x', %s)",
            (psycopg.types.json.Jsonb({"note": marker}),),
        )
        assert (
            count(conn, "SELECT count(*) FROM audit_logs t WHERE t::text LIKE %s", (f"%{marker}%",))
            == 3
        )
    assert run_migrate(dsn, "migrate").rc == 2
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert _rows_containing(conn, marker) == {}
        old = scalar(
            conn,
            "SELECT old_values FROM audit_logs WHERE record_id = %s AND action = 'DELETE'",
            (doc,),
        )
        assert old["status"] == "uploaded"
        assert old["content_text"] == scalar(
            conn, "SELECT audit_hash(to_jsonb(%s::text))", (f"{marker} history",)
        )


# --------------------------------------------------------------------------- masking


def test_analyst_masking_fails_closed(db: Conn) -> None:
    alice = make_user(db, "alice")
    doc = make_document(db, alice)
    analysis = make_analysis(db, doc)
    make_entity(db, analysis, doc, "cardiomyopathy", 0.9, entity_type="diagnosis")
    make_entity(db, analysis, doc, "Ward 7 bed 3", 0.9, entity_type="location_note")
    make_entity(db, analysis, doc, "call 555-123-4567", 0.9, entity_type="medication")
    db.execute(
        "SELECT record_metric(%s, 'ocr_seconds', 1, 's', '{\"patient\": \"Jane Roe\"}')", (doc,)
    )
    with acting_as(db, "mdus_analyst") as conn:
        rows = dict(
            conn.execute(
                "SELECT entity_type, entity_value FROM analyst_extracted_entities"
            ).fetchall()
        )
        metrics = conn.execute("SELECT * FROM analyst_processing_metrics").fetchall()
    assert rows == {
        "diagnosis": "cardiomyopathy",  # positively cleared: a clinical term
        "location_note": "[pii redacted]",  # unknown type: masked, not shown
        "medication": "[phone redacted]",  # cleared type, but the value is a phone number
    }
    assert len(metrics) == 1 and "Jane" not in str(metrics)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_analyst") as conn:
        conn.execute("SELECT labels FROM processing_metrics")


@pytest.mark.parametrize(
    ("entity_type", "value", "category"),
    [
        ("ssn", "anything", "ssn"),
        ("patient_name", "Jane", "name"),
        ("date_of_birth", "first of May", "date_of_birth"),
        ("term", "123-45-6789", "ssn"),
        ("term", "jane.roe@example.org", "email"),
        ("term", "(555) 123-4567", "phone"),
        ("term", "MRN: A1234567", "mrn"),
        ("term", "12 Baker Street", "address"),
        ("term", "born 04/05/1971", "date_of_birth"),
    ],
)
def test_pii_flagged_on_write_whatever_the_application_says(
    db: Conn, entity_type: str, value: str, category: str
) -> None:
    alice = make_user(db, "alice")
    doc = make_document(db, alice)
    with acting_as(db, "mdus_app", alice) as conn:
        analysis = make_analysis(conn, doc)
        make_entity(conn, analysis, doc, value, 0.9, entity_type=entity_type, is_pii=False)
        conn.execute("UPDATE extracted_entities SET is_pii = false, pii_cleared = true")
    row = db.execute("SELECT is_pii, pii_category, pii_cleared FROM extracted_entities").fetchone()
    assert row == (True, category, False)


def test_dba_rules_apply_to_existing_rows(db: Conn) -> None:
    alice = make_user(db, "alice")
    doc = make_document(db, alice)
    analysis = make_analysis(db, doc)
    make_entity(db, analysis, doc, "BADGE-77", 0.9, entity_type="medication")
    assert scalar(db, "SELECT pii_cleared FROM extracted_entities") is True
    db.execute(
        "INSERT INTO pii_rules (applies_to, pattern, pii_category, description)"
        " VALUES ('value', '^badge-[0-9]+$', 'other', 'staff badge numbers')"
    )
    assert scalar(db, "SELECT pii_reclassify()") == 1
    row = db.execute("SELECT is_pii, pii_category, pii_cleared FROM extracted_entities").fetchone()
    assert row == (True, "other", False)


# --------------------------------------------------------------------------- users


def test_users_cannot_promote_themselves(db: Conn) -> None:
    alice = make_user(db, "alice")
    for statement in (
        "UPDATE users SET role = 'admin'",
        "UPDATE users SET is_active = true",
    ):
        with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", alice) as conn:
            conn.execute(statement)
    newcomer = str(uuid.uuid4())
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", newcomer) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash, role)"
            " VALUES (%s, 'mallory', 'm@example.org', 'x', 'admin')",
            (newcomer,),
        )
    with acting_as(db, "mdus_app", alice) as conn:  # what the application does need
        conn.execute("UPDATE users SET full_name = 'Alice A', last_login_at = now()")
    with acting_as(db, "mdus_app", newcomer) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash)"
            " VALUES (%s, 'newcomer', 'n@example.org', 'x')",
            (newcomer,),
        )
    assert scalar(db, "SELECT role FROM users WHERE id = %s", (newcomer,)) == "user"


def test_can_access_document_for_application_admins(db: Conn) -> None:
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    boss = make_user(db, "boss", "admin")
    doc = make_document(db, alice)

    def ask(acting: str, about: str) -> bool:
        with acting_as(db, "mdus_app", acting) as conn:
            return bool(scalar(conn, "SELECT can_access_document(%s, %s)", (about, doc)))

    assert ask(boss, boss) is True  # documented: owner or admin (was false under RLS)
    assert ask(alice, alice) is True
    assert ask(bob, bob) is False
    assert ask(bob, alice) is False  # no answers about other users
    assert ask(boss, alice) is True  # an admin may ask about anyone
    db.execute("UPDATE users SET is_active = false WHERE id = %s", (boss,))
    assert ask(boss, boss) is False


# --------------------------------------------------------------------------- owner columns


def test_child_rows_carry_their_documents_owner(db: Conn) -> None:
    alice, bob = make_user(db, "alice"), make_user(db, "bob")
    doc = make_document(db, alice)
    with acting_as(db, "mdus_app", alice) as conn:
        analysis = make_analysis(conn, doc)
        conn.execute(
            "INSERT INTO processing_jobs (document_id, job_type, user_id) VALUES (%s, 'ocr', %s)",
            (doc, bob),  # the application cannot choose the owner
        )
        make_entity(conn, analysis, doc, "x", 0.5)
        conn.execute("SELECT record_metric(%s, 'm', 1)", (doc,))
    tables = ("document_analysis", "extracted_entities", "processing_jobs", "processing_metrics")
    for table in tables:
        assert scalar(db, f"SELECT array_agg(DISTINCT user_id::text) FROM {table}") == [alice]
    with pytest.raises(errors.ForeignKeyViolation):
        db.execute("ALTER TABLE processing_jobs DISABLE TRIGGER USER")
        try:
            db.execute("UPDATE processing_jobs SET user_id = %s", (bob,))
        finally:
            db.execute("ALTER TABLE processing_jobs ENABLE TRIGGER USER")
    # An admin hands the document to bob: everything under it follows.
    db.execute("UPDATE documents SET user_id = %s WHERE id = %s", (bob, doc))
    for table in tables:
        assert scalar(db, f"SELECT array_agg(DISTINCT user_id::text) FROM {table}") == [bob]
    with acting_as(db, "mdus_app", alice) as conn:
        assert count(conn, "SELECT count(*) FROM extracted_entities") == 0
    with acting_as(db, "mdus_app", bob) as conn:
        assert count(conn, "SELECT count(*) FROM extracted_entities") == 1
        assert count(conn, "SELECT count(*) FROM processing_metrics") == 1
