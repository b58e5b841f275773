"""Behaviour of the MDUS schema itself: constraints, business functions, RLS, audit,
partitioning, retention, masking, and index use on generated data."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import errors

Conn = psycopg.Connection[Any]


def make_user(conn: Conn, name: str, role: str = "user") -> str:
    row = conn.execute(
        "INSERT INTO users (username, email, password_hash, role) VALUES (%s, %s, 'x', %s)"
        " RETURNING id::text",
        (name, f"{name}@example.org", role),
    ).fetchone()
    assert row
    return str(row[0])


def make_document(conn: Conn, user_id: str, **columns: Any) -> str:
    values = {
        "user_id": user_id,
        "filename": "doc.pdf",
        "original_filename": "report.pdf",
        "file_path": f"/uploads/{uuid.uuid4()}.pdf",
        "file_size": 2048,
        "mime_type": "application/pdf",
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    row = conn.execute(
        f"INSERT INTO documents ({names}) VALUES ({marks}) RETURNING id::text",
        tuple(values.values()),
    ).fetchone()
    assert row
    return str(row[0])


def make_analysis(conn: Conn, document_id: str, confidence: float = 0.8) -> str:
    row = conn.execute(
        "INSERT INTO document_analysis (document_id, analysis_type, model_name, model_version,"
        " overall_confidence, structured_data) VALUES (%s, 'extraction', 'ner', '1', %s,"
        ' \'{"diagnosis": "flu"}\') RETURNING id::text',
        (document_id, confidence),
    ).fetchone()
    assert row
    return str(row[0])


def make_entity(
    conn: Conn, analysis_id: str, document_id: str, value: str, confidence: float, **extra: Any
) -> None:
    conn.execute(
        "INSERT INTO extracted_entities (analysis_id, document_id, entity_type, entity_value,"
        " confidence, is_pii, pii_category) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            analysis_id,
            document_id,
            extra.get("entity_type", "person"),
            value,
            confidence,
            extra.get("is_pii", False),
            extra.get("pii_category"),
        ),
    )


@contextmanager
def acting_as(conn: Conn, role: str, app_user: str | None = None) -> Iterator[Conn]:
    """One transaction as a database role, optionally on behalf of an application user."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {role}")
        if app_user is not None:
            conn.execute("SELECT mdus_set_app_user(%s)", (app_user,))
        yield conn


def count(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    assert row
    return int(row[0])


# --------------------------------------------------------------------------- structure


def test_objects_owned_by_owner_role(db: Conn) -> None:
    rows = db.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')"
        " AND c.relname NOT LIKE 'schema_migrations%' AND c.relname NOT LIKE 'pg_stat%'"
    ).fetchall()
    assert len(rows) > 20
    assert {owner for _, owner in rows} == {"mdus_owner"}
    functions = db.execute(
        "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace AND proname NOT LIKE 'pg_stat%'"
        " AND proname NOT LIKE 'pgaudit%'"
    ).fetchall()
    assert functions == [("mdus_owner",)]


def test_enums_match_the_seed(db: Conn) -> None:
    types = db.execute("SELECT enum_range(NULL::document_type_enum)::text[]").fetchone()
    statuses = db.execute("SELECT enum_range(NULL::processing_status_enum)::text[]").fetchone()
    assert types and len(types[0]) == 14 and "radiology_report" in types[0]
    assert statuses and statuses[0] == [
        "uploaded",
        "queued",
        "processing",
        "completed",
        "failed",
        "archived",
    ]


