"""What a DBA expects of one converged PostgreSQL host."""

from __future__ import annotations

import importlib.util
from typing import Any

from tests.integration.pglab import (
    CONF_DIR,
    LOG_DIR,
    PKI_DIR,
    REPO,
    cgroup_memory_limit_mb,
    psql,
    tcp_psql,
    temporary_login,
)

SERVICE = "postgresql@15-main"


def _pgtune() -> Any:
    spec = importlib.util.spec_from_file_location(
        "pgtune", REPO / "roles/postgresql/filter_plugins/pgtune.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_active_and_enabled(host: Any) -> None:
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_server_is_version_15(host: Any) -> None:
    assert psql(host, "SHOW server_version_num").startswith("15")


def test_data_checksums_on(host: Any) -> None:
    assert psql(host, "SHOW data_checksums") == "on"


def test_tuning_matches_container_memory(host: Any) -> None:
    memory_mb = cgroup_memory_limit_mb(host)
    assert memory_mb < 65536, "container has no memory limit: the lab sets one"
    cpus = int(host.run("nproc").stdout)
    expected = _pgtune().pgtune(memory_mb, cpus, "ssd", "documents")
    for name in (
        "shared_buffers",
        "effective_cache_size",
        "work_mem",
        "max_connections",
        "maintenance_work_mem",
        "random_page_cost",
        "checkpoint_completion_target",
    ):
        actual = psql(host, f"SELECT current_setting('{name}')")
        assert _normalise(actual) == _normalise(expected[name]), name
    if memory_mb == 4096:
        assert psql(host, "SHOW shared_buffers") == "1GB"
        assert psql(host, "SHOW effective_cache_size") == "3GB"
        # the per-connection share and 1/64 of the memory (pgtune.py's documents profile)
        assert psql(host, "SHOW work_mem") == "4MB"
        assert psql(host, "SHOW maintenance_work_mem") == "64MB"


def _normalise(value: str) -> str:
    return value.replace("1024MB", "1GB").replace("3072MB", "3GB")


def test_ssl_on_with_tls12_minimum(host: Any) -> None:
    assert psql(host, "SHOW ssl") == "on"
    assert psql(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    assert psql(host, "SHOW password_encryption") == "scram-sha-256"


def test_verify_full_connects_and_plaintext_is_refused(host: Any) -> None:
    name = host.backend.get_hostname()
    with temporary_login(host) as (user, password):
        base = f"host={name} port=5432 dbname=postgres user={user}"
        rc, out, err = tcp_psql(
            host,
            f"{base} sslmode=verify-full sslrootcert={PKI_DIR}/ca.crt",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            password,
        )
        assert rc == 0, err
        assert out == "t"
        rc, _, err = tcp_psql(host, f"{base} sslmode=disable", "SELECT 1", password)
        assert rc != 0
        assert "no pg_hba.conf entry" in err and "no encryption" in err
        rc, _, err = tcp_psql(
            host, f"{base} sslmode=verify-full sslrootcert={PKI_DIR}/ca.crt", "SELECT 1", "wrong"
        )
        assert rc != 0
        assert "password authentication failed" in err


def test_old_tls_versions_are_refused(host: Any) -> None:
    name = host.backend.get_hostname()
    with temporary_login(host) as (user, password):
        rc, _, err = tcp_psql(
            host,
            f"host={name} dbname=postgres user={user} sslmode=require "
            "ssl_max_protocol_version=TLSv1.1",
            "SELECT 1",
            password,
        )
        assert rc != 0, "a TLS 1.1 client was accepted"
        assert "SSL" in err or "ssl" in err or "protocol" in err, err


def test_certificate_names_the_host(host: Any) -> None:
    text = host.run("openssl x509 -in %s/host.crt -noout -text", PKI_DIR).stdout
    assert f"DNS:{host.backend.get_hostname()}" in text
    verify = host.run("openssl verify -CAfile %s/ca.crt %s/host.crt", PKI_DIR, PKI_DIR)
    assert verify.rc == 0, verify.stderr


def test_pg_stat_statements_loaded(host: Any) -> None:
    assert "pg_stat_statements" in psql(host, "SHOW shared_preload_libraries")
    psql(host, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    assert int(psql(host, "SELECT count(*) FROM pg_stat_statements")) > 0


def test_temporary_files_are_logged(host: Any) -> None:
    # the rest of the logging baseline: tests/integration/hardening.py
    assert psql(host, "SHOW log_temp_files") == "0"


def test_log_files_written(host: Any) -> None:
    psql(host, "SELECT 1")
    logs = host.run("ls %s", LOG_DIR).stdout.split()
    assert logs, "no log file"
    # Bytes: a log may hold what a client sent in another encoding (a CI run once met a
    # 0xf4 byte there), and the check is about the log being written, not its encoding.
    raw = host.file(f"{LOG_DIR}/{sorted(logs)[-1]}").content
    assert b"connection authorized" in raw


def test_config_reads_conf_d_last(host: Any) -> None:
    content = host.file(f"{CONF_DIR}/postgresql.conf").content_string
    assert "include_dir = 'conf.d'" in content
