"""pgbackrest info JSON -> node-exporter textfile metrics (roles/monitoring_agent)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.modload import load_module

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles/monitoring_agent/files/pgbackrest_metrics.py"
SAMPLE = Path(__file__).parent / "data/pgbackrest_info.json"
NOW = 1795900000  # 2026-11-28, after the sample's newest backup (stop 1795827610)


def _module() -> ModuleType:
    return load_module("pgbackrest_metrics", SCRIPT)


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


def test_output_is_valid_exposition_format(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (see .ci/run)"
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_script_writes_file_from_a_command(tmp_path: Path) -> None:
    """End to end: a stand-in pgbackrest prints the sample; the file is replaced whole."""
    fake = tmp_path / "pgbackrest"
    fake.write_text(f"#!/bin/sh\ncat {SAMPLE}\n")
    fake.chmod(0o755)
    out = tmp_path / "pgbackrest.prom"
    cmd = [sys.executable, str(SCRIPT), "--output", str(out), str(fake)]
    assert subprocess.run(cmd, check=False).returncode == 0
    assert 'mdus_pgbackrest_stanza_status{stanza="main"} 0' in out.read_text()
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'ERROR: [055]' >&2\nexit 55\n")
    failing.chmod(0o755)
    cmd = [sys.executable, str(SCRIPT), "--output", str(out), str(failing)]
    assert subprocess.run(cmd, check=False, capture_output=True).returncode == 1
    assert "mdus_pgbackrest_up 0" in out.read_text()