def test_no_timestamp_without_time_zone(db: Conn) -> None:
    assert (
        count(
            db,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
            " AND data_type = 'timestamp without time zone'",
        )
        == 0
    )


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("UPDATE documents SET file_size = -1", errors.CheckViolation),
        ("UPDATE documents SET file_size = 0", errors.CheckViolation),
        ("UPDATE documents SET quality_score = 1.5", errors.CheckViolation),
        ("UPDATE documents SET status = 'completed', processed_at = NULL", errors.CheckViolation),
        ("UPDATE document_analysis SET overall_confidence = 1.5", errors.CheckViolation),
        ("UPDATE extracted_entities SET confidence = 1.5", errors.CheckViolation),
        ("UPDATE extracted_entities SET confidence = -0.1", errors.CheckViolation),
        ("UPDATE extracted_entities SET pii_category = 'shoe_size'", errors.CheckViolation),
        (
            "INSERT INTO pii_rules (applies_to, pattern, sensitive) VALUES ('entity_type', '.*',"
            " false)",
            errors.CheckViolation,
        ),
        (
            "INSERT INTO pii_rules (applies_to, pattern, sensitive) VALUES ('value', 'x', false)",
            errors.CheckViolation,
        ),
        ("UPDATE documents SET user_id = gen_random_uuid()", errors.ForeignKeyViolation),
        ("UPDATE extracted_entities SET document_id = %(other)s", errors.ForeignKeyViolation),
        ("DELETE FROM users", errors.ForeignKeyViolation),
        (
            "INSERT INTO processing_jobs (document_id, job_type, priority) "
            "SELECT id, 'ocr', 10 FROM documents",
            errors.CheckViolation,
        ),
    ],
)
def test_constraints_reject_bad_values(db: Conn, statement: str, error: type[Exception]) -> None:
    user = make_user(db, "alice")
    doc = make_document(db, user)
    other = make_document(db, user)
    make_entity(db, make_analysis(db, doc), doc, "John", 0.9)
    with pytest.raises(error):
        db.execute(statement, {"other": other})


def test_business_functions(db: Conn) -> None:
    alice, bob, boss = make_user(db, "alice"), make_user(db, "bob"), make_user(db, "boss", "admin")
    doc = make_document(db, alice)
    db.execute("SELECT mark_document_processed(%s, 0.95)", (doc,))
    row = db.execute(
        "SELECT status::text, quality_score, processed_at IS NOT NULL FROM documents WHERE id = %s",
        (doc,),
    ).fetchone()
    assert row and row[0] == "completed" and float(row[1]) == 0.95 and row[2]
    access = db.execute(
        "SELECT can_access_document(%s, %s), can_access_document(%s, %s),"
        " can_access_document(%s, %s)",
        (alice, doc, bob, doc, boss, doc),
    ).fetchone()
    assert access == (True, False, True)
    make_analysis(db, doc, 0.5)
    db.execute("SELECT pg_sleep(0.01)")
    latest = make_analysis(db, doc, 0.7)
    row = db.execute(
        "SELECT id::text, overall_confidence::float FROM get_latest_analysis(%s)", (doc,)
    )
    assert row.fetchone() == (latest, pytest.approx(0.7))
    make_entity(db, latest, doc, "aspirin", 0.95)
    make_entity(db, latest, doc, "maybe", 0.4)
    high = db.execute("SELECT entity_value FROM get_high_confidence_entities(0.9)").fetchall()
    assert high == [("aspirin",)]
    metric = db.execute(
        "SELECT record_metric(%s, 'processing_time_seconds', 15.2, 'seconds')", (doc,)
    ).fetchone()
    assert metric and metric[0] > 0
    assert count(db, "SELECT count(*) FROM processing_metrics WHERE unit = 'seconds'") == 1


def test_updated_at_maintained_by_trigger(db: Conn) -> None:
    doc = make_document(db, make_user(db, "alice"))
    before = db.execute("SELECT updated_at FROM documents WHERE id = %s", (doc,)).fetchone()
    db.execute(
        "UPDATE documents SET status = 'queued', updated_at = '2000-01-01' WHERE id = %s", (doc,)
    )
    after = db.execute("SELECT updated_at FROM documents WHERE id = %s", (doc,)).fetchone()
    assert before and after and after[0] > before[0]


