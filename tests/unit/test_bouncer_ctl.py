"""mdus-bouncer-ctl (roles/pgbouncer/files/mdus_bouncer_ctl.py) finds PgBouncer's socket
and port in PgBouncer's own configuration, so the DR playbooks reach the admin console
wherever the pgbouncer role put it (pgbouncer_socket_dir, pgbouncer_listen_port)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from tests.modload import load_module

REPO = Path(__file__).resolve().parents[2]


def _ctl() -> ModuleType:
    return load_module("mdus_bouncer_ctl", REPO / "roles/pgbouncer/files/mdus_bouncer_ctl.py")


INI = """; managed
[databases]
mdus_db = host=pg1 port=5432 dbname=mdus_db
unix_socket_dir = /not/this/section

[pgbouncer]
listen_port = 6543
;unix_socket_dir = /commented/out
unix_socket_dir = /run/pgbouncer
"""


def test_settings_come_from_the_pgbouncer_section(tmp_path: Path) -> None:
    ctl = _ctl()
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(INI)
    assert ctl.ini_setting("unix_socket_dir", "x", str(ini)) == "/run/pgbouncer"
    assert ctl.ini_setting("listen_port", "6432", str(ini)) == "6543"
    assert ctl.ini_setting("pidfile", "none", str(ini)) == "none"


def test_an_unreadable_file_gives_the_default(tmp_path: Path) -> None:
    ctl = _ctl()
    assert ctl.ini_setting("listen_port", "6432", str(tmp_path / "missing.ini")) == "6432"
