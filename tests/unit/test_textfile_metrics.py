"""pgbackrest info JSON and PgBouncer pools -> node-exporter textfile metrics
(roles/monitoring_agent/files/textfile_metrics.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.modload import load_module

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles/monitoring_agent/files/textfile_metrics.py"
SAMPLE = Path(__file__).parent / "data/pgbackrest_info.json"
NOW = 1795900000  # 2026-11-28, after the sample's newest backup (stop 1795827610)


def _module() -> ModuleType:
    return load_module("textfile_metrics", SCRIPT)


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture(scope="module")
def text() -> str:
    return _module().metrics_from_info(json.loads(SAMPLE.read_text()), NOW)


def test_timestamps_and_ages_per_type(text: str) -> None:
    samples = _samples(text)
    ts = "mdus_pgbackrest_last_backup_timestamp_seconds"
    age = "mdus_pgbackrest_last_backup_age_seconds"
    assert samples[f'{ts}{{repo="1",stanza="main",type="full"}}'] == 1795654860
    assert samples[f'{ts}{{repo="1",stanza="main",type="diff"}}'] == 1795741230
    assert samples[f'{ts}{{repo="1",stanza="main",type="incr"}}'] == 1795827610
    assert samples[f'{ts}{{repo="1",stanza="main",type="any"}}'] == 1795827610
    assert samples[f'{age}{{repo="1",stanza="main",type="full"}}'] == NOW - 1795654860
    assert samples[f'{age}{{repo="1",stanza="main",type="any"}}'] == NOW - 1795827610
    full = '{repo="1",stanza="main",type="full"}'
    assert samples[f"mdus_pgbackrest_last_backup_duration_seconds{full}"] == 60
    assert samples[f"mdus_pgbackrest_last_backup_size_bytes{full}"] == 31500000


def test_stanza_status_and_counts(text: str) -> None:
    samples = _samples(text)
    assert samples["mdus_pgbackrest_up"] == 1
    assert samples["mdus_pgbackrest_collect_timestamp_seconds"] == NOW
    assert samples['mdus_pgbackrest_stanza_status{stanza="main"}'] == 0
    assert samples['mdus_pgbackrest_stanza_status{stanza="empty"}'] == 2
    assert samples['mdus_pgbackrest_repo_status{repo="1",stanza="main"}'] == 0
    assert samples['mdus_pgbackrest_backups{repo="1",stanza="main"}'] == 3
    assert samples['mdus_pgbackrest_backups{repo="1",stanza="empty"}'] == 0
    # A stanza without backups has no freshness series (its status code says why).
    assert not any('stanza="empty",type=' in key for key in samples)


def test_each_repository_ages_on_its_own() -> None:
    """repo2 (cross-region copy) with an old full backup only: its own series say so,
    repo1's fresh backups do not hide it."""
    info = json.loads(SAMPLE.read_text())
    main = info[0]
    main["repo"].append({"cipher": "none", "key": 2, "status": {"code": 0, "message": "ok"}})
    old = json.loads(json.dumps(main["backup"][0]))
    old["database"]["repo-key"] = 2
    old["timestamp"] = {"start": 1795000000, "stop": 1795000100}
    main["backup"].append(old)
    samples = _samples(_module().metrics_from_info(info, NOW))
    ts = "mdus_pgbackrest_last_backup_timestamp_seconds"
    assert samples[f'{ts}{{repo="2",stanza="main",type="any"}}'] == 1795000100
    assert samples[f'{ts}{{repo="1",stanza="main",type="any"}}'] == 1795827610
    assert samples['mdus_pgbackrest_backups{repo="2",stanza="main"}'] == 1
    assert samples['mdus_pgbackrest_backups{repo="1",stanza="main"}'] == 3
    assert samples['mdus_pgbackrest_repo_status{repo="2",stanza="main"}'] == 0
    assert not any('repo="2",stanza="main",type="incr"' in key for key in samples)


def test_failed_command_only_reports_down() -> None:
    samples = _samples(_module().metrics_from_info(None, NOW))
    assert samples == {"mdus_pgbackrest_up": 0, "mdus_pgbackrest_collect_timestamp_seconds": NOW}


def _promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (see .ci/run)"
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_output_is_valid_exposition_format(text: str) -> None:
    _promtool_check(text)


def test_script_writes_file_from_a_command(tmp_path: Path) -> None:
    """End to end: a stand-in pgbackrest prints the sample; the file is replaced whole."""
    fake = tmp_path / "pgbackrest"
    fake.write_text(f"#!/bin/sh\ncat {SAMPLE}\n")
    fake.chmod(0o755)
    out = tmp_path / "pgbackrest.prom"
    cmd = [sys.executable, str(SCRIPT), "pgbackrest", "--output", str(out), str(fake)]
    assert subprocess.run(cmd, check=False).returncode == 0
    assert 'mdus_pgbackrest_stanza_status{stanza="main"} 0' in out.read_text()
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'ERROR: [055]' >&2\nexit 55\n")
    failing.chmod(0o755)
    cmd = [sys.executable, str(SCRIPT), "pgbackrest", "--output", str(out), str(failing)]
    assert subprocess.run(cmd, check=False, capture_output=True).returncode == 1
    assert "mdus_pgbackrest_up 0" in out.read_text()