def test_job_queue_skip_locked(db: Conn, migrated_db: str) -> None:
    doc = make_document(db, make_user(db, "alice"))
    for priority in (1, 9, 5):
        db.execute(
            "INSERT INTO processing_jobs (document_id, job_type, priority) VALUES (%s, 'ocr', %s)",
            (doc, priority),
        )
    with psycopg.connect(migrated_db) as w1, psycopg.connect(migrated_db) as w2:
        first = w1.execute("SELECT priority FROM dequeue_processing_job('w1')").fetchone()
        second = w2.execute("SELECT priority FROM dequeue_processing_job('w2')").fetchone()
        assert (first, second) == ((9,), (5,))  # w2 skipped w1's locked row, did not wait
        w1.commit()
        w2.commit()
    assert count(db, "SELECT count(*) FROM processing_jobs WHERE status = 'running'") == 2


# --------------------------------------------------------------------------- security


@pytest.fixture
def two_users(db: Conn) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in ("alice", "bob"):
        user = make_user(db, name)
        doc = make_document(db, user, content_text=f"{name} private report")
        analysis = make_analysis(db, doc)
        make_entity(db, analysis, doc, f"{name} Smith", 0.97, is_pii=True, pii_category="name")
        db.execute("INSERT INTO processing_jobs (document_id, job_type) VALUES (%s, 'ocr')", (doc,))
        db.execute(
            "INSERT INTO quality_checks (document_id, check_type, passed)"
            " VALUES (%s, 'blur', true)",
            (doc,),
        )
        ids[name], ids[f"{name}_doc"] = user, doc
    return ids


def test_rls_isolates_application_users(db: Conn, two_users: dict[str, str]) -> None:
    with acting_as(db, "mdus_app", two_users["alice"]) as conn:
        docs = conn.execute("SELECT id::text FROM documents").fetchall()
        assert docs == [(two_users["alice_doc"],)]
        assert count(conn, "SELECT count(*) FROM document_analysis") == 1
        values = conn.execute("SELECT entity_value FROM extracted_entities").fetchall()
        assert values == [("alice Smith",)]
        assert count(conn, "SELECT count(*) FROM processing_jobs") == 1
        assert count(conn, "SELECT count(*) FROM quality_checks") == 1
        assert count(conn, "SELECT count(*) FROM users") == 1
        hits = count(
            conn,
            "SELECT count(*) FROM documents"
            " WHERE search_vector @@ websearch_to_tsquery('english', 'bob')",
        )
        assert hits == 0
        # Bob's rows can neither be changed nor created in his name.
        updated = conn.execute(
            "UPDATE documents SET status = 'archived' WHERE id = %s", (two_users["bob_doc"],)
        )
        assert updated.rowcount == 0
    with (
        pytest.raises(errors.InsufficientPrivilege),
        acting_as(db, "mdus_app", two_users["alice"]) as conn,
    ):
        make_document(conn, two_users["bob"])
    with (
        pytest.raises(errors.InsufficientPrivilege),
        acting_as(db, "mdus_app", two_users["alice"]) as conn,
    ):
        make_analysis(conn, two_users["bob_doc"])


def test_rls_without_app_user_sees_nothing(db: Conn, two_users: dict[str, str]) -> None:
    assert two_users
    with acting_as(db, "mdus_app") as conn:
        assert count(conn, "SELECT count(*) FROM documents") == 0
        assert count(conn, "SELECT count(*) FROM extracted_entities") == 0
    with db.transaction():
        db.execute("SET LOCAL ROLE mdus_app")
        db.execute("SELECT mdus_set_app_user(%s)", (two_users["alice"],))
        db.execute("SELECT set_config('mdus.app_user', 'not-a-uuid', true)")
        assert count(db, "SELECT count(*) FROM documents") == 0


