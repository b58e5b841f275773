"""The lab webhook receiver (roles/monitoring_server/files/mdus_alert_recorder.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

RECORDER = (
    Path(__file__).resolve().parents[2] / "roles/monitoring_server/files/mdus_alert_recorder.py"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_records_each_notification_as_a_json_line(tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "state/alerts.jsonl"
    cmd = [sys.executable, str(RECORDER), "--port", str(port), "--output", str(out)]
    proc = subprocess.Popen(cmd)
    try:
        url = f"http://127.0.0.1:{port}/alerts"
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for status in ("firing", "resolved"):
            body = {"status": status, "alerts": [{"status": status, "labels": {"alertname": "X"}}]}
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            assert urllib.request.urlopen(request, timeout=5).status == 200
        bad = urllib.request.Request(url, data=b"not json")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 400
    finally:
        proc.terminate()
        proc.wait(10)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["firing", "resolved"]
    assert all(line["received_at"] > 0 for line in lines)