# SHOW POOLS / SHOW DATABASES rows as PgBouncer 1.18 returns them (the admin console's
# own pseudo-database included: it is left out of the metrics).
POOLS = [
    {
        "database": "mdus_db",
        "user": "mdus_app",
        "cl_active": 30,
        "cl_waiting": 4,
        "sv_active": 18,
        "sv_idle": 1,
        "sv_used": 1,
        "sv_tested": 0,
        "sv_login": 0,
        "maxwait": 2,
        "maxwait_us": 500000,
        "pool_mode": "transaction",
    },
    {
        "database": "mdus_db_ro",
        "user": "mdus_readonly",
        "cl_active": 1,
        "cl_waiting": 0,
        "sv_active": 0,
        "sv_idle": 1,
        "sv_used": 0,
        "sv_tested": 0,
        "sv_login": 0,
        "maxwait": 0,
        "maxwait_us": 0,
        "pool_mode": "transaction",
    },
    {
        "database": "pgbouncer",
        "user": "pgbouncer",
        "cl_active": 1,
        "cl_waiting": 0,
        "sv_active": 0,
        "sv_idle": 0,
        "sv_used": 0,
        "sv_tested": 0,
        "sv_login": 0,
        "maxwait": 0,
        "maxwait_us": 0,
        "pool_mode": "statement",
    },
]
DATABASES = [
    {
        "name": "mdus_db",
        "host": "pg1",
        "port": 5432,
        "database": "mdus_db",
        "pool_size": 20,
        "reserve_pool": 30,
        "max_connections": 0,
        "current_connections": 20,
    },
    {
        "name": "mdus_db_ro",
        "host": "pg2",
        "port": 5432,
        "database": "mdus_db",
        "pool_size": 20,
        "reserve_pool": 30,
        "max_connections": 0,
        "current_connections": 1,
    },
    {
        "name": "pgbouncer",
        "host": None,
        "port": 6432,
        "database": "pgbouncer",
        "pool_size": 2,
        "reserve_pool": 0,
        "max_connections": 0,
        "current_connections": 0,
    },
]


def test_pgbouncer_pools_and_databases() -> None:
    text = _module().metrics_from_pgbouncer(POOLS, DATABASES)
    samples = _samples(text)
    pool = 'database="mdus_db",state="{}",user="mdus_app"'
    assert samples["mdus_pgbouncer_up"] == 1
    assert samples["mdus_pgbouncer_pool_clients{" + pool.format("active") + "}"] == 30
    assert samples["mdus_pgbouncer_pool_clients{" + pool.format("waiting") + "}"] == 4
    assert samples["mdus_pgbouncer_pool_servers{" + pool.format("active") + "}"] == 18
    assert samples["mdus_pgbouncer_pool_servers{" + pool.format("idle") + "}"] == 1
    wait = 'mdus_pgbouncer_pool_maxwait_seconds{database="mdus_db",user="mdus_app"}'
    assert samples[wait] == 2.5
    assert samples['mdus_pgbouncer_database_pool_size{database="mdus_db"}'] == 20
    assert samples['mdus_pgbouncer_database_reserve_pool{database="mdus_db_ro"}'] == 30
    assert samples['mdus_pgbouncer_database_current_connections{database="mdus_db"}'] == 20
    assert not any('database="pgbouncer"' in key for key in samples), "admin console exported"
    _promtool_check(text)


def test_pgbouncer_down_only_reports_down(tmp_path: Path) -> None:
    """No PgBouncer behind the DSN: exit code 1 and mdus_pgbouncer_up 0 in the file."""
    out = tmp_path / "pgbouncer.prom"
    dsn = f"host={tmp_path} port=6432 dbname=pgbouncer connect_timeout=2"
    cmd = [sys.executable, str(SCRIPT), "pgbouncer", "--output", str(out), "--dsn", dsn]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "PgBouncer admin console" in proc.stderr
    assert _samples(out.read_text()) == {"mdus_pgbouncer_up": 0}


def _make_cert(path: Path, days: int, cn: str) -> str:
    """A self-signed certificate valid `days` days; returns its serial (lower-case hex)."""
    key = path.with_suffix(".key")
    new = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subj = ["-subj", f"/CN={cn}", "-days", str(days)]
    subprocess.run(
        [*new, "-nodes", "-keyout", str(key), "-out", str(path), *subj],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split("=", 1)[1].strip().lower()


def test_certificates_expiry_serial_and_unreadable(tmp_path: Path) -> None:
    """A directory of two certificates and a broken one, plus a missing file: each reported."""
    certs = tmp_path / "pki"
    certs.mkdir()
    serial = _make_cert(certs / "host.crt", 30, "db1.example")
    _make_cert(certs / "ca.crt", 3650, "Example CA")
    (certs / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    (certs / "host.key").chmod(0o600)  # keys are not read (not *.crt / *.pem)
    out = tmp_path / "certs.prom"
    missing = tmp_path / "absent.crt"
    cmd = [sys.executable, str(SCRIPT), "certs", "--output", str(out), str(certs), str(missing)]
    started = time.time()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # two files could not be read
    text = out.read_text()
    samples = _samples(text)
    host = f'path="{certs}/host.crt",serial="{serial}",subject="CN=db1.example"'
    expiry = samples["mdus_certificate_expiry_timestamp_seconds{" + host + "}"]
    assert abs(expiry - (started + 30 * 86400)) < 120, expiry - started
    assert samples[f'mdus_certificate_read_ok{{path="{certs}/host.crt"}}'] == 1
    assert samples[f'mdus_certificate_read_ok{{path="{certs}/ca.crt"}}'] == 1
    assert samples[f'mdus_certificate_read_ok{{path="{certs}/broken.pem"}}'] == 0
    assert samples[f'mdus_certificate_read_ok{{path="{missing}"}}'] == 0
    assert not any("host.key" in key for key in samples), "a key file was read"
    _promtool_check(text)