def test_session_level_identity_is_ignored(db: Conn, two_users: dict[str, str]) -> None:
    """What a plain SET does: the value outlives the transaction, so on a pooled server
    connection it would reach the next client. Only an identity bound to the current
    transaction by mdus_set_app_user() counts."""
    db.execute("SELECT set_config('mdus.app_user', %s, false)", (two_users["alice"],))
    try:
        with acting_as(db, "mdus_app") as conn:
            assert count(conn, "SELECT count(*) FROM documents") == 0
            assert conn.execute("SELECT mdus_app_user_id()").fetchone() == (None,)
        with acting_as(db, "mdus_app") as conn:  # transaction-local, but not bound
            conn.execute("SELECT set_config('mdus.app_user', %s, true)", (two_users["alice"],))
            assert count(conn, "SELECT count(*) FROM documents") == 0
    finally:
        db.execute("RESET mdus.app_user")


def test_bound_identity_lasts_one_transaction(db: Conn, two_users: dict[str, str]) -> None:
    with acting_as(db, "mdus_app", two_users["alice"]) as conn:
        assert count(conn, "SELECT count(*) FROM documents") == 1
    # The binding token of a finished transaction, replayed at session level, is stale.
    token = db.execute("SELECT mdus_transaction_token()").fetchone()
    assert token
    db.execute("SELECT set_config('mdus.app_user_xact', %s, false)", token)
    db.execute("SELECT set_config('mdus.app_user', %s, false)", (two_users["alice"],))
    try:
        with acting_as(db, "mdus_app") as conn:
            assert count(conn, "SELECT count(*) FROM documents") == 0
    finally:
        db.execute("RESET mdus.app_user")
        db.execute("RESET mdus.app_user_xact")
    with acting_as(db, "mdus_app", two_users["bob"]) as conn:
        conn.execute("SELECT mdus_set_app_user(NULL)")
        assert count(conn, "SELECT count(*) FROM documents") == 0


def test_audit_names_only_the_bound_identity(db: Conn, two_users: dict[str, str]) -> None:
    db.execute("SELECT set_config('mdus.app_user', %s, false)", (two_users["bob"],))
    try:
        with acting_as(db, "mdus_app", two_users["alice"]) as conn:
            conn.execute(
                "UPDATE documents SET status = 'processing' WHERE id = %s",
                (two_users["alice_doc"],),
            )
    finally:
        db.execute("RESET mdus.app_user")
    row = db.execute(
        "SELECT user_id::text, changed_by FROM audit_logs WHERE record_id = %s"
        " AND action = 'UPDATE' ORDER BY id DESC LIMIT 1",
        (two_users["alice_doc"],),
    ).fetchone()
    assert row == (two_users["alice"], two_users["alice"])


def test_admin_role_sees_all_rows(db: Conn, two_users: dict[str, str]) -> None:
    assert two_users
    db.execute("DROP ROLE IF EXISTS test_admin_member")
    db.execute("CREATE ROLE test_admin_member NOLOGIN IN ROLE mdus_admin")
    try:
        with acting_as(db, "test_admin_member") as conn:
            assert count(conn, "SELECT count(*) FROM documents") == 2
            assert count(conn, "SELECT count(*) FROM extracted_entities") == 2
        roles = db.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'mdus%' AND rolbypassrls"
        ).fetchone()
        assert roles == (0,)
    finally:
        db.execute("DROP ROLE test_admin_member")


def test_analyst_sees_masked_pii_only(db: Conn, two_users: dict[str, str]) -> None:
    make_entity(
        db,
        make_analysis(db, two_users["alice_doc"]),
        two_users["alice_doc"],
        "aspirin",
        0.9,
        entity_type="medication",
    )
    with acting_as(db, "mdus_analyst") as conn:
        rows = conn.execute(
            "SELECT entity_type, entity_value, is_pii FROM analyst_extracted_entities"
            " ORDER BY entity_value"
        ).fetchall()
        assert ("medication", "aspirin", False) in rows
        masked = [value for _, value, pii in rows if pii]
        assert masked == ["[name redacted]", "[name redacted]"]
        assert all("Smith" not in str(row) for row in rows)
        docs = conn.execute("SELECT * FROM analyst_documents").fetchall()
        assert len(docs) == 2
        assert two_users["alice"] not in json.dumps(docs, default=str)
    for table in ("extracted_entities", "documents", "users", "document_analysis"):
        with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_analyst") as conn:
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1")


def test_audit_trigger_records_changes(db: Conn) -> None:
    alice = make_user(db, "alice")
    with acting_as(db, "mdus_app", alice) as conn:
        doc = make_document(conn, alice)
        conn.execute("UPDATE documents SET status = 'queued' WHERE id = %s", (doc,))
        conn.execute("DELETE FROM documents WHERE id = %s", (doc,))
    rows = db.execute(
        "SELECT action, changed_by, db_user, user_id::text, old_values, new_values,"
        " changed_fields FROM audit_logs WHERE table_name = 'documents' AND record_id = %s"
        " ORDER BY id",
        (doc,),
    ).fetchall()
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "DELETE"]
    assert {(r[1], r[2], r[3]) for r in rows} == {(alice, "mdus_app", alice)}
    insert, update, delete = rows
    assert insert[4] is None and insert[5]["file_size"] == 2048
    assert "search_vector" not in insert[5]
    assert update[4]["status"] == "uploaded" and update[5]["status"] == "queued"
    assert "status" in update[6] and "file_size" not in update[5]
    assert delete[4]["id"] == doc and delete[5] is None
    # Without an application user, the database role is recorded; secrets are redacted.
    db.execute("UPDATE users SET password_hash = 'new' WHERE id = %s", (alice,))
    row = db.execute(
        "SELECT changed_by, old_values->>'password_hash', new_values->>'password_hash'"
        " FROM audit_logs WHERE table_name = 'users' AND action = 'UPDATE'"
    ).fetchone()
    assert row == ("postgres", "[redacted]", "[redacted]")
    # The application reads its own trail, and cannot rewrite it.
    with acting_as(db, "mdus_app", alice) as conn:
        assert count(conn, "SELECT count(*) FROM audit_logs") >= 3
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", alice) as conn:
        conn.execute("DELETE FROM audit_logs")


# --------------------------------------------------------------------------- partitions


@pytest.mark.parametrize(
    ("table", "retention", "insert"),
    [
        (
            "audit_logs",
            "6 years",
            "INSERT INTO audit_logs (action, table_name, created_at)"
            " VALUES ('LOGIN', 'x', %s) RETURNING tableoid::regclass::text",
        ),
        (
            "processing_metrics",
            "13 months",
            "INSERT INTO processing_metrics (metric_type, value, created_at)"
            " VALUES ('m', 1, %s) RETURNING tableoid::regclass::text",
        ),
    ],
)
def test_monthly_partitions_current_plus_premake(
    db: Conn, table: str, retention: str, insert: str
) -> None:
    config = db.execute(
        "SELECT partition_interval, premake, retention, infinite_time_partitions"
        " FROM partman.part_config WHERE parent_table = %s",
        (f"public.{table}",),
    ).fetchone()
    assert config and config[1] == 4 and config[2] == retention and config[3] is True
    assert config[0] in ("1 mon", "1 month", "monthly")
    landed = []
    for months in range(5):  # this month and the 4 premade ones
        row = db.execute(
            f"SELECT date_trunc('month', now()) + make_interval(months => {months}, days => 3)"
        ).fetchone()
        assert row
        target = db.execute(insert, (row[0],)).fetchone()
        assert target
        landed.append(target[0])
    assert all(name.startswith(f"{table}_p") for name in landed), landed
    assert len(set(landed)) == 5
    # Partitions carry no grants: the application reaches rows only through the parent,
    # where row-level security applies.
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app") as conn:
        conn.execute(f"SELECT 1 FROM {landed[0]}")


def test_retention_purge_removes_only_expired(db: Conn) -> None:
    alice = make_user(db, "alice")
    expired = make_document(db, alice, retention_until="2001-01-01")
    on_hold = make_document(db, alice, retention_until="2001-01-01", legal_hold=True)
    current = make_document(db, alice, retention_until="2999-01-01")
    forever = make_document(db, alice)
    make_entity(db, make_analysis(db, expired), expired, "x", 0.5)
    purged = db.execute("SELECT purge_expired_documents()").fetchone()
    assert purged == (1,)
    left = {r[0] for r in db.execute("SELECT id::text FROM documents").fetchall()}
    assert left == {on_hold, current, forever}
    assert count(db, "SELECT count(*) FROM extracted_entities") == 0
    assert (
        count(
            db,
            "SELECT count(*) FROM audit_logs WHERE action = 'DELETE' AND record_id = %s",
            (expired,),
        )
        == 1
    )
    with pytest.raises(errors.InsufficientPrivilege), acting_as(db, "mdus_app", alice) as conn:
        conn.execute("SELECT purge_expired_documents()")


def test_user_preferences(db: Conn) -> None:
    alice = make_user(db, "alice")
    row = db.execute("SELECT preferences FROM users WHERE id = %s", (alice,)).fetchone()
    assert row == ({},)
    with pytest.raises(errors.CheckViolation):
        db.execute("UPDATE users SET preferences = '[]'")


# --------------------------------------------------------------------------- index use

DATASET_SQL = """
SET session_replication_role = replica;  -- bulk load: no audit rows per generated row
INSERT INTO users (id, username, email, password_hash)
SELECT md5('user' || u)::uuid, 'user' || u, 'user' || u || '@example.org', 'x'
  FROM generate_series(0, 99) AS u;
INSERT INTO documents (id, user_id, filename, original_filename, file_path, file_size,
                       mime_type, document_type, status, content_text, metadata,
                       created_at, processed_at)
SELECT md5('doc' || i)::uuid, md5('user' || (i % 100))::uuid, 'f' || i || '.pdf',
       'report_' || i || '.pdf', '/uploads/' || i, 1000 + i, 'application/pdf',
       (enum_range(NULL::document_type_enum))[1 + i % 14],
       (CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'queued'
             ELSE 'completed' END)::processing_status_enum,
       'patient visit ' || md5(i::text) ||
           CASE WHEN i % 1000 = 0 THEN ' cardiomyopathy' ELSE ' routine checkup' END,
       jsonb_build_object('source', CASE WHEN i % 500 = 0 THEN 'fax' ELSE 'upload' END),
       now() - make_interval(mins => i), now() - make_interval(mins => i)
  FROM generate_series(1, %(n)s) AS i;
-- Triggers are off (replica role): the owner column of child rows (006) is given here.
INSERT INTO document_analysis (document_id, user_id, analysis_type, model_name, model_version,
                               structured_data, overall_confidence, created_at)
SELECT id, user_id, 'extraction', 'ner', '1',
       jsonb_build_object('diagnosis', CASE WHEN file_size % 700 = 0 THEN 'rare' ELSE 'flu' END),
       0.5, created_at
  FROM documents;
INSERT INTO extracted_entities (analysis_id, document_id, user_id, entity_type, entity_value,
                                confidence, created_at)
SELECT a.id, a.document_id, a.user_id, 'term', 'value ' || k,
       round((random() * 0.98)::numeric, 4), a.created_at + make_interval(secs => k)
  FROM document_analysis a, generate_series(1, 3) AS k;
INSERT INTO processing_jobs (document_id, user_id, job_type, status, started_at, created_at)
SELECT id, user_id, 'ocr', CASE WHEN file_size % 100 = 0 THEN 'queued' ELSE 'completed' END,
       now(), created_at
  FROM documents;
INSERT INTO audit_logs (action, table_name, record_id, user_id, created_at)
SELECT 'UPDATE', 'documents', id::text, user_id, created_at FROM documents;
RESET session_replication_role;
"""

QUERIES: list[tuple[str, str, set[str]]] = [
    (
        "full-text search",
        "SELECT id FROM documents"
        " WHERE search_vector @@ websearch_to_tsquery('english', 'cardiomyopathy')",
        {"idx_documents_search"},
    ),
    (
        "status filter + join",
        "SELECT d.id, a.overall_confidence FROM documents d"
        " JOIN document_analysis a ON a.document_id = d.id"
        " WHERE d.status = 'failed' ORDER BY d.created_at DESC LIMIT 50",
        {"idx_documents_status_created", "idx_documents_pending"},
    ),
    (
        "pipeline backlog (partial index)",
        "SELECT id FROM documents WHERE status = 'queued' ORDER BY created_at LIMIT 100",
        {"idx_documents_pending", "idx_documents_status_created"},
    ),
    (
        "type + recent",
        "SELECT id FROM documents WHERE document_type = 'medical_report'"
        " AND created_at > now() - interval '1 day'",
        {"idx_documents_type_created"},
    ),
    (
        "user's documents",
        "SELECT id FROM documents WHERE user_id = md5('user7')::uuid"
        " ORDER BY created_at DESC LIMIT 20",
        {"idx_documents_user_created"},
    ),
    (
        "metadata containment",
        'SELECT id FROM documents WHERE metadata @> \'{"source": "fax"}\'',
        {"idx_documents_metadata"},
    ),
    (
        "structured_data containment",
        'SELECT id FROM document_analysis WHERE structured_data @> \'{"diagnosis": "rare"}\'',
        {"idx_document_analysis_structured"},
    ),
    (
        "latest analysis",
        "SELECT * FROM document_analysis WHERE document_id = md5('doc42')::uuid"
        " ORDER BY created_at DESC LIMIT 1",
        {"idx_document_analysis_document_created"},
    ),
    (
        "high-confidence entities",
        "SELECT * FROM extracted_entities WHERE confidence >= 0.975"
        " ORDER BY confidence DESC LIMIT 100",
        {"idx_extracted_entities_confidence"},
    ),
    (
        "entities of a document",
        "SELECT * FROM extracted_entities WHERE document_id = md5('doc42')::uuid",
        {"idx_extracted_entities_document"},
    ),
    (
        "job dequeue (SKIP LOCKED)",
        "SELECT id FROM processing_jobs WHERE status = 'queued' AND scheduled_at <= now()"
        " ORDER BY priority DESC, scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        {"idx_processing_jobs_dequeue"},
    ),
]


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(conn: Conn, query: str) -> list[dict[str, Any]]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchone()
    assert row
    return list(plan_nodes(row[0][0]["Plan"]))


@pytest.fixture(scope="module")
def dataset(cluster: Any, template_db: str, admin_conn: Conn) -> Iterator[Callable[[], Conn]]:
    name = f"t_data_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
        conn.execute(DATASET_SQL.replace("%(n)s", "100000").encode())
        conn.execute("VACUUM ANALYZE")
        yield lambda: conn
    admin_conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


# What the application runs as mdus_app on behalf of one user: row-level security picks
# that user's rows (1% of each table), through the owner columns of 006.
RLS_QUERIES: list[tuple[str, str, set[str]]] = [
    (
        "my documents, latest 20",
        "SELECT id FROM documents ORDER BY created_at DESC LIMIT 20",
        {"idx_documents_user_created"},
    ),
    (
        "entities of my documents, latest 50",
        "SELECT * FROM extracted_entities ORDER BY created_at DESC LIMIT 50",
        {"idx_extracted_entities_user_created"},
    ),
    (
        "my analyses, latest 20",
        "SELECT * FROM document_analysis ORDER BY created_at DESC LIMIT 20",
        {"idx_document_analysis_user_created"},
    ),
    (
        "my jobs, latest 20",
        "SELECT * FROM processing_jobs ORDER BY created_at DESC LIMIT 20",
        {"idx_processing_jobs_user_created"},
    ),
]
# The same queries as QUERIES may rightly start from the user's rows under RLS.
RLS_ALTERNATIVES: dict[str, set[str]] = {
    "documents": {"idx_documents_user_created"},
    "document_analysis": {"idx_document_analysis_user_created"},
    "extracted_entities": {"idx_extracted_entities_user_created"},
    "processing_jobs": {"idx_processing_jobs_user_created"},
}


def table_of(query: str) -> str:
    return query.split(" FROM ", 1)[1].split(maxsplit=1)[0]


def user_uuid(name: str) -> str:
    """The id DATASET_SQL gives user <name>: md5(name) read as a uuid."""
    return str(uuid.UUID(hashlib.md5(name.encode()).hexdigest()))


def explain_as(conn: Conn, role: str, query: str) -> list[dict[str, Any]]:
    if role == "superuser":
        return explain(conn, query)
    with acting_as(conn, role, user_uuid("user7")) as app:
        return explain(app, query)


def assert_indexed(label: str, nodes: list[dict[str, Any]], indexes: set[str]) -> None:
    used = {node.get("Index Name") for node in nodes} - {None}
    assert used & indexes, f"{label}: expected one of {indexes}, plan used {used}"
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), f"{label}: seq scan"


@pytest.mark.parametrize("role", ["superuser", "mdus_app"])
@pytest.mark.parametrize(("label", "query", "indexes"), QUERIES, ids=[q[0] for q in QUERIES])
def test_common_queries_use_their_indexes(
    dataset: Callable[[], Conn], label: str, query: str, indexes: set[str], role: str
) -> None:
    if role == "mdus_app":
        indexes = indexes | RLS_ALTERNATIVES.get(table_of(query), set())
    assert_indexed(label, explain_as(dataset(), role, query), indexes)


@pytest.mark.parametrize(
    ("label", "query", "indexes"), RLS_QUERIES, ids=[q[0] for q in RLS_QUERIES]
)
def test_rls_queries_use_owner_indexes(
    dataset: Callable[[], Conn], label: str, query: str, indexes: set[str]
) -> None:
    """Child tables are filtered by their own owner column, not by a sub-query per row
    on documents: the plan is one index range of the user's rows, cost independent of the
    table's size."""
    conn = dataset()
    nodes = explain_as(conn, "mdus_app", query)
    assert_indexed(label, nodes, indexes)
    assert {n.get("Relation Name") for n in nodes} - {None} == {table_of(query)}
    with acting_as(conn, "mdus_app", user_uuid("user7")) as app:
        assert len(app.execute(query).fetchall()) == int(query.rsplit(" ", 1)[1])


@pytest.mark.parametrize(
    ("query", "column"),
    [
        (
            "SELECT * FROM audit_logs WHERE table_name = 'documents'"
            " AND record_id = md5('doc42')::uuid::text ORDER BY created_at DESC",
            "table_name",
        ),
        (
            "SELECT * FROM audit_logs WHERE user_id = md5('user3')::uuid"
            " ORDER BY created_at DESC LIMIT 50",
            "user_id",
        ),
    ],
)
def test_audit_queries_use_partition_indexes(
    dataset: Callable[[], Conn], query: str, column: str
) -> None:
    conn = dataset()
    nodes = explain(conn, query)
    # Empty partitions (premade, or before the data) are rightly seq-scanned: 0 pages.
    filled = {
        r[0] for r in conn.execute("SELECT DISTINCT tableoid::regclass::text FROM audit_logs")
    }
    scanned = [n for n in nodes if n.get("Relation Name") in filled]
    assert len(scanned) == len(filled) >= 2
    assert all("Index" in n["Node Type"] for n in scanned), [n["Node Type"] for n in scanned]
    assert all(column in n["Index Name"] for n in scanned)


def test_rls_query_still_uses_index(dataset: Callable[[], Conn]) -> None:
    conn = dataset()
    with acting_as(
        conn,
        "mdus_app",
        str(uuid.UUID(bytes=bytes.fromhex(conn.execute("SELECT md5('user7')").fetchone()[0]))),
    ) as app:
        nodes = explain(app, "SELECT id FROM documents ORDER BY created_at DESC LIMIT 20")
        assert "idx_documents_user_created" in {n.get("Index Name") for n in nodes}
        assert count(app, "SELECT count(*) FROM documents") == 1000
